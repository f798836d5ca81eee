"""The trainer's arithmetic against direct computations."""

import math

import pytest
import torch
import torch.nn.functional as F

from erbench.metrics.diversity import distinct_n
from erbench.metrics.perplexity import perplexity, sliding_windows
from erbench.rl.kl import AdaptiveKLController, exact_kl
from erbench.rl.ppo import gae, masked_mean, token_rewards, whiten


def test_gae_matches_the_discounted_sum_of_td_errors():
    torch.manual_seed(0)
    rewards, values = torch.randn(3, 7), torch.randn(3, 7)
    gamma, lam = 0.9, 0.8
    advantages, returns = gae(rewards, values, gamma, lam)
    for b in range(3):
        for t in range(7):
            expected = 0.0
            for k in range(t, 7):
                next_value = values[b, k + 1].item() if k + 1 < 7 else 0.0
                delta = rewards[b, k].item() + gamma * next_value - values[b, k].item()
                expected += (gamma * lam) ** (k - t) * delta
            assert advantages[b, t].item() == pytest.approx(expected, abs=1e-5)
    torch.testing.assert_close(returns, advantages + values)


def test_gae_with_lambda_one_gives_monte_carlo_returns():
    rewards, values = torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.3, -0.2, 0.5]])
    _, returns = gae(rewards, values, gamma=1.0, lam=1.0)
    torch.testing.assert_close(returns, torch.ones(1, 3))


@pytest.mark.parametrize("kl", [0.0, 0.5, 0.9, 1.0, 1.1, 1.5, 3.0])
def test_adaptive_kl_controller_follows_its_formula(kl):
    controller = AdaptiveKLController(coef=0.01, target=1.0)
    controller.update(kl)
    expected = 0.01 * (1 + 0.1 * min(max((kl - 1.0) / 1.0, -0.2), 0.2))
    assert controller.coef == pytest.approx(expected)


def test_adaptive_kl_controller_moves_beta_towards_the_target():
    controller = AdaptiveKLController(coef=0.1, target=2.0)
    controller.update(4.0)
    assert controller.coef > 0.1
    controller = AdaptiveKLController(coef=0.1, target=2.0)
    controller.update(1.0)
    assert controller.coef < 0.1


def test_exact_kl_equals_a_brute_force_sum():
    torch.manual_seed(0)
    logits, ref_logits = torch.randn(2, 3, 11), torch.randn(2, 3, 11)
    kl = exact_kl(logits, ref_logits)
    for b in range(2):
        for t in range(3):
            p = F.softmax(logits[b, t], -1).tolist()
            q = F.softmax(ref_logits[b, t], -1).tolist()
            expected = sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))
            assert kl[b, t].item() == pytest.approx(expected, rel=1e-4)
    assert torch.all(exact_kl(logits, logits) < 1e-6)


def test_sliding_windows_score_every_token_once():
    for n, context, stride in [(10, 4, 2), (100, 32, 16), (33, 32, 16), (5, 8, 4), (64, 16, 12)]:
        scored = [k for _, end, first in sliding_windows(n, context, stride) for k in range(first, end)]
        assert scored == list(range(1, n))
        assert all(end - begin <= context for begin, end, _ in sliding_windows(n, context, stride))


def direct_nll(model, ids: list[int]) -> tuple[float, int]:
    """NLL of tokens 1.. of `ids` in one forward pass."""
    x = torch.tensor([ids])
    logits = model(input_ids=x).logits
    return F.cross_entropy(logits[0, :-1], x[0, 1:], reduction="sum").item(), len(ids) - 1


def test_perplexity_of_a_short_text_is_the_direct_one(tiny_lm):
    ids = torch.randint(0, 64, (20,), generator=torch.Generator().manual_seed(1)).tolist()
    nll, n = direct_nll(tiny_lm, ids)
    assert perplexity(tiny_lm, ids, context=32) == pytest.approx(math.exp(nll / n), rel=1e-5)


def test_perplexity_with_a_sliding_window_matches_a_per_window_loop(tiny_lm):
    """HF's striding recipe: each window scores the tokens past the previous window's end."""
    ids = torch.randint(0, 64, (101,), generator=torch.Generator().manual_seed(2)).tolist()
    context, stride = 32, 16
    total, count, previous_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + context, len(ids))
        window = torch.tensor([ids[begin:end]])
        logprobs = F.log_softmax(tiny_lm(input_ids=window).logits[0], -1)
        for position in range(max(previous_end, begin + 1), end):
            total -= logprobs[position - begin - 1, ids[position]].item()
            count += 1
        previous_end = end
        if end == len(ids):
            break
    assert count == len(ids) - 1
    assert perplexity(tiny_lm, ids, context=context, stride=stride, batch_size=3) == pytest.approx(math.exp(total / count), rel=1e-5)


def test_distinct_n():
    assert distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n([], 1) == 0.0


def test_a_response_that_ends_early_is_paid_at_its_last_token_and_padding_gets_no_advantage():
    kl = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0]])
    rewards = token_rewards(torch.tensor([1.0, 2.0]), kl * mask, 0.5, mask)
    assert torch.allclose(rewards, torch.tensor([[-0.05, -0.1, -0.15, 0.8], [-0.25, 1.7, 0.0, 0.0]]))
    values = torch.tensor([[0.3, 0.2, 0.1, 0.4], [0.5, 0.6, 9.0, 9.0]]) * mask
    advantages, returns = gae(rewards, values, 0.9, 0.8)
    assert torch.equal(advantages[1, 2:], torch.zeros(2)) and torch.equal(returns[1, 2:], torch.zeros(2))
    assert math.isclose(advantages[1, 1].item(), 1.7 - 0.6, rel_tol=1e-6)  # the episode ends at its last real token
    whitened = whiten(advantages, mask)
    assert torch.equal(whitened[1, 2:], torch.zeros(2))
    real = advantages[mask.bool()]
    assert torch.allclose(whitened[mask.bool()], (real - real.mean()) / real.std(), atol=1e-6)
    assert math.isclose(masked_mean(torch.tensor([[1.0, 3.0], [5.0, 100.0]]), torch.tensor([[1.0, 1], [1, 0]])).item(), 3.0)


def test_without_a_mask_the_reward_goes_to_the_last_token():
    rewards = token_rewards(torch.tensor([1.0]), torch.tensor([[0.2, 0.4]]), 0.5, None)
    assert torch.allclose(rewards, torch.tensor([[-0.1, 0.8]]))
