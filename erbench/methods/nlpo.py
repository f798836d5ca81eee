"""NLPO (Ramamurthy et al. 2022, RL4LMs): PPO whose actions are restricted to a masking policy's top-p set.

The masking policy is a copy of the online policy refreshed every `mask_update_every` iterations.
Rollouts sample only tokens inside its top-p set (a logits processor on generate), and the PPO
ratio uses the policy's distribution renormalised over the same set, so masked tokens have
probability zero. Everything else (KL reference, optional EMA/resets) is inherited.
"""

import inspect
from dataclasses import dataclass

import torch
from transformers import LogitsProcessor

from erbench.config import require
from erbench.methods.base import frozen_copy
from erbench.methods.elastic_reset import ElasticReset, ElasticResetConfig
from erbench.rl.policy import Rollout


def top_p_mask(logits: torch.Tensor, top_p: float, min_tokens: int) -> torch.Tensor:
    """Boolean [..., V]: the smallest set of most likely tokens whose probability reaches top_p, at least min_tokens."""
    if top_p >= 1.0:
        return torch.ones_like(logits, dtype=torch.bool)
    sorted_probs, order = logits.float().softmax(-1).sort(-1, descending=True)
    keep_sorted = (sorted_probs.cumsum(-1) - sorted_probs) < top_p  # up to and including the token that crosses top_p
    keep_sorted[..., :min_tokens] = True
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


class MaskedSampling(LogitsProcessor):
    """Sets the scores of tokens outside the masking policy's top-p set to -inf at every generation step.
    One instance serves one generate() call: it keeps the masking policy's KV cache between steps."""

    def __init__(self, mask_model, prompt_mask: torch.Tensor, top_p: float, min_tokens: int):
        self.mask_model, self.prompt_mask, self.top_p, self.min_tokens = mask_model, prompt_mask, top_p, min_tokens
        self.cache = None
        # transformers renamed `past_key_values` to `cache` (5.2x); accept both.
        self.cache_argument = "cache" if "cache" in inspect.signature(mask_model.forward).parameters else "past_key_values"

    @torch.no_grad()
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids.shape[1] - self.prompt_mask.shape[1]
        attention = torch.cat([self.prompt_mask, self.prompt_mask.new_ones(len(input_ids), generated)], dim=1)
        position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
        new = slice(None) if self.cache is None else slice(-1, None)  # the whole prompt first, then one token a step
        out = self.mask_model(input_ids=input_ids[:, new], attention_mask=attention, position_ids=position_ids[:, new],
                              use_cache=True, **{self.cache_argument: self.cache})
        self.cache = out["cache"] if "cache" in out else out["past_key_values"]
        return scores.masked_fill(~top_p_mask(out.logits[:, -1], self.top_p, self.min_tokens), float("-inf"))


@dataclass(frozen=True)
class NlpoConfig(ElasticResetConfig):
    mask_top_p: float = 0.9  # act only within the masking policy's top-p tokens (RL4LMs top_mask)
    mask_min_tokens: int = 100  # the mask keeps at least this many tokens (RL4LMs min_tokens_to_keep)
    mask_update_every: int = 5  # refresh the masking policy every k iterations (target_update_iterations)

    def __post_init__(self):
        super().__post_init__()
        require(0 < self.mask_top_p <= 1, "method.mask_top_p", self.mask_top_p, "in (0, 1]")
        require(self.mask_min_tokens >= 1, "method.mask_min_tokens", self.mask_min_tokens, "an integer >= 1")
        require(self.mask_update_every >= 1, "method.mask_update_every", self.mask_update_every, "an integer >= 1")

    def knobs(self) -> dict:
        return {**super().knobs(), "mask_top_p": self.mask_top_p, "mask_min_tokens": self.mask_min_tokens,
                "mask_update_every": self.mask_update_every}


class Nlpo(ElasticReset):
    def __init__(self, cfg, policy, init_model, critic, optimizer):
        super().__init__(cfg, policy, init_model, critic, optimizer)
        self.mask_model = frozen_copy(policy)
        self.iterations_done = 0
        self.mask_updates: list[int] = []

    def sampling_processor(self, prompts: tuple[torch.Tensor, torch.Tensor]) -> MaskedSampling:
        """Causal-LM tasks only: `prompts` = (left-padded prompt ids, their attention mask)."""
        _, prompt_mask = prompts
        return MaskedSampling(self.mask_model, prompt_mask, self.cfg.mask_top_p, self.cfg.mask_min_tokens)

    @torch.no_grad()
    def action_mask(self, rollout: Rollout) -> torch.Tensor:
        """[B, T, V] tokens allowed at each response position; the sampled token is always allowed (numerical
        differences between step-wise and teacher-forced logits must never give it probability zero)."""
        mask = top_p_mask(rollout.logits(self.mask_model), self.cfg.mask_top_p, self.cfg.mask_min_tokens)
        return mask.scatter_(2, rollout.response_ids.unsqueeze(-1), True)

    @torch.no_grad()
    def after_update(self, unit: str) -> None:
        super().after_update(unit)
        if unit == "iteration":
            self.iterations_done += 1
            if self.iterations_done % self.cfg.mask_update_every == 0:
                torch._foreach_copy_(list(self.mask_model.parameters()), [p.detach() for p in self.online_model.parameters()])
                self.mask_updates.append(self.iterations_done)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "mask_model": self.mask_model.state_dict(), "iterations_done": self.iterations_done,
                "mask_updates": list(self.mask_updates)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.mask_model.load_state_dict(state["mask_model"])
        self.iterations_done, self.mask_updates = state["iterations_done"], list(state["mask_updates"])
