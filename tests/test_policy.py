"""Rollout sampling and the log-probs the PPO ratio is built from."""

import torch

from erbench.rl.policy import Critic, Rollout, response_logits, sample_responses, token_logprobs


def prompts():
    ids = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 10]])  # the first row is left-padded with token 0
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    return ids, mask


def ranks_of_sampled(model, rollout):
    logits = response_logits(model, rollout)
    sampled = torch.gather(logits, 2, rollout.response_ids.unsqueeze(-1))
    return (logits > sampled).sum(-1)  # 0 = the most likely token


def test_samples_have_exact_length_never_the_banned_token_and_respect_top_k(tiny_lm):
    ids, mask = prompts()
    torch.manual_seed(0)
    response = sample_responses(tiny_lm, ids.repeat(8, 1), mask.repeat(8, 1), 12, top_k=3, pad_token_id=0, banned_token_ids=[0])
    assert response.shape == (16, 12)
    assert not (response == 0).any()
    rollout = Rollout(ids.repeat(8, 1), mask.repeat(8, 1), response)
    assert ranks_of_sampled(tiny_lm, rollout).max() < 4  # top-3 (+1 for the banned token that may outrank)


def test_top_k_zero_samples_the_full_distribution(tiny_lm):
    ids, mask = prompts()
    torch.manual_seed(0)
    response = sample_responses(tiny_lm, ids.repeat(32, 1), mask.repeat(32, 1), 12, top_k=0, pad_token_id=0, banned_token_ids=[])
    assert ranks_of_sampled(tiny_lm, Rollout(ids.repeat(32, 1), mask.repeat(32, 1), response)).max() > 50


def test_left_padding_does_not_change_log_probs(tiny_lm):
    """A padded prompt scores its response exactly as the same prompt without padding."""
    response = torch.tensor([[11, 12, 13]])
    padded = Rollout(torch.tensor([[0, 0, 5, 6]]), torch.tensor([[0, 0, 1, 1]]), response)
    bare = Rollout(torch.tensor([[5, 6]]), torch.tensor([[1, 1]]), response)
    lp_padded = token_logprobs(response_logits(tiny_lm, padded), response)
    lp_bare = token_logprobs(response_logits(tiny_lm, bare), response)
    torch.testing.assert_close(lp_padded, lp_bare, atol=1e-5, rtol=1e-5)
    assert Critic(tiny_lm)(padded).shape == (1, 3)
