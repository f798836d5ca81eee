"""The paper scale runs offline on stand-ins in the hub's own layout (folders written by `save_pretrained`): the code a
user with the hub runs, with every hub id given as a local folder and the budgets cut to two iterations."""

import json

import pytest

from conftest import DATA_DIR, erbench, sets

pytestmark = pytest.mark.e2e


def gpt2_tokenizer(pad: bool):
    from transformers import GPT2TokenizerFast

    tokenizer = GPT2TokenizerFast.from_pretrained(DATA_DIR / "gpt2-tokenizer")  # the GPT-2 files, vocab.json and merges.txt
    if pad:  # a classifier pads its batch
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@pytest.fixture(scope="module")
def imdb_stand_ins(tmp_path_factory):
    """lvwerra/gpt2-imdb, lvwerra/distilbert-imdb and the gold classifier as tiny random models in their hub layout."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, GPT2Config, GPT2LMHeadModel

    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    tokenizer = gpt2_tokenizer(pad=False)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=128)).save_pretrained(root / "gpt2-imdb")
    tokenizer.save_pretrained(root / "gpt2-imdb")
    classifier = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=tokenizer.vocab_size, n_layers=1, dim=32, n_heads=2, hidden_dim=64, num_labels=2,
        pad_token_id=tokenizer.eos_token_id))
    classifier.save_pretrained(root / "distilbert-imdb")
    gpt2_tokenizer(pad=True).save_pretrained(root / "distilbert-imdb")
    return root


def test_imdb_paper_scale_runs_offline_on_stand_ins(imdb_stand_ins, tmp_path):
    record = tmp_path / "run.json"
    result = erbench("run", "imdb", "--scale", "paper", "--method", "elastic", "--data-dir", str(DATA_DIR),
                     "--record", str(record),
                     *sets(f"task.policy={imdb_stand_ins / 'gpt2-imdb'}", f"task.reward={imdb_stand_ins / 'distilbert-imdb'}",
                           f"task.gold_reward={imdb_stand_ins / 'distilbert-imdb'}", "task.eval_prompts=8", "task.test_prompts=8",
                           "task.ppl_reviews=5", "train.iterations=2", "train.rollout_prompts=8", "train.num_minibatches=2"),
                     cache_dir=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    run = json.loads(record.read_text())
    assert run["status"] == "completed" and run["scale"] == "paper" and run["resets"] == [1]  # the paper's first reset
    assert run["task_config"]["policy"].endswith("gpt2-imdb") and run["method_config"]["reset_every"] == 17
    final = run["final"]["val"]
    assert all(0.0 <= final[key] <= 1.0 for key in ("reward", "reward_gold")) and final["perplexity"] > 1.0


@pytest.fixture(scope="module")
def iwslt_data_dir(tmp_path_factory):
    """A data folder with Multi30k (linked) and IWSLT'16-format training files, `train.tags.<pair>.<lang>` with the
    release's <...> metadata lines, written from Multi30k train sentences."""
    import gzip

    root = tmp_path_factory.mktemp("data")
    (root / "multi30k").symlink_to(DATA_DIR / "multi30k")
    raw = DATA_DIR / "multi30k" / "task1" / "raw"
    lines = {lang: gzip.open(raw / f"train.{lang}.gz", "rt", encoding="utf-8").read().splitlines()[:300] for lang in ("fr", "en", "de")}
    for pair in ("fr-en", "en-de"):
        (root / "iwslt" / pair).mkdir(parents=True)
        for lang in pair.split("-"):
            talk = ["<url>http://www.ted.com/talks/a_talk</url>", "<talkid>1</talkid>", *lines[lang], "</doc>"]
            (root / "iwslt" / pair / f"train.tags.{pair}.{lang}").write_text("\n".join(talk) + "\n", encoding="utf-8")
    return root


def test_translation_paper_scale_pretrains_on_iwslt_offline(iwslt_data_dir, tmp_path):
    record = tmp_path / "run.json"
    small = ["task.vocab_size=300", "task.agent_emb=16", "task.agent_hid=16", "task.pretrain_epochs=1", "task.lm_emb=16",
             "task.lm_hid=16", "task.lm_epochs=1", "task.game_sentences=64", "task.eval_sentences=16", "task.test_sentences=16",
             "train.iterations=2", "train.rollout_prompts=8", "train.eval_every=1"]
    result = erbench("run", "translation", "--scale", "paper", "--method", "elastic", "--data-dir", str(iwslt_data_dir),
                     "--record", str(record), *sets(*small), cache_dir=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    run = json.loads(record.read_text())
    assert run["status"] == "completed" and run["task_config"]["pretrain_corpus"] == "iwslt"
    assert run["assets"]["pretrain_pairs"] == {"fr-en": 300, "en-de": 300}  # the IWSLT lines, metadata dropped
    assert all(key in run["final"]["val"] for key in ("reward", "bleu_en", "kl_to_init"))


@pytest.fixture(scope="module")
def stack_stand_ins(tmp_path_factory):
    """huggyllama/llama-7b, the SFT and RM LoRA adapters, the second (merged) RM and lvwerra/stack-exchange-paired as
    a tiny random LLaMA, PEFT adapters saved on it, and parquet files in the data set's data/<split>/ layout."""
    import pandas as pd
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    tokenizer = gpt2_tokenizer(pad=False)
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    for name, model in (("llama-7b", LlamaForCausalLM(config)), ("rm-merged", LlamaForSequenceClassification(LlamaConfig(**config.to_dict(), num_labels=1)))):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    base = LlamaForCausalLM.from_pretrained(root / "llama-7b")
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")).save_pretrained(root / "se-peft")
    classifier = LlamaForSequenceClassification.from_pretrained(root / "llama-7b", num_labels=1)
    get_peft_model(classifier, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS")).save_pretrained(root / "se-rm-peft")
    for split in ("finetune", "reward", "rl", "evaluation"):
        rows = [{"qid": i, "question": f"How do I sort a list of {i} numbers in Python?",
                 "response_j": f"Use sorted(xs) or xs.sort(); both take a key function. ({i})",
                 "response_k": f"Write a loop. ({i})", "date": "2023/01/01", "metadata": ["https://stackoverflow.com"]}
                for i in range(40)]
        (root / "stack-exchange-paired" / "data" / split).mkdir(parents=True)
        pd.DataFrame(rows).to_parquet(root / "stack-exchange-paired" / "data" / split / "train-00000.parquet")
    return root


def test_stackllama_paper_scale_runs_offline_on_stand_ins(stack_stand_ins, tmp_path):
    record, hub = tmp_path / "run.json", stack_stand_ins
    result = erbench("run", "stackllama", "--scale", "paper", "--method", "elastic", "--record", str(record),
                     *sets(f"task.data={hub / 'stack-exchange-paired'}", f"task.policy={hub / 'llama-7b'}",
                           f"task.sft_adapter={hub / 'se-peft'}", f"task.reward_adapter={hub / 'se-rm-peft'}",
                           f"task.second_reward={hub / 'rm-merged'}", "task.load_in_8bit=false", "task.rm_eval_pairs=8",
                           "task.ppl_answers=8", "task.eval_prompts=4", "task.response_min=4", "task.response_max=8",
                           "task.humaneval_problems=2", "task.humaneval_samples=1", "train.iterations=2",
                           "train.rollout_prompts=4", "train.eval_every=1"),
                     cache_dir=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    run = json.loads(record.read_text())
    assert run["status"] == "completed" and run["scale"] == "paper" and run["method_config"]["reset_every"] == 260
    assert run["assets"]["reward_evaluation_pairs"] == 8 and "reward_ood_accuracy" not in run["assets"]  # the hub has no ood split
    final = run["final"]["val"]
    assert all(key in final for key in ("reward", "reward_second_rm", "perplexity", "code_perplexity", "kl_to_init"))


@pytest.fixture(scope="module")
def gsm8k_stand_ins(tmp_path_factory):
    """Qwen/Qwen2.5-0.5B-Instruct as a tiny random Qwen2 with the GPT-2 tokenizer and a chat template, and
    openai/gsm8k as parquet files in the hub repository's layout (main/{train,test}-*.parquet and its README configs)."""
    import pandas as pd
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    tokenizer = gpt2_tokenizer(pad=True)
    tokenizer.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                               "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, max_position_embeddings=1024, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    Qwen2ForCausalLM(config).save_pretrained(root / "qwen")
    tokenizer.save_pretrained(root / "qwen")
    data = root / "gsm8k"
    (data / "main").mkdir(parents=True)
    (data / "README.md").write_text("---\nconfigs:\n- config_name: main\n  data_files:\n  - split: train\n    path: main/train-*\n"
                                    "  - split: test\n    path: main/test-*\n---\n")
    for split, n in (("train", 24), ("test", 8)):
        rows = [{"question": f"Tom has {i} apples and buys {i + 2} more. How many apples does he have?",
                 "answer": f"He has {i} + {i + 2} = <<{i}+{i + 2}={2 * i + 2}>>{2 * i + 2} apples.\n#### {2 * i + 2:,}"} for i in range(n)]
        pd.DataFrame(rows).to_parquet(data / "main" / f"{split}-00000-of-00001.parquet")
    return root


def test_arith_paper_scale_runs_gsm8k_offline_on_stand_ins(gsm8k_stand_ins, tmp_path):
    record, hub = tmp_path / "run.json", gsm8k_stand_ins
    result = erbench("run", "arith", "--scale", "paper", "--method", "ref-mix", "--record", str(record),
                     *sets(f"task.policy={hub / 'qwen'}", f"task.data={hub / 'gsm8k'}", "task.response_tokens=8",
                           "task.eval_problems=4", "task.test_problems=4", "task.samples_per_problem=4", "task.probe_problems=2",
                           "task.ppl_solutions=4", "task.eval_batch_size=8", "train.iterations=2", "train.rollout_prompts=4",
                           "train.num_minibatches=2", "train.eval_every=1", "method.reset_every=1"),
                     cache_dir=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    run = json.loads(record.read_text())
    assert run["status"] == "completed" and run["scale"] == "paper" and run["task_config"]["data"].endswith("gsm8k")
    assert run["method_config"] == {"reset_every": 1, "mix_alpha": 0.6, "first_reset_after": None}
    final = run["final"]["test"]
    assert all(key in final for key in ("pass@1", "pass@2", "pass@4", "holdout_accuracy", "perplexity", "kl_to_init"))
    assert "pass@8" not in final and final["reward"] == final["pass@1"]  # k stops at the samples drawn
    samples = [json.loads(line) for line in record.with_name("run.samples.jsonl").read_text().splitlines()]
    assert samples and all("Tom has" in s["prompt"] and s["prompt"].endswith("<|im_start|>assistant\n") for s in samples)  # chat template
    assert {s["answer"] for s in samples if s["split"] == "test"} <= {2 * i + 2 for i in range(8)}  # GSM8K's "#### N", commas dropped


def test_arith_hub_prompts_reach_trl_with_their_chat_template_tokens(gsm8k_stand_ins, tmp_path):
    from erbench.integrations.trl_run import build_trainer
    from erbench.runner import make_task, resolve_run

    hub = gsm8k_stand_ins
    cfg = resolve_run("arith", "ppo", "paper", 0, [f"task.policy={hub / 'qwen'}", f"task.data={hub / 'gsm8k'}", "task.eval_problems=4",
                                                   "task.test_problems=4", "task.probe_problems=2", "train.rollout_prompts=4",
                                                   "train.num_minibatches=2"])
    task = make_task(cfg, None, tmp_path / "cache")
    policy = task.load_policy()
    prompts = task.decode_prompts(*task.prompts["train"])
    assert prompts and set(prompts) <= {p.prompt for p in task.problems["train"]}  # the text the hub model was prompted with
    assert all(p.startswith("<|im_start|>user\n") and p.endswith("<|im_start|>assistant\n") for p in prompts)
    trainer, _ = build_trainer(cfg, "grpo", task, policy, tmp_path / "trl", [])
    assert trainer.train_dataset["prompt"] == prompts
