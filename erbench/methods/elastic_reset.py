"""The Elastic Reset family as one hook on the PPO trainer.

  ppo        no EMA, KL towards theta0
  reset      online <- theta0 every n (EMA decay 1.0: the EMA *is* theta0)
  reset-ema  online <- EMA every n; the EMA keeps tracking
  ema-ref    KL towards the EMA; no resets
  elastic    every n: online <- EMA, then EMA <- theta0

theta0 (the frozen initial model) is also the KL reference when `kl_reference = "init"`, so the
family costs at most one extra copy of the policy (the EMA), updated with one fused lerp.
"""

import copy

import torch
from torch import nn

from erbench.config import MethodConfig


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of the model's trainable parameters; frozen ones (a LoRA policy's base) are shared, not copied."""
    shared = {id(p): p for p in model.parameters() if not p.requires_grad}
    clone = copy.deepcopy(model, memo=shared).eval()
    clone.requires_grad_(False)
    return clone


class ElasticReset:
    def __init__(self, cfg: MethodConfig, policy: nn.Module, init_model: nn.Module, critic: nn.Module,
                 optimizer: torch.optim.Optimizer):
        self.cfg = cfg
        self.optimizer = optimizer
        self.critic = critic
        self.online_model = policy
        self.online = [p for p in policy.parameters() if p.requires_grad]
        tracked = {id(p) for p in self.online}
        self.init_model = init_model
        self.init = [q for p, q in zip(policy.parameters(), init_model.parameters()) if id(p) in tracked]
        self.ema_model: nn.Module | None = None
        if cfg.uses_ema:
            # With decay 1.0 the EMA never moves from theta0, so it can share theta0's memory. Otherwise it copies
            # the policy, which equals theta0 here, so that only its trainable parameters are new memory.
            self.ema_model = init_model if cfg.ema_decay == 1.0 else frozen_copy(policy)
            self.ema = [q for p, q in zip(policy.parameters(), self.ema_model.parameters()) if id(p) in tracked]
        self.reference_model = self.ema_model if cfg.kl_reference == "ema" else init_model
        self.critic_init = [p.detach().clone() for p in critic.parameters()] if cfg.reset_critic else None
        self.reset_iterations: list[int] = []

    def sampling_processor(self, prompts):
        """A logits processor restricting rollout sampling (NLPO); None: sample the policy as it is."""
        return None

    def action_mask(self, rollout) -> torch.Tensor | None:
        """[B, T, V] tokens the PPO ratio may assign probability to (NLPO); None: all of them."""
        return None

    @torch.no_grad()
    def after_update(self, unit: str) -> None:
        """Called after every optimizer step ("opt_step"), PPO epoch ("ppo_epoch") and iteration ("iteration")."""
        if self.ema_model is not None and unit == self.cfg.ema_update and self.cfg.ema_decay < 1.0:
            torch._foreach_lerp_(self.ema, self.online, 1.0 - self.cfg.ema_decay)

    def is_reset_due(self, completed: int) -> bool:
        """Whether to reset once `completed` iterations are done (1-based, like the eval curve's x axis)."""
        every = self.cfg.reset_every
        if every is None:
            return False
        first = every if self.cfg.first_reset_after is None else self.cfg.first_reset_after
        return completed >= first and (completed - first) % every == 0

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
        return {"ema": self.ema_model.state_dict() if separate_ema else None, "reset_iterations": list(self.reset_iterations)}

    def load_state_dict(self, state: dict) -> None:
        if state["ema"] is not None:
            self.ema_model.load_state_dict(state["ema"])
        self.reset_iterations = list(state["reset_iterations"])
