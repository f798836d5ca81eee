"""The pivot translation game: data split, agents, metrics, resets of policy vs listener, and the CLI end to end."""

import json
import math

import numpy as np
import pytest
import sacrebleu
import torch
import torch.nn.functional as F

from conftest import DATA_DIR, assert_damaged_cache_is_one_line, assert_one_line_error, erbench, erbench_in_process, sets, truncate
from erbench.errors import ErbenchError
from erbench.metrics.bleu import corpus_bleu, sil_bleu
from erbench.models.seq2seq import BOS, EOS, PAD, GruLM, Seq2SeqAgent
from erbench.rl.policy import Seq2SeqRollout
from erbench.tasks.translation import as_sentences, load_module, save_module, split_parts, translate

# Shrunken tiny assets: pretraining on 300 pairs for one epoch, a 300-piece BPE; a few game iterations.
FAST_TRANSLATION = [
    "task.pretrain_limit=300", "task.pretrain_epochs=1", "task.lm_epochs=1", "task.vocab_size=300",
    "task.game_sentences=64", "task.eval_sentences=16", "task.test_sentences=16", "task.max_message_tokens=12",
    "train.iterations=4", "train.rollout_prompts=8", "train.num_minibatches=2", "train.ppo_epochs=2",
    "train.eval_every=2", "method.reset_every=2",
]


@pytest.fixture(scope="module")
def translation_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("translation-cache")
    result = erbench("prepare", "translation", "--data-dir", str(DATA_DIR), *sets(*FAST_TRANSLATION), cache_dir=cache)
    assert result.returncode == 0, result.stderr
    for key in ("fr_en_val_bleu", "en_de_val_bleu", "pivot_val_bleu_de", "lm_val_nll"):
        assert key in result.stdout
    return cache


def build(cache, method: str, *extra: str):
    """A trainer on the FAST assets, as `erbench run` builds it."""
    from erbench.runner import build_trainer, make_task, resolve_run

    cfg = resolve_run("translation", method, "tiny", 0, FAST_TRANSLATION + list(extra))
    task = make_task(cfg, DATA_DIR, cache)
    task.prepare()
    return task, build_trainer(cfg, task)


def test_parts_a_b_c_are_disjoint_and_cover_train():
    parts = split_parts(10000, 10000)
    a, b, c = (set(parts[k].tolist()) for k in "abc")
    assert (len(a), len(b), len(c)) == (10000, 10000, 9000)
    assert not (a & b) and not (a & c) and not (b & c) and a | b | c == set(range(29000))


def test_pretraining_and_game_text_come_from_their_own_parts(translation_cache):
    task, _ = build(translation_cache, "ppo")
    train, parts = task.split("train"), split_parts(task.cfg.part_a, task.cfg.part_b)
    text = task.pretraining_text()
    assert text["fr-en"][0] == [train["fr"][i] for i in parts["a"][:300]]
    assert text["en-de"][1] == [train["de"][i] for i in parts["b"][:300]]
    game_french = {train["fr"][i] for i in parts["c"]}
    assert not game_french & set(text["fr-en"][0])  # no game sentence is a pretraining sentence
    assert task.game["fr"] == [task.sp.encode(train["fr"][i])[:59] + [EOS] for i in parts["c"][:64]]
    assert len(task.split("val")["fr"]) == 1014 and len(task.split("test")["de"]) == 1000


def test_an_agent_overfits_a_handful_of_pairs():
    torch.manual_seed(0)
    source = [[5, 6, 7, EOS], [8, 9, EOS], [10, 11, 12, 13, EOS], [14, EOS]]
    target = [[20, 21, EOS], [22, 23, 24, EOS], [25, EOS], [26, 27, 28, 29, EOS]]
    agent = Seq2SeqAgent(32, 16, 24)
    optimizer = torch.optim.Adam(agent.parameters(), lr=1e-2)
    src, tgt = as_sentences(torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in source], True)), \
        as_sentences(torch.nn.utils.rnn.pad_sequence([torch.tensor(t) for t in target], True))
    hyp = lambda: [" ".join(map(str, row[: row.index(EOS)] if EOS in row else row)) for row in translate(agent, source, "cpu", max_tokens=8).tolist()]
    refs = [" ".join(map(str, t[:-1])) for t in target]
    bleu_before, losses = corpus_bleu(hyp(), refs), []
    for _ in range(150):
        loss = F.cross_entropy(agent.logits(src, tgt).transpose(1, 2), tgt, ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    assert hyp() == refs and bleu_before < 50


@pytest.mark.parametrize("cls", [Seq2SeqAgent, GruLM])
def test_a_cached_module_is_safetensors_and_comes_back_exactly(cls, tmp_path):
    from safetensors import safe_open

    torch.manual_seed(0)
    module = cls(vocab_size=40, emb=8, hid=16)
    save_module(module, tmp_path / "m.safetensors")
    with safe_open(str(tmp_path / "m.safetensors"), "pt") as stored:  # weights and JSON only: nothing to unpickle
        assert json.loads(stored.metadata()["config"]) == module.config
    loaded = load_module(cls, tmp_path / "m.safetensors", torch.device("cpu"))
    assert type(loaded) is cls and loaded.state_dict().keys() == module.state_dict().keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in module.state_dict().items())


def test_messages_obey_length_limits_and_log_probs_match_sampling():
    torch.manual_seed(0)
    agent = Seq2SeqAgent(16, 8, 8).eval()
    source = torch.tensor([[5, 6, EOS], [7, EOS, PAD]]).repeat(16, 1)
    messages = agent.decode(source, max_tokens=6, min_tokens=3, greedy=False)
    mask = messages != PAD
    assert messages.shape[1] <= 6 and mask[:, :3].all()  # never shorter than 3 tokens
    assert not (messages[:, :3] == EOS).any() and not (messages == BOS).any()
    ends = mask.sum(1) - 1
    finished = messages[torch.arange(len(messages)), ends] == EOS
    assert (finished | (mask.sum(1) == messages.shape[1])).all()  # a message ends at <eos> or at the limit
    rollout = Seq2SeqRollout(source, messages, 3)
    logp = torch.gather(rollout.logits(agent).log_softmax(-1), 2, messages.unsqueeze(-1)).squeeze(-1)
    assert torch.isfinite(logp).all()  # every sampled token has positive probability under the teacher-forced policy
    assert torch.equal(as_sentences(torch.tensor([[5, 6, 7]]))[0], torch.tensor([5, 6, 7, EOS]))  # cut off: <eos> added


def test_bleu_matches_sacrebleu_and_the_sil_convention_on_fixed_strings():
    hyps, refs = ["a man is riding a bike .", "two dogs play in the snow"], ["a man rides a bike .", "two dogs play in snow ."]
    assert corpus_bleu(hyps, refs) == sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a").score
    assert math.isclose(sil_bleu(["ein mann, der läuft."], ["ein mann, der läuft."], "de"), 100.0)
    # Moses splits "mann," -> "mann ,": tokenize="none" then sees the same tokens as 13a here.
    assert math.isclose(sil_bleu(hyps, refs, "en"), sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a", smooth_method="none").score)


def test_english_lm_nll_is_the_masked_per_token_mean():
    from erbench.tasks.translation import lm_nll

    torch.manual_seed(0)
    lm = GruLM(20, 8, 8).eval()
    sentences = [[5, 6, 7, EOS], [8, EOS]]
    total, count = 0.0, 0
    for sentence in sentences:  # one sentence at a time, no padding anywhere
        tokens = torch.tensor([sentence])
        hidden, _ = lm.gru(lm.embedding(torch.tensor([[BOS] + sentence[:-1]])))
        logp = lm.output(hidden).log_softmax(-1)[0]
        total -= logp[torch.arange(len(sentence)), tokens[0]].sum().item()
        count += len(sentence)
    padded = torch.tensor([[5, 6, 7, EOS], [8, EOS, PAD, PAD]])
    assert math.isclose(lm_nll(lm, padded), total / count, rel_tol=1e-5)


@pytest.mark.parametrize("reset_listener", [False, True])
def test_resets_touch_the_policy_and_the_listener_only_when_asked(translation_cache, reset_listener):
    task, trainer = build(translation_cache, "reset", "method.reset_every=1", f"task.reset_listener={reset_listener}")
    listener_before = [p.detach().clone() for p in task.listener.parameters()]
    stats = trainer.iteration(0)
    assert stats["reset"] and "listener_loss" in stats
    policy, init = trainer.method.online_model, trainer.method.init_model
    assert all(torch.equal(p, q) for p, q in zip(policy.parameters(), init.parameters()))  # reset to theta0
    listener_equal = all(torch.equal(p, q) for p, q in zip(task.listener.parameters(), listener_before))
    assert listener_equal == reset_listener  # it learned during the iteration; reset back only when asked


def test_frozen_english_trains_only_the_listener(translation_cache):
    task, trainer = build(translation_cache, "frozen-english")
    policy_before = [p.detach().clone() for p in trainer.policy.parameters()]
    listener_before = [p.detach().clone() for p in task.listener.parameters()]
    trainer.iteration(0)
    assert all(torch.equal(p, q) for p, q in zip(trainer.policy.parameters(), policy_before))
    assert not all(torch.equal(p, q) for p, q in zip(task.listener.parameters(), listener_before))


def test_game_runs_end_to_end_through_the_cli(translation_cache, tmp_path):
    out = tmp_path / "runs"
    result = erbench("run", "translation", "--method", "elastic", "--data-dir", str(DATA_DIR), "--out", str(out),
                     *sets(*FAST_TRANSLATION), cache_dir=translation_cache)
    assert result.returncode == 0, result.stderr
    assert "val  reward" in result.stdout and "bleu_en" in result.stdout and "lm_nll" in result.stdout
    [path] = out.glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "completed" and record["resets"] == [2, 4]
    assert [p["iteration"] for p in record["eval_curve"]] == [0, 2, 4]
    for split in ("val", "test"):
        metrics = record["final"][split]
        for key in ("reward", "bleu_de", "bleu_en", "lm_nll", "real_nll", "kl_to_init", "bleu_de_sil", "bleu_en_sil"):
            assert np.isfinite(metrics[key]), key
        assert metrics["reward"] == metrics["bleu_de"] and metrics["kl_to_init"] >= 0
    assert record["eval_curve"][0]["kl_to_init"] == 0.0  # the initial policy is theta0
    assert all("listener_loss" in point for point in record["train_curve"])
    assert record["timings"]["task_learning_seconds"] > 0
    samples = [json.loads(line) for line in (out / record["samples_file"]).read_text().splitlines()]
    initial = [s for s in samples if (s["split"], s["iteration"]) == ("val", 0)]
    assert len(initial) == 8 and all(s["kl_to_init"] == 0.0 and 0 <= s["reward"] <= 100 for s in initial)
    assert all(s["prompt"] and isinstance(s["german"], str) and s["reference_de"] and s["reference_en"] for s in samples)
    assert {s["prompt"] for s in samples if s["index"] == 0 and s["split"] == "val"} == {initial[0]["prompt"]}


@pytest.mark.parametrize("args, message", [
    (["run", "translation", "--method", "elastic", "--data-dir", "/nonexistent"], "Multi30k train.fr.gz not found"),
    (["run", "translation", "--method", "nlpo"], "method 'nlpo' does not apply to task translation"),
    (["run", "imdb", "--method", "frozen-english"], "method 'frozen-english' does not apply to task imdb"),
    (["run", "translation", "--method", "elastic", "--set", "task.reward=bleu4"], "choose one of: nll, bleu"),
    (["run", "translation", "--method", "elastic", "--set", "task.part_a=20000"], "task.part_b must be <= 8000"),
    (["prepare", "translation", "--scale", "paper", "--data-dir", "/nonexistent"], "IWSLT'16 fr-en training files not found"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    result = erbench_in_process(*args, cache_dir=tmp_path)
    assert_one_line_error(result, message)


@pytest.mark.parametrize("damage", [
    lambda assets: truncate(assets / "fr-en.safetensors"),
    lambda assets: (assets / "en-lm.safetensors").unlink(),
])
def test_a_damaged_cache_is_one_line_naming_prepare_force(translation_cache, tmp_path, damage):
    assert_damaged_cache_is_one_line(translation_cache, "translation", damage, ["--method", "elastic", *sets(*FAST_TRANSLATION)],
                                     "cannot load the translation agents", tmp_path)


def test_unknown_split_is_refused(translation_cache):
    task, trainer = build(translation_cache, "ppo")
    with pytest.raises(ErbenchError, match="unknown split 'train'"):
        task.evaluate(trainer.policy, trainer.method.init_model, "train")


def test_a_resumed_game_continues_exactly_listener_included(translation_cache, tmp_path):
    from erbench import checkpoint

    _, whole = build(translation_cache, "elastic")
    expected = [whole.iteration(i) for i in range(4)]

    _, first = build(translation_cache, "elastic")
    done = [first.iteration(i) for i in range(2)]
    config = {"task": "translation"}
    checkpoint.save(tmp_path / "resume", 2, first.state_dict(), config, {"train_curve": done})
    _, second = build(translation_cache, "elastic")
    start, data, _ = checkpoint.load(tmp_path / "resume", config)
    checkpoint.restore(second, data)
    assert start == 2 and done + [second.iteration(i) for i in range(2, 4)] == expected


def test_reference_reset_moves_the_anchor_after_updating_the_seq2seq_policy(translation_cache):
    task, trainer = build(translation_cache, "ref-reset", "method.reset_every=1")
    stats = trainer.iteration(0)
    method = trainer.method
    assert not stats["reset"] and method.reference_resets == [1]  # the policy keeps training; the anchor moved
    assert all(torch.equal(p, q) for p, q in zip(trainer.policy.parameters(), method.reference_model.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(trainer.policy.parameters(), method.init_model.parameters()))
