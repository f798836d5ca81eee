"""Evaluate the paper's claims (results/claims.toml) against stored run records."""

import tomllib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from erbench.errors import ErbenchError
from erbench.report.tables import drift_metrics, oriented, setting_means

KINDS = ("better_at_equal_drift", "dominates")


@dataclass
class Verdict:
    claim: str
    scale: str
    verdict: str  # SUPPORTED | CONTRADICTED | NOT ENOUGH DATA
    evidence: str


def load_claims(path: Path) -> list[dict]:
    try:
        claims = tomllib.loads(Path(path).read_text())["claim"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as e:
        raise ErbenchError(f"cannot read claims from {path}: {e}", "write [[claim]] tables as in results/claims.toml") from None
    for claim in claims:
        if claim.get("kind") not in KINDS:
            raise ErbenchError(f"claim {claim.get('id')!r} has kind {claim.get('kind')!r}", f"use one of: {', '.join(KINDS)}")
    return claims


def describe(row, drift: str) -> str:
    return (f"{row['method']}{' [' + row['setting'] + ']' if row['setting'] else ''}: reward {row['reward']:.4f}, "
            f"{drift} {row[drift]:.4g} (seeds {row['seeds']})")


def evaluate(claim: dict, runs: pd.DataFrame) -> list[Verdict]:
    task, drift = claim["task"], claim["drift"]
    direction = drift_metrics(task).get(drift, "lower")
    methods = [claim["method"], *claim["baselines"]]
    runs = runs[(runs["task"] == task) & runs["method"].isin(methods)] if len(runs) else runs
    if not len(runs):
        return [Verdict(claim["id"], "-", "NOT ENOUGH DATA", f"no completed {task} records of {', '.join(methods)}")]
    verdicts = []
    for scale, here in runs.groupby("scale", sort=True):
        means = setting_means(here, ["reward", drift])
        short = [m for m in methods if means[means["method"] == m]["n_seeds"].max() < claim.get("min_seeds", 1)
                 or m not in set(means["method"])]
        if short:
            seeds = {m: int(means[means["method"] == m]["n_seeds"].max()) if m in set(means["method"]) else 0 for m in methods}
            verdicts.append(Verdict(claim["id"], scale, "NOT ENOUGH DATA",
                                    f"seeds per method {seeds}, need {claim.get('min_seeds', 1)} each"))
            continue
        mine = means[means["method"] == claim["method"]]
        supported, evidence = True, []
        for baseline in claim["baselines"]:
            theirs = means[means["method"] == baseline]
            targets = theirs.loc[[theirs["reward"].idxmax()]] if claim["kind"] == "better_at_equal_drift" else theirs
            for _, target in targets.iterrows():
                better = mine[(oriented(mine[drift], direction) <= oriented([target[drift]], direction)[0])
                              & (mine["reward"] >= target["reward"])]
                if claim["kind"] == "better_at_equal_drift":
                    better = better[better["reward"] > target["reward"]]
                if len(better):
                    evidence.append(f"{describe(better.iloc[0], drift)} vs {describe(target, drift)}")
                else:
                    supported = False
                    best = mine.loc[mine["reward"].idxmax()]
                    evidence.append(f"nothing beats {describe(target, drift)}; best {describe(best, drift)}")
        verdicts.append(Verdict(claim["id"], scale, "SUPPORTED" if supported else "CONTRADICTED", "; ".join(evidence)))
    return verdicts
