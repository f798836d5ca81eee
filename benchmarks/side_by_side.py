"""A tiny run and a prepare of this checkout against another commit's, alternated on one machine, one thread.

    git worktree add --detach ../base 1335ff3
    python benchmarks/side_by_side.py --base ../base --task imdb --repeats 2 [--prepare] [--data-dir ../shared/data]

Each variant runs as its own `erbench` process (the base through PYTHONPATH, on its own default CPU code path)
with OMP_NUM_THREADS=1 and its own asset cache under --work. `--prepare` times `erbench prepare TASK --force`
first, once per variant (without it the assets are built, or reused, untimed). Then `erbench run TASK
--method elastic` (8 iterations, evaluated every 4) `--repeats` times per variant, the order alternating (base,
new, new, base, ...). Wall time and CPU time (user + system of the child) are both kept: on a loaded machine the
CPU time of a one-thread process is the steadier of the two. Results (minimum per variant, and every
measurement) go to results/benchmarks/side-by-side-<task>-tiny-cpu.json, rewritten after each measurement."""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from erbench.results import atomic_write_json, cpu_model

RUN = ["--method", "elastic", "--set", "train.iterations=8", "--set", "train.eval_every=4"]


def timed(child: Callable[[], None]) -> tuple[float, float]:
    """(wall, CPU) seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    child()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="a checkout of the commit to compare with")
    parser.add_argument("--task", default="imdb")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--prepare", action="store_true", help="also time the task's prepare")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ERBENCH_DATA", "../shared/data")))
    parser.add_argument("--work", type=Path, default=Path("/tmp/erbench-side-by-side"), help="caches and records")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = parser.parse_args()
    args.data_dir, args.work = args.data_dir.resolve(), args.work.resolve()  # the children run in their checkouts

    here = Path(__file__).resolve().parents[1]
    variants = {"base": args.base.resolve(), "new": here}
    commits = {name: subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True).stdout.strip() for name, path in variants.items()}
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ERBENCH_", "MKL_", "ATEN_", "ONEDNN_", "NPY_", "OPENBLAS_"))}

    def erbench(name: str, *command: str) -> None:
        """One `erbench` command of a variant, started in its checkout: `python -m` puts the working folder first on
        sys.path, before PYTHONPATH."""
        env = {**clean, "PYTHONPATH": str(variants[name]), "OMP_NUM_THREADS": "1", "ERBENCH_QUIET": "1",
               "ERBENCH_OFFLINE": "1", "ERBENCH_CACHE": str(args.work / name / "cache")}
        subprocess.run([sys.executable, "-m", "erbench.cli", *command, "--data-dir", str(args.data_dir)], env=env,
                       cwd=variants[name], check=True, stdout=subprocess.DEVNULL)

    result = {"schema": "erbench.benchmark/1", "task": args.task, "scale": "tiny", "device": f"{cpu_model()}, 1 thread",
              "commits": commits, "run": " ".join(["erbench", "run", args.task, *RUN]), "measurements": []}
    path = args.out / f"side-by-side-{args.task}-tiny-cpu.json"

    def record(name: str, what: str, wall: float, cpu: float) -> None:
        result["measurements"].append({"variant": name, "what": what, "wall_seconds": wall, "cpu_seconds": cpu})
        print(f"{name:4s} {what:7s} wall {wall:8.1f} s  CPU {cpu:8.1f} s", flush=True)
        for kind in ("wall_seconds", "cpu_seconds"):
            best = {v: min((m[kind] for m in result["measurements"] if m["variant"] == v and m["what"] == what),
                           default=None) for v in variants}
            if None not in best.values():
                result.setdefault("ratio_new_to_base", {}).setdefault(what, {})[kind] = best["new"] / best["base"]
        atomic_write_json(path, result)

    if args.prepare:
        for name in variants:
            record(name, "prepare", *timed(lambda: erbench(name, "prepare", args.task, "--force")))
    else:  # the runs need the assets; building them is not timed
        for name in variants:
            erbench(name, "prepare", args.task)
    for repeat in range(args.repeats):
        for name in (("base", "new") if repeat % 2 == 0 else ("new", "base")):
            out = args.work / name / "runs"
            record(name, "run", *timed(lambda: erbench(name, "run", args.task, *RUN, "--out", str(out))))
    print(json.dumps(result.get("ratio_new_to_base", {})))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
