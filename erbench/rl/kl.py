"""KL penalty controllers and KL measurements between two policies."""

import torch
import torch.nn.functional as F


class FixedKLController:
    def __init__(self, coef: float):
        self.coef = coef

    def update(self, observed_kl: float) -> None:
        pass


class AdaptiveKLController:
    """RL4LMs' controller: beta <- beta * (1 + 0.1 * clip((KL - target) / target, -0.2, 0.2)), once per rollout."""

    def __init__(self, coef: float, target: float, rate: float = 0.1):
        self.coef, self.target, self.rate = coef, target, rate

    def update(self, observed_kl: float) -> None:
        error = min(max((observed_kl - self.target) / self.target, -0.2), 0.2)
        self.coef *= 1 + self.rate * error


def make_kl_controller(kind: str, coef: float, target: float):
    return AdaptiveKLController(coef, target) if kind == "adaptive" else FixedKLController(coef)


def exact_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Per-position KL(pi || pi_ref) summed over the full vocabulary: [..., V] -> [...]. Never negative."""
    logp = F.log_softmax(logits.float(), dim=-1)
    ref_logp = F.log_softmax(ref_logits.float(), dim=-1)
    return (logp.exp() * (logp - ref_logp)).sum(-1).clamp(min=0.0)
