"""Does torch.compile pay on the CPU? The tiny IMDB LM's pretraining step (erbench/models/causal_lm.py, the largest
part of the tiny prepare), eager against compiled, each variant in its own process, alternated.

    OMP_NUM_THREADS=1 python benchmarks/compile_cpu.py --steps 60 --repeats 2

Per run: wall and process CPU seconds of the whole pretraining (compilation included), and the steady tokens/s
after the first 10 steps (pretrain_causal_lm's own measure). The model is the tiny recipe's (GPT-2, 2 layers,
width 128, 4 heads, 4k vocabulary, context 128, batch 32) on a random token stream: the step's cost does not
depend on the text. Writes results/benchmarks/compile-cpu-tiny.json.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from erbench.results import atomic_write_json, cpu_model, environment

OUT = Path(__file__).resolve().parent.parent / "results" / "benchmarks" / "compile-cpu-tiny.json"
VARIANTS = ("eager", "compiled")


def pretrain(variant: str, steps: int) -> dict:
    from transformers import GPT2Config, GPT2LMHeadModel

    from erbench.models.causal_lm import fused_gelu, pretrain_causal_lm

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=4096, n_positions=128, n_embd=128, n_layer=2, n_head=4)
    model = fused_gelu(GPT2LMHeadModel(config))
    stream = torch.randint(4096, (steps * 32 * 128 + 128,))
    cpu, wall = time.process_time(), time.perf_counter()
    _, stats = pretrain_causal_lm(model, stream, 128, steps * 32 * 128, 32, 1e-3, torch.device("cpu"), variant == "compiled")
    return {"variant": variant, "steps": stats["lm_steps"], "wall_seconds": time.perf_counter() - wall,
            "cpu_seconds": time.process_time() - cpu, "steady_tokens_per_second": stats["lm_tokens_per_second"],
            "torch_threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variant", choices=VARIANTS, help="run one variant here and print its numbers (internal)")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(pretrain(args.variant, args.steps)))
        return
    runs = []
    for repeat in range(args.repeats):
        for variant in VARIANTS:
            out = subprocess.run([sys.executable, __file__, "--variant", variant, "--steps", str(args.steps)],
                                 capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]) | {"repeat": repeat})
            print(json.dumps(runs[-1]))
    best = {v: min((r for r in runs if r["variant"] == v), key=lambda r: r["cpu_seconds"]) for v in VARIANTS}
    summary = {v: {"cpu_seconds": round(best[v]["cpu_seconds"], 1), "steady_tokens_per_second": round(best[v]["steady_tokens_per_second"])}
               for v in VARIANTS}
    summary["compiled_over_eager_cpu"] = round(best["compiled"]["cpu_seconds"] / best["eager"]["cpu_seconds"], 2)
    summary["compiled_over_eager_steady_rate"] = round(best["compiled"]["steady_tokens_per_second"] / best["eager"]["steady_tokens_per_second"], 2)
    atomic_write_json(OUT, {"schema": "erbench.benchmark/1", "benchmark": "compile_cpu", "command": " ".join(["python", "benchmarks/compile_cpu.py", *sys.argv[1:]]),
                            "device": cpu_model(), "environment": environment(), "runs": runs, "summary": summary})
    print(json.dumps(summary), f"-> {OUT}")


if __name__ == "__main__":
    main()
