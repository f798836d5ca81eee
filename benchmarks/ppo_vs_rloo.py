"""erbench's PPO against TRL's RLOOTrainer: seconds per iteration with the same model, prompts, batch, length and
precision.

    python benchmarks/ppo_vs_rloo.py --scale tiny --iterations 5

One iteration = one rollout of `train.rollout_prompts` responses of `task.response_tokens` tokens from the same
initial policy and train prompts, scored by the same reward, then the updates. erbench PPO makes
ppo_epochs x num_minibatches optimizer steps per rollout (policy + critic). TRL RLOO is timed with its default of
one optimizer step per rollout, and matched to PPO's shape (steps_per_generation = num_minibatches,
num_iterations = ppo_epochs: the same number of optimizer steps on the same rollout). Every row runs in erbench's
precision (fp32, no autocast, no gradient checkpointing: erbench/rl/precision.py) except the last, labelled one:
TRL's own precision defaults (bf16 autocast and gradient checkpointing), which a TRL user on a CPU gets. Both use
Elastic Reset (erbench's hook / the TRL callback). The first iteration is a warm-up and not timed.

Then one profiled iteration-set of erbench PPO and of matched RLOO (cProfile, so Python-heavy parts read slower
than they run): where each spends an iteration, as fractions of the profiled time.

Writes results/benchmarks/ppo-vs-rloo-<scale>-<device>.json.
"""

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path

import torch

from erbench.results import atomic_write_json, cpu_model, environment
from erbench.runner import build_trainer as build_ppo, default_cache_dir, default_data_dir, make_task, resolve_run

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

# Where an iteration goes, per trainer: category -> its cumulative profile time, as a sum of functions' cumulative
# times ((name, file suffix) terms; a leading "-" subtracts). "total" is the training loop's time: building the
# trainer is left out, the warm-up iteration is in.
BACKWARD = ("backward", "torch/_tensor.py")
CLIP = ("clip_grad_norm_", "torch/nn/utils/clip_grad.py")
GENERATE = ("generate", "generation/utils.py")
PPO_ITERATION, OPTIMIZE, PPO_SCORE = ("iteration", "erbench/rl/ppo.py"), ("optimize", "erbench/rl/ppo.py"), ("score", "erbench/tasks/imdb.py")
EMA = ("after_update", "erbench/methods/elastic_reset.py")
ADAM = [("step", "torch/optim/adamw.py"), ("step", "torch/optim/adam.py")]
TRL = "trl/trainer/rloo_trainer.py"
TRL_ROLLOUT, TRL_REWARD = ("_generate_and_score_completions", TRL), ("_calculate_rewards", TRL)
CATEGORIES = {
    "erbench_ppo": {
        "total": [PPO_ITERATION],
        "generation": [GENERATE],
        "reward": [PPO_SCORE],
        # the rest of an iteration's rollout: the no-gradient policy, reference and critic forwards, GAE
        "log-probabilities": [PPO_ITERATION, ("-", *OPTIMIZE), ("-", *GENERATE), ("-", *PPO_SCORE), ("-", *EMA)],
        "training forward + loss": [OPTIMIZE, ("-", *BACKWARD), ("-", *CLIP), *(("-", *term) for term in ADAM)],
        "backward": [BACKWARD],
        "optimizer": [CLIP, *ADAM],
        "elastic reset": [EMA],
    },
    "trl_rloo_matched_updates": {
        "total": [("_run_epoch", "transformers/trainer.py")],
        "generation": [GENERATE],
        "reward": [TRL_REWARD],
        # the rest of the rollout's scoring: the no-gradient old and reference log-probabilities, the advantages
        "log-probabilities": [TRL_ROLLOUT, ("-", *GENERATE), ("-", *TRL_REWARD)],
        "training forward + loss": [("_compute_loss", TRL)],
        "backward": [BACKWARD],
        "optimizer": [("step", "accelerate/optimizer.py"), CLIP],
        "elastic reset": [("on_step_end", "erbench/integrations/trl.py")],
    },
}


def where_time_goes(profile: cProfile.Profile, categories: dict) -> dict[str, float]:
    """Fractions of the training loop's profiled time per category; "other" is the rest (the trainers' bookkeeping,
    batching, logging)."""
    stats = pstats.Stats(profile).stats

    def cumulative(function: str, suffix: str) -> float:
        return sum(ct for (path, _, name), (_, _, _, ct, _) in stats.items() if name == function and path.endswith(suffix))

    seconds = {category: sum(-cumulative(*term[1:]) if term[0] == "-" else cumulative(*term) for term in terms)
               for category, terms in categories.items()}
    total = seconds.pop("total")
    seconds["other"] = total - sum(seconds.values())
    return {category: round(s / total, 3) for category, s in seconds.items()}


def clocked(run) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds of each timed iteration: `run(mark)` calls mark() at each iteration's end."""
    wall, cpu = [time.perf_counter()], [time.process_time()]

    def mark():
        wall.append(time.perf_counter())
        cpu.append(time.process_time())

    run(mark)
    # the first interval is the warm-up
    return [b - a for a, b in zip(wall[1:], wall[2:])], [b - a for a, b in zip(cpu[1:], cpu[2:])]


def run_ppo(cfg, task, iterations: int):
    def run(mark):
        trainer = build_ppo(cfg, task)
        for i in range(iterations + 1):
            trainer.iteration(i)
            mark()
    return run


def run_rloo(cfg, task, iterations: int, updates_per_rollout: tuple[int, int], **precision):
    from transformers import TrainerCallback

    from erbench.integrations.trl_run import build_trainer as build_trl

    steps_per_generation, num_iterations = updates_per_rollout
    per_rollout = steps_per_generation * num_iterations

    def run(mark):
        class Clock(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step % per_rollout == 0:
                    mark()

        batch = cfg.train.rollout_prompts
        with tempfile.TemporaryDirectory() as tmp:
            trainer, _ = build_trl(cfg, "rloo", task, task.load_policy(), Path(tmp), [Clock()],
                                   max_steps=(iterations + 1) * per_rollout, per_device_train_batch_size=batch // steps_per_generation,
                                   steps_per_generation=steps_per_generation, num_iterations=num_iterations, **precision)
            trainer.train()
    return run


def main():
    from erbench.integrations.trl_run import trl_precision_defaults

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
    matched = (train.num_minibatches, train.ppo_epochs)
    steps = train.ppo_epochs * train.num_minibatches
    shape = {"rollout_prompts": train.rollout_prompts, "response_tokens": task.cfg.response_tokens,
             "ppo_epochs": train.ppo_epochs, "num_minibatches": train.num_minibatches}
    trl_defaults = trl_precision_defaults("rloo")
    variants = {  # name: (run, optimizer steps per iteration, precision)
        "erbench_ppo": (run_ppo(cfg, task, args.iterations), steps, "erbench"),
        "trl_rloo_1_update": (run_rloo(cfg, task, args.iterations, (1, 1)), 1, "erbench"),
        "trl_rloo_matched_updates": (run_rloo(cfg, task, args.iterations, matched), steps, "erbench"),
        "trl_rloo_matched_updates_trl_precision": (run_rloo(cfg, task, args.iterations, matched, **trl_defaults), steps,
                                                   f"TRL's defaults {trl_defaults}"),
    }
    device = torch.cuda.get_device_name() if task.device.type == "cuda" else f"{cpu_model()}, {torch.get_num_threads()} threads"
    print(f"device: {device}; shape: {shape}")
    rows = {}
    for name, (run, optimizer_steps, precision) in variants.items():
        wall, cpu = clocked(run)
        rows[name] = {"seconds_per_iteration": sum(wall) / len(wall), "cpu_seconds_per_iteration": sum(cpu) / len(cpu),
                      "iterations_timed": len(wall), "seconds": wall, "optimizer_steps_per_iteration": optimizer_steps,
                      "precision": precision}
        print(f"  {name:40s} {rows[name]['seconds_per_iteration']:7.3f} s/iteration, CPU {rows[name]['cpu_seconds_per_iteration']:7.3f} s"
              f"  ({optimizer_steps} optimizer steps; precision {precision})")
    ratio = rows["erbench_ppo"]["seconds_per_iteration"] / rows["trl_rloo_matched_updates"]["seconds_per_iteration"]
    print(f"erbench PPO / TRL RLOO at matched updates and precision: {ratio:.2f}")
    profiles = {}
    for name, categories in CATEGORIES.items():
        profile = cProfile.Profile()
        profile.runcall(clocked, variants[name][0])
        profiles[name] = where_time_goes(profile, categories)
        print(f"  profile {name}: " + ", ".join(f"{k} {v:.0%}" for k, v in profiles[name].items()))
    result = {"schema": "erbench.benchmark/1", "benchmark": "ppo-vs-rloo", "scale": args.scale, "sets": args.sets,
              "shape": shape, "device": device, "results": rows, "ppo_over_rloo_matched": ratio, "profile_fractions": profiles,
              "environment": environment()}
    path = args.out / f"ppo-vs-rloo-{args.scale}-{'cuda' if task.device.type == 'cuda' else 'cpu'}.json"
    atomic_write_json(path, result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
