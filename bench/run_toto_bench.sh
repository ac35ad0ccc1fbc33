#!/usr/bin/env bash
# Toto forecast benchmark: porta (bench_toto) against toto-ts eager and
# torch.compile (bench_toto_torch.py), same checkpoint, same input, same
# machine, same run; prints one table (bench/toto_bench_table.py).
#
#   bench/run_toto_bench.sh [BACKEND...]    porta backends (default: cuda where nvidia-smi
#                                           sees a GPU, else cpu)
# Environment:
#   BUILD   build folder (default build; configured and built when bench_toto is missing)
#   MODEL   checkpoint folder (default bench/checkpoints/toto-base-random, made when missing)
#   DEVICE  toto-ts device, cpu or cuda (default: cuda with a GPU, else cpu)
#   RESULTS folder for the JSON results and logs (default $BUILD/toto-bench)
#   QUICK=1 fewer repeats everywhere
#   PEER=0  porta only: skip toto-ts (earlier toto-ts results in RESULTS stay)
#   CASES   cases to run (default "mean-v1 mean-v7 s256-v1 s256-v7"); results of other
#           cases already in RESULTS stay and appear in the table
# Cases: mean path and 256 sample paths, each for 1 and 7 variates; context
# 4096, horizon 336 (6 patches). On the CPU, toto-ts needs minutes per
# sampled forecast: its sample cases run once without warm-up, in sampling
# batches of 32 (256 at once would need ~22 GB for 7 variates), and only the
# first batch (32 of 256 samples) is timed and scaled by 8 (its batches run
# one after another, each the same work; the table marks such figures with *);
# TORCH_FULL=1 runs all of them. torch.compile of the sample cases is skipped
# on the CPU unless TORCH_FULL=1.
# Toto-ts may be absent (the GPU machine): the wheels in .whl/ (made here by
# `python3 bench/toto_wheels.py download .whl`) whose modules this Python
# lacks are installed into /tmp/site and put on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MODEL=${MODEL:-bench/checkpoints/toto-base-random}
OUT=${RESULTS:-$BUILD/toto-bench}
gpu=0
nvidia-smi -L > /dev/null 2>&1 && gpu=1
DEVICE=${DEVICE:-$([ $gpu = 1 ] && echo cuda || echo cpu)}
if [ $# -gt 0 ]; then backends=("$@"); elif [ $gpu = 1 ]; then backends=(cuda); else backends=(cpu); fi
CASES=${CASES:-mean-v1 mean-v7 s256-v1 s256-v7}
mkdir -p "$OUT"
peer=${PEER:-1}
for case in $CASES; do
  rm -f "$OUT/$case".porta-*.json
  [ "$peer" = 1 ] && rm -f "$OUT/$case".eager.json "$OUT/$case".compile.json
done

# A warm machine keeps /tmp/site from an earlier call.
[ -d /tmp/site/toto ] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
if ! python3 -c "import toto" > /dev/null 2>&1; then
  [ -d .whl ] || { echo "toto-ts is not installed and .whl/ is missing" >&2; exit 1; }
  wheels=$(python3 bench/toto_wheels.py missing .whl)
  echo "installing into /tmp/site: $(echo $wheels | xargs -n1 basename | tr '\n' ' ')"
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $wheels
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  python3 -c "import toto.model.toto, toto.inference.forecaster"
fi

if [ ! -f "$MODEL/model.safetensors" ]; then
  echo "making the base-config checkpoint with random weights in $MODEL"
  python3 models/toto/scripts/make_checkpoint.py --config base --out "$MODEL"
fi

if [ ! -x "$BUILD/bin/bench_toto" ]; then
  cmake_args=(-G Ninja -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release)
  [ $gpu = 1 ] && cmake_args+=(-DCMAKE_CUDA_ARCHITECTURES=90)
  cmake "${cmake_args[@]}" > "$OUT/configure.log"
  # bench_toto and the backend modules it loads at run time, nothing else.
  targets=(bench_toto)
  for t in porta_cuda porta_vulkan; do ninja -C "$BUILD" -t query "$t" > /dev/null 2>&1 && targets+=("$t"); done
  ninja -C "$BUILD" "${targets[@]}" > "$OUT/build.log"
fi

threads=$(nproc)
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "$(date -u '+%F %H:%M UTC'), $(uname -n), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), load $(cut -d' ' -f1-3 /proc/loadavg)"

quick=${QUICK:-0}
full=${TORCH_FULL:-0}
run() { # result name, command...
  local name=$1; shift
  echo "-- $name: $*" >> "$OUT/log.txt"
  if "$@" --json > "$OUT/$name.json.tmp" 2>> "$OUT/log.txt"; then
    mv "$OUT/$name.json.tmp" "$OUT/$name.json"
  else
    echo "$name failed (see $OUT/log.txt)" >&2
    rm -f "$OUT/$name.json.tmp"
  fi
}

for case in $CASES; do
  samples=0; [ "${case%%-*}" = s256 ] && samples=256
  variates=${case##*-v}
  shape=(--variates "$variates" --samples "$samples" --horizon 336 --context 4096)
  if [ "$DEVICE" = cuda ]; then
    prep=(--repeat $([ $quick = 1 ] && echo 5 || echo 20))
    trep=(--repeat $([ $quick = 1 ] && echo 3 || echo 10))
    crep=("${trep[@]}")
  elif [ $samples = 0 ]; then
    prep=(--repeat $([ $quick = 1 ] && echo 1 || echo 3))
    trep=(--repeat 1)
    crep=(--repeat 1)
  else
    prep=(--repeat 1)
    trep=(--repeat 1 --warmup 0 --samples-per-batch 32)
    [ $full = 1 ] || trep+=(--timed-batches 1)
    crep=()
    [ $full = 1 ] && crep=(--repeat 1 --samples-per-batch 32)
  fi
  for be in "${backends[@]}"; do
    echo "[$(date -u +%T)] $case: porta $be"
    run "$case.porta-$be" "$BUILD/bin/bench_toto" --model "$MODEL" --backend "$be" "${shape[@]}" "${prep[@]}"
  done
  [ "$peer" = 1 ] || continue
  echo "[$(date -u +%T)] $case: toto-ts eager"
  run "$case.eager" python3 bench/bench_toto_torch.py --model "$MODEL" --device "$DEVICE" --mode eager \
    --threads "$threads" "${shape[@]}" "${trep[@]}"
  if [ ${#crep[@]} -gt 0 ]; then
    echo "[$(date -u +%T)] $case: toto-ts torch.compile"
    run "$case.compile" python3 bench/bench_toto_torch.py --model "$MODEL" --device "$DEVICE" --mode compile \
      --threads "$threads" "${shape[@]}" "${crep[@]}"
  fi
done

echo
python3 bench/toto_bench_table.py "$OUT"
