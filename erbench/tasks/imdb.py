"""IMDB mock sentiment (paper §3.2): continue the first half of a movie review; reward = P(positive).

Data: aclImdb v1.0 (tarball or folder in the data dir, else downloaded from its canonical source).
The paper's split: IMDB train shuffled with seed 0 into 20k train / 5k val; test = the 25k test
reviews. Prompt = the first 50% of a review's whitespace words, left-truncated to `prompt_tokens`;
every continuation is exactly `response_tokens` tokens (end-of-text is never sampled).

Assets per scale (built once by `prepare`, cached under a key of the fields that shape them):
  tiny   a 2-layer GPT-2-architecture LM and a byte-level BPE trained on IMDB train + unsup text,
         reward = TF-IDF + logistic regression trained on the 20k train split; gold reward (never trained
         against, for over-optimisation: Gao et al. 2023) = Naive Bayes on binary word 1-3-grams, another
         model family on other features, trained on the same split
  small  GPT-2-small (124M) with the real GPT-2 tokenizer, trained from scratch the same way
  paper  lvwerra/gpt2-imdb policy, lvwerra/distilbert-imdb reward, siebert/sentiment-roberta-large-english
         gold reward (the DPO paper's gold; hub)
"""

import functools
import math
import re
import tarfile
import time
from dataclasses import dataclass
from typing import Literal
from pathlib import Path

import numpy as np
import torch

from erbench.config import require
from erbench.downloads import find_or_download
from erbench.errors import ErbenchError
from erbench.metrics.diversity import distinct_n
from erbench.metrics.perplexity import perplexity
from erbench.models.causal_lm import fused_gelu, load_scratch_lm, pretrain_causal_lm, token_stream
from erbench.models.text_classifier import load_classifier, save_classifier, sentiment_classifier
from erbench.progress import quiet_model_loading, say
from erbench.rl.kl import exact_kl
from erbench.tasks.base import Task
from erbench.rl.policy import Rollout, left_pad, sample_responses, token_logprobs

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
END_OF_TEXT = "<|endoftext|>"
# Fields that shape the prepared assets: changing one of them rebuilds, changing others does not.
ASSET_FIELDS = ("policy", "tokenizer", "vocab_size", "lm_layers", "lm_width", "lm_heads", "lm_context",
                "lm_train_tokens", "lm_batch_size", "lm_lr", "reward", "gold_reward")
LOCAL_CLASSIFIERS = {"tfidf": "reward.npz", "naive-bayes": "gold.npz"}  # trained by `prepare`; else a hub id


@dataclass(frozen=True)
class ImdbConfig:
    policy: str = "scratch"  # "scratch": `prepare` trains a GPT-2-architecture LM; else a hub id or local model dir
    tokenizer: str = "bpe"  # "bpe": byte-level BPE trained on IMDB text; "gpt2": the GPT-2 files in the data dir
    vocab_size: int = 4096  # BPE vocabulary size (tokenizer = "bpe")
    lm_layers: int = 2
    lm_width: int = 128
    lm_heads: int = 4
    lm_context: int = 128  # n_positions; prompt_tokens + response_tokens must fit
    lm_train_tokens: int = 2_000_000  # pretraining budget in tokens (repeats the text if it is shorter)
    lm_batch_size: int = 32
    lm_lr: float = 1e-3
    lm_compile: bool = False  # torch.compile the pretraining step (the CUDA fast path)
    reward: str = "tfidf"  # "tfidf": TF-IDF + logistic regression on the 20k train split; else a hub classifier id
    gold_reward: str = "naive-bayes"  # reported as reward_gold, never trained against: "naive-bayes", a hub id, or "none"
    top_k: int = 50  # sampling for rollouts and evaluation; RL4LMs left it unset (HF default 50); 0 = full softmax
    kv_cache: Literal["dynamic", "static"] = "dynamic"  # rollout sampling's KV cache; static: fixed shapes for a compiled decode (GPU)
    prompt_tokens: int = 64  # RL4LMs max_prompt_length (left truncation)
    response_tokens: int = 48  # RL4LMs max_episode_length = min_length = max_new_tokens
    eval_prompts: int = 64  # val prompts per evaluation (0 = all 5,000)
    test_prompts: int = 256  # test prompts in the final evaluation (0 = all 25,000)
    ppl_reviews: int = 100  # human reviews joined for the perplexity metric (0 = the whole split)
    eval_batch_size: int = 64

    def __post_init__(self):
        for key in ("vocab_size", "lm_layers", "lm_width", "lm_heads", "lm_context", "lm_train_tokens",
                    "lm_batch_size", "prompt_tokens", "response_tokens", "eval_batch_size"):
            require(getattr(self, key) >= 1, f"task.{key}", getattr(self, key), "an integer >= 1")
        for key in ("eval_prompts", "test_prompts", "ppl_reviews"):
            require(getattr(self, key) >= 0, f"task.{key}", getattr(self, key), ">= 0 (0 = all)")
        require(self.top_k >= 0, "task.top_k", self.top_k, ">= 0 (0 = no top-k)")
        require(self.lm_lr > 0, "task.lm_lr", self.lm_lr, "> 0")
        require(self.lm_width % self.lm_heads == 0, "task.lm_width", self.lm_width, f"a multiple of task.lm_heads ({self.lm_heads})")
        require(self.tokenizer in ("bpe", "gpt2"), "task.tokenizer", self.tokenizer, "bpe or gpt2")
        if self.policy == "scratch":
            require(self.prompt_tokens + self.response_tokens <= self.lm_context, "task.lm_context", self.lm_context,
                    f">= prompt_tokens + response_tokens ({self.prompt_tokens + self.response_tokens})")


# ----------------------------------------------------------------------------------------------- data

def clean(text: str) -> str:
    return " ".join(text.replace("<br />", " ").split())


def prompt_of(review: str) -> str:
    words = review.split()
    return " ".join(words[: int(len(words) * 0.5)])


REVIEW_PATH = re.compile(r"aclImdb/(train|test)/(pos|neg|unsup)/\d+_\d+\.txt$")


def find_imdb(data_dir: Path | None, cache_dir: Path) -> Path:
    """The aclImdb tarball or folder: in the data dir, in the download cache, or downloaded now."""
    candidates = []
    if data_dir is not None:
        candidates += [data_dir / "imdb" / "aclImdb_v1.tar.gz", data_dir / "imdb" / "aclImdb",
                       data_dir / "aclImdb_v1.tar.gz", data_dir / "aclImdb"]
    return find_or_download(candidates, IMDB_URL, cache_dir / "downloads" / "aclImdb_v1.tar.gz", "IMDB data",
                            "pass --data-dir (or set ERBENCH_DATA) to a folder holding imdb/aclImdb_v1.tar.gz")


def read_reviews(source: Path) -> dict[str, list[tuple[str, str]]]:
    """{"train/neg": [(path, text)], ...} sorted by path, from the tarball or the extracted folder."""
    groups: dict[str, list[tuple[str, str]]] = {}

    def add(name: str, text: str):
        match = REVIEW_PATH.search(name)
        if match:
            groups.setdefault(f"{match[1]}/{match[2]}", []).append((name, clean(text)))

    if source.is_dir():
        root = source.parent
        for path in source.glob("*/*/*.txt"):
            add(str(path.relative_to(root)), path.read_text(encoding="utf-8"))
    else:
        try:
            with tarfile.open(source, "r:gz") as archive:
                for member in archive:
                    if member.isfile() and REVIEW_PATH.search(member.name):
                        add(member.name, archive.extractfile(member).read().decode("utf-8"))
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ErbenchError(f"cannot read {source}: {e}", "replace it with an intact aclImdb_v1.tar.gz") from None
    expected = {"train/neg": 12500, "train/pos": 12500, "test/neg": 12500, "test/pos": 12500, "train/unsup": 50000}
    for group, count in expected.items():
        if len(groups.get(group, [])) != count:
            raise ErbenchError(f"{source} holds {len(groups.get(group, []))} {group} reviews, not {count}",
                               "use the complete aclImdb v1.0 release")
    return {group: sorted(items) for group, items in groups.items()}


@dataclass
class ImdbSplits:
    train: list[tuple[str, int]]  # (review, label) with label 1 = positive
    val: list[tuple[str, int]]
    test: list[tuple[str, int]]
    unsup: list[str]


def sample(rows: list, n: int) -> list:
    """A seed-0 random subset of n rows (0 = all); the test set is sorted by label, so never take its head."""
    if n == 0 or n >= len(rows):
        return rows
    return [rows[i] for i in np.random.default_rng(0).permutation(len(rows))[:n]]


def split_reviews(groups: dict[str, list[tuple[str, str]]]) -> ImdbSplits:
    """The paper's split. Rows follow the HF `imdb` layout (negatives, then positives; within a label,
    sorted by file path, an assumption about HF's row order), then shuffle(seed=0) -> 20k train / 5k val."""
    labelled = [(t, 0) for _, t in groups["train/neg"]] + [(t, 1) for _, t in groups["train/pos"]]
    order = np.random.default_rng(0).permutation(len(labelled))  # what datasets' shuffle(seed=0) draws
    shuffled = [labelled[i] for i in order]
    test = [(t, 0) for _, t in groups["test/neg"]] + [(t, 1) for _, t in groups["test/pos"]]
    return ImdbSplits(shuffled[:20000], shuffled[20000:], test, [t for _, t in groups["train/unsup"]])


@functools.lru_cache(maxsize=2)
def load_splits(source: Path) -> ImdbSplits:
    """Read once per process: several runs in one process (erbench check) share the parsed reviews."""
    return split_reviews(read_reviews(source))


# ----------------------------------------------------------------------------------------------- assets


def train_tokenizer(cfg: ImdbConfig, texts: list[str], data_dir: Path | None):
    from tokenizers import ByteLevelBPETokenizer

    if cfg.tokenizer == "gpt2":
        folder = (data_dir / "gpt2-tokenizer") if data_dir else None
        if folder is None or not (folder / "vocab.json").exists():
            raise ErbenchError(f"GPT-2 tokenizer files not found in {folder}",
                               "pass --data-dir to a folder holding gpt2-tokenizer/{vocab.json,merges.txt}")
        return ByteLevelBPETokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(texts, vocab_size=cfg.vocab_size, min_frequency=2,
                                  special_tokens=[END_OF_TEXT], show_progress=False)
    return tokenizer


def pretrain_lm(cfg: ImdbConfig, stream: torch.Tensor, vocab_size: int, eot_id: int, device: torch.device):
    """A GPT-2-architecture LM pretrained on blocks of the stream."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab_size, n_positions=cfg.lm_context, n_embd=cfg.lm_width, n_layer=cfg.lm_layers,
                        n_head=cfg.lm_heads, bos_token_id=eot_id, eos_token_id=eot_id, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0)
    return pretrain_causal_lm(fused_gelu(GPT2LMHeadModel(config)).to(device), stream, cfg.lm_context, cfg.lm_train_tokens,
                              cfg.lm_batch_size, cfg.lm_lr, device, cfg.lm_compile)


def train_classifier(kind: str, splits: ImdbSplits, prefix: str):
    classifier = sentiment_classifier(kind)
    texts, labels = zip(*splits.train)
    classifier.fit(list(texts), list(labels))
    accuracy = {f"{prefix}_{name}_accuracy": float(classifier.score([t for t, _ in rows], [y for _, y in rows]))
                for name, rows in (("val", splits.val), ("test", splits.test))}
    return classifier, accuracy


class HubClassifierReward:
    """A hub sequence classifier's softmax probability of label 1, left-truncated (the paper's distilbert-imdb)."""

    def __init__(self, name: str, device: torch.device):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(name, truncation_side="left")
        self.model = AutoModelForSequenceClassification.from_pretrained(name).to(device).eval()
        self.device = device

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> np.ndarray:
        scores = []
        for start in range(0, len(texts), 64):
            batch = self.tokenizer(texts[start : start + 64], padding=True, truncation=True, max_length=512,
                                   return_tensors="pt").to(self.device)
            scores.append(torch.softmax(self.model(**batch).logits.float(), -1)[:, 1].cpu())
        return torch.cat(scores).numpy()


class LocalClassifierReward:
    """A classifier trained by `prepare`: its probability of a positive review."""

    def __init__(self, classifier):
        self.classifier = classifier

    def __call__(self, texts: list[str]) -> np.ndarray:
        return self.classifier.predict_proba(texts)[:, 1]


# ----------------------------------------------------------------------------------------------- task

class ImdbTask(Task):
    config_class = ImdbConfig
    name = "imdb"
    asset_fields = ASSET_FIELDS

    @property
    def splits(self) -> ImdbSplits:
        return load_splits(find_imdb(self.data_dir, self.cache_dir))

    # --- prepare: build the cached assets once ---------------------------------------------------

    def build_assets(self, tmp: Path) -> dict:
        """Tokenizer, LM and reward."""
        cfg, meta = self.cfg, {}
        start = time.perf_counter()
        splits = self.splits
        meta["data_seconds"] = time.perf_counter() - start
        if cfg.policy == "scratch":
            # Pretraining text: the 20k train split + 50k unsup reviews, never val or test.
            texts = [t for t, _ in splits.train] + splits.unsup
            texts = [texts[i] for i in np.random.default_rng(0).permutation(len(texts))]
            t0 = time.perf_counter()
            say("training tokenizer" if cfg.tokenizer == "bpe" else "loading the GPT-2 tokenizer")
            tokenizer = train_tokenizer(cfg, texts, self.data_dir)
            tokenizer.save(str(tmp / "tokenizer.json"))
            eot_id = tokenizer.token_to_id(END_OF_TEXT)
            stream = token_stream(tokenizer, texts, eot_id, cfg.lm_train_tokens + cfg.lm_context)
            meta["tokenizer_seconds"] = time.perf_counter() - t0
            meta["lm_text_tokens"] = len(stream)
            model, stats = pretrain_lm(cfg, stream, tokenizer.get_vocab_size(), eot_id, self.device)
            meta.update(stats)
            model.save_pretrained(tmp / "lm")
            meta["lm_val_perplexity"] = perplexity(model.to(self.device), self.ppl_tokens("val", tokenizer),
                                                   cfg.lm_context, device=self.device)
        for kind, prefix in ((cfg.reward, "reward"), (cfg.gold_reward, "gold_reward")):
            if kind in LOCAL_CLASSIFIERS:
                t0 = time.perf_counter()
                say(f"training the {kind} {prefix.replace('_', ' ')} on the 20k train split")
                classifier, accuracy = train_classifier(kind, splits, prefix)
                save_classifier(kind, classifier, tmp / LOCAL_CLASSIFIERS[kind])
                meta.update(accuracy, **{f"{prefix}_seconds": time.perf_counter() - t0})
        return meta

    def load_reward(self, kind: str):
        if kind in LOCAL_CLASSIFIERS:
            path = self.asset_dir / LOCAL_CLASSIFIERS[kind]
            if not path.exists() and path.with_suffix(".pkl").exists():  # built before the classifiers were data
                raise ErbenchError(f"{path.with_suffix('.pkl')} is a pickled classifier, which erbench no longer reads "
                                   "(a pickle runs code)", "run `erbench prepare imdb --force` to rebuild it as data")
            return LocalClassifierReward(load_classifier(kind, path))
        return HubClassifierReward(kind, self.device)

    # --- load: models, reward and encoded prompts for a run --------------------------------------

    def load_policy(self) -> torch.nn.Module:
        """Load the initial policy and everything the task needs to serve it; returns the LM on the device."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cfg = self.cfg
        quiet_model_loading()
        with self.loading_assets("IMDB models", also=", or check the hub id and your network for the paper scale"):
            if cfg.policy == "scratch":
                self.tokenizer, model = load_scratch_lm(self.asset_dir)
            else:
                self.tokenizer = AutoTokenizer.from_pretrained(cfg.policy).backend_tokenizer
                model = AutoModelForCausalLM.from_pretrained(cfg.policy)
            self.reward = self.load_reward(cfg.reward)
            self.gold_reward = None if cfg.gold_reward == "none" else self.load_reward(cfg.gold_reward)
        self.eot_id = self.tokenizer.token_to_id(END_OF_TEXT)
        self.context = model.config.n_positions
        self.prompts = {
            "train": self.encode_prompts([prompt_of(t) for t, _ in self.splits.train]),
            "val": self.encode_prompts([prompt_of(t) for t, _ in sample(self.splits.val, cfg.eval_prompts)]),
            "test": self.encode_prompts([prompt_of(t) for t, _ in sample(self.splits.test, cfg.test_prompts)]),
        }
        self.review_tokens = {split: self.ppl_tokens(split, self.tokenizer) for split in ("val", "test")}
        return fused_gelu(model).to(self.device)

    def ppl_tokens(self, split: str, tokenizer) -> list[int]:
        reviews = [t for t, _ in sample(getattr(self.splits, split), self.cfg.ppl_reviews)]
        return tokenizer.encode("\n\n".join(reviews)).ids

    def encode_prompts(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-truncate to prompt_tokens and left-pad with end-of-text."""
        encoded = [e.ids[-self.cfg.prompt_tokens:] or [self.eot_id] for e in self.tokenizer.encode_batch(prompts)]
        return left_pad(encoded, self.eot_id)

    # --- the protocol the trainer uses ------------------------------------------------------------

    def sample_prompts(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.prompts["train"]
        index = torch.randint(len(ids), (n,), generator=generator)
        ids, mask = ids[index], mask[index]
        keep = mask.sum(0) > 0  # drop columns that are padding in every row
        return ids[:, keep].to(self.device), mask[:, keep].to(self.device)

    def generate(self, model, prompts: tuple[torch.Tensor, torch.Tensor], logits_processor=None) -> Rollout:
        prompt_ids, prompt_mask = prompts
        response = sample_responses(model, prompt_ids, prompt_mask, self.cfg.response_tokens, self.cfg.top_k,
                                    pad_token_id=self.eot_id, banned_token_ids=[self.eot_id], logits_processor=logits_processor,
                                    kv_cache=self.cfg.kv_cache)
        return Rollout(prompt_ids, prompt_mask, response)

    def texts(self, rollout: Rollout) -> tuple[list[str], list[str]]:
        prompts = [ids[mask.bool()].tolist() for ids, mask in zip(rollout.prompt_ids.cpu(), rollout.prompt_mask.cpu())]
        return self.tokenizer.decode_batch(prompts), self.tokenizer.decode_batch(rollout.response_ids.cpu().tolist())

    def score(self, rollout: Rollout) -> torch.Tensor:
        prompts, responses = self.texts(rollout)
        return self.score_texts([p + r for p, r in zip(prompts, responses)], rollout.response_ids.device)

    def score_texts(self, texts: list[str], device: torch.device) -> torch.Tensor:
        """P(positive) of prompt + continuation (the paper scores both)."""
        return torch.as_tensor(np.asarray(self.reward(texts)), dtype=torch.float32, device=device)

    @torch.no_grad()
    def evaluate(self, model, init_model, split: str, samples: int = 0) -> dict:
        """Reward (and gold reward), exact and sampled KL to the initial model, distinct-n on held-out prompts;
        perplexity on human reviews; with `samples` N, the first N prompts' responses (rl/ppo.py).

        Sampling uses a fixed seed, so every evaluation of a run sees the same random numbers."""
        ids, mask = self.prompts[split]
        scores, exact, sampled, prompts, responses = [], [], [], [], []
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed + 1)
            for start in range(0, len(ids), self.cfg.eval_batch_size):
                batch_ids = ids[start : start + self.cfg.eval_batch_size].to(self.device)
                batch_mask = mask[start : start + self.cfg.eval_batch_size].to(self.device)
                rollout = self.generate(model, (batch_ids, batch_mask))
                batch_prompts, continuations = self.texts(rollout)  # decoded once for both rewards, distinct-n, samples
                scores.append(self.score_texts([p + r for p, r in zip(batch_prompts, continuations)], rollout.response_ids.device))
                logits = rollout.logits(model)
                init_logits = rollout.logits(init_model)
                exact.append(exact_kl(logits, init_logits).sum(1))
                sampled.append((token_logprobs(logits, rollout.response_ids) - token_logprobs(init_logits, rollout.response_ids)).sum(1))
                prompts += batch_prompts
                responses += continuations
        scores, exact = torch.cat(scores), torch.cat(exact)
        gold = np.asarray(self.gold_reward([p + r for p, r in zip(prompts, responses)])) if self.gold_reward else None
        metrics = {
            "reward": scores.mean().item(),
            **({"reward_gold": float(gold.mean())} if gold is not None else {}),
            "reward_stderr": (scores.std() / math.sqrt(len(scores))).item() if len(scores) > 1 else 0.0,
            "kl_to_init": exact.mean().item(),
            "kl_to_init_sampled": torch.cat(sampled).mean().item(),
            "perplexity": perplexity(model, self.review_tokens[split], self.context, device=self.device),
            "distinct_1": distinct_n(responses, 1),
            "distinct_2": distinct_n(responses, 2),
        }
        if samples:
            metrics["samples"] = [
                {"prompt": prompts[i], "response": responses[i], "reward": scores[i].item(),
                 **({"reward_gold": float(gold[i])} if gold is not None else {}), "kl_to_init": exact[i].item()}
                for i in range(min(samples, len(responses)))]
        return metrics
