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
    # Every task's evaluation also reports "reward", its task-performance side.
    drift_metrics: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodSpec:
    description: str
    # Overrides applied on top of the scale's recipe: {"section": {"field": value}}.
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    hook: str = "erbench.methods.elastic_reset:ElasticReset"  # "module:attr" of the trainer hook
    tasks: tuple[str, ...] | None = None  # the tasks it applies to; None = all


TASKS: dict[str, TaskSpec] = {
    "imdb": TaskSpec(
        "erbench.tasks.imdb:ImdbTask",
        "IMDB mock sentiment: continue review prompts positively; drift = perplexity on human reviews, KL to the initial LM",
        drift_metrics={"perplexity": "lower", "kl_to_init": "lower"},
    ),
    "translation": TaskSpec(
        "erbench.tasks.translation:TranslationTask",
        "pivot translation FR->EN->DE on Multi30k: reward = BLEU_De of the pivot; drift = BLEU_En of the English "
        "message, its English-LM NLL, FR->EN NLL on human pairs, KL to the pretrained FR->EN agent",
        drift_metrics={"bleu_en": "higher", "lm_nll": "lower", "real_nll": "lower", "kl_to_init": "lower"},
    ),
    "stackllama": TaskSpec(
        "erbench.tasks.stackllama:StackLlamaTask",
        "StackLLaMA technical QA: a LoRA policy against a StackExchange reward model; drift = perplexity on human "
        "answers, KL to the SFT model, HumanEval pass@1 (the alignment tax; runs code only when allowed)",
        drift_metrics={"perplexity": "lower", "kl_to_init": "lower", "code_perplexity": "lower", "humaneval_pass@1": "higher"},
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
        tasks=("imdb",),  # its masked sampling is a logits processor on a causal LM's generate()
    ),
    "frozen-english": MethodSpec(
        "Frozen English (SIL's Fix Sender): the FR->EN policy never updates; only the EN->DE listener learns",
        {"method": {"reset_every": None}, "train": {"update_policy": False}},
        tasks=("translation",),
    ),
}


def resolve_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ErbenchError(f"unknown task '{name}'", f"choose one of: {', '.join(TASKS)} (see `erbench list`)")
    return TASKS[name]


def methods_for(task: str) -> list[str]:
    return [name for name, spec in METHODS.items() if spec.tasks is None or task in spec.tasks]


def resolve_method(name: str, task: str | None = None) -> MethodSpec:
    if name not in METHODS:
        raise ErbenchError(f"unknown method '{name}'", f"choose one of: {', '.join(METHODS)} (see `erbench list`)")
    if task is not None and name not in methods_for(task):
        raise ErbenchError(f"method '{name}' does not apply to task {task}", f"choose one of: {', '.join(methods_for(task))}")
    return METHODS[name]


def load(target: str):
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def load_task_class(name: str):
    return load(resolve_task(name).target)


def load_method_hook(name: str):
    return load(resolve_method(name).hook)
