"""The Elastic Reset family as one hook on the PPO trainer.

  ppo        no EMA, KL towards theta0
  reset      online <- theta0 every n (EMA decay 1.0: the EMA *is* theta0)
  reset-ema  online <- EMA every n; the EMA keeps tracking
  ema-ref    KL towards the EMA; no resets
  elastic    every n: online <- EMA, then EMA <- theta0

theta0 (the frozen initial model) is also the KL reference when `kl_reference = "init"`, so the
family costs at most one extra copy of the policy (the EMA), updated with one fused lerp.
"""

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from erbench.config import require
from erbench.methods.base import Method, frozen_copy, is_due


@dataclass(frozen=True)
class ElasticResetConfig:
    """Knobs of the Elastic Reset family; the paper's methods are presets of these (tasks/methods.toml)."""

    ema_decay: float = 0.995  # eta: ema <- eta*ema + (1-eta)*theta; 1.0 keeps the EMA at theta0
    reset_every: int | None = None  # reset period in iterations; None = never reset
    first_reset_after: int | None = None  # iterations completed at the first reset; None = reset_every
    reset_ema: bool = True  # after online <- EMA, also EMA <- theta0 (Elastic Reset); False = reset-to-EMA
    kl_reference: Literal["init", "ema"] = "init"  # the model the KL penalty pulls towards
    ema_update: Literal["opt_step", "ppo_epoch", "iteration"] = "iteration"  # when the EMA is updated
    reset_critic: bool = False  # also reset the critic to its initial weights at each reset
    reset_optimizer: bool = False  # also clear AdamW state of the policy parameters (never the critic's)

    def __post_init__(self):
        require(0 <= self.ema_decay <= 1, "method.ema_decay", self.ema_decay, "in [0, 1]")
        if self.reset_every is not None:
            require(self.reset_every >= 1, "method.reset_every", self.reset_every, "an integer >= 1, or none to never reset")
        if self.first_reset_after is not None:
            require(self.first_reset_after >= 1, "method.first_reset_after", self.first_reset_after, ">= 1, or none")

    def knobs(self) -> dict:
        """The settings that shape this member of the family (what `erbench run` shows before it trains)."""
        knobs = {"kl_reference": self.kl_reference}
        if self.uses_ema:
            knobs |= {"ema_decay": self.ema_decay, "ema_update": self.ema_update}
        if self.reset_every is not None:
            knobs |= {"reset_every": self.reset_every, "first_reset_after": self.first_reset_after or self.reset_every,
                      "reset_ema": self.reset_ema, "reset_critic": self.reset_critic, "reset_optimizer": self.reset_optimizer}
        return knobs

    @property
    def uses_ema(self) -> bool:
        """An EMA is kept when the policy resets to it or the KL pulls towards it."""
        resets_to_ema = self.reset_every is not None
        return resets_to_ema or self.kl_reference == "ema"


class ElasticReset(Method):
    def __init__(self, cfg: ElasticResetConfig, policy: nn.Module, init_model: nn.Module, critic: nn.Module,
                 optimizer: torch.optim.Optimizer):
        super().__init__(cfg, policy, init_model, critic, optimizer)
        tracked = {id(p) for p in self.online}
        if cfg.uses_ema:
            # With decay 1.0 the EMA never moves from theta0, so it can share theta0's memory. Otherwise it copies
            # the policy, which equals theta0 here, so that only its trainable parameters are new memory.
            self.ema_model = init_model if cfg.ema_decay == 1.0 else frozen_copy(policy)
            self.ema = [q for p, q in zip(policy.parameters(), self.ema_model.parameters()) if id(p) in tracked]
        self.reference_model = self.ema_model if cfg.kl_reference == "ema" else init_model
        self.critic_init = [p.detach().clone() for p in critic.parameters()] if cfg.reset_critic else None

    @torch.no_grad()
    def after_update(self, unit: str) -> None:
        """Called after every optimizer step ("opt_step"), PPO epoch ("ppo_epoch") and iteration ("iteration")."""
        if self.ema_model is not None and unit == self.cfg.ema_update and self.cfg.ema_decay < 1.0:
            torch._foreach_lerp_(self.ema, self.online, 1.0 - self.cfg.ema_decay)

    def is_reset_due(self, completed: int) -> bool:
        """Whether to reset once `completed` iterations are done (1-based, like the eval curve's x axis)."""
        return is_due(completed, self.cfg.reset_every, self.cfg.first_reset_after)

    @torch.no_grad()
    def maybe_reset(self, completed: int) -> bool:
        """Called after each iteration with the number of iterations completed; returns whether it reset."""
        if not self.is_reset_due(completed):
            return False
        torch._foreach_copy_(self.online, self.ema)
        if self.cfg.reset_ema and self.ema_model is not self.init_model:
            torch._foreach_copy_(self.ema, self.init)
        if self.critic_init is not None:
            torch._foreach_copy_(list(self.critic.parameters()), self.critic_init)
        if self.cfg.reset_optimizer:
            for p in self.online:
                self.optimizer.state.pop(p, None)
        self.reset_iterations.append(completed)
        return True

    def state_dict(self) -> dict:
        """The hook's own training state (the online policy and critic are the trainer's)."""
        separate_ema = self.ema_model is not None and self.ema_model is not self.init_model
        return {**super().state_dict(), "ema": self.ema_model.state_dict() if separate_ema else None}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if state["ema"] is not None:
            self.ema_model.load_state_dict(state["ema"])
