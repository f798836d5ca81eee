"""Lazy name registries: plain strings and dicts, so `erbench --help` and `erbench list` never import torch."""

import importlib
from dataclasses import dataclass, field
from typing import Any

from erbench.errors import ErbenchError


@dataclass(frozen=True)
class TaskSpec:
    target: str  # "module:attr" of the task class
    description: str
    # Drift metrics of the run records, each "lower" or "higher" is better; the first is the default x axis.
    drift_metrics: dict[str, str] = field(default_factory=dict)
    reward_metric: str = "reward"


@dataclass(frozen=True)
class MethodSpec:
    description: str
    # Overrides applied on top of the scale's recipe: {"section": {"field": value}}.
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    hook: str = "erbench.methods.elastic_reset:ElasticReset"  # "module:attr" of the trainer hook


TASKS: dict[str, TaskSpec] = {
    "imdb": TaskSpec(
        "erbench.tasks.imdb:ImdbTask",
        "IMDB mock sentiment: continue review prompts positively; drift = perplexity on human reviews, KL to the initial LM",
        drift_metrics={"perplexity": "lower", "kl_to_init": "lower"},
    ),
}

# The paper's six methods are one Elastic Reset hook with different knobs (see methods/elastic_reset.py).
METHODS: dict[str, MethodSpec] = {
    "ppo": MethodSpec("PPO with a KL penalty towards the initial model", {"method": {"reset_every": None, "kl_reference": "init"}}),
    "ppo-nokl": MethodSpec(
        "PPO without any KL penalty (beta = 0)",
        {"method": {"reset_every": None, "kl_reference": "init"}, "train": {"kl_coef": 0.0, "kl_controller": "fixed"}},
    ),
    "reset": MethodSpec(
        "reset the online policy to the initial model every n iterations (EMA decay 1: the EMA stays at theta0)",
        {"method": {"ema_decay": 1.0, "reset_ema": False}},
    ),
    "reset-ema": MethodSpec("reset the online policy to its EMA every n iterations; the EMA is never reset", {"method": {"reset_ema": False}}),
    "ema-ref": MethodSpec("KL penalty towards an EMA of the policy; no resets", {"method": {"reset_every": None, "kl_reference": "ema"}}),
    "elastic": MethodSpec("Elastic Reset: every n iterations online <- EMA, then EMA <- initial model", {"method": {"reset_ema": True}}),
    "nlpo": MethodSpec(
        "NLPO (RL4LMs): PPO acting only within the top-p tokens of a periodically refreshed masking policy",
        {"method": {"reset_every": None, "kl_reference": "init"}},
        hook="erbench.methods.nlpo:Nlpo",
    ),
}


def resolve_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ErbenchError(f"unknown task '{name}'", f"choose one of: {', '.join(TASKS)} (see `erbench list`)")
    return TASKS[name]


def resolve_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ErbenchError(f"unknown method '{name}'", f"choose one of: {', '.join(METHODS)} (see `erbench list`)")
    return METHODS[name]


def load(target: str):
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def load_task_class(name: str):
    return load(resolve_task(name).target)


def load_method_hook(name: str):
    return load(resolve_method(name).hook)
