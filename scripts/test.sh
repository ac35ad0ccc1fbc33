#!/usr/bin/env bash
# Builds porta and runs the whole test suite: a release build (every backend
# whose toolchain is present), then an AddressSanitizer + UndefinedBehaviorSanitizer
# build of the CPU, ref and Vulkan backends, then a ThreadSanitizer build of the
# same (threads on every backend; the CPU backend's thread pool under the CPU and
# ref suites). Tests whose device is absent report
# skipped. Vulkan runs on whatever driver is installed (Mesa lavapipe on a
# machine without a GPU) with the Khronos validation layer on, then its tests
# once more with the layer's synchronization validation.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)

echo "== release build =="
cmake -S . -B build "${gen[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
PORTA_VK_VALIDATE=1 ctest --test-dir build --output-on-failure -j "$jobs"
echo "== Vulkan tests again, with synchronization validation =="
# Every barrier the programs record, checked against the buffer ranges each
# dispatch binds (chained nodes wait inside shaders, where the layer cannot see:
# test_program skips them here, and their Toto test is left out).
PORTA_VK_VALIDATE=1 VK_LAYER_ENABLES=VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT \
  ctest --test-dir build --output-on-failure -j "$jobs" -L vulkan -E vulkan_chain

echo "== sanitizer build (ASan + UBSan) =="
cmake -S . -B build-asan "${gen[@]}" -DCMAKE_BUILD_TYPE=Debug -DPORTA_SANITIZE=ON -DPORTA_CUDA=OFF >/dev/null
cmake --build build-asan -j "$jobs"
# The two longest lavapipe runs are left to the release pass (they take minutes under ASan).
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -E "test_program.vulkan|test_toto_sampling.vulkan"

echo "== ThreadSanitizer build =="
cmake -S . -B build-tsan "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPORTA_TSAN=ON -DPORTA_CUDA=OFF >/dev/null
cmake --build build-tsan -j "$jobs"
# Vulkan's other tests drive one backend from one thread, as the release pass did.
export TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp"
ctest --test-dir build-tsan --output-on-failure -j "$jobs" -LE vulkan
ctest --test-dir build-tsan --output-on-failure -R '^test_threads[.]vulkan$'
