"""Where the time of one PPO iteration goes, and what `prepare` costs.

    python benchmarks/iteration.py [--task imdb] --scale tiny --iterations 10 [--data-dir ../shared/data]

Builds (or reuses) the scale's assets, runs `elastic` for a few iterations without evaluation,
and prints the mean seconds per iteration spent in rollout (sampling) / reward (scoring) /
task_learning (the task's own models, e.g. the translation listener) / update (PPO) / EMA + reset,
the share of Elastic Reset, and what `prepare` recorded when the assets were built; also how many
forward passes the policy's trunk (and a translation listener's encoder) made per iteration, a count
that does not depend on the machine's load.
A roofline: each phase's FLOPs (torch's FLOP counter over one iteration and one evaluation: the matmuls the model
sizes and token counts make; elementwise work is not counted), its time, and the fraction of this machine's measured
fp32 matmul rate (at the run's thread count) that is; the same for prepare's LM pretraining (one counted training
step x the steps it ran). A phase far below the rate is overhead-bound (small kernels, Python, sampling), not
FLOP-bound.
Also the peak memory: the process's peak resident set on a CPU (model loading included), the peak
allocated CUDA memory on a GPU. Writes the same numbers as JSON to
results/benchmarks/iteration-<task>-<scale>-<device>[-<label>].json (e.g. --label full --set task.lora_r=0).
"""

import argparse
import copy
import json
import resource
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from erbench.results import atomic_write_json, cpu_model, environment
from erbench.runner import build_trainer, default_cache_dir, default_data_dir, make_task, resolve_run

PHASES = ("rollout", "reward", "task_learning", "update", "ema_reset")


def trunk(model: torch.nn.Module) -> torch.nn.Module:
    """The part every pass of a model runs: a seq2seq agent's encoder, a causal LM's transformer (under any LoRA)."""
    if hasattr(model, "encoder"):
        return model.encoder
    return (model.get_base_model() if hasattr(model, "get_base_model") else model).base_model


def count_passes(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def matmul_rate(device: torch.device, n: int = 512, seconds: float = 2.0) -> float:
    """FLOP/s of an n x n fp32 matmul on this machine at torch's thread count: the roofline's ceiling."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(10):
        a @ b
    sync()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            a @ b
        count += 10
        sync()
    return 2 * n**3 * count / (time.perf_counter() - start)


@contextmanager
def flops_by_phase(trainer):
    """Counts the FLOPs of each phase the trainer times while the block runs. The counter slows what it counts:
    nothing measured for time runs inside."""
    flops = defaultdict(int)
    timed = trainer.timed

    @contextmanager
    def counted(phase: str):
        with FlopCounterMode(display=False) as counter, timed(phase):
            yield
        flops[phase] += counter.get_total_flops()

    trainer.timed = counted
    try:
        yield flops
    finally:
        del trainer.timed


def pretraining_flops(model: torch.nn.Module, batch_size: int, context: int, steps: int) -> int:
    """FLOPs of a causal LM's pretraining: one counted forward + backward of a (batch, context) block, x steps."""
    model = copy.deepcopy(model).train()
    for p in model.parameters():
        p.requires_grad_(True)
    batch = torch.zeros(batch_size, context, dtype=torch.long, device=next(model.parameters()).device)
    with FlopCounterMode(display=False) as counter:
        model(input_ids=batch, labels=batch).loss.backward()
    return counter.get_total_flops() * steps


def roofline_row(flops: float, seconds: float, rate: float) -> dict:
    return {"gflop": flops / 1e9, "seconds": seconds, "fraction_of_matmul_rate": flops / seconds / rate if seconds else 0.0}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="imdb")
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--method", default="elastic")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    parser.add_argument("--label", default="", help="appended to the result's file name")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured iterations first (0 where one iteration takes minutes)")
    args = parser.parse_args()

    # The most expensive Elastic Reset: the EMA updated after every optimizer step, a reset every 5 iterations.
    cfg = resolve_run(args.task, args.method, args.scale, 0, [f"train.iterations={args.iterations}", "method.ema_update=opt_step",
                                                           "method.reset_every=5", "method.first_reset_after=none", *args.sets])
    task = make_task(cfg, args.data_dir, default_cache_dir())
    meta = task.prepare()
    trainer = build_trainer(cfg, task)
    for iteration in range(args.warmup):  # allocator, lazy init: not measured
        trainer.iteration(iteration)
    with flops_by_phase(trainer) as flops:  # one more iteration and an evaluation, counted, not timed
        trainer.iteration(args.warmup)
        trainer.evaluate()
    trainer.seconds.clear()
    models = {"policy": trainer.policy, **({"listener": task.listener} if hasattr(task, "listener") else {})}
    passes = {name: count_passes(trunk(model)) for name, model in models.items()}
    start = time.perf_counter()
    for iteration in range(args.warmup + 1, args.warmup + 1 + args.iterations):
        trainer.iteration(iteration)
    wall = (time.perf_counter() - start) / args.iterations
    per_iteration = {phase: trainer.seconds[phase] / args.iterations for phase in PHASES}
    trainer.evaluate()
    rate = matmul_rate(task.device)
    roofline = {phase: roofline_row(flops[phase], per_iteration[phase], rate) for phase in PHASES}
    roofline["evaluation (one)"] = roofline_row(flops["evaluate"], trainer.seconds["evaluate"], rate)
    if "lm_steps" in meta and hasattr(task.cfg, "lm_batch_size"):
        lm_flops = pretraining_flops(trainer.method.init_model, task.cfg.lm_batch_size, task.cfg.lm_context, meta["lm_steps"])
        roofline["prepare: LM pretraining"] = roofline_row(lm_flops, meta["lm_seconds"], rate)
    device = torch.cuda.get_device_name() if task.device.type == "cuda" else f"{cpu_model()}, {torch.get_num_threads()} threads"
    if task.device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    trainable = sum(p.numel() for p in trainer.policy.parameters() if p.requires_grad)
    result = {
        "schema": "erbench.benchmark/1", "task": args.task, "scale": args.scale, "method": args.method, "iterations": args.iterations, "warmup_iterations": args.warmup, "device": device,
        "ema_update": "opt_step", "resets_in_window": len(trainer.method.reset_iterations),
        "seconds_per_iteration": wall, "phase_seconds_per_iteration": per_iteration, "peak_memory_mb": peak_mb,
        "trainable_policy_parameters": trainable, "settings": args.sets,
        "trunk_passes_per_iteration": {name: calls[0] / args.iterations for name, calls in passes.items()},
        "elastic_reset_share": per_iteration["ema_reset"] / wall,
        "matmul_gflops": rate / 1e9, "roofline": roofline,
        "prepare": {k: v for k, v in meta.items() if k != "config"},
        "environment": environment(),
    }
    print(f"device: {device}")
    print(f"seconds per iteration: {wall:.3f}")
    print(f"peak memory: {peak_mb:.0f} MB; trainable policy parameters: {trainable:,}")
    print("trunk forward passes per iteration: " + ", ".join(f"{k} {v:g}" for k, v in result["trunk_passes_per_iteration"].items()))
    for phase, seconds in per_iteration.items():
        print(f"  {phase:13s} {seconds:8.4f} s  {100 * seconds / wall:6.2f} %")
    for key, value in meta.items():
        if key.endswith("_seconds") or key.endswith("per_second"):
            print(f"prepare {key}: {value:.1f}")
    print(f"roofline (512 x 512 fp32 matmul: {rate / 1e9:.1f} GFLOP/s):")
    for phase, row in roofline.items():
        print(f"  {phase:24s} {row['gflop']:10.2f} GFLOP {row['seconds']:9.3f} s  {100 * row['fraction_of_matmul_rate']:6.1f} % of the rate")
    tag = "cuda" if task.device.type == "cuda" else "cpu"
    path = args.out / f"iteration-{args.task}-{args.scale}-{tag}{'-' + args.label if args.label else ''}.json"
    atomic_write_json(path, result)
    print(f"wrote {path}")
    print(json.dumps({"elastic_reset_share": result["elastic_reset_share"]}))


if __name__ == "__main__":
    main()
