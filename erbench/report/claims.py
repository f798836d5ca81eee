"""The paper's claims (results/claims.toml) as statistics over run records.

Per claim and scale: each run's best val reward within the claim's drift level (tables.reward_at_level), then
per baseline the difference of the mean over seeds, method minus baseline, with a 95% stratified bootstrap
interval (seeds resampled within each side independently, as rliable does; Agarwal et al. 2021) and the
probability of improvement P(method run > baseline run). SUPPORTED when the interval lies above zero,
CONTRADICTED when below, INCONCLUSIVE otherwise; NOT ENOUGH DATA with fewer seeds than the claim declares
(`min_seeds`). A verdict on fewer runs than the claim's registered `seeds` says so ("k of n registered seeds").

A `change_from_initial` claim asks whether training moves a metric at all (the phenomenon a task exists to show):
per run, its final val value minus its initial model's (iteration 0), the mean over seeds with a 95% bootstrap
interval and its size in standard errors; SUPPORTED when the interval excludes zero in the claimed direction and
the change is at least `min_stderrs` standard errors.

The power rule, for an INCONCLUSIVE comparison: the fewest seeds a side n at which the observed difference, with the
sides' observed spread, would have its 95% interval exclude zero (and reach `min_stderrs`): |difference| >
z_0.975 * s.e.(n), s.e.(n) = sqrt(s_a^2 + s_b^2) / sqrt(n) over the sides' sample standard deviations (one side:
s / sqrt(n), the s.e. the report counts). Normal, not t: the percentile bootstrap's interval is mean +- z s.e.
(within a few thousandths at 5 seeds a side)."""

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import bootstrap, norm

from erbench.config import TrainConfig
from erbench.errors import ErbenchError
from erbench.registry import load_method_config, registry
from erbench.report.records import flat_config, recipe_default, setting_label, varying_settings
from erbench.report.tables import drift_metrics, reward_at_level, within

COMMON = ("id", "text", "source", "task", "kind", "method", "min_seeds", "seeds")
FIELDS = {"reward_at_drift": (*COMMON, "baselines", "drift"),  # the fields each kind of claim needs
          "change_from_initial": (*COMMON, "metric", "direction")}
KINDS = tuple(FIELDS)
DIRECTIONS = ("increase", "decrease")
# Fixed so that the verdicts (and the findings CI compares) are the same on every run.
RESAMPLES, RNG_SEED, CONFIDENCE = 10_000, 0, 0.95
Z = float(norm.ppf(0.5 + CONFIDENCE / 2))
POWER_CAP = 40  # the power rule looks no further: "> 40" seeds a side
SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_ENOUGH = "SUPPORTED", "CONTRADICTED", "INCONCLUSIVE", "NOT ENOUGH DATA"
# Settings a claim may select on: the trainer's and the method's fields (task fields are checked against the records).


@dataclass(frozen=True)
class Side:
    """A method's runs: those whose config matches `where` (flat_config keys) and the recipe default elsewhere."""
    method: str
    where: tuple[tuple[str, object], ...] = ()

    def label(self) -> str:
        return self.method + (f" [{setting_label(dict(self.where), [k for k, _ in self.where])}]" if self.where else "")


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    source: str
    task: str
    kind: str
    method: Side
    baselines: tuple[Side, ...]
    drift: str
    min_seeds: int
    seeds: int  # registered: the runs a side the claim is to be judged on, fixed before they exist
    metric: str = ""  # change_from_initial: the metric that moves, which way, and by how many standard errors at least
    direction: str = ""
    min_stderrs: float = 0.0
    scales: tuple[str, ...] = ()  # where the claim is judged (empty: every scale with records), e.g. where its drift metric is not at a floor


@dataclass(frozen=True)
class Comparison:
    baseline: str
    verdict: str
    difference: float  # mean(method) - mean(baseline) of the runs' reward at the level
    low: float  # the 95% interval (NaN with fewer than 2 runs a side)
    high: float
    p_improve: float
    seeds: tuple[int, int]  # runs with a value at the level: method, baseline
    stderrs: float = float("nan")  # change_from_initial: the mean change over its standard error
    needed: float = float("nan")  # INCONCLUSIVE: the seeds a side that would decide it (seeds_to_decide); NaN otherwise


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    scale: str
    level: float | None
    verdict: str
    comparisons: tuple[Comparison, ...]
    note: str = ""  # what is missing, when the verdict rests on no comparison or on runs without a value


def problem(claim_id, message: str, fix: str) -> ErbenchError:
    return ErbenchError(f"claim {claim_id!r} in claims.toml: {message}", fix)


def parse_side(claim_id, value) -> Side:
    entry = {"method": value} if isinstance(value, str) else value
    if not isinstance(entry, dict) or not isinstance(entry.get("method"), str) or set(entry) - {"method", "where"}:
        raise problem(claim_id, f"bad method or baseline {value!r}", 'write "NAME" or { method = "NAME", where = { "section.key" = value } }')
    methods = registry().methods
    if entry["method"] not in methods:
        raise problem(claim_id, f"unknown method {entry['method']!r}", f"use one of: {', '.join(methods)}")
    checked = {"train": TrainConfig, "method": load_method_config(entry["method"])} if entry.get("where") else {}
    for key in entry.get("where", {}):
        section, _, name = key.partition(".")
        if section not in ("task", "train", "method") or (
                section in checked and name not in {f.name for f in dataclasses.fields(checked[section])}):
            raise problem(claim_id, f"unknown setting {key!r} in where", "name a field as section.key (task., train. or method.), as in a run record")
    return Side(entry["method"], tuple(sorted(entry.get("where", {}).items())))


def parse_scales(claim_id, raw: dict) -> tuple[str, ...]:
    scales = raw.get("scales", [])
    if not isinstance(scales, list) or not all(isinstance(s, str) and s for s in scales):
        raise problem(claim_id, f"scales = {scales!r}", 'write scales = ["small", "paper"] (the scales the claim is judged at), or leave it out for all')
    return tuple(scales)


def parse_claim(raw: dict) -> Claim:
    claim_id = raw.get("id")
    if raw.get("kind") not in KINDS:
        raise problem(claim_id, f"unknown kind {raw.get('kind')!r}", f"use one of: {', '.join(KINDS)}")
    fields = FIELDS[raw["kind"]]
    missing = [f for f in fields if f not in raw]
    if missing:
        raise problem(claim_id, f"missing {', '.join(missing)}", f"give a {raw['kind']} [[claim]] the fields {', '.join(fields)}")
    tasks = registry().tasks
    if raw["task"] not in tasks:
        raise problem(claim_id, f"unknown task {raw['task']!r}", f"use one of: {', '.join(tasks)}")
    for name in ("min_seeds", "seeds"):
        if not isinstance(raw[name], int) or raw[name] < 2:
            raise problem(claim_id, f"{name} = {raw[name]!r}", "give an integer >= 2 (an interval needs two runs a side)")
    if raw["seeds"] < raw["min_seeds"]:
        raise problem(claim_id, f"seeds = {raw['seeds']} is below min_seeds = {raw['min_seeds']}",
                      "register at least min_seeds seeds (fewer could never be judged)")
    if raw["kind"] == "change_from_initial":
        return parse_change(raw)
    if raw["drift"] not in drift_metrics(raw["task"]):
        raise problem(claim_id, f"unknown drift metric {raw['drift']!r} for task {raw['task']}",
                      f"use one of: {', '.join(drift_metrics(raw['task']))}")
    if not isinstance(raw["baselines"], list) or not raw["baselines"]:
        raise problem(claim_id, "baselines is not a non-empty list", 'write baselines = ["ppo", ...]')
    method = parse_side(claim_id, {"method": raw["method"], "where": raw.get("where", {})})
    baselines = tuple(parse_side(claim_id, b) for b in raw["baselines"])
    for side in (method, *baselines):
        if side.method not in registry().methods_for(raw["task"]):
            raise problem(claim_id, f"method {side.method!r} does not apply to task {raw['task']}",
                          f"use one of: {', '.join(registry().methods_for(raw['task']))}")
    return Claim(claim_id, raw["text"], raw["source"], raw["task"], raw["kind"], method, baselines, raw["drift"], raw["min_seeds"],
                 raw["seeds"], scales=parse_scales(claim_id, raw))


def parse_change(raw: dict) -> Claim:
    claim_id, task = raw["id"], raw["task"]
    metrics = ("reward", "reward_gold", "reward_second_rm", *drift_metrics(task))
    if raw["metric"] not in metrics:
        raise problem(claim_id, f"unknown metric {raw['metric']!r} for task {task}", f"use one of: {', '.join(metrics)}")
    if raw["direction"] not in DIRECTIONS:
        raise problem(claim_id, f"direction = {raw['direction']!r}", f"use one of: {', '.join(DIRECTIONS)}")
    min_stderrs = raw.get("min_stderrs", 0.0)
    if not isinstance(min_stderrs, (int, float)) or min_stderrs < 0:
        raise problem(claim_id, f"min_stderrs = {min_stderrs!r}", "give a number >= 0")
    method = parse_side(claim_id, {"method": raw["method"], "where": raw.get("where", {})})
    if method.method not in registry().methods_for(task):
        raise problem(claim_id, f"method {method.method!r} does not apply to task {task}",
                      f"use one of: {', '.join(registry().methods_for(task))}")
    return Claim(claim_id, raw["text"], raw["source"], task, raw["kind"], method, (), "", raw["min_seeds"], raw["seeds"],
                 raw["metric"], raw["direction"], float(min_stderrs), parse_scales(claim_id, raw))


def parse_levels(raw: dict) -> dict:
    """[levels.TASK.SCALE] DRIFT = value -> {task: {scale: {drift: float}}}."""
    for task, scales in raw.items():
        for scale, drifts in scales.items():
            for drift, level in drifts.items():
                if drift not in drift_metrics(task) or not isinstance(level, (int, float)):
                    raise ErbenchError(f"claims.toml: bad level levels.{task}.{scale}.{drift} = {level!r}",
                                       f"give a number for a drift metric of a task ({', '.join(registry().tasks)})")
    return {task: {scale: {d: float(v) for d, v in drifts.items()} for scale, drifts in scales.items()} for task, scales in raw.items()}


def load_claims(path: Path) -> tuple[list[Claim], dict]:
    """The claims and the drift levels of results/claims.toml, validated."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ErbenchError(f"cannot read claims from {path}: {e}", "write [[claim]] tables as in results/claims.toml") from None
    claims = [parse_claim(raw) for raw in data.get("claim", [])]
    if len({c.id for c in claims}) < len(claims):
        raise ErbenchError(f"{path}: two claims share an id", "give every [[claim]] its own id")
    return claims, parse_levels(data.get("levels", {}))


def select(records: list[dict], side: Side, task: str, scale: str, claim_id: str) -> list[dict]:
    """The side's runs of this task and scale: its `where` values, and the recipe default on every other setting
    that varies among the method's runs (a field a record lacks reads as its default)."""
    peers = [r for r in records if (r["task"], r["scale"], r["method"]) == (task, scale, side.method)]
    if not peers:
        return []
    configs = [flat_config(r) for r in peers]
    default = recipe_default(task, side.method, scale)
    # A varying field the method's config no longer has (the flat config before methods owned theirs) is not selected on.
    wanted = {**{k: default[k] for k in varying_settings(configs, task) if k in default}, **dict(side.where)}
    unknown = [k for k in wanted if k not in default]
    if unknown:
        raise problem(claim_id, f"unknown setting {unknown[0]!r} for {task}", "name a field as in a run record's config")
    return [r for r, c in zip(peers, configs) if all(c.get(k, default[k]) == v for k, v in wanted.items())]


def p_improve(a: np.ndarray, b: np.ndarray) -> float:
    """P(a run of a beats a run of b), ties counted half (rliable's probability of improvement)."""
    wins = (a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])
    return float(wins.mean()) if wins.size else float("nan")


def difference_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """95% percentile interval of mean(a) - mean(b), resampling a and b independently (a stratified bootstrap).
    Identical values give the point itself."""
    if min(len(a), len(b)) < 2:
        return float("nan"), float("nan")
    result = bootstrap((a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), n_resamples=RESAMPLES,
                       confidence_level=CONFIDENCE, method="percentile", rng=np.random.default_rng(RNG_SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def seeds_to_decide(difference: float, spread: float, min_stderrs: float = 0.0) -> float:
    """The power rule: the fewest seeds a side n (2 to POWER_CAP, else inf) with |difference| > Z * spread / sqrt(n)
    and at least min_stderrs * spread / sqrt(n), spread / sqrt(n) being the standard error at n seeds a side."""
    return next((n for n in range(2, POWER_CAP + 1)
                 if abs(difference) > Z * spread / math.sqrt(n) and abs(difference) >= min_stderrs * spread / math.sqrt(n)), math.inf)


def compare(a, b, min_seeds: int, baseline: str = "") -> Comparison:
    a, b = np.asarray(a, float), np.asarray(b, float)
    difference = float(a.mean() - b.mean()) if len(a) and len(b) else float("nan")
    low, high = difference_interval(a, b)
    if min(len(a), len(b)) < min_seeds:
        verdict = NOT_ENOUGH
    else:
        verdict = SUPPORTED if low > 0 else CONTRADICTED if high < 0 else INCONCLUSIVE
    needed = seeds_to_decide(difference, math.hypot(a.std(ddof=1), b.std(ddof=1))) if verdict == INCONCLUSIVE else math.nan
    return Comparison(baseline, verdict, difference, low, high, p_improve(a, b), (len(a), len(b)), needed=needed)


def mean_interval(values: np.ndarray) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean (the point itself for identical values)."""
    if len(values) < 2:
        return float("nan"), float("nan")
    result = bootstrap((values,), np.mean, n_resamples=RESAMPLES, confidence_level=CONFIDENCE, method="percentile",
                       rng=np.random.default_rng(RNG_SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def compare_change(changes, claim: Claim) -> Comparison:
    """The runs' changes from their initial model against zero, in the claimed direction."""
    changes = np.asarray(changes, float)
    mean = float(changes.mean()) if len(changes) else float("nan")
    low, high = mean_interval(changes)
    stderr = float(changes.std(ddof=1) / math.sqrt(len(changes))) if len(changes) > 1 else float("nan")
    if len(changes) < 2:
        stderrs = float("nan")
    elif stderr > 0:
        stderrs = mean / stderr
    else:  # every run moved by the same amount
        stderrs = math.copysign(math.inf, mean) if mean else 0.0
    sign = 1 if claim.direction == "increase" else -1
    if len(changes) < claim.min_seeds:
        verdict = NOT_ENOUGH
    elif (low > 0 if sign > 0 else high < 0):
        verdict = SUPPORTED if sign * stderrs >= claim.min_stderrs else INCONCLUSIVE
    else:
        verdict = CONTRADICTED if (high < 0 if sign > 0 else low > 0) else INCONCLUSIVE
    moved = float(np.mean(sign * changes > 0)) if len(changes) else float("nan")
    # Heading the claimed way it must also reach min_stderrs; the other way, excluding zero contradicts it.
    needed = (seeds_to_decide(mean, changes.std(ddof=1), claim.min_stderrs if sign * mean > 0 else 0.0)
              if verdict == INCONCLUSIVE else math.nan)
    return Comparison("initial model", verdict, mean, low, high, moved, (len(changes), len(changes)), stderrs, needed)


def combine(verdicts: list[str]) -> str:
    """Over several baselines: SUPPORTED only if every comparison is, CONTRADICTED if any is."""
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    if all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    return NOT_ENOUGH if NOT_ENOUGH in verdicts else INCONCLUSIVE


def evaluate(claim: Claim, records: list[dict], levels: dict) -> list[Verdict]:
    """One verdict per scale (of the claim's scales) with records of the claim's task and methods."""
    methods = {side.method for side in (claim.method, *claim.baselines)}
    scales = sorted({r["scale"] for r in records if r["task"] == claim.task and r["method"] in methods
                     and (not claim.scales or r["scale"] in claim.scales)})
    if not scales:
        at = f" at scale {' or '.join(claim.scales)}" if claim.scales else ""
        return [Verdict(claim, "–", None, NOT_ENOUGH, (), f"no {claim.task} records of {', '.join(sorted(methods))}{at}")]
    return [evaluate_scale(claim, records, scale, levels.get(claim.task, {}).get(scale, {}).get(claim.drift)) for scale in scales]


def evaluate_scale(claim: Claim, records: list[dict], scale: str, level: float | None) -> Verdict:
    if claim.kind == "change_from_initial":
        runs = select(records, claim.method, claim.task, scale, claim.id)
        pairs = [(r["final"]["val"].get(claim.metric), r["eval_curve"][0].get(claim.metric)) for r in runs]
        changes = [final - initial for final, initial in pairs if final is not None and initial is not None]
        note = f"{len(runs) - len(changes)} run(s) without {claim.metric}" if len(changes) < len(runs) else ""
        comparison = compare_change(changes, claim)
        return Verdict(claim, scale, None, comparison.verdict, (comparison,), note)
    if level is None:
        return Verdict(claim, scale, None, NOT_ENOUGH, (),
                       f"no {claim.drift} level for scale {scale}: add {claim.drift} = ... under [levels.{claim.task}.{scale}] in claims.toml")
    direction = drift_metrics(claim.task)[claim.drift]

    def values(side: Side) -> tuple[list[float], int]:
        runs = select(records, side, claim.task, scale, claim.id)
        rewards = [reward_at_level(r["eval_curve"], claim.drift, level, direction) for r in runs]
        return [v for v in rewards if not math.isnan(v)], len(rewards)

    mine, n_mine = values(claim.method)
    comparisons, outside = [], n_mine - len(mine)
    for baseline in claim.baselines:
        theirs, n_theirs = values(baseline)
        outside += n_theirs - len(theirs)
        comparisons.append(compare(mine, theirs, claim.min_seeds, baseline.label()))
    note = f"{outside} run(s) start beyond the level (no value)" if outside else ""
    return Verdict(claim, scale, level, combine([c.verdict for c in comparisons]), tuple(comparisons), note)


def claim_needed(verdict: Verdict) -> float:
    """The seeds a side that would decide an INCONCLUSIVE verdict, each open comparison keeping its difference and
    spread: the first one heading against the claim makes it CONTRADICTED, else the last one makes it SUPPORTED."""
    if verdict.verdict != INCONCLUSIVE:
        return math.nan
    sign = -1 if verdict.claim.direction == "decrease" else 1
    open_ = [c for c in verdict.comparisons if c.verdict == INCONCLUSIVE]
    against = [c.needed for c in open_ if sign * c.difference < 0]
    return min(against) if against else max(c.needed for c in open_)


def needed_text(needed: float) -> str:
    return "–" if math.isnan(needed) else f"> {POWER_CAP}" if math.isinf(needed) else f"{needed:.0f}"


def registered_text(verdict: Verdict) -> str:
    """' (k of n registered seeds)' while the fewest runs a side are below the claim's registered count."""
    present = min((n for c in verdict.comparisons for n in c.seeds), default=0)
    return f" ({present} of {verdict.claim.seeds} registered seeds)" if present < verdict.claim.seeds else ""


def signed(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:+.3f}"


def difference_text(c: Comparison) -> str:
    if math.isnan(c.difference):
        return "–"
    size = "" if math.isnan(c.stderrs) else f", {c.stderrs:+.1f} s.e."
    return f"{signed(c.difference)} " + ("(no interval)" if math.isnan(c.low) else f"[{signed(c.low)}, {signed(c.high)}]{size}")


def level_text(verdict: Verdict) -> str:
    claim = verdict.claim
    if claim.kind == "change_from_initial":
        return f"final val {claim.metric} minus the initial model's" + (f", at least {claim.min_stderrs:g} s.e." if claim.min_stderrs else "")
    if verdict.level is None:
        return f"reward at a {claim.drift} level"
    return f"reward at {claim.drift} {within(drift_metrics(claim.task)[claim.drift])} {verdict.level:.4g}"


def comparison_text(c: Comparison, claim: Claim) -> str:
    p, min_seeds = "–" if math.isnan(c.p_improve) else f"{c.p_improve:.2f}", claim.min_seeds
    if claim.kind == "change_from_initial":  # P(improve) is the share of runs that moved the claimed way
        text = (f"vs {c.baseline}: {difference_text(c)}, runs moved {p}, seeds {c.seeds[0]}"
                + (f" (need {min_seeds})" if c.seeds[0] < min_seeds else ""))
    else:
        text = (f"vs {c.baseline}: {difference_text(c)}, P(improve) {p}, seeds {c.seeds[0]} vs {c.seeds[1]}"
                + (f" (need {min_seeds})" if min(c.seeds) < min_seeds else ""))
    return text + (f", seeds to decide {needed_text(c.needed)}" if c.verdict == INCONCLUSIVE else "")


def verdict_line(verdict: Verdict) -> str:
    """The report's line for one claim and scale."""
    claim = verdict.claim
    evidence = "; ".join([comparison_text(c, claim) for c in verdict.comparisons] + ([verdict.note] if verdict.note else []))
    statistic = "final minus initial" if claim.kind == "change_from_initial" else "minus baseline"
    return (f"- **{verdict.verdict}**{registered_text(verdict)} `{claim.id}` (scale {verdict.scale}, {level_text(verdict)}, "
            f"{claim.method.label()} {statistic}, 95% CI): {claim.text}. {evidence}")


def and_join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def scale_sentences(verdicts: list[Verdict]) -> list[str]:
    """A line per task and scale with a judged claim, from its verdicts: who beats whom at the same drift and
    what training moves (the comparisons decided), then the comparisons still undecided."""
    facts: dict[tuple[str, str], dict[tuple[bool, str, str], list[str]]] = {}  # (task, scale) -> (decided, subject, object) -> drifts
    for verdict in verdicts:
        if verdict.verdict == NOT_ENOUGH:
            continue
        claim, here = verdict.claim, facts.setdefault((verdict.claim.task, verdict.scale), {})
        for c in verdict.comparisons:
            if c.verdict == NOT_ENOUGH:
                continue
            decided, method = c.verdict != INCONCLUSIVE, claim.method.label()
            if claim.kind == "change_from_initial":
                raises = (claim.direction == "increase") == (c.verdict == SUPPORTED)
                subject, thing = (f"{method} {'raises' if raises else 'lowers'}" if decided else f"{method}'s change in"), claim.metric
            elif c.verdict == CONTRADICTED:
                subject, thing = f"{c.baseline} beats", method
            else:
                subject, thing = f"{method} {'beats' if decided else 'vs'}", c.baseline
            drifts = here.setdefault((decided, subject, thing), [])
            if claim.drift and claim.drift not in drifts:
                drifts.append(claim.drift)
    lines = []
    for (task, scale), here in facts.items():
        groups: dict[tuple[bool, str, tuple[str, ...]], list[str]] = {}
        for (decided, subject, thing), drifts in here.items():
            groups.setdefault((decided, subject, tuple(drifts)), []).append(thing)

        def clauses(wanted: bool) -> str:
            return "; ".join(f"{subject} {and_join(things)}" + (f" at the same {and_join(list(drifts))}" if drifts else "")
                             for (decided, subject, drifts), things in groups.items() if decided == wanted)

        shown, undecided = clauses(True), clauses(False)
        lines.append(f"- **{task} {scale}**: {shown or 'nothing decided yet'}" + (f" — undecided: {undecided}" if undecided else "") + ".")
    return lines


def findings_markdown(verdicts: list[Verdict]) -> str:
    """The full Findings table (results/report.md), after a line per task and scale saying what it shows: a row per
    comparison; the claim and its verdict on its first row."""
    sentences = scale_sentences(verdicts)
    rows = [*sentences, ""] if sentences else []
    rows += ["| task | scale | claim | verdict | vs | difference [95% CI] | P(improve) (vs initial: runs moved) | seeds | seeds to decide |",
             "|---|---|---|---|---|---|---|---|---|"]
    for verdict in verdicts:
        claim = verdict.claim
        note = f"; {verdict.note}" if verdict.note and verdict.comparisons else ""
        head = [claim.task, verdict.scale,
                f"{claim.text} (`{claim.id}`; {level_text(verdict)}, need {claim.min_seeds} seeds, {claim.seeds} registered{note})",
                f"**{verdict.verdict}**{registered_text(verdict)}"]
        if not verdict.comparisons:
            rows.append("| " + " | ".join([*head, "", verdict.note, "", "", ""]) + " |")
        for i, c in enumerate(verdict.comparisons):
            p = "–" if math.isnan(c.p_improve) else f"{c.p_improve:.2f}"
            seeds = f"{c.seeds[0]}" if claim.kind == "change_from_initial" else f"{c.seeds[0]} vs {c.seeds[1]}"
            cells = [*(head if i == 0 else [""] * 4), c.baseline, difference_text(c), p, seeds, needed_text(c.needed)]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def deciding(verdict: Verdict) -> Comparison:
    """The comparison that decides a verdict over several baselines: the most contradicting one, else the weakest."""
    def nan_last(value: float) -> float:
        return math.inf if math.isnan(value) else value

    if verdict.verdict == CONTRADICTED:
        return min(verdict.comparisons, key=lambda c: (nan_last(c.high), nan_last(c.low)))
    return min(verdict.comparisons, key=lambda c: (nan_last(c.low), nan_last(c.difference)))


def headline_evidence(verdict: Verdict) -> str:
    claim, shown = verdict.claim, deciding(verdict)
    if claim.kind == "change_from_initial":
        return f"final minus initial {difference_text(shown)}, {shown.seeds[0]} seeds"
    beaten = sum(c.verdict == SUPPORTED for c in verdict.comparisons)
    tally = f"beats {beaten} of {len(verdict.comparisons)} baselines; " if len(verdict.comparisons) > 1 else ""
    return f"{tally}vs {shown.baseline} {difference_text(shown)}, {shown.seeds[0]} vs {shown.seeds[1]} seeds"


def headline_markdown(verdicts: list[Verdict]) -> str:
    """The README's Findings: a line per task and scale saying what it shows, then a row per claim and scale judged
    (method minus baseline, or final minus initial, with the 95% interval of the comparison that decides it, and the
    seeds a side that would decide it), then one line naming where data is still missing."""
    sentences = scale_sentences(verdicts)
    rows = [*sentences, ""] if sentences else []
    rows += ["| verdict | scale | claim | evidence (95% CI) | seeds to decide |", "|---|---|---|---|---|"]
    missing: dict[tuple[str, str], list[Verdict]] = {}
    for verdict in verdicts:
        if verdict.verdict == NOT_ENOUGH:
            missing.setdefault((verdict.claim.task, verdict.scale), []).append(verdict)
            continue
        rows.append(f"| **{verdict.verdict}**{registered_text(verdict)} | {verdict.scale} | {verdict.claim.text} ({level_text(verdict)}) | "
                    f"{headline_evidence(verdict)} | {needed_text(claim_needed(verdict))} |")
    if missing:
        rows.append("\nNOT ENOUGH DATA yet: " + "; ".join(missing_text(task, scale, group) for (task, scale), group in sorted(missing.items())) + ".")
    return "\n".join(rows)


def missing_text(task: str, scale: str, verdicts: list[Verdict]) -> str:
    """What one task and scale lacks: how many claims, and the seeds they have against the seeds they need."""
    claims = f"{len(verdicts)} claim{'s' if len(verdicts) > 1 else ''}"
    notes = [v.note for v in verdicts if not v.comparisons]
    have = max((n for v in verdicts for c in v.comparisons for n in c.seeds), default=0)
    need = sorted({v.claim.min_seeds for v in verdicts if v.comparisons})
    needed = "" if not need else str(need[0]) if len(need) == 1 else f"{need[0]}-{need[-1]}"
    seeds = f"at most {have} seed{'s' if have != 1 else ''} a side, {needed} needed" if need else ""
    return f"{task}{'' if scale == '–' else ' at ' + scale}: {claims} ({'; '.join(filter(None, [seeds, *notes]))})"
