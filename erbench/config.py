"""Run configuration: frozen dataclasses filled from a task's TOML recipe, the method's overrides and `--set`.

Resolution order (later wins): dataclass defaults < recipe `[scales.S.*]` < method preset
(registry) < recipe `[methods.M.*]` < recipe `[scales.S.methods.M.*]` < `--set section.key=value`.
Every value is type-checked and range-checked here, before any work starts.
"""

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from erbench.errors import ErbenchError
from erbench.registry import resolve_method, resolve_task

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
    update_policy: bool = True  # False: roll out and let the task learn, but never update the policy (frozen sender)
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def __post_init__(self):
        for key in ("iterations", "rollout_prompts", "ppo_epochs", "num_minibatches", "eval_every"):
            require(getattr(self, key) >= 1, f"train.{key}", getattr(self, key), "an integer >= 1")
        require(self.num_minibatches <= self.rollout_prompts, "train.num_minibatches", self.num_minibatches,
                f"<= train.rollout_prompts ({self.rollout_prompts}): a minibatch holds at least one sequence")
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
class MethodConfig:
    """Knobs of the Elastic Reset family; the six named methods are presets of these (registry.METHODS)."""

    ema_decay: float = 0.995  # eta: ema <- eta*ema + (1-eta)*theta; 1.0 keeps the EMA at theta0
    reset_every: int | None = None  # reset period in iterations; None = never reset
    first_reset_after: int | None = None  # iterations completed at the first reset; None = reset_every
    reset_ema: bool = True  # after online <- EMA, also EMA <- theta0 (Elastic Reset); False = reset-to-EMA
    kl_reference: Literal["init", "ema"] = "init"  # the model the KL penalty pulls towards
    ema_update: Literal["opt_step", "ppo_epoch", "iteration"] = "iteration"  # when the EMA is updated
    reset_critic: bool = False  # also reset the critic to its initial weights at each reset
    reset_optimizer: bool = False  # also clear AdamW state of the policy parameters (never the critic's)
    mask_top_p: float = 0.9  # NLPO: act only within the masking policy's top-p tokens (RL4LMs top_mask)
    mask_min_tokens: int = 100  # NLPO: the mask keeps at least this many tokens (RL4LMs min_tokens_to_keep)
    mask_update_every: int = 5  # NLPO: refresh the masking policy every k iterations (target_update_iterations)

    def __post_init__(self):
        require(0 <= self.ema_decay <= 1, "method.ema_decay", self.ema_decay, "in [0, 1]")
        if self.reset_every is not None:
            require(self.reset_every >= 1, "method.reset_every", self.reset_every, "an integer >= 1, or none to never reset")
        require(0 < self.mask_top_p <= 1, "method.mask_top_p", self.mask_top_p, "in (0, 1]")
        require(self.mask_min_tokens >= 1, "method.mask_min_tokens", self.mask_min_tokens, "an integer >= 1")
        require(self.mask_update_every >= 1, "method.mask_update_every", self.mask_update_every, "an integer >= 1")
        if self.first_reset_after is not None:
            require(self.first_reset_after >= 1, "method.first_reset_after", self.first_reset_after, ">= 1, or none")

    @property
    def uses_ema(self) -> bool:
        """An EMA is kept when the policy resets to it or the KL pulls towards it."""
        resets_to_ema = self.reset_every is not None
        return resets_to_ema or self.kl_reference == "ema"


@dataclass(frozen=True)
class RunConfig:
    task: str
    scale: str
    method: str
    seed: int
    task_config: Any  # the task's own frozen dataclass
    train: TrainConfig
    method_config: MethodConfig

    def to_dict(self) -> dict:
        return {
            "task": self.task, "scale": self.scale, "method": self.method, "seed": self.seed,
            "task_config": dataclasses.asdict(self.task_config),
            "train": dataclasses.asdict(self.train),
            "method_config": dataclasses.asdict(self.method_config),
        }


def load_recipe(task: str) -> dict:
    resolve_task(task)
    text = resources.files("erbench.tasks").joinpath(f"{task}.toml").read_text()
    return tomllib.loads(text)


def recipe_scales(task: str) -> dict[str, str]:
    """{scale: description} as declared by the task's recipe."""
    return {name: body.get("description", "") for name, body in load_recipe(task)["scales"].items()}


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
        return annotation(value)
    except (TypeError, ValueError):
        raise ErbenchError(f"invalid value {key}={value!r}", f"{key} takes a {annotation.__name__}") from None


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


def resolve(task: str, scale: str, method: str, seed: int, sets: list[str], task_config_cls: type) -> RunConfig:
    recipe = load_recipe(task)
    method_spec = resolve_method(method, task)
    scales = recipe["scales"]
    if scale not in scales:
        raise ErbenchError(f"unknown scale '{scale}' for task {task}", f"choose one of: {', '.join(scales)}")
    classes = {"task": task_config_cls, "train": TrainConfig, "method": MethodConfig}
    layers = [
        scales[scale],
        method_spec.overrides,
        recipe.get("methods", {}).get(method, {}),
        scales[scale].get("methods", {}).get(method, {}),
        parse_sets(sets, classes),
    ]
    merged: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for layer in layers:
        for section in SECTIONS:
            merged[section].update(layer.get(section, {}))
    return RunConfig(
        task=task, scale=scale, method=method, seed=seed,
        task_config=build(task_config_cls, merged["task"], "task"),
        train=build(TrainConfig, merged["train"], "train"),
        method_config=build(MethodConfig, merged["method"], "method"),
    )
