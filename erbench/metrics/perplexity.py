"""Perplexity of a causal LM on a token stream, the way the paper's RL4LMs fork computes it.

Texts are joined with "\\n\\n" and tokenized once; windows of the model's context slide with a
stride of half of it; each window scores only the tokens not scored by the previous one, with
the rest of the window as context. ppl = exp(total NLL / scored tokens), or with `window_mean` exp(mean over
windows of each window's mean NLL), as the StackLLaMA code (HF's perplexity guide) computes it.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def sliding_windows(num_tokens: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first_scored) per window; every token after the first is scored exactly once."""
    windows, previous_end = [], 0
    for begin in range(0, num_tokens, stride):
        end = min(begin + context, num_tokens)
        windows.append((begin, end, max(previous_end, begin + 1)))
        previous_end = end
        if end == num_tokens:
            break
    return windows


@torch.no_grad()
def perplexity(model: nn.Module, token_ids: list[int], context: int, stride: int | None = None,
               batch_size: int = 8, device: torch.device | str = "cpu", window_mean: bool = False) -> float:
    stride = stride or context // 2
    tokens = torch.tensor(token_ids, dtype=torch.long)
    windows = sliding_windows(len(tokens), context, stride)
    was_training = model.training
    model.eval()
    total_nll, scored, window_nlls = 0.0, 0, []
    # Full-length windows are batched; the short tail window (if any) goes alone.
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        for group in ([w for w in chunk if w[1] - w[0] == context], [w for w in chunk if w[1] - w[0] != context]):
            if not group:
                continue
            for (begin, end, first), nll in zip(group, _window_nll(model, tokens, group, device)):
                window = nll[first - begin - 1 : end - begin - 1].sum().item()
                total_nll += window
                scored += end - first
                window_nlls.append(window / max(end - first, 1))
    model.train(was_training)
    if window_mean:
        return math.exp(sum(window_nlls) / max(len(window_nlls), 1))
    return math.exp(total_nll / max(scored, 1))


def _window_nll(model, tokens, group, device) -> torch.Tensor:
    """Per-position NLL of token i+1 given tokens begin..i, for each window in the group: [G, L-1], NaN before
    the earliest position a window of the group scores (the LM head runs only from there)."""
    ids = torch.stack([tokens[b:e] for b, e, _ in group]).to(device)
    length = ids.shape[1]
    keep = max(e - first for _, e, first in group) + 1  # the logits predicting scored tokens, and the last one
    logits = model(input_ids=ids, logits_to_keep=keep).logits[:, :-1].float()
    targets = ids[:, length - keep + 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    unscored = torch.full((len(group), length - keep), float("nan"))
    return torch.cat([unscored, nll.view(len(group), keep - 1).cpu()], dim=1)
