"""EMA and reset arithmetic of the Elastic Reset family (paper.md §1.5's unit tests)."""

import pytest
import torch
from torch import nn

from erbench.methods.base import frozen_copy
from erbench.methods.elastic_reset import ElasticReset, ElasticResetConfig
from erbench.registry import registry


def setup(**knobs):
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    init_model = frozen_copy(policy)
    critic = nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(list(policy.parameters()) + list(critic.parameters()), lr=0.1)
    hook = ElasticReset(ElasticResetConfig(**knobs), policy, init_model, critic, optimizer)
    return policy, init_model, critic, optimizer, hook


def preset(method):
    """The method's preset as its config takes it ("none" in TOML is None)."""
    return {k: None if v == "none" else v for k, v in registry().method(method).preset["method"].items()}


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def take_optimizer_step(policy, critic, optimizer):
    loss = policy(torch.ones(2, 4)).pow(2).sum() + critic(torch.ones(2, 4)).pow(2).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_weight_left_on_theta0_after_k_updates_is_decay_to_the_k():
    policy, init_model, _, _, hook = setup(ema_decay=0.9, reset_every=100, kl_reference="ema")
    theta0 = params(init_model)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(1.0)  # online = theta0 + 1, held fixed
    for _ in range(7):
        hook.after_update("iteration")
    for ema, start in zip(hook.ema, theta0):
        # ema = 0.9^7 * theta0 + (1 - 0.9^7) * (theta0 + 1)
        torch.testing.assert_close(ema, start + (1 - 0.9**7))


def test_paper_weight_on_theta0_at_the_first_reset():
    """d=0.995, 17 per-iteration updates: the EMA keeps 0.995^17 = 0.918 of theta0 (paper.md §1.5)."""
    assert 0.995**17 == pytest.approx(0.918, abs=1e-3)


def test_elastic_reset_sets_online_to_the_ema_then_the_ema_to_theta0():
    policy, init_model, critic, optimizer, hook = setup(ema_decay=0.5, reset_every=2, kl_reference="ema")
    theta0 = params(init_model)
    for _ in range(2):
        take_optimizer_step(policy, critic, optimizer)
        hook.after_update("iteration")
    ema_before = [e.clone() for e in hook.ema]
    critic_before = params(critic)
    optimizer_state_before = {id(p): {k: v.clone() for k, v in s.items()} for p, s in optimizer.state.items()}
    assert not hook.maybe_reset(1)
    assert hook.maybe_reset(2)
    for online, ema, start, expected in zip(policy.parameters(), hook.ema, theta0, ema_before):
        torch.testing.assert_close(online.detach(), expected)
        torch.testing.assert_close(ema, start)
    for p, before in zip(critic.parameters(), critic_before):
        torch.testing.assert_close(p.detach(), before)  # critic untouched
    for p, state in optimizer.state.items():
        for key, value in state.items():
            torch.testing.assert_close(value, optimizer_state_before[id(p)][key])  # optimizer untouched
    assert hook.reset_iterations == [2]


def test_reset_to_ema_keeps_the_ema():
    policy, _, critic, optimizer, hook = setup(ema_decay=0.5, reset_every=1, reset_ema=False)
    take_optimizer_step(policy, critic, optimizer)
    hook.after_update("iteration")
    ema_before = [e.clone() for e in hook.ema]
    hook.maybe_reset(1)
    for online, ema, expected in zip(policy.parameters(), hook.ema, ema_before):
        torch.testing.assert_close(online.detach(), expected)
        torch.testing.assert_close(ema, expected)


def test_decay_one_resets_exactly_to_theta0_and_shares_its_memory():
    policy, init_model, critic, optimizer, hook = setup(ema_decay=1.0, reset_every=3, kl_reference="ema")
    assert hook.ema_model is init_model and hook.reference_model is init_model
    theta0 = params(init_model)
    for iteration in range(3):
        take_optimizer_step(policy, critic, optimizer)
        hook.after_update("iteration")
        hook.maybe_reset(iteration + 1)
    for online, start in zip(policy.parameters(), theta0):
        assert torch.equal(online.detach(), start)


def test_reset_critic_and_optimizer_only_when_asked():
    policy, _, critic, optimizer, hook = setup(ema_decay=0.5, reset_every=1, reset_critic=True, reset_optimizer=True)
    critic_start = params(critic)
    take_optimizer_step(policy, critic, optimizer)
    hook.maybe_reset(1)
    for p, start in zip(critic.parameters(), critic_start):
        torch.testing.assert_close(p.detach(), start)
    assert all(p not in optimizer.state for p in policy.parameters())  # policy's Adam moments cleared
    assert all(p in optimizer.state for p in critic.parameters())  # the critic's are kept


def test_ema_updates_only_at_its_granularity():
    policy, _, _, _, hook = setup(ema_decay=0.5, kl_reference="ema", ema_update="ppo_epoch")
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(1.0)
    before = [e.clone() for e in hook.ema]
    hook.after_update("opt_step")
    hook.after_update("iteration")
    assert all(torch.equal(a, b) for a, b in zip(hook.ema, before))
    hook.after_update("ppo_epoch")
    assert not any(torch.equal(a, b) for a, b in zip(hook.ema, before))


@pytest.mark.parametrize("first, expected", [(None, [17, 34]), (1, [1, 18, 35])])
def test_reset_schedule(first, expected):
    """RL4LMs fires on `epoch % 17 == 0` for 0-based epochs: after the 1st, 18th and 35th iterations."""
    *_, hook = setup(reset_every=17, first_reset_after=first)
    assert [done for done in range(1, 51) if hook.is_reset_due(done)] == expected


def test_kl_reference_and_memory_per_method():
    *_, ppo = setup(**preset("ppo"))
    assert ppo.ema_model is None and ppo.reference_model is ppo.init_model
    *_, ema_ref = setup(**preset("ema-ref"))
    assert ema_ref.reference_model is ema_ref.ema_model and ema_ref.ema_model is not ema_ref.init_model
    assert not any(ema_ref.is_reset_due(done) for done in range(1, 101))
