"""The README's speed table, from the committed benchmark records in results/benchmarks/: each task's tiny run and
prepare against an earlier commit, side by side (benchmarks/side_by_side.py), and erbench's PPO against TRL's RLOO
(benchmarks/ppo_vs_rloo.py). Generated, so `erbench report --verify` keeps the README's numbers those of the records."""

import json
from pathlib import Path

from erbench.errors import ErbenchError


def load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ErbenchError(f"cannot read the benchmark record {path}: {e}", "re-run the benchmark that writes it") from None


def best(record: dict, variant: str, what: str, kind: str) -> float | None:
    """The minimum over a side-by-side record's measurements of one variant and phase (None: not measured)."""
    return min((m[kind] for m in record["measurements"] if m["variant"] == variant and m["what"] == what), default=None)


def side_by_side_rows(bench_dir: Path) -> list[str]:
    rows = []
    for path in sorted(bench_dir.glob("side-by-side-*-tiny-cpu.json")):
        record = load(path)
        base, new = record["commits"]["base"], record["commits"]["new"]
        for what in ("run", "prepare"):
            times = {(v, k): best(record, v, what, k) for v in ("base", "new") for k in ("wall_seconds", "cpu_seconds")}
            if None in times.values():
                continue
            runs = sum(m["what"] == what for m in record["measurements"])
            rows.append(f"| {record['task']} | {what} | {times['base', 'wall_seconds']:.1f} ({times['base', 'cpu_seconds']:.1f}) "
                        f"at {base} | {times['new', 'wall_seconds']:.1f} ({times['new', 'cpu_seconds']:.1f}) at {new} | "
                        f"**{times['new', 'wall_seconds'] / times['base', 'wall_seconds']:.2f}** "
                        f"({times['new', 'cpu_seconds'] / times['base', 'cpu_seconds']:.2f}) | {runs} | {record['device']} |")
    return rows


def ppo_vs_rloo_lines(bench_dir: Path) -> list[str]:
    """The PPO-against-RLOO sentence and, when the record has its profile, where each trainer spends an iteration."""
    path = bench_dir / "ppo-vs-rloo-tiny-cpu.json"
    if not path.exists():
        return ["erbench's PPO against TRL's RLOO: not measured yet (`python benchmarks/ppo_vs_rloo.py`)."]
    record = load(path)
    results = record["results"]
    ppo, rloo = results["erbench_ppo"], results["trl_rloo_matched_updates"]
    line = (f"erbench's PPO against TRL's RLOO on tiny IMDB, the same rollout, {ppo['optimizer_steps_per_iteration']} "
            f"optimizer steps and fp32 both (`python benchmarks/ppo_vs_rloo.py`, {record['device']}): "
            f"{ppo['cpu_seconds_per_iteration']:.2f} s against {rloo['cpu_seconds_per_iteration']:.2f} s of CPU time per "
            f"iteration, **{ppo['cpu_seconds_per_iteration'] / rloo['cpu_seconds_per_iteration']:.2f}** "
            f"(wall {ppo['seconds_per_iteration'] / rloo['seconds_per_iteration']:.2f})")
    trl_precision = results.get("trl_rloo_matched_updates_trl_precision")
    if trl_precision:
        line += f"; RLOO at TRL's own precision defaults (bf16 autocast, gradient checkpointing) {trl_precision['cpu_seconds_per_iteration']:.2f} s"
    return [line + ".", *profile_rows(record.get("profile_fractions", {}))]


PROFILE_COLUMNS = ("generation", "log-probabilities", "training forward + loss", "backward", "optimizer", "reward",
                   "elastic reset", "other")
TRAINERS = {"erbench_ppo": "erbench PPO", "trl_rloo_matched_updates": "TRL RLOO, matched"}


def profile_rows(profiles: dict) -> list[str]:
    """Where each trainer spends an iteration (benchmarks/ppo_vs_rloo.py's profile), as a table."""
    if not profiles:
        return []
    return ["", "| trainer | " + " | ".join(PROFILE_COLUMNS) + " |", "|---" * (len(PROFILE_COLUMNS) + 1) + "|",
            *(f"| {TRAINERS.get(name, name)} | " + " | ".join(f"{fractions.get(c, 0.0):.0%}" for c in PROFILE_COLUMNS) + " |"
              for name, fractions in profiles.items())]


def block(bench_dir: Path) -> str:
    rows = side_by_side_rows(bench_dir)
    table = ["| task | what | before, s wall (CPU) | now, s wall (CPU) | now / before, wall (CPU) | runs | machine |",
             "|---|---|---|---|---|---|---|", *rows] if rows else ["No side-by-side benchmark record yet."]
    return "\n".join([*table, "", *ppo_vs_rloo_lines(bench_dir)])
