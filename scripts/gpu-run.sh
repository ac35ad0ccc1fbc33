#!/usr/bin/env bash
# One call on a GPU machine: build every backend, run the whole test suite
# (CUDA and Vulkan on the GPU), the CUDA sanitizer checks, and the benchmarks.
# Logs go to $OUT (default build-gpu/logs); a summary table is printed last.
#   scripts/gpu-run.sh [quick]   quick: no compute-sanitizer runs, shorter benchmarks
set -u
cd "$(dirname "$0")/.."
[ -f .devdeps/setup.sh ] && source .devdeps/setup.sh
build=${BUILD:-build-gpu}
out=${OUT:-$build/logs}
mkdir -p "$out"
mode=${1:-full}
summary=()
note() { summary+=("$(printf '%-40s %s' "$1" "$2")"); }
run() { # name, command...
  local name=$1; shift
  local t0=$(date +%s)
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  note "$name" "rc=$rc $(( $(date +%s) - t0 ))s  $(grep -E 'passed|tests failed|failed out of' "$out/$name.log" | tail -1)"
  return $rc
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
cmake -G Ninja -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPORTA_CUDA=ON -DPORTA_VULKAN=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 > "$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
ninja -C "$build" > "$out/build.log" 2>&1 || { grep -E "error|FAILED" -A5 "$out/build.log" | head -60; exit 1; }
grep -E "porta backends" "$out/configure.log"

run ctest ctest --test-dir "$build" --output-on-failure -j 8
grep -E "Test +#|tests passed|Skipped|Failed" "$out/ctest.log" | tail -60

if [ "$mode" != quick ]; then
  san=/usr/local/cuda/bin/compute-sanitizer
  run memcheck_program "$san" --tool memcheck --error-exitcode 9 "$build/bin/test_program" cuda
  run memcheck_ops "$san" --tool memcheck --error-exitcode 9 "$build/bin/test_ops" cuda
  run racecheck_program "$san" --tool racecheck --error-exitcode 9 "$build/bin/test_program" cuda
  run racecheck_attention "$san" --tool racecheck --error-exitcode 9 "$build/bin/test_ops" cuda attention
  run synccheck_ops "$san" --tool synccheck --error-exitcode 9 "$build/bin/test_ops" cuda
fi

# Every backend against ref on the tiny Toto, 16 decode steps, node by node.
run porta_validate "$build/bin/porta-validate" --model tests/data/toto-tiny --steps 16 --trace
grep -E "^trace|^(PASS|FAIL)$" "$out/porta_validate.log"

q=; [ "$mode" = quick ] && q=--quick
for be in cuda vulkan cpu; do
  run "bench_decoder_$be" "$build/bin/bench_decoder" --backend "$be" $q
done
for f in "$build"/bin/bench_*; do
  case "$f" in *bench_decoder) continue ;; esac
  [ -x "$f" ] && run "$(basename "$f")" "$f" $q
done

echo; echo "== benchmarks =="
for f in "$out"/bench_*.log; do echo "-- $(basename "$f" .log)"; cat "$f"; done
echo; echo "== summary =="
printf '%s\n' "${summary[@]}"
