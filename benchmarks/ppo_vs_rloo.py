"""erbench's PPO against TRL's RLOOTrainer: seconds per iteration with the same model, prompts, batch and length.

    python benchmarks/ppo_vs_rloo.py --scale tiny --iterations 5

One iteration = one rollout of `train.rollout_prompts` responses of `task.response_tokens` tokens from the same
initial policy and train prompts, scored by the same reward, then the updates. erbench PPO makes
ppo_epochs x num_minibatches optimizer steps per rollout (policy + critic). TRL RLOO is timed twice: with
its default of one optimizer step per rollout, and matched to PPO's shape (steps_per_generation =
num_minibatches, num_iterations = ppo_epochs, the same number of optimizer steps on the same rollout).
Both use Elastic Reset (erbench's hook / the TRL callback). The first iteration is a warm-up and not timed.
Writes results/benchmarks/ppo-vs-rloo-<scale>-<device>.json.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from erbench.results import atomic_write_json, cpu_model, environment
from erbench.runner import build_trainer as build_ppo, default_cache_dir, default_data_dir, make_task, resolve_run

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def time_ppo(cfg, task, iterations: int) -> list[float]:
    trainer = build_ppo(cfg, task)
    trainer.iteration(0)  # warm-up
    seconds = []
    for i in range(1, iterations + 1):
        start = time.perf_counter()
        trainer.iteration(i)
        seconds.append(time.perf_counter() - start)
    return seconds


def time_rloo(cfg, task, iterations: int, updates_per_rollout: tuple[int, int]) -> list[float]:
    from transformers import TrainerCallback

    from erbench.integrations.trl_run import build_trainer as build_trl

    steps_per_generation, num_iterations = updates_per_rollout
    per_rollout = steps_per_generation * num_iterations
    marks = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % per_rollout == 0:
                marks.append(time.perf_counter())

    batch = cfg.train.rollout_prompts
    with tempfile.TemporaryDirectory() as tmp:
        trainer, _ = build_trl(cfg, "rloo", task, task.load_policy(), Path(tmp), [Clock()],
                               max_steps=(iterations + 1) * per_rollout, per_device_train_batch_size=batch // steps_per_generation,
                               steps_per_generation=steps_per_generation, num_iterations=num_iterations)
        start = time.perf_counter()
        trainer.train()
    marks.insert(0, start)
    return [b - a for a, b in zip(marks[1:], marks[2:])]  # the first rollout (warm-up) is not timed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = parser.parse_args()

    cfg = resolve_run("imdb", "elastic", args.scale, 0, ["train.kl_controller=fixed", *args.sets])
    task = make_task(cfg, args.data_dir, default_cache_dir())
    task.prepare()
    task.load_policy()
    train = cfg.train
    shape = {"rollout_prompts": train.rollout_prompts, "response_tokens": task.cfg.response_tokens,
             "ppo_epochs": train.ppo_epochs, "num_minibatches": train.num_minibatches}
    timings = {
        "erbench_ppo": time_ppo(cfg, task, args.iterations),
        "trl_rloo_1_update": time_rloo(cfg, task, args.iterations, (1, 1)),
        "trl_rloo_matched_updates": time_rloo(cfg, task, args.iterations, (train.num_minibatches, train.ppo_epochs)),
    }
    device = torch.cuda.get_device_name() if task.device.type == "cuda" else f"{cpu_model()}, {torch.get_num_threads()} threads"
    rows = {name: {"seconds_per_iteration": sum(s) / len(s), "iterations_timed": len(s), "seconds": s} for name, s in timings.items()}
    rows["erbench_ppo"]["optimizer_steps_per_iteration"] = train.ppo_epochs * train.num_minibatches
    rows["trl_rloo_1_update"]["optimizer_steps_per_iteration"] = 1
    rows["trl_rloo_matched_updates"]["optimizer_steps_per_iteration"] = train.ppo_epochs * train.num_minibatches
    print(f"device: {device}; shape: {shape}")
    for name, row in rows.items():
        print(f"  {name:26s} {row['seconds_per_iteration']:7.3f} s/iteration  ({row['optimizer_steps_per_iteration']} optimizer steps)")
    result = {"schema": "erbench.benchmark/1", "benchmark": "ppo-vs-rloo", "scale": args.scale, "sets": args.sets,
              "shape": shape, "device": device, "results": rows, "environment": environment()}
    path = args.out / f"ppo-vs-rloo-{args.scale}-{'cuda' if task.device.type == 'cuda' else 'cpu'}.json"
    atomic_write_json(path, result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
