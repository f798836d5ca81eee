#!/usr/bin/env bash
# One GPU window of the IMDB `small` grid (issue 16): prepare the assets once (skipped when cached), then the
# claims grid (the seven methods x 5 seeds, the checks x 3) with JOBS runs sharing the GPU, until SECONDS have
# passed; the sweep is then stopped with SIGTERM, its running jobs record `interrupted` and write checkpoints, and
# the next window's call resumes them (complete records are skipped). Records, logs and timings go under OUT:
#   OUT/runs/*.json|log     the sweep's records        OUT/windows.jsonl  one line per window: runs done, runs/hour
#   OUT/device.txt          the GPU (or CPU) it ran on  OUT/prepare.txt / OUT/sweep-<start>.txt  the output
#
#   ERBENCH_DATA=shared/data bash benchmarks/gpu_grid.sh OUT [JOBS=8] [SECONDS=540]
# ERBENCH_GRID_SCALE=tiny and ERBENCH_GRID_SETS="--set ..." rehearse the same steps on a CPU.
set -uo pipefail
out=${1:?usage: gpu_grid.sh OUT [JOBS] [SECONDS]}
jobs=${2:-8}
budget=${3:-540}
scale=${ERBENCH_GRID_SCALE:-small}
read -ra extra <<< "${ERBENCH_GRID_SETS:-}"
command -v erbench >/dev/null || erbench() { python3 -m erbench.cli "$@"; }
mkdir -p "$out/runs"
start=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/device.txt" 2>/dev/null \
  || python3 -c "from erbench.results import cpu_model; print(cpu_model(), 'CPU, no GPU')" > "$out/device.txt"

# MPS runs the JOBS processes' kernels side by side instead of time-slicing the GPU; plain processes where it cannot start.
mps=none
if command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY="$out/.mps/pipe" CUDA_MPS_LOG_DIRECTORY="$out/.mps/log"
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  nvidia-cuda-mps-control -d 2>/dev/null && mps=started
fi

completed() {  # what the sweep itself counts as complete (and skips)
  python3 -c "import pathlib, sys; from erbench.sweep import record_status
print(sum(record_status(p) == 'completed' for p in pathlib.Path(sys.argv[1]).glob('*.json')))" "$out/runs"
}
before=$(completed)
prepare_start=$(date +%s)
timeout "$budget" erbench prepare imdb --scale "$scale" "${extra[@]}" > "$out/prepare.txt" 2>&1
prepared=$?
prepare_seconds=$(( $(date +%s) - prepare_start ))
left=$(( budget - ($(date +%s) - start) ))
if [ "$prepared" -eq 0 ] && [ "$left" -gt 30 ]; then
  timeout -s TERM -k 60 "$left" erbench sweep imdb --grid claims --scale "$scale" --seeds 5 --jobs "$jobs" \
    --checkpoint-every 5 --out "$out/runs" "${extra[@]}" > "$out/sweep-$start.txt" 2>&1
fi
[ "$mps" = started ] && echo quit | nvidia-cuda-mps-control
after=$(completed)
python3 - "$out/windows.jsonl" <<EOF
import json, sys
seconds = $(date +%s) - $start
sweep_seconds = max(seconds - $prepare_seconds, 1)
line = {"start": $start, "seconds": seconds, "prepare_seconds": $prepare_seconds, "prepare_rc": $prepared,
        "scale": "$scale", "jobs": $jobs, "mps": "$mps", "device": open("$out/device.txt").read().strip(),
        "completed_before": $before, "completed_after": $after,
        "runs_per_hour": round(($after - $before) * 3600 / sweep_seconds, 1)}
open(sys.argv[1], "a").write(json.dumps(line) + "\n")
print(json.dumps(line))
EOF
