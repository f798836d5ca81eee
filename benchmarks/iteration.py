"""Where the time of one PPO iteration goes, and what `prepare` costs.

    python benchmarks/iteration.py [--task imdb] --scale tiny --iterations 10 [--data-dir ../shared/data]

Builds (or reuses) the scale's assets, runs `elastic` for a few iterations without evaluation,
and prints the mean seconds per iteration spent in rollout (sampling) / reward (scoring) /
task_learning (the task's own models, e.g. the translation listener) / update (PPO) / EMA + reset,
the share of Elastic Reset, and what `prepare` recorded when the assets were built.
Writes the same numbers as JSON to results/benchmarks/iteration-<task>-<scale>-<device>.json.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from erbench.results import atomic_write_json, cpu_model, environment
from erbench.runner import build_trainer, default_cache_dir, default_data_dir, make_task, resolve_run

PHASES = ("rollout", "reward", "task_learning", "update", "ema_reset")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="imdb")
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--method", default="elastic")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = parser.parse_args()

    # The most expensive Elastic Reset: the EMA updated after every optimizer step, a reset every 5 iterations.
    cfg = resolve_run(args.task, args.method, args.scale, 0, [f"train.iterations={args.iterations}", "method.ema_update=opt_step",
                                                           "method.reset_every=5", "method.first_reset_after=none", *args.sets])
    task = make_task(cfg, args.data_dir, default_cache_dir())
    meta = task.prepare()
    trainer = build_trainer(cfg, task)
    trainer.iteration(0)  # warm-up (allocator, lazy init) is not measured
    trainer.seconds.clear()
    start = time.perf_counter()
    for iteration in range(1, args.iterations + 1):
        trainer.iteration(iteration)
    wall = (time.perf_counter() - start) / args.iterations
    per_iteration = {phase: trainer.seconds[phase] / args.iterations for phase in PHASES}
    device = torch.cuda.get_device_name() if task.device.type == "cuda" else f"{cpu_model()}, {torch.get_num_threads()} threads"
    result = {
        "schema": "erbench.benchmark/1", "task": args.task, "scale": args.scale, "method": args.method, "iterations": args.iterations, "device": device,
        "ema_update": "opt_step", "resets_in_window": len(trainer.method.reset_iterations),
        "seconds_per_iteration": wall, "phase_seconds_per_iteration": per_iteration,
        "elastic_reset_share": per_iteration["ema_reset"] / wall,
        "prepare": {k: v for k, v in meta.items() if k != "config"},
        "environment": environment(),
    }
    print(f"device: {device}")
    print(f"seconds per iteration: {wall:.3f}")
    for phase, seconds in per_iteration.items():
        print(f"  {phase:13s} {seconds:8.4f} s  {100 * seconds / wall:6.2f} %")
    for key, value in meta.items():
        if key.endswith("_seconds") or key.endswith("per_second"):
            print(f"prepare {key}: {value:.1f}")
    tag = "cuda" if task.device.type == "cuda" else "cpu"
    path = args.out / f"iteration-{args.task}-{args.scale}-{tag}.json"
    atomic_write_json(path, result)
    print(f"wrote {path}")
    print(json.dumps({"elastic_reset_share": result["elastic_reset_share"]}))


if __name__ == "__main__":
    main()
