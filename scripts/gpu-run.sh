#!/usr/bin/env bash
# GPU-machine checks in one call each: build every backend, then any of
#   tests     the whole ctest suite (CUDA and Vulkan on the GPU) and porta-validate
#   sanitize  compute-sanitizer memcheck, racecheck, synccheck, initcheck on the CUDA tests
#   bench     bench_decoder on cuda and vulkan
#   toto      the Toto forecast benchmark against toto-ts (CASES as bench/run_toto_bench.sh)
#   profile   time of each node: bench_decoder on CUDA and Vulkan (PORTA_CUDA_PROFILE=1,
#             PORTA_VULKAN_PROFILE=1), and the Toto
#             forecasts of CASES (default "mean-v7 s256-v1") without toto-ts
#   l2pf      the decode steps with and without the L2 prefetch of weights and the
#             Vulkan GEMV chaining, settings alternated run by run (L2PF_VARIANTS:
#             PORTA_CUDA_L2PF:PORTA_VK_L2PF:PORTA_VK_L2PF_MB:PORTA_VK_CHAIN)
#   quick     shorter benchmarks
# (default: tests sanitize bench). Logs go to $OUT (default build-gpu/logs);
# a summary table is printed last. Each part fits one 10-minute call.
set -u
cd "$(dirname "$0")/.."
[ -f .devdeps/setup.sh ] && source .devdeps/setup.sh
build=${BUILD:-build-gpu}
out=${OUT:-$build/logs}
mkdir -p "$out"
parts=" ${*:-tests sanitize bench} "
has() { [[ "$parts" == *" $1 "* ]]; }
summary=()
note() { summary+=("$(printf '%-28s %s' "$1" "$2")"); }
run() { # name, command...
  local name=$1; shift
  local t0=$(date +%s)
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  note "$name" "rc=$rc $(( $(date +%s) - t0 ))s  $(grep -E 'passed|tests failed|failed out of|ERROR SUMMARY' "$out/$name.log" | tail -1)"
  return $rc
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
cmake -G Ninja -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPORTA_CUDA=ON -DPORTA_VULKAN=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 > "$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
ninja -C "$build" > "$out/build.log" 2>&1 || { grep -E "error|FAILED" -A5 "$out/build.log" | head -60; exit 1; }
grep -E "porta backends" "$out/configure.log"

if has tests; then
  run ctest ctest --test-dir "$build" --output-on-failure -j 8
  grep -E "Test +#|tests passed|Skipped|Failed" "$out/ctest.log" | tail -60
  # Every backend against ref on the tiny Toto, 16 decode steps, node by node.
  run porta_validate "$build/bin/porta-validate" --model tests/data/toto-tiny --steps 16 --trace
  grep -E "^trace|^(PASS|FAIL)$" "$out/porta_validate.log"
fi

if has sanitize; then
  san=/usr/local/cuda/bin/compute-sanitizer
  run memcheck_program "$san" --tool memcheck --error-exitcode 9 "$build/bin/test_program" cuda
  run memcheck_ops "$san" --tool memcheck --error-exitcode 9 "$build/bin/test_ops" cuda
  run racecheck_program "$san" --tool racecheck --error-exitcode 9 "$build/bin/test_program" cuda
  run racecheck_attention "$san" --tool racecheck --error-exitcode 9 "$build/bin/test_ops" cuda attention
  run synccheck_ops "$san" --tool synccheck --error-exitcode 9 "$build/bin/test_ops" cuda
  run initcheck_ops "$san" --tool initcheck --error-exitcode 9 "$build/bin/test_ops" cuda
  run memcheck_toto "$san" --tool memcheck --error-exitcode 9 "$build/bin/test_toto_agreement" cuda tests/data/toto-tiny
fi

q=; has quick && q=--quick
if has bench; then
  run bench_decoder "$build/bin/bench_decoder" --backends cuda,vulkan $q
  cat "$out/bench_decoder.log"
fi

if has l2pf; then
  # Each run takes one setting of both backends; the settings alternate, twice over.
  # No new run starts after DEADLINE_S seconds of this script (default 500),
  # so that a call keeps its finished runs within a 10-minute limit.
  for rep in 1 2; do
    for v in ${L2PF_VARIANTS:-0:0:24:0 0:0:24:1 0:0:24:2 1:1:24:2 1:3:32:0}; do
      if (( SECONDS > ${DEADLINE_S:-500} )); then
        echo "== stopped at ${SECONDS}s (DEADLINE_S), before $v run $rep" | tee -a "$out/l2pf.log"
        break 2
      fi
      IFS=: read -r cm vm mb ch <<< "$v"
      echo "== PORTA_CUDA_L2PF=$cm PORTA_VK_L2PF=$vm PORTA_VK_L2PF_MB=$mb PORTA_VK_CHAIN=${ch:-0} (run $rep)" |
        tee -a "$out/l2pf.log"
      PORTA_CUDA_L2PF=$cm PORTA_VK_L2PF=$vm PORTA_VK_L2PF_MB=$mb PORTA_VK_CHAIN=${ch:-0} \
        "$build/bin/bench_decoder" --backends cuda,vulkan --quick --steps-only > "$out/l2pf_run.log" 2>&1 ||
        tail -3 "$out/l2pf_run.log"
      cat "$out/l2pf_run.log" >> "$out/l2pf.log"
      grep -E "^(1|256) x|besides" "$out/l2pf_run.log"
    done
  done
  note l2pf "$(grep -c '^== PORTA' "$out/l2pf.log") runs (l2pf.log)"
fi

if has toto; then
  mkdir -p "$build/toto-bench"
  BUILD=$build RESULTS=$build/toto-bench QUICK=$([ -n "$q" ] && echo 1 || echo 0) \
    bash bench/run_toto_bench.sh cuda vulkan > "$out/toto_bench.log" 2>&1
  tail -20 "$out/toto_bench.log"
  tar -C "$build" -czf "$out/toto-bench.tgz" toto-bench
fi

if has profile; then
  PORTA_CUDA_PROFILE=1 run profile_decoder "$build/bin/bench_decoder" --backends cuda --quick
  grep -A24 "porta cuda profile" "$out/profile_decoder.log" | head -150
  PORTA_VULKAN_PROFILE=1 run profile_decoder_vulkan "$build/bin/bench_decoder" --backends vulkan --quick
  grep -A24 "porta vulkan profile" "$out/profile_decoder_vulkan.log" | head -150
  mkdir -p "$build/toto-profile"
  PORTA_CUDA_PROFILE=1 PEER=0 BUILD=$build RESULTS=$build/toto-profile QUICK=1 CASES=${CASES:-mean-v7 s256-v1} \
    bash bench/run_toto_bench.sh cuda > "$out/toto_profile.log" 2>&1
  cp "$build/toto-profile/log.txt" "$out/toto_profile_nodes.log"
  grep -A24 "porta cuda profile" "$out/toto_profile_nodes.log" | head -150
fi

echo; echo "== summary =="
printf '%s\n' "${summary[@]}"
