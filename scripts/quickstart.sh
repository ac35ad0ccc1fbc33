#!/usr/bin/env bash
# Installs the dependencies, builds porta, and forecasts the example series on
# the CPU with the small Toto checkpoint shipped in the repository: prints the
# forecast table's head and writes forecast.csv and forecast.svg.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B build "${gen[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)"
./build/bin/porta-forecast --model models/toto/checkpoints/toto-small-seasonal \
  --input examples/data/seasonal.csv --horizon 96 --samples 200 --quantiles 0.1,0.5,0.9 \
  --backend cpu --output forecast.csv --svg forecast.svg
echo
head -n 7 forecast.csv
echo "..."
echo "wrote forecast.csv (mean and quantiles per step and variate) and forecast.svg (history, mean, 10-90% band)"
