"""KL penalty controllers and KL measurements between two policies."""

import torch
import torch.nn.functional as F


class FixedKLController:
    def __init__(self, coef: float):
        self.coef = coef

    def update(self, observed_kl: float) -> None:
        pass


class AdaptiveKLController:
    """beta <- beta * (1 + rate * clip((KL - target) / target, -0.2, 0.2)), once per rollout. RL4LMs uses rate 0.1;
    Ziegler et al. (2019) and TRL use rate = samples per rollout / horizon."""

    def __init__(self, coef: float, target: float, rate: float = 0.1):
        self.coef, self.target, self.rate = coef, target, rate

    def update(self, observed_kl: float) -> None:
        error = min(max((observed_kl - self.target) / self.target, -0.2), 0.2)
        self.coef *= 1 + self.rate * error


def make_kl_controller(kind: str, coef: float, target: float, horizon: int = 0, batch_size: int = 1):
    if kind == "fixed":
        return FixedKLController(coef)
    return AdaptiveKLController(coef, target, batch_size / horizon if horizon else 0.1)


def exact_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Per-position KL(pi || pi_ref) summed over the full vocabulary: [..., V] -> [...]. Never negative."""
    logp = F.log_softmax(logits.float(), dim=-1)
    ref_logp = F.log_softmax(ref_logits.float(), dim=-1)
    return (logp.exp() * (logp - ref_logp)).sum(-1).clamp(min=0.0)
