"""The method API: what erbench's PPO trainer (erbench/rl/ppo.py) calls on a method. A method is a subclass of
`Method` plus a frozen dataclass of its settings (the `method.*` keys of `--set` and recipes), declared in a
recipe as [method.NAME] with `hook` and `config` (see tasks/methods.toml and examples/plugin/).

The defaults are plain PPO with a KL penalty towards the initial model: override only what the method changes.
The trainer calls, per iteration:
    sampling_processor(prompts) -> logits processor for the rollout's generate(), or None
    action_mask(rollout)        -> [B, T, V] tokens the PPO ratio may use, or None
    reference_model             -> read when the per-token KL penalty is computed
    after_update(unit)          -> after every optimizer step ("opt_step"), PPO epoch ("ppo_epoch"), iteration
    maybe_reset(completed)      -> after each iteration; True when the online policy was reset (the task is told)
and at evaluation `init_model` (KL to theta0) and `ema_model` (with --eval-ema); checkpoints use
`state_dict` / `load_state_dict`; the final weights saved are `online_model` (and a separate `ema_model`).
A config may define `knobs()` -> {setting: value}, the few that define the method, shown before a run (default: all).
"""

import copy
import dataclasses

import torch
from torch import nn


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of the model's trainable parameters; frozen ones (a LoRA policy's base) are shared, not copied."""
    shared = {id(p): p for p in model.parameters() if not p.requires_grad}
    clone = copy.deepcopy(model, memo=shared).eval()
    clone.requires_grad_(False)
    return clone


def method_knobs(config) -> dict:
    return config.knobs() if hasattr(config, "knobs") else dataclasses.asdict(config)


def is_due(completed: int, every: int | None, first_after: int | None = None) -> bool:
    """Whether a periodic event (a reset) fires once `completed` iterations are done (1-based): after `first_after`
    iterations (default `every`), then every `every`; never when `every` is None."""
    if every is None:
        return False
    first = every if first_after is None else first_after
    return completed >= first and (completed - first) % every == 0


class Method:
    def __init__(self, cfg, policy: nn.Module, init_model: nn.Module, critic: nn.Module, optimizer: torch.optim.Optimizer):
        """`cfg`: the method's config dataclass; `policy`: the online policy (trained in place); `init_model`: the
        frozen theta0; `critic`: the value model; `optimizer`: one AdamW over policy and critic."""
        self.cfg, self.optimizer, self.critic = cfg, optimizer, critic
        self.online_model, self.init_model = policy, init_model
        self.online = [p for p in policy.parameters() if p.requires_grad]  # what a reset or an average touches
        tracked = {id(p) for p in self.online}
        self.init = [q for p, q in zip(policy.parameters(), init_model.parameters()) if id(p) in tracked]
        self.reference_model: nn.Module = init_model  # the model the KL penalty pulls towards
        self.ema_model: nn.Module | None = None  # an average of the policy, when the method keeps one
        self.reset_iterations: list[int] = []  # iterations after which the online policy was reset

    def sampling_processor(self, prompts):
        """A logits processor restricting rollout sampling (NLPO); None: sample the policy as it is."""
        return None

    def action_mask(self, rollout) -> torch.Tensor | None:
        """[B, T, V] tokens the PPO ratio may assign probability to (NLPO); None: all of them."""
        return None

    def after_update(self, unit: str) -> None:
        """Called after every optimizer step ("opt_step"), PPO epoch ("ppo_epoch") and iteration ("iteration")."""

    def maybe_reset(self, completed: int) -> bool:
        """Called after each iteration with the number of iterations completed (1-based); returns whether the
        online policy was reset."""
        return False

    def state_dict(self) -> dict:
        """The method's own training state for an exact resume (the online policy and critic are the trainer's)."""
        return {"reset_iterations": list(self.reset_iterations)}

    def load_state_dict(self, state: dict) -> None:
        self.reset_iterations = list(state["reset_iterations"])
