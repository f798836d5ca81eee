"""NLPO masking, EMA evaluation and weight interpolation (issue: more methods)."""

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import DATA_DIR, FAST, erbench, erbench_in_process, sets
from erbench.methods.base import frozen_copy
from erbench.methods.nlpo import Nlpo, NlpoConfig, top_p_mask
from erbench.rl.policy import Critic, Rollout, sample_responses, token_logprobs

NO_RESETS = [*FAST, "method.reset_every=none"]


def test_top_p_mask_keeps_the_smallest_set_reaching_p():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    assert top_p_mask(logits, 0.7, 1).tolist() == [True, True, False, False]
    assert top_p_mask(logits, 0.7, 3).tolist() == [True, True, True, False]
    assert top_p_mask(logits, 1.0, 1).all()
    assert top_p_mask(logits[[3, 1, 0, 2]], 0.4, 1).tolist() == [False, False, True, False]


def nlpo_hook(tiny_lm, **knobs):
    critic = Critic(tiny_lm)
    optimizer = torch.optim.AdamW(list(tiny_lm.parameters()) + list(critic.parameters()), lr=1e-3)
    return Nlpo(NlpoConfig(kl_reference="init", **knobs), tiny_lm, frozen_copy(tiny_lm), critic, optimizer)


def test_masked_tokens_are_never_sampled_and_get_zero_probability(tiny_lm):
    hook = nlpo_hook(tiny_lm, mask_top_p=0.3, mask_min_tokens=2)
    ids, mask = torch.tensor([[0, 5, 6], [7, 8, 9]]).repeat(8, 1), torch.tensor([[0, 1, 1], [1, 1, 1]]).repeat(8, 1)
    torch.manual_seed(0)
    response = sample_responses(tiny_lm, ids, mask, 10, top_k=0, pad_token_id=0, banned_token_ids=[],
                                logits_processor=hook.sampling_processor((ids, mask)))
    rollout = Rollout(ids, mask, response)
    inside = top_p_mask(rollout.logits(hook.mask_model), 0.3, 2)
    assert torch.gather(inside, 2, response.unsqueeze(-1)).all()  # every sampled token is in the mask
    assert inside.sum(-1).float().mean() < 64 / 2  # and the mask really excludes tokens
    allowed = hook.action_mask(rollout)
    logits = rollout.logits(tiny_lm)
    probs = F.softmax(logits.masked_fill(~allowed, float("-inf")), -1)
    assert probs[~allowed].abs().max() == 0 and torch.allclose(probs.sum(-1), torch.ones(16, 10))
    assert torch.isfinite(token_logprobs(logits, response, allowed)).all()


def test_masking_policy_changes_only_at_its_update_iterations(tiny_lm):
    hook = nlpo_hook(tiny_lm, mask_update_every=3)
    start = [p.clone() for p in hook.mask_model.parameters()]
    for done in range(1, 7):
        with torch.no_grad():
            for p in tiny_lm.parameters():
                p.add_(0.01)
        hook.after_update("opt_step")
        hook.after_update("iteration")
        current = list(hook.mask_model.parameters())
        if done % 3 == 0:
            assert all(torch.equal(m, p) for m, p in zip(current, tiny_lm.parameters()))
            start = [p.clone() for p in current]
        else:
            assert all(torch.equal(m, s) for m, s in zip(current, start))
    assert hook.mask_updates == [3, 6]


def run(tmp_path, cache_dir, method, *extra, flags=()):
    out = tmp_path / method
    result = erbench("run", "imdb", "--method", method, "--data-dir", str(DATA_DIR), "--out", str(out), *flags,
                     *sets(*NO_RESETS, *extra), cache_dir=cache_dir)
    assert result.returncode == 0, result.stderr
    [path] = out.glob("*.json")
    return path, json.loads(path.read_text())


def test_nlpo_with_top_p_one_is_ppo_step_for_step(tmp_path, cache_dir):
    _, nlpo = run(tmp_path, cache_dir, "nlpo", "method.mask_top_p=1.0")
    _, ppo = run(tmp_path, cache_dir, "ppo")
    assert nlpo["train_curve"] == ppo["train_curve"]
    assert nlpo["eval_curve"] == ppo["eval_curve"] and nlpo["final"] == ppo["final"]


@pytest.fixture(scope="module")
def ema_runs(tmp_path_factory, cache_dir):
    folder = tmp_path_factory.mktemp("ema")
    return run(folder, cache_dir, "ema-ref", flags=["--eval-ema"]), run(folder / "plain", cache_dir, "ema-ref")


def test_evaluating_the_ema_does_not_change_training(ema_runs):
    (_, with_ema), (_, without) = ema_runs
    assert with_ema["train_curve"] == without["train_curve"]
    assert with_ema["eval_curve"] == without["eval_curve"] and with_ema["final"] == without["final"]
    assert [p["iteration"] for p in with_ema["ema_eval_curve"]] == [p["iteration"] for p in with_ema["eval_curve"]]
    assert with_ema["ema_eval_curve"][-1]["kl_to_init"] < with_ema["eval_curve"][-1]["kl_to_init"]  # the EMA lags
    assert "ema_eval_curve" not in without


def test_interpolation_endpoints_reproduce_theta0_and_theta(ema_runs, tmp_path, cache_dir):
    (path, record), _ = ema_runs
    result = erbench("interpolate", str(path), "--alphas", "0,0.5,1", "--data-dir", str(DATA_DIR), cache_dir=cache_dir)
    assert result.returncode == 0, result.stderr
    stored = json.loads(path.read_text())
    assert stored["eval_curve"] == record["eval_curve"]  # the rest of the record is untouched
    policy, ema = stored["interpolation"]["policy"], stored["interpolation"]["ema"]
    assert [p["alpha"] for p in policy] == [0.0, 0.5, 1.0]
    metrics = lambda point: {k: v for k, v in point.items() if k not in ("alpha", "iteration", "resets_so_far")}  # noqa: E731
    assert metrics(policy[0]) == metrics(record["eval_curve"][0])  # theta0: the initial evaluation
    assert metrics(policy[-1]) == metrics(record["final"]["val"])  # theta: the final evaluation
    assert metrics(ema[-1]) == metrics(record["ema_eval_curve"][-1])
    assert metrics(ema[0]) == metrics(policy[0])


def test_interpolate_refuses_bad_input(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    result = erbench_in_process("interpolate", str(tmp_path / "x.json"), cache_dir=tmp_path)
    assert result.returncode == 2 and "not an erbench.run/1 run record" in result.stderr
    result = erbench_in_process("interpolate", str(tmp_path / "x.json"), "--alphas", "0,2", cache_dir=tmp_path)
    assert result.returncode == 2
