"""Rollout sampling, the log-probs the PPO ratio is built from, and the critics that read the policy's forward pass."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from erbench.models.seq2seq import Seq2SeqAgent
from erbench.rl.policy import (Critic, Rollout, Sampler, Seq2SeqCritic, Seq2SeqRollout, ValueHead, sample_responses,
                               token_logprobs)


def prompts():
    ids = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 10]])  # the first row is left-padded with token 0
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    return ids, mask


def ranks_of_sampled(model, rollout):
    logits = rollout.logits(model)
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
    lp_padded = token_logprobs(padded.logits(tiny_lm), response)
    lp_bare = token_logprobs(bare.logits(tiny_lm), response)
    torch.testing.assert_close(lp_padded, lp_bare, atol=1e-5, rtol=1e-5)
    assert Critic(tiny_lm)(padded, None).shape == (1, 3)


def test_one_policy_forward_gives_the_logits_and_the_hidden_states_a_value_head_reads(tiny_lm):
    """The hidden states are the trunk's (the LM head's input) at the response positions, the logits unchanged."""
    ids, mask = prompts()
    rollout = Rollout(ids, mask, torch.tensor([[11, 12, 13], [14, 15, 16]]))
    logits, hidden = rollout.forward(tiny_lm, hidden=True)
    assert torch.equal(logits, rollout.logits(tiny_lm)) and rollout.forward(tiny_lm)[1] is None
    trunk = tiny_lm.base_model(**rollout.model_inputs()).last_hidden_state
    assert torch.equal(hidden, trunk[:, ids.shape[1] - 1 : -1])


def test_the_value_loss_trains_the_policy_through_a_value_head_and_never_through_the_seq2seq_critic(tiny_lm):
    """TRL's value head shares the policy's trunk (its loss reaches the policy); SIL's critic reads detached states."""
    ids, mask = prompts()
    rollout = Rollout(ids, mask, torch.tensor([[11, 12, 13], [14, 15, 16]]))
    head = ValueHead(tiny_lm)
    torch.nn.init.normal_(head.head.weight)
    head(rollout, rollout.forward(tiny_lm, hidden=True)[1]).sum().backward()
    assert tiny_lm.transformer.h[0].attn.c_attn.weight.grad.abs().sum() > 0

    torch.manual_seed(0)
    agent = Seq2SeqAgent(vocab_size=20, emb=8, hid=8)
    critic = Seq2SeqCritic(agent, hidden=4)
    torch.nn.init.normal_(critic.head[2].weight)
    messages = Seq2SeqRollout(torch.tensor([[5, 6, 3], [7, 3, 0]]), torch.tensor([[8, 9, 3], [10, 3, 0]]), min_tokens=1)
    logits, states = messages.forward(agent, hidden=True)
    assert torch.equal(logits, messages.logits(agent))
    critic(messages, states).sum().backward()
    assert all(p.grad is None for p in agent.parameters()) and critic.head[0].weight.grad.abs().sum() > 0


def tiny_llama():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_a_static_kv_cache_draws_the_same_tokens_as_the_dynamic_one(tiny_lm, family):
    """The fixed-shape cache a compiled decode needs changes no sampled token at a fixed seed (left-padded prompts)."""
    model = tiny_lm if family == "gpt2" else tiny_llama()
    ids, mask = prompts()
    drawn = {}
    for cache in ("dynamic", "static"):
        torch.manual_seed(1)
        drawn[cache] = sample_responses(model, ids.repeat(4, 1), mask.repeat(4, 1), 20, top_k=0, pad_token_id=0,
                                        banned_token_ids=[0], kv_cache=cache)
    assert drawn["dynamic"].shape == (8, 20) and torch.equal(drawn["dynamic"], drawn["static"])


def test_the_sampler_draws_from_the_top_k_softmax_and_never_a_masked_token():
    torch.manual_seed(0)
    scores = torch.tensor([[2.0, 1.0, 0.0, -1.0, -float("inf"), 3.0]]).repeat(20000, 1)
    drawn = Sampler(top_k=3)(None, scores)
    assert ((drawn == 0).sum(-1) == 1).all() and torch.isinf(drawn).sum(-1).eq(5).all()  # one token a row, picked by argmax
    counts = torch.bincount(drawn.argmax(-1), minlength=6).float() / len(scores)
    expected = torch.zeros(6)
    expected[[0, 1, 5]] = torch.tensor([2.0, 1.0, 3.0]).softmax(-1)  # the 3 best, renormalised
    assert torch.allclose(counts, expected, atol=0.015)
    full = torch.bincount(Sampler(top_k=0)(None, scores).argmax(-1), minlength=6).float() / len(scores)
    assert torch.allclose(full, scores[0].softmax(-1), atol=0.015) and full[4] == 0  # -inf (a masked token): never
