"""Elastic Reset as a TRL callback: RLOOTrainer and GRPOTrainer, full fine-tuning and LoRA, on a tiny model."""

import json
import os

import pytest
import torch

pytest.importorskip("trl", reason="the TRL integration needs the [trl] extra; CI installs it")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from datasets import Dataset  # noqa: E402
from peft import LoraConfig  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, TrainerCallback  # noqa: E402
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer  # noqa: E402

from erbench.integrations.trl import ElasticResetCallback  # noqa: E402
from erbench.integrations.trl_run import trainer_config, trl_precision_defaults  # noqa: E402
from erbench.rl.precision import PrecisionProbe  # noqa: E402
from erbench.runner import make_task, resolve_run  # noqa: E402

WORDS = ["<pad>", "<eos>", "good", "bad", "movie", "film", "great", "awful", "the", "a", "was", "is"]
DECAY, RESET_EVERY, STEPS = 0.5, 3, 6
FP32 = {"dtype": "float32", "autocast": None, "gradient_checkpointing": False, "float32_matmul_precision": "highest"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A 2-layer GPT-2 and a word-level tokenizer saved to a directory (TRL rebuilds its reference from the path)."""
    folder = tmp_path_factory.mktemp("tiny-lm")
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", padding_side="left")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(WORDS), n_positions=32, n_embd=32, n_layer=2, n_head=2, bos_token_id=1,
                        eos_token_id=1, pad_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def reward(prompts, completions, **kwargs) -> list[float]:
    return [float(c.split().count("good") - c.split().count("bad")) for c in completions]


class Probe(TrainerCallback):
    """Registered before the Elastic Reset callback: snapshots of the weights as ER is about to see them."""

    def __init__(self, er: ElasticResetCallback):
        self.er, self.before = er, None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.before = ([t.clone() for t in self.er.tensors()], [e.clone() for e in self.er.ema])


class Check(TrainerCallback):
    """Registered after it: at a reset, online == the EMA just before the reset and EMA == theta0; the frozen
    parameters never move."""

    def __init__(self, er: ElasticResetCallback, probe: Probe):
        self.er, self.probe, self.checked, self.frozen = er, probe, [], None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        online_before, ema_before = self.probe.before
        expected_ema = [torch.lerp(e, t, 1 - DECAY) for e, t in zip(ema_before, online_before)]
        if state.global_step % RESET_EVERY == 0:
            assert self.er.resets[-1] == state.global_step
            for online, expected in zip(self.er.tensors(), expected_ema, strict=True):
                torch.testing.assert_close(online, expected)
            for ema, init in zip(self.er.ema, self.er.init, strict=True):
                assert torch.equal(ema, init)
            moved = sum((t - q).norm() for t, q in zip(online_before, self.er.init))
            assert moved > 0  # training did change the weights before the reset, so the check has teeth
            self.checked.append(state.global_step)
        else:
            for ema, expected in zip(self.er.ema, expected_ema, strict=True):
                torch.testing.assert_close(ema, expected)
        for name, p in model.named_parameters():
            if name in self.frozen:
                assert torch.equal(p, self.frozen[name]), name


@pytest.mark.parametrize("trainer_name", ["rloo", "grpo"])
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_elastic_reset_callback(tmp_path, model_dir, trainer_name, lora):
    config_class, trainer_class = (RLOOConfig, RLOOTrainer) if trainer_name == "rloo" else (GRPOConfig, GRPOTrainer)
    args = config_class(output_dir=str(tmp_path), use_cpu=True, report_to="none", save_strategy="no", max_steps=STEPS,
                        per_device_train_batch_size=4, num_generations=4, max_completion_length=6, learning_rate=1e-2,
                        beta=0.05, logging_steps=1, seed=0, disable_tqdm=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    er = ElasticResetCallback(reset_every=RESET_EVERY, ema_decay=DECAY, reset_optimizer=True)
    probe = Probe(er)
    check = Check(er, probe)
    dataset = Dataset.from_dict({"prompt": ["the movie was", "a film is", "the film was", "a movie is"] * 8})
    trainer = trainer_class(model=model, reward_funcs=reward, args=args, train_dataset=dataset, processing_class=tokenizer,
                            callbacks=[probe, er, check], peft_config=LoraConfig(r=4, target_modules=["c_attn"]) if lora else None)
    trainer.train()
    assert check.checked == [3, 6] and er.resets == [3, 6]
    trainable = sum(p.numel() for p in er.params)
    total = sum(p.numel() for p in trainer.model.parameters())
    assert (trainable < total) if lora else (trainable == total)
    if lora:
        assert check.frozen and all("lora" in n for n, p in trainer.model.named_parameters() if p.requires_grad)
    logged = [entry for entry in trainer.state.log_history if "er/resets" in entry]
    assert logged and logged[-1]["er/resets"] == 2


def test_bad_callback_settings_raise():
    for kwargs in ({"reset_every": 0}, {"reset_every": 3, "ema_decay": 1.5}, {"reset_every": 3, "ema_every": 0}):
        with pytest.raises(ValueError):
            ElasticResetCallback(**kwargs)


def test_run_with_rloo_writes_a_run_record(tmp_path, cache_dir):
    from conftest import DATA_DIR, FAST, erbench, sets

    out = tmp_path / "runs"
    result = erbench("run", "imdb", "--method", "elastic", "--algo", "rloo", "--data-dir", str(DATA_DIR), "--out", str(out),
                     *sets(*FAST), cache_dir=cache_dir)
    assert result.returncode == 0, result.stderr
    [path] = out.glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "completed" and record["method"] == "rloo-elastic" and record["algo"]["name"] == "rloo"
    assert record["train"]["kl_controller"] == "fixed"  # the record says what ran: TRL's beta is fixed
    assert record["precision"] == FP32  # erbench's precision, as its PPO records, not TRL's bf16 and checkpointing
    assert record["resets"] == [2, 4] and [p["iteration"] for p in record["eval_curve"]] == [0, 2, 4]
    assert [p["reset"] for p in record["train_curve"]] == [False, True, False, True]
    assert 0 <= record["final"]["test"]["reward"] <= 1 and record["final"]["val"]["perplexity"] > 0
    report = erbench("report", "--results", str(out), "--format", "json", cache_dir=cache_dir)
    assert report.returncode == 0 and json.loads(report.stdout)[0]["method"] == "rloo-elastic"


@pytest.mark.parametrize("args, message", [
    (["--method", "nlpo", "--algo", "grpo"], "method nlpo needs erbench's PPO"),
    (["--method", "elastic", "--algo", "dpo"], "unknown algorithm 'dpo'"),
    (["--method", "elastic", "--algo", "rloo", "--resume"], "not available with --algo rloo"),
])
def test_bad_algo_input_exits_2(tmp_path, args, message):
    from conftest import erbench_in_process

    result = erbench_in_process("run", "imdb", *args, cache_dir=tmp_path)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_ema_can_be_trls_reference_model(tmp_path, model_dir):
    """kl_reference = ema (the paper's IMDB runs): the EMA lives in TRL's reference model, reset to theta0 with it."""
    args = RLOOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", save_strategy="no", max_steps=4,
                      per_device_train_batch_size=4, num_generations=4, max_completion_length=6, learning_rate=1e-2,
                      beta=0.05, seed=0, disable_tqdm=True)
    er = ElasticResetCallback(reset_every=4, ema_decay=DECAY)
    trainer = RLOOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), reward_funcs=reward, args=args,
                          train_dataset=Dataset.from_dict({"prompt": ["the movie was", "a film is"] * 8}),
                          processing_class=PreTrainedTokenizerFast.from_pretrained(model_dir), callbacks=[er])
    er.reference_model = trainer.ref_model
    seen = []

    class Watch(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ref = [p.detach().clone() for p in trainer.ref_model.parameters()]
            seen.append(sum((r - q).norm() for r, q in zip(ref, er.init)).item())

    trainer.add_callback(Watch())
    trainer.train()
    assert all(d > 0 for d in seen[:3])  # the reference tracked the policy as its EMA
    assert seen[3] == 0  # and was reset to theta0 with it
    assert er.resets == [4]


@pytest.mark.parametrize("precision, expected", [
    ("erbench", FP32),
    ("trl defaults", {**FP32, "autocast": "bfloat16", "gradient_checkpointing": True}),  # what the probe would catch
])
def test_trl_trains_on_the_cpu_in_erbenchs_precision(tmp_path, model_dir, precision, expected):
    """erbench's RLOO config for a tiny IMDB run on the CPU trains in fp32 without recomputation, as erbench's PPO;
    TRL's own defaults would have autocast to bf16 and checkpointed (the probe sees both)."""
    cfg = resolve_run("imdb", "elastic", "tiny", 0, ["train.device=cpu", "train.kl_controller=fixed",
                                                      "train.rollout_prompts=4", "train.iterations=1"])
    task = make_task(cfg, None, tmp_path)  # the config reads the task's settings and device, not its assets
    overrides = trl_precision_defaults("rloo") if precision == "trl defaults" else {}
    args = trainer_config(cfg, "rloo", task, tmp_path, max_completion_length=6, generation_kwargs={}, **overrides)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    probe = PrecisionProbe(model)
    trainer = RLOOTrainer(model=model, reward_funcs=reward, args=args, processing_class=PreTrainedTokenizerFast.from_pretrained(model_dir),
                          train_dataset=Dataset.from_dict({"prompt": ["the movie was", "a film is"] * 2}))
    trainer.train()
    assert probe.observed == expected
    assert (args.bf16, args.fp16, args.gradient_checkpointing) == (expected["autocast"] == "bfloat16", False,
                                                                   expected["gradient_checkpointing"])
