"""Run records into tables. Reporting only reads records; it never modifies one."""

import functools
import json
import math
from pathlib import Path

import pandas as pd

from erbench.errors import ErbenchError
from erbench.registry import registry
from erbench.results import RECORD_SCHEMA

# Trainer fields that say nothing about the method's setting (where it ran, how often it evaluated); each task
# declares its own such fields in its recipe (`evaluation_fields`).
TRAINER_NOT_A_SETTING = {"train.device", "train.eval_every", "train.eval_ema", "train.eval_samples"}
SHORT_NAMES = {"train.kl_coef": "β0", "train.kl_target": "KL target", "method.ema_decay": "η", "method.reset_every": "n",
               "train.lr": "lr", "method.kl_reference": "KL ref", "method.ema_update": "EMA per"}


def read_records(root: Path, warn=print) -> list[dict]:
    """Completed run records under `root` (recursively; `root/reference/` holds CI fixtures and is skipped).
    Anything else is skipped with a warning naming the file."""
    records = []
    root = Path(root)
    for path in sorted(root.rglob("*.json")):
        if path.name.startswith(".") or (root / "reference") in path.parents:
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            warn(f"skipped {path}: not readable JSON ({e})")
            continue
        schema = record.get("schema") if isinstance(record, dict) else None
        if not isinstance(schema, str) or not schema.startswith("erbench."):
            warn(f"skipped {path}: not an erbench run record")
            continue
        if not schema.startswith("erbench.run/"):
            continue  # another erbench file (a benchmark output): not a run, not a problem
        if schema != RECORD_SCHEMA:
            warn(f"skipped {path}: record schema {schema}, this erbench reads {RECORD_SCHEMA}; use the erbench version that wrote it")
            continue
        if record.get("status") != "completed":
            warn(f"skipped {path}: run status is {record.get('status')!r}, not completed")
            continue
        missing = [k for k in ("task", "scale", "method", "seed", "eval_curve", "final", "task_config", "train", "method_config")
                   if k not in record]
        if missing or not record["eval_curve"] or "val" not in record["final"]:
            warn(f"skipped {path}: partial record (missing {', '.join(missing) or 'evaluations'})")
            continue
        records.append({**record, "path": str(path)})
    return records


def newest_per_seed(records: list[dict]) -> tuple[list[dict], list[tuple[str, str]]]:
    """One record per configuration and seed: a re-run (another folder, another device) replaces the older one
    instead of counting as another seed. Returns the kept records and (older path, newer path) per replaced one."""
    newest: dict[tuple, dict] = {}
    superseded = []
    labelled = sorted(zip(records, setting_labels(records)), key=lambda pair: pair[0].get("started", ""))
    for record, label in labelled:
        key = (record["task"], record["scale"], record["method"], record["seed"], label)
        if key in newest:
            superseded.append((newest[key]["path"], record["path"]))
        newest[key] = record
    kept = {id(record) for record in newest.values()}
    return [record for record in records if id(record) in kept], superseded


def flat_config(record: dict) -> dict:
    sections = {"task": record["task_config"], "train": record["train"], "method": record["method_config"]}
    return {f"{section}.{key}": value for section, values in sections.items() for key, value in values.items()}


def not_a_setting(task: str) -> set[str]:
    spec = registry().tasks.get(task)
    return TRAINER_NOT_A_SETTING | {f"task.{name}" for name in (spec.evaluation_fields if spec else ())}


def varying_settings(configs: list[dict], task: str) -> list[str]:
    """The setting fields (flat_config keys) whose values differ among these configs of one task. A field some of
    them lack was added to erbench after they ran (with their behaviour as its default): not a setting."""
    skip = not_a_setting(task)
    return sorted(k for k in configs[0] if k not in skip and all(k in c for c in configs)
                  and len({json.dumps(c[k]) for c in configs}) > 1) if configs else []


@functools.cache
def recipe_default(task: str, method: str, scale: str) -> dict:
    """The method's recipe settings at this scale, as flat_config of a record stores them."""
    from erbench.config import resolve

    return flat_config(json.loads(json.dumps(resolve(task, scale, method, 0, []).to_dict())))


def at_recipe_default(record: dict) -> bool:
    """Whether the run used its method's recipe settings (no --set); fields that are not a setting aside, and a
    field the record lacks (added to erbench after it ran, with its behaviour as the default) reads as default."""
    try:
        default = recipe_default(record["task"], record["method"], record["scale"])
    except ErbenchError:  # a method or scale this erbench no longer knows
        return False
    skip, ran = not_a_setting(record["task"]), flat_config(record)
    return all(ran.get(key, value) == value for key, value in default.items() if key not in skip)


def setting_label(config: dict, keys) -> str:
    return ", ".join(f"{SHORT_NAMES.get(k, k.split('.', 1)[1])}={config[k]}" for k in keys)


def setting_labels(records: list[dict]) -> list[str]:
    """A label per record naming the settings that vary among runs of the same task, scale and method."""
    configs = [flat_config(r) for r in records]
    labels = []
    for record, config in zip(records, configs):
        peers = [c for r, c in zip(records, configs)
                 if (r["task"], r["scale"], r["method"]) == (record["task"], record["scale"], record["method"])]
        labels.append(setting_label(config, varying_settings(peers, record["task"])))
    return labels


def checkpoint(record: dict, which: str) -> dict:
    """The evaluation point a run is judged by: its final one, or its best by reward (SIL's convention)."""
    if which == "best":
        return max(record["eval_curve"], key=lambda point: point["reward"])
    return record["final"]["val"]


def runs_table(records: list[dict], which: str = "final") -> pd.DataFrame:
    """One row per run: identity, setting label, the chosen val checkpoint's metrics, test metrics, initial metrics."""
    rows = []
    for record, label in zip(records, setting_labels(records)):
        point = checkpoint(record, which)
        rows.append({
            "task": record["task"], "scale": record["scale"], "method": record["method"], "setting": label,
            "default": at_recipe_default(record), "seed": record["seed"], "path": record["path"], "iteration": point.get("iteration"),
            **{k: v for k, v in point.items() if isinstance(v, (int, float)) and k not in ("iteration", "resets_so_far")},
            **{f"test_{k}": v for k, v in record["final"].get("test", {}).items() if isinstance(v, (int, float))},
            **{f"initial_{k}": v for k, v in record["eval_curve"][0].items() if isinstance(v, (int, float))},
        })
    return pd.DataFrame(rows)


def curves_table(records: list[dict]) -> pd.DataFrame:
    """One row per evaluation of every run, with the run's reset iterations."""
    rows = []
    for record, label in zip(records, setting_labels(records)):
        default = at_recipe_default(record)
        for point in record["eval_curve"]:
            rows.append({"task": record["task"], "scale": record["scale"], "method": record["method"], "setting": label,
                         "default": default, "seed": record["seed"], "path": record["path"],
                         "resets": tuple(record.get("resets", [])), **point})
    return pd.DataFrame(rows)


def interpolation_table(records: list[dict]) -> pd.DataFrame:
    """One row per evaluated point of `erbench interpolate` (curve = policy | ema)."""
    rows = [{"task": r["task"], "scale": r["scale"], "method": r["method"], "seed": r["seed"], "path": r["path"],
             "curve": curve, **point}
            for r in records for curve, points in r.get("interpolation", {}).items() for point in points]
    return pd.DataFrame(rows)


def mean_and_stderr(values) -> tuple[float, float]:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return float("nan"), float("nan")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan")
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance / len(values))
