"""StackLLaMA: the real tiny pipeline (pairs, pretraining, TRL SFT and RMs), LoRA-only Elastic Reset, the CLI end to end."""

import json
import math

import pytest
import torch

from conftest import DATA_DIR, assert_damaged_cache_is_one_line, assert_one_line_error, erbench, erbench_in_process, sets, truncate
from erbench.tasks.stackllama import StackLlamaTask

# RL settings small enough for tests; none of them shapes the prepared assets, so every test shares one prepare.
FAST_RL = [
    "task.eval_prompts=8", "task.ppl_answers=20", "task.humaneval_problems=3", "task.humaneval_max_new_tokens=24",
    "train.iterations=2", "train.rollout_prompts=4", "train.num_minibatches=2", "train.ppo_epochs=2",
    "train.eval_every=2", "method.reset_every=1",
]


@pytest.fixture(scope="module")
def stack_cache(tmp_path_factory):
    """The real tiny assets, built once by `erbench prepare stackllama` (a few minutes on 2 cores)."""
    if not (DATA_DIR / "stackexchange").is_dir():
        pytest.fail(f"Stack Exchange dumps missing at {DATA_DIR}; set ERBENCH_DATA to the shared data folder")
    cache = tmp_path_factory.mktemp("stack-cache")
    result = erbench("prepare", "stackllama", "--data-dir", str(DATA_DIR), cache_dir=cache, timeout=1800)
    assert result.returncode == 0, result.stderr
    return cache


def prepared_meta(cache) -> dict:
    return json.loads(next((cache / "stackllama").glob("*/meta.json")).read_text())


def build(cache, method: str, *extra: str):
    from erbench.runner import build_trainer, make_task, resolve_run

    cfg = resolve_run("stackllama", method, "tiny", 0, FAST_RL + list(extra))
    task = make_task(cfg, DATA_DIR, cache)
    task.prepare()
    return task, build_trainer(cfg, task)


def test_reward_models_beat_chance_on_held_out_pairs(stack_cache):
    meta = prepared_meta(stack_cache)
    for model in ("reward", "reward_2"):
        n = meta[f"{model}_evaluation_pairs"]
        assert n >= 300
        # One-sided binomial test against a coin flip at the 5% level.
        assert meta[f"{model}_evaluation_accuracy"] > 0.5 + 1.645 * math.sqrt(0.25 / n), meta
    assert meta["data_malformed_rows"] == 0 and meta["data_parse_errors"] == 0
    assert meta["sft_perplexity"] < meta["base_perplexity"] * 1.05  # SFT did not wreck the LM


def test_elastic_reset_moves_only_lora_weights_and_resets_to_the_ema(stack_cache):
    from transformers import AutoModelForCausalLM

    task, trainer = build(stack_cache, "elastic")
    policy, method = trainer.policy, trainer.method
    sft = dict(AutoModelForCausalLM.from_pretrained(task.asset_dir / "sft").named_parameters())
    lora = {name for name, p in policy.named_parameters() if p.requires_grad}
    assert lora and all("lora_" in name for name in lora)
    # The EMA tracks the LoRA weights only: the value head is the critic's, the SFT weights are frozen and shared.
    assert len(method.ema) == len(lora) and all(p.numel() < 5000 for p in method.ema)
    init = [p.detach().clone() for p in method.init]
    before_reset = {}
    reset = method.maybe_reset

    def spy(completed):
        before_reset.update(ema=[p.detach().clone() for p in method.ema], online=[p.detach().clone() for p in method.online])
        return reset(completed)

    method.maybe_reset = spy
    trainer.iteration(0)  # PPO updates move the adapters; then the reset fires (reset_every = 1)
    assert method.reset_iterations == [1]
    assert any(not torch.equal(p, q) for p, q in zip(before_reset["online"], init)), "the adapters never moved"
    assert all(torch.equal(p, q) for p, q in zip(method.online, before_reset["ema"]))  # online <- EMA
    assert all(torch.equal(p, q) for p, q in zip(method.ema, init))  # EMA <- theta0
    for name, p in policy.named_parameters():
        if name not in lora:
            base_name = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(p, sft[base_name]), f"frozen weight {name} changed"


def test_cli_runs_stackllama_end_to_end_and_humaneval_needs_consent(stack_cache, tmp_path):
    common = ["run", "stackllama", "--method", "elastic", "--data-dir", str(DATA_DIR), "--out", str(tmp_path), *sets(*FAST_RL)]
    result = erbench(*common, "--allow-code-execution", cache_dir=stack_cache)
    assert result.returncode == 0, result.stderr
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert record["status"] == "completed" and record["resets"] == [1, 2]
    for split in ("val", "test"):
        metrics = record["final"][split]
        for key in ("reward", "reward_second_rm", "perplexity", "code_perplexity", "kl_to_init", "humaneval_pass@1"):
            assert math.isfinite(metrics[key]), (split, key)
        assert metrics["humaneval_problems"] == 3 and 0 <= metrics["humaneval_pass@1"] <= 1
    assert record["eval_curve"][0]["kl_to_init"] == pytest.approx(0.0, abs=1e-6)  # the initial policy is theta0
    samples = [json.loads(line) for line in (tmp_path / record["samples_file"]).read_text().splitlines()]
    initial = [s for s in samples if (s["split"], s["iteration"]) == ("val", 0)]
    assert initial and all(s["kl_to_init"] == pytest.approx(0.0, abs=1e-6) and s["prompt"] for s in initial)
    assert all(math.isfinite(s["reward"]) and math.isfinite(s["reward_second_rm"]) for s in samples)

    env_free = erbench(*common, "--out", str(tmp_path / "no-code"), cache_dir=stack_cache)
    assert env_free.returncode == 0, env_free.stderr
    record = json.loads(next((tmp_path / "no-code").glob("*.json")).read_text())
    assert "humaneval_pass@1" not in record["final"]["val"]
    assert record["final"]["val"]["code_perplexity"] > 1  # the alignment tax that needs no code execution


@pytest.mark.parametrize("damage", [
    lambda assets: truncate(assets / "sft" / "model.safetensors"),
    lambda assets: (assets / "reward" / "config.json").unlink(),
])
def test_a_damaged_cache_is_one_line_naming_prepare_force(stack_cache, tmp_path, damage):
    assert_damaged_cache_is_one_line(stack_cache, "stackllama", damage, ["--method", "elastic", *sets(*FAST_RL)],
                                     "cannot load the StackLLaMA models", tmp_path)


def test_bad_stackllama_settings_are_one_line_errors(tmp_path):
    result = erbench_in_process("run", "stackllama", "--method", "elastic", *sets("task.response_min=64", "task.response_max=32"),
                                cache_dir=tmp_path)
    assert_one_line_error(result, "task.response_max")
    result = erbench_in_process("run", "stackllama", "--method", "nlpo", cache_dir=tmp_path)
    assert_one_line_error(result, "does not apply to task stackllama")
    result = erbench_in_process("prepare", "stackllama", "--data-dir", str(tmp_path / "nowhere"), cache_dir=tmp_path)
    assert_one_line_error(result, "Stack Exchange data folder")


def test_response_lengths_follow_the_length_sampler():
    task = StackLlamaTask.__new__(StackLlamaTask)
    task.cfg = StackLlamaTask.config_class(response_min=32, response_max=128)
    lengths = task.response_lengths(4000, torch.Generator().manual_seed(0))
    assert lengths.min() == 32 and lengths.max() == 127  # uniform over [32, 128)
    assert abs(lengths.float().mean().item() - 79.5) < 1.5


def test_reference_reset_copies_only_the_adapters_into_the_anchor(stack_cache):
    task, trainer = build(stack_cache, "ref-reset", "method.reset_every=1")
    method = trainer.method
    assert len(method.reference) == len(method.online)  # the LoRA weights; the SFT base is shared, not copied
    trainer.iteration(0)
    assert method.reference_resets == [1] and method.reset_iterations == []
    assert all(torch.equal(p, q) for p, q in zip(method.reference, method.online))
    assert any(not torch.equal(p, q) for p, q in zip(method.online, method.init))
