"""Reference reset (ProRL, Liu et al. 2025; Ackermann, Noukhovitch et al., "Gradient Regularization Mitigates
Reward Hacking in RLHF and RLVR"): every n iterations the KL reference <- the current policy. Elastic Reset
resets the policy and keeps the anchor; this keeps the policy and moves the anchor.

Reference mixing (`ref-mix`; TR-DPO's soft update, Gorbatovski et al. 2024, "Learn Your Reference Model for Real
Good Alignment"): every tau iterations the reference <- alpha * policy + (1 - alpha) * reference. alpha = 1 is
ref-reset; tau = 1 is a KL towards an EMA of the policy of decay 1 - alpha (ema-ref).

Written only through the public method API (erbench.methods.base), as a plugin's method would be.
"""

from dataclasses import dataclass

import torch

from erbench.config import require
from erbench.methods.base import Method, frozen_copy, is_due


@dataclass(frozen=True)
class ReferenceResetConfig:
    reset_every: int = 17  # iterations between reference resets (the scale's Elastic Reset period by default)
    first_reset_after: int | None = None  # iterations completed at the first reference reset; None = reset_every

    def __post_init__(self):
        require(self.reset_every is not None and self.reset_every >= 1, "method.reset_every", self.reset_every,
                "an integer >= 1 (ref-reset without resets is ppo)")
        if self.first_reset_after is not None:
            require(self.first_reset_after >= 1, "method.first_reset_after", self.first_reset_after, ">= 1, or none")


class ReferenceReset(Method):
    def __init__(self, cfg: ReferenceResetConfig, policy, init_model, critic, optimizer):
        super().__init__(cfg, policy, init_model, critic, optimizer)
        self.reference_model = frozen_copy(policy)  # theta0 until the first reset
        self.reference = [q for p, q in zip(policy.parameters(), self.reference_model.parameters()) if p.requires_grad]
        self.reference_resets: list[int] = []

    @torch.no_grad()
    def maybe_reset(self, completed: int) -> bool:
        if is_due(completed, self.cfg.reset_every, self.cfg.first_reset_after):
            self.update_reference()
            self.reference_resets.append(completed)
        return False  # the online policy itself never resets

    def update_reference(self) -> None:
        torch._foreach_copy_(self.reference, self.online)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "reference": self.reference_model.state_dict(),
                "reference_resets": list(self.reference_resets)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.reference_model.load_state_dict(state["reference"])
        self.reference_resets = list(state["reference_resets"])


@dataclass(frozen=True)
class ReferenceMixConfig:
    reset_every: int = 10  # tau: iterations between reference updates (TR-DPO counts optimizer steps; the clock here is iterations)
    mix_alpha: float = 0.6  # alpha: the policy's weight in the new reference (TR-DPO's soft update sweeps 0.1 - 0.8)
    first_reset_after: int | None = None  # iterations completed at the first update; None = reset_every

    def __post_init__(self):
        ReferenceResetConfig.__post_init__(self)
        require(0 < self.mix_alpha <= 1, "method.mix_alpha", self.mix_alpha, "in (0, 1] (1 is ref-reset)")


class ReferenceMix(ReferenceReset):
    """ref-reset with a soft update: the reference moves `mix_alpha` of the way to the policy."""

    def update_reference(self) -> None:
        torch._foreach_lerp_(self.reference, self.online, self.cfg.mix_alpha)
