"""Experiment trackers (`--report-to`): a run's train curve, evaluations and held-out samples, live.

The JSON record stays the source of truth; a tracker is a view of the same numbers under the names a TRL user
knows (objective/kl, loss/policy_avg, ...), so a sweep can be watched in TensorBoard, W&B or trackio while it runs.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from numbers import Real
from pathlib import Path

from erbench.errors import ErbenchError

TRACKERS = ("none", "tensorboard", "wandb", "trackio")

# PPO's statistics under TRL's PPOTrainer names; any other numeric one goes under train/<key>
TRAIN_NAMES = {
    "score": "objective/scores",
    "kl": "objective/kl",
    "kl_coef": "objective/kl_coef",
    "policy_loss": "loss/policy_avg",
    "value_loss": "loss/value_avg",
    "clip_fraction": "policy/clipfrac_avg",
}
SAMPLE_COLUMNS = ("model", "index", "prompt", "response", "reward", "reward_gold", "kl_to_init")


def scalars(prefix: str, values: dict) -> dict[str, float]:
    """The finite numbers of `values` (bools as 0/1) under `prefix`; text, lists and NaNs are left out."""
    out = {}
    for key, value in values.items():
        if isinstance(value, Real) and math.isfinite(value):
            out[f"{prefix}{key}"] = float(value)
    return out


def sample_columns(samples: list[dict]) -> list[str]:
    """The known columns first, in a reader's order, then any others a task adds."""
    present = {key for sample in samples for key in sample}
    extra = sorted(present - set(SAMPLE_COLUMNS))
    return [c for c in SAMPLE_COLUMNS if c in present] + extra


def sample_rows(samples: list[dict], columns: list[str]) -> list[list]:
    return [[sample.get(column) for column in columns] for sample in samples]


def markdown_table(samples: list[dict]) -> str:
    """Samples as a markdown table; "|" and line breaks inside a cell would break its row."""
    columns = sample_columns(samples)

    def cell(value) -> str:
        text = "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", "<br>").replace("\n", "<br>")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in sample_rows(samples, columns)]
    return "\n".join(lines)


def flatten(config: dict, prefix: str = "") -> dict:
    """A nested config as dotted keys (train.lr), the form hyper-parameter tables compare."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class Tracker:
    """Turns erbench's statistics into named scalars; a backend only writes them. This base writes nothing
    (`--report-to none`)."""

    def __init__(self):
        self.resets = 0

    def log_train(self, stats: dict) -> None:
        """One PPO iteration's statistics, at step stats["iteration"]."""
        self.resets += bool(stats.get("reset"))
        named = {TRAIN_NAMES.get(key, f"train/{key}"): value for key, value in stats.items()
                 if key not in ("iteration", "reset")}
        self.write({**scalars("", named), "er/resets": float(self.resets)}, stats["iteration"])

    def log_eval(self, iteration: int, metrics: dict, ema_metrics: dict | None, samples: list[dict],
                 prefix: str = "eval") -> None:
        """An evaluation after `iteration` iterations (prefix eval: val; test: the final one): the policy's
        metrics, the EMA's, and per-prompt samples."""
        self.write({**scalars(f"{prefix}/", metrics), **scalars(f"{prefix}_ema/", ema_metrics or {})}, iteration)
        if samples:
            self.write_samples(samples, iteration, f"{prefix}/samples")

    def close(self) -> None:
        pass

    def write(self, values: dict[str, float], step: int) -> None:
        pass

    def write_samples(self, samples: list[dict], step: int, name: str) -> None:
        pass


class TensorBoardTracker(Tracker):
    def __init__(self, log_dir: Path, run_name: str, config: dict):
        super().__init__()
        from torch.utils.tensorboard import SummaryWriter  # its package was checked by open_tracker
        from torch.utils.tensorboard.summary import hparams
        self.writer = SummaryWriter(str(log_dir / run_name))
        self.writer.add_text("config", "```json\n" + json.dumps(config, indent=2, default=str) + "\n```")
        # the HParams dashboard's summaries, written into this run's own folder: SummaryWriter.add_hparams
        # would open a sibling run for them, splitting each run in two in the dashboard
        values = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in flatten(config).items()}
        # the HParams table's columns: only the names count, the values are read from this run's scalars
        metrics = dict.fromkeys(["eval/reward", "eval/kl_to_init", "eval/perplexity", "er/resets"], 0.0)
        for summary in hparams(values, metrics):
            self.writer.file_writer.add_summary(summary)

    def write(self, values, step):
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def write_samples(self, samples, step, name):
        self.writer.add_text(name, markdown_table(samples), step)

    def close(self):
        self.writer.close()


class RunLogTracker(Tracker):
    """W&B and trackio share an API: run.log(values, step) and a Table class."""

    run, table = None, None

    def write(self, values, step):
        self.run.log(values, step=step)

    def write_samples(self, samples, step, name):
        columns = sample_columns(samples)
        self.run.log({name: self.table(columns=columns, data=sample_rows(samples, columns))}, step=step)


class WandbTracker(RunLogTracker):
    def __init__(self, log_dir: Path, run_name: str, group: str, config: dict):
        super().__init__()
        import wandb
        self.table = wandb.Table
        # offline unless the user set W&B up: a benchmark run must not stop at a login prompt
        configured = "WANDB_MODE" in os.environ or "WANDB_API_KEY" in os.environ
        log_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project="erbench", name=run_name, group=group, dir=str(log_dir), config=config,
                              mode=None if configured else "offline", reinit="create_new")

    def close(self):
        self.run.finish()


class TrackioTracker(RunLogTracker):
    """trackio keeps one run per process at a time: opening the next run (the next seed) finishes this one."""

    def __init__(self, run_name: str, group: str, config: dict):
        super().__init__()
        import trackio
        self.trackio, self.table = trackio, trackio.Table
        self.run = trackio.init(project="erbench", name=run_name, group=group, config=config)


    def close(self):
        # trackio.finish() also forgets the current run, which atexit would otherwise finish again; a run that
        # is no longer current was finished by the init of the next one
        if self.trackio.context_vars.current_run.get() is self.run:
            self.trackio.finish()


def check_tracker(kind: str) -> None:
    """Fail before any work starts when `--report-to kind` cannot work here."""
    if kind not in TRACKERS:
        raise ErbenchError(f"unknown tracker {kind!r}", f"use one of {', '.join(TRACKERS)}")
    if kind != "none" and importlib.util.find_spec(kind) is None:
        raise ErbenchError(f"--report-to {kind} needs the {kind} package", f"pip install 'erbench[{kind}]'")


def open_tracker(kind: str, log_dir: Path, run_name: str, group: str, config: dict) -> Tracker:
    """The tracker of `--report-to kind` for one run (one seed); `group` gathers a sweep's seeds of a method."""
    check_tracker(kind)
    if kind == "none":
        return Tracker()
    if kind == "tensorboard":
        return TensorBoardTracker(Path(log_dir), run_name, config)
    if kind == "wandb":
        return WandbTracker(Path(log_dir), run_name, group, config)
    return TrackioTracker(run_name, group, config)
