"""Runs per hour of `erbench sweep` at a scale with --jobs 1 and --jobs 2 on this machine.

    python benchmarks/sweep_throughput.py --scale tiny --seeds 2 [--jobs 1 2] [--set train.iterations=10]

Runs the same grid (ppo and elastic x K seeds) once per --jobs value, each into a fresh folder, through
the real command line (assets are prepared first and not timed), and writes the wall time and runs per
hour to results/benchmarks/sweep-throughput-<scale>-<device>.json.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from erbench.results import atomic_write_json, cpu_model, environment
from erbench.runner import default_data_dir

GRID = 'methods = ["ppo", "elastic"]\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = parser.parse_args()
    data = ["--data-dir", str(args.data_dir)] if args.data_dir else []
    sets = [a for s in args.sets for a in ("--set", s)]
    cli = [sys.executable, "-m", "erbench.cli"]
    subprocess.run([*cli, "prepare", "imdb", "--scale", args.scale, *data, *sets], check=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "grid.toml"
        grid.write_text(GRID)
        for jobs in args.jobs:
            out = Path(tmp) / f"jobs{jobs}"
            start = time.perf_counter()
            done = subprocess.run([*cli, "sweep", "imdb", "--grid", str(grid), "--scale", args.scale, "--seeds", str(args.seeds),
                                   "--jobs", str(jobs), "--checkpoint-every", "0", "--out", str(out), *data, *sets],
                                  capture_output=True, text=True)
            wall = time.perf_counter() - start
            if done.returncode != 0:
                sys.exit(f"sweep --jobs {jobs} failed:\n{done.stdout}\n{done.stderr}")
            runs = len(list(out.glob("*.json")))
            per_run = [json.loads(p.read_text())["timings"]["total_seconds"] for p in out.glob("*.json")]
            rows.append({"jobs": jobs, "runs": runs, "wall_seconds": wall, "runs_per_hour": 3600 * runs / wall,
                         "mean_run_seconds": sum(per_run) / len(per_run)})
            print(f"--jobs {jobs}: {runs} runs in {wall:.0f} s = {rows[-1]['runs_per_hour']:.1f} runs/hour "
                  f"(a run takes {rows[-1]['mean_run_seconds']:.0f} s on average)")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{cpu_model()}, {torch.get_num_threads()} cores"
    result = {"schema": "erbench.benchmark/1", "benchmark": "sweep-throughput", "scale": args.scale, "sets": args.sets,
              "grid": GRID.strip(), "seeds": args.seeds, "device": device, "results": rows, "environment": environment()}
    path = args.out / f"sweep-throughput-{args.scale}-{'cuda' if torch.cuda.is_available() else 'cpu'}.json"
    atomic_write_json(path, result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
