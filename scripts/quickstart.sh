#!/usr/bin/env bash
# Installs the dependencies, builds porta, and runs the main example on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B build "${gen[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)"
./build/bin/decode_steps --backend cpu --steps 48
