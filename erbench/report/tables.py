"""The tables a paper prints: per task, scale and method, mean ± standard error over seeds, the reward
reached within a drift budget, the reward each run reached at a fixed drift level, and the hypervolume of each
method's reward/drift front."""

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from erbench.registry import registry
from erbench.report.pareto import hypervolume, pareto_front, reward_at_drift, reward_at_fixed_drift
from erbench.report.records import mean_and_stderr


def drift_metrics(task: str) -> dict[str, str]:
    spec = registry().tasks.get(task)  # records of a plugin's task not on the path: no drift metrics known
    return spec.drift_metrics if spec else {}


def oriented(values, direction: str) -> np.ndarray:
    """Drift with lower = better."""
    values = np.asarray(values, float)
    return values if direction == "lower" else -values


def within(direction: str) -> str:
    return "<=" if direction == "lower" else ">="


def reward_at_level(curve: list[dict], drift: str, level: float, direction: str) -> float:
    """One run's best val reward along its evaluations (iteration 0, the initial model, first) within the drift
    level, interpolated where the path crosses it (pareto.reward_at_fixed_drift)."""
    points = [p for p in curve if isinstance(p.get(drift), (int, float)) and math.isfinite(p[drift])]
    return reward_at_fixed_drift(oriented([p[drift] for p in points], direction), [p["reward"] for p in points],
                                 float(oriented([level], direction)[0]))


def level_column(drift: str) -> str:
    return f"reward@{drift}"


def with_level_rewards(runs: pd.DataFrame, records: list[dict], levels: dict) -> pd.DataFrame:
    """`runs` (one row per record) plus a reward@<drift> column per drift level stated for the run's task and
    scale (levels[task][scale][drift]); NaN where no level is stated."""
    values: dict[str, dict[str, float]] = {}
    for record in records:
        for drift, level in levels.get(record["task"], {}).get(record["scale"], {}).items():
            direction = drift_metrics(record["task"])[drift]
            values.setdefault(level_column(drift), {})[record["path"]] = reward_at_level(record["eval_curve"], drift, level, direction)
    return runs.assign(**{column: runs["path"].map(by_path) for column, by_path in values.items()})


def setting_means(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per (task, scale, method, setting): n seeds, the seeds, and mean / s.e. of each metric."""
    rows = []
    for (task, scale, method, setting), group in runs.groupby(["task", "scale", "method", "setting"], sort=True):
        row = {"task": task, "scale": scale, "method": method, "setting": setting, "n_seeds": group["seed"].nunique(),
               "seeds": ",".join(str(s) for s in sorted(group["seed"].unique()))}
        for metric in metrics:
            if metric in group:
                row[metric], row[f"{metric}_se"] = mean_and_stderr(group[metric].tolist())
        rows.append(row)
    return pd.DataFrame(rows)


GOLD = ("reward_gold",)  # a reward never trained against (IMDB), shown beside the proxy where runs record it


def summary(runs: pd.DataFrame, drift_budget: float | None = None, levels: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Setting-level means plus, per method, `hypervolume` and `reward_at_budget` on the task's default drift,
    and per setting the mean ± s.e. of the runs' reward@<drift> at each stated level (`with_level_rewards`).

    Hypervolume: area with more reward than the initial model and less drift than the worst run of the
    task and scale (the reference point), dominated by the method's front of setting means.
    The drift budget defaults to the median drift of all runs of the task and scale."""
    tables, notes = [], {}
    for (task, scale), runs_here in runs.groupby(["task", "scale"], sort=True):
        drifts = drift_metrics(task)
        here_levels = (levels or {}).get(task, {}).get(scale, {})
        metrics = ["reward", *GOLD, *drifts, *[f"test_{m}" for m in ("reward", *GOLD, *drifts)], *map(level_column, here_levels)]
        table = setting_means(runs_here, [m for m in metrics if m in runs_here])
        if drifts:
            x, direction = next(iter(drifts.items()))
            ref_x = float(oriented(runs_here[x], direction).max())
            ref_y = float(runs_here["initial_reward"].mean())
            budget = drift_budget if drift_budget is not None else float(runs_here[x].median())
            notes[(task, scale)] = {"drift": x, "reference": (ref_x if direction == "lower" else -ref_x, ref_y), "budget": budget,
                                     "within": within(direction), "levels": here_levels}
            for method, rows in table.groupby("method"):
                xs, ys = oriented(rows[x], direction), rows["reward"].to_numpy()
                table.loc[rows.index, "hypervolume"] = hypervolume(xs, ys, (ref_x, ref_y))
                table.loc[rows.index, "reward_at_budget"] = reward_at_drift(xs, ys, budget if direction == "lower" else -budget)
                table.loc[rows.index, "on_front"] = np.isin(np.arange(len(rows)), pareto_front(xs, ys))
        tables.append(table)
    return (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()), notes


def published_rows(path: Path, tasks: set[str]) -> pd.DataFrame:
    """Cited published numbers for the tasks at hand; their scale column says where they come from."""
    if not path.exists():
        return pd.DataFrame()
    lines = [line for line in path.read_text().splitlines(keepends=True) if not line.startswith("#")]
    published = pd.read_csv(io.StringIO("".join(lines)))  # not comment="#": sources cite issues like #28
    return published[published["task"].isin(tasks)]


def fmt(mean: float, se: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    digits = 4 if abs(mean) < 10 else 2
    return f"{mean:.{digits}f}" + ("" if se is None or math.isnan(se) else f" ± {se:.{digits}f}")


def markdown(table: pd.DataFrame, notes: dict, published: pd.DataFrame) -> str:
    out = []
    for (task, scale), rows in table.groupby(["task", "scale"], sort=True):
        drifts = list(drift_metrics(task))
        note = notes.get((task, scale), {})
        out.append(f"### {task}, scale `{scale}`\n")
        levels = note.get("levels", {})
        if note:
            out.append(f"Final val checkpoint, mean ± s.e. over seeds. Hypervolume on ({note['drift']}, reward) against "
                       f"the reference point ({note['reference'][0]:.4g}, {note['reference'][1]:.4g}) = (worst drift, "
                       f"initial reward); reward@budget = best setting reward with {note['drift']} {note['within']} {note['budget']:.4g}"
                       + ("; reward_gold = the gold reward, never trained against, over the runs that record it"
                          if any(g in rows and rows[g].notna().any() for g in GOLD) else "")
                       + ("; reward@level = each run's best val reward along its training path within the level "
                          "(interpolated where it crosses it), mean ± s.e. over seeds" if levels else "") + ".\n")
        gold = [g for g in GOLD if g in rows and rows[g].notna().any()]
        header = ["method", "setting", "seeds", "reward", *gold, *drifts, "test reward", *[f"test {g}" for g in gold],
                  *[f"test {d}" for d in drifts],
                  *[f"reward@{d} {within(drift_metrics(task)[d])} {level:.4g}" for d, level in levels.items()],
                  "reward@budget", "hypervolume"]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        for _, row in rows.iterrows():
            cells = [row["method"], row["setting"] or "–", f"{row['n_seeds']} ({row['seeds']})",
                     *[fmt(row.get(m), row.get(f"{m}_se")) for m in ("reward", *gold, *drifts)],
                     *[fmt(row.get(f"test_{m}"), row.get(f"test_{m}_se")) for m in ("reward", *gold)],
                     *[fmt(row.get(f"test_{d}"), row.get(f"test_{d}_se")) for d in drifts],
                     *[fmt(row.get(level_column(d)), row.get(f"{level_column(d)}_se")) for d in levels],
                     fmt(row.get("reward_at_budget"), None), fmt(row.get("hypervolume"), None)]
            out.append("| " + " | ".join(str(c) for c in cells) + " |")
        pub = published[published["task"] == task] if len(published) else published
        for _, row in pub.iterrows():
            cells = [f"{row['method']} [{row['scale']}]", row["source"], "published",
                     fmt(row.get("reward"), None), *[""] * len(gold), *[fmt(row.get(d), None) for d in drifts], "",
                     *[""] * (len(gold) + len(drifts)),
                     *[""] * len(levels), "", ""]
            out.append("| " + " | ".join(str(c) for c in cells) + " |")
        out.append("")
    return "\n".join(out)
