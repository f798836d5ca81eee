#!/usr/bin/env bash
# The `small` scale on one GPU: prepare (GPT-2-small from scratch), then `elastic` and `ppo` for seed 0
# side by side (each uses a small share of an H100). Run records carry the per-phase timings.
#   ERBENCH_DATA=../shared/data bash benchmarks/small_gpu.sh OUT_DIR
set -uo pipefail
out=${1:-results/small}
mkdir -p "$out/runs"
command -v erbench >/dev/null || erbench() { python3 -m erbench.cli "$@"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
erbench prepare imdb --scale small 2>&1 | tee "$out/prepare.txt" && [ -n "$(ls "${ERBENCH_CACHE:-$HOME/.cache/erbench}"/imdb/*/meta.json 2>/dev/null)" ] || exit 1
for method in elastic ppo; do
  erbench run imdb --scale small --method "$method" --out "$out/runs" > "$out/run-$method.txt" 2>&1 &
done
wait
tail -n 4 "$out"/run-*.txt
