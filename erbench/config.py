"""Run configuration: frozen dataclasses filled from a task's TOML recipe, the method's preset and `--set`.

Resolution order (later wins): dataclass defaults < recipe `[scales.S.*]` < method preset
(`[method.M.preset]`) < recipe `[methods.M.*]` < recipe `[scales.S.methods.M.*]` < `--set section.key=value`.
The task's and the method's config classes are the ones their recipes declare. A scale's `[scales.S.method]`
serves every method: a method takes the keys its config has (another method's knobs are not its business).
Every value is type-checked and range-checked here, before any work starts.
"""

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from erbench.errors import ErbenchError

SECTIONS = ("task", "train", "method")


def require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ErbenchError(f"impossible value {key}={value!r}", f"{key} must be {expected}")


@dataclass(frozen=True)
class TrainConfig:
    """The shared PPO trainer's hyper-parameters (one "iteration" = one rollout batch + K PPO epochs)."""

    iterations: int = 50  # PPO iterations (RL4LMs n_iters)
    rollout_prompts: int = 27  # prompts sampled per iteration; x response length = transitions per iteration
    ppo_epochs: int = 5  # passes over each rollout batch
    num_minibatches: int = 20  # optimizer steps per epoch; the rollout is split into this many minibatches
    lr: float = 1e-6
    weight_decay: float = 1e-6  # AdamW; not applied to biases and LayerNorm weights
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    whiten_advantages: bool = True
    kl_coef: float = 0.001  # beta0 of the per-token KL penalty in the reward
    kl_controller: Literal["adaptive", "fixed"] = "adaptive"
    kl_target: float = 1.0  # adaptive controller's target KL (nats per sequence)
    kl_horizon: int = 0  # 0: RL4LMs' adaptive rule; H > 0: Ziegler et al.'s (TRL's), beta moves by error * batch / H
    eval_every: int = 1  # evaluate on val prompts every k iterations (and after the last)
    eval_ema: bool = False  # also evaluate the EMA model (methods that keep one) at every evaluation
    eval_samples: int = 8  # held-out prompts per evaluation whose responses go to the record's samples file
    update_policy: bool = True  # False: roll out and let the task learn, but never update the policy (frozen sender)
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def __post_init__(self):
        for key in ("iterations", "rollout_prompts", "ppo_epochs", "num_minibatches", "eval_every"):
            require(getattr(self, key) >= 1, f"train.{key}", getattr(self, key), "an integer >= 1")
        require(self.num_minibatches <= self.rollout_prompts, "train.num_minibatches", self.num_minibatches,
                f"<= train.rollout_prompts ({self.rollout_prompts}): a minibatch holds at least one sequence")
        require(self.eval_samples >= 0, "train.eval_samples", self.eval_samples, ">= 0 (0 = no samples)")
        require(self.lr > 0, "train.lr", self.lr, "> 0")
        require(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, ">= 0")
        require(0 <= self.gamma <= 1, "train.gamma", self.gamma, "in [0, 1]")
        require(0 <= self.gae_lambda <= 1, "train.gae_lambda", self.gae_lambda, "in [0, 1]")
        require(self.clip_range > 0, "train.clip_range", self.clip_range, "> 0")
        require(self.vf_coef >= 0, "train.vf_coef", self.vf_coef, ">= 0")
        require(self.max_grad_norm > 0, "train.max_grad_norm", self.max_grad_norm, "> 0")
        require(self.kl_coef >= 0, "train.kl_coef", self.kl_coef, ">= 0 (a negative beta rewards drift)")
        require(self.kl_target > 0, "train.kl_target", self.kl_target, "> 0")
        require(self.kl_horizon >= 0, "train.kl_horizon", self.kl_horizon, ">= 0 (0 = RL4LMs' rule)")
        require(re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None, "train.device", self.device,
                "auto, cpu, cuda or cuda:N")


@dataclass(frozen=True)
class RunConfig:
    task: str
    scale: str
    method: str
    seed: int
    task_config: Any  # the task's own frozen dataclass
    train: TrainConfig
    method_config: Any  # the method's own frozen dataclass

    def to_dict(self) -> dict:
        return {
            "task": self.task, "scale": self.scale, "method": self.method, "seed": self.seed,
            "task_config": dataclasses.asdict(self.task_config),
            "train": dataclasses.asdict(self.train),
            "method_config": dataclasses.asdict(self.method_config),
        }


def recipe_scales(task: str) -> dict[str, str]:
    """{scale: description} as declared by the task's recipe."""
    from erbench.registry import registry

    return {name: body.get("description", "") for name, body in registry().task(task).recipe["scales"].items()}


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert a TOML or command-line value to a field's declared type, or explain why it can't be."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return coerce(value, options[0], key)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ErbenchError(f"invalid value {key}={value!r}", f"choose one of: {', '.join(map(str, choices))}")
        return value
    if value is None:
        raise ErbenchError(f"{key} cannot be none", f"give {key} a {annotation.__name__} value")
    if isinstance(value, bool) and annotation in (int, float):
        raise ErbenchError(f"invalid value {key}={value!r}", f"{key} takes a {annotation.__name__}, not true/false")
    try:
        if annotation is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if annotation is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        converted = annotation(value)
    except (TypeError, ValueError):
        raise ErbenchError(f"invalid value {key}={value!r}", f"{key} takes a {annotation.__name__}") from None
    if isinstance(converted, float) and not math.isfinite(converted):
        raise ErbenchError(f"impossible value {key}={value!r}", f"{key} must be a finite number")
    return converted


def build(cls, values: dict[str, Any], section: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            raise ErbenchError(f"unknown setting '{section}.{key}'", f"valid {section} keys: {', '.join(sorted(names))}")
    return cls(**{k: coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()})


def parse_sets(sets: list[str], classes: dict[str, type]) -> dict[str, dict[str, str]]:
    """Turn ["train.lr=1e-5", "ema_decay=0.99"] into {"train": {"lr": "1e-5"}, "method": {...}}.

    A bare key is accepted when exactly one section has it.
    """
    layer: dict[str, dict[str, str]] = {s: {} for s in SECTIONS}
    for item in sets:
        if "=" not in item:
            raise ErbenchError(f"--set '{item}' has no '='", "write --set section.key=value, e.g. --set train.lr=1e-5")
        key, value = (part.strip() for part in item.split("=", 1))
        if "." in key:
            section, name = key.split(".", 1)
            if section not in classes:
                raise ErbenchError(f"unknown settings section '{section}' in --set {item}", f"use one of: {', '.join(SECTIONS)}")
        else:
            owners = [s for s, cls in classes.items() if key in {f.name for f in dataclasses.fields(cls)}]
            if len(owners) != 1:
                fix = "see `erbench list` and the recipe for valid keys" if not owners else f"write it as one of: {', '.join(f'{o}.{key}' for o in owners)}"
                raise ErbenchError(f"unknown setting '{key}'" if not owners else f"ambiguous setting '{key}'", fix)
            section, name = owners[0], key
        layer[section][name] = value
    return layer


def resolve_layers(task: str, scale: str, method: str, sets: list[str]):
    """The merged settings {section: {key: value}}, where each came from {section: {key: layer}}, and the config
    classes {section: class}, for `resolve` and `erbench config`."""
    from erbench.registry import load_method_config, load_task_class, registry

    reg = registry()
    task_spec, method_spec = reg.task(task), reg.method(method, task)
    scales = task_spec.recipe["scales"]
    if scale not in scales:
        raise ErbenchError(f"unknown scale '{scale}' for task {task}", f"choose one of: {', '.join(scales)}")
    classes = {"task": load_task_class(task).config_class, "train": TrainConfig, "method": load_method_config(method)}
    shared_method = dict(scales[scale].get("method", {}))
    if shared_method:  # a key no method of the task has is a typo; one only another method has is not this one's
        own = {f.name for f in dataclasses.fields(classes["method"])}
        known = own | {f.name for m in reg.methods_for(task) for f in dataclasses.fields(load_method_config(m))}
        for key in shared_method:
            if key not in known:
                raise ErbenchError(f"unknown setting 'method.{key}' in [scales.{scale}.method] of {task_spec.source}",
                                   f"valid method keys: {', '.join(sorted(known))}")
        shared_method = {k: v for k, v in shared_method.items() if k in own}
    layers = [
        (f"scale {scale} ({task_spec.source})", {**scales[scale], "method": shared_method}),
        (f"method preset {method} ({method_spec.source})", method_spec.preset),
        (f"[methods.{method}] ({task_spec.source})", task_spec.recipe["methods"].get(method, {})),
        (f"[scales.{scale}.methods.{method}] ({task_spec.source})", scales[scale].get("methods", {}).get(method, {})),
        ("--set", parse_sets(sets, classes)),
    ]
    merged: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    origins: dict[str, dict[str, str]] = {s: {} for s in SECTIONS}
    for label, layer in layers:
        for section in SECTIONS:
            for key, value in layer.get(section, {}).items():
                if key not in {f.name for f in dataclasses.fields(classes[section])}:
                    raise ErbenchError(f"unknown setting '{section}.{key}' from {label}",
                                       f"valid {section} keys: {', '.join(sorted(f.name for f in dataclasses.fields(classes[section])))}")
                merged[section][key], origins[section][key] = value, label
    return merged, origins, classes


def resolve(task: str, scale: str, method: str, seed: int, sets: list[str]) -> RunConfig:
    if seed < 0:  # numpy's generators refuse it only once training has started
        raise ErbenchError(f"--seed {seed} is negative", "give a seed >= 0")
    merged, _, classes = resolve_layers(task, scale, method, sets)
    return RunConfig(
        task=task, scale=scale, method=method, seed=seed,
        task_config=build(classes["task"], merged["task"], "task"),
        train=build(TrainConfig, merged["train"], "train"),
        method_config=build(classes["method"], merged["method"], "method"),
    )
