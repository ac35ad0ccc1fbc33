#!/bin/sh
# Checks of the CUDA backend that need an NVIDIA GPU: builds porta with CUDA,
# runs the op and program tests on it, then the same under compute-sanitizer.
# Logs go to $OUT (or build-cuda/gpu-check); a summary line per check is
# printed. Extra configure options come from $CMAKE_ARGS.
#   backends/cuda/gpu_check.sh [quick]     quick: skip the sanitizer runs
set -u
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-$src/build-cuda}
out=${OUT:-$build/gpu-check}
mkdir -p "$out"
san=${CUDA_SANITIZER:-/usr/local/cuda/bin/compute-sanitizer}
vk=
[ -f "$src/backends/vulkan/CMakeLists.txt" ] || vk=-DPORTA_VULKAN=OFF

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
# shellcheck disable=SC2086
cmake -G Ninja -S "$src" -B "$build" -DPORTA_CUDA=ON -DCMAKE_BUILD_TYPE=Release $vk ${CMAKE_ARGS:-} \
    > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
ninja -C "$build" > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }

bin=$build/bin
fails=0
check() { # name, command...
    name=$1
    shift
    start=$(date +%s)
    "$@" > "$out/$name.log" 2>&1
    rc=$?
    printf '%-34s rc=%-3s %4ss  %s\n' "$name" "$rc" "$(($(date +%s) - start))" "$(tail -1 "$out/$name.log")"
    [ "$rc" -eq 0 ] || fails=$((fails + 1))
}

check test_ops "$bin/test_ops" cuda
check test_program "$bin/test_program" cuda
# TF32 is off by default; with it on the matmul cases are expected to exceed
# the float32 tolerances. Informational only: not counted.
PORTA_CUDA_TF32=1 "$bin/test_ops" cuda > "$out/test_ops_tf32.log" 2>&1
echo "test_ops with PORTA_CUDA_TF32=1 (informational): $(tail -1 "$out/test_ops_tf32.log")"

if [ "${1:-}" != quick ]; then
    check memcheck_ops "$san" --tool memcheck --error-exitcode 9 "$bin/test_ops" cuda
    check memcheck_program "$san" --tool memcheck --error-exitcode 9 "$bin/test_program" cuda
    check racecheck_attention "$san" --tool racecheck --error-exitcode 9 "$bin/test_ops" cuda attention
    check synccheck_ops "$san" --tool synccheck --error-exitcode 9 "$bin/test_ops" cuda
    check initcheck_ops "$san" --tool initcheck --error-exitcode 9 "$bin/test_ops" cuda
fi
echo "$fails check(s) failed; logs in $out"
[ "$fails" -eq 0 ]
