"""Pivot translation game FR->EN->DE on Multi30k (paper §3.1; SIL/Lee, paper.md §3.1 and §9.2).

Data: Multi30k task 1 (`multi30k/task1/raw/*.{fr,en,de}.gz` in the data dir, else downloaded from
github.com/multi30k/dataset). A seed-0 permutation of the 29,000 train triples gives disjoint parts:
A (FR->EN pretraining), B (EN->DE pretraining) and C (the game: French in, German reference; C's
English is never trained on). val (1,014) serves curves and best-checkpoint selection, test2016
(1,000) the final numbers. Text is lower-cased and whitespace-normalised; one sentencepiece BPE is
trained on the text of A and B only (pad 0, unk 1, bos 2, eos 3).

`prepare` pretrains the two agents (teacher forcing, best val BLEU kept) and an English GRU LM on
the English of A and B. In the game the FR->EN agent is the PPO policy: it samples an English
message (min 3, max 40 tokens) for a French sentence; the EN->DE listener reads it; the reward is
the length-normalised log-likelihood of the German reference given the message (SIL/Lee), or the
sentence BLEU of the listener's greedy German. The listener learns jointly by supervised NLL on the
German reference given the message (SIL), unless `listener_learns = false`. Methods act on the
FR->EN policy only; the listener is reset with it only when `reset_listener = true`.

Metrics (greedy decoding): reward = BLEU_De of the whole pivot (task); drift = BLEU_En of the
message against the English reference, NLL of the message under the English LM (masked per-token
mean), teacher-forced NLL of FR->EN on human pairs, exact KL to the pretrained FR->EN.
"""

import copy
import functools
import gzip
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from erbench.config import require
from erbench.downloads import find_or_download
from erbench.errors import ErbenchError
from erbench.metrics.bleu import corpus_bleu, sentence_bleu, sil_bleu
from erbench.models.seq2seq import EOS, PAD, GruLM, Seq2SeqAgent
from erbench.progress import progress_bar, say
from erbench.rl.kl import exact_kl
from erbench.rl.policy import Seq2SeqCritic, Seq2SeqRollout
from erbench.tasks.base import Task

MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{}"
MULTI30K_FILES = {"train": ("train", 29000), "val": ("val", 1014), "test": ("test_2016_flickr", 1000)}
MAX_SENTENCE_TOKENS = 60  # longer sentences are truncated (Multi30k captions average ~15 BPE tokens)
# Fields that shape the prepared assets: changing one of them rebuilds, changing others does not.
ASSET_FIELDS = ("pretrain_corpus", "part_a", "part_b", "pretrain_limit", "vocab_size", "agent_emb", "agent_hid",
                "agent_dropout", "pretrain_epochs", "pretrain_batch_size", "pretrain_lr", "lm_emb", "lm_hid", "lm_epochs")


@dataclass(frozen=True)
class TranslationConfig:
    pretrain_corpus: Literal["multi30k", "iwslt"] = "multi30k"  # iwslt: IWSLT'16 TED files in <data>/iwslt (paper)
    part_a: int = 10000  # Multi30k train triples for FR->EN pretraining (part A)
    part_b: int = 10000  # for EN->DE pretraining (part B); the rest of the 29,000 play the game (part C)
    pretrain_limit: int = 0  # pretrain on only the first k pairs of each corpus (0 = all): quick looks and tests
    vocab_size: int = 4096  # joint sentencepiece BPE over the pretraining text
    agent_emb: int = 128
    agent_hid: int = 192
    agent_dropout: float = 0.3
    pretrain_epochs: int = 6
    pretrain_batch_size: int = 64
    pretrain_lr: float = 1e-3
    lm_emb: int = 128
    lm_hid: int = 256
    lm_epochs: int = 3
    max_message_tokens: int = 40
    min_message_tokens: int = 3
    reward: Literal["nll", "bleu"] = "nll"  # nll: -NLL_De of the reference per token (SIL/Lee); bleu: sentence BLEU_De
    listener_learns: bool = True  # EN->DE learns from the German reference given each message (SIL); False = frozen
    listener_lr: float = 1e-4
    reset_listener: bool = False  # at every policy reset also reset EN->DE to its pretrained weights
    game_sentences: int = 0  # play on only the first k sentences of part C (0 = all)
    eval_sentences: int = 256  # val sentences per evaluation (0 = all 1,014)
    test_sentences: int = 0  # test2016 sentences in the final evaluation (0 = all 1,000)
    eval_batch_size: int = 256

    def __post_init__(self):
        for key in ("part_a", "part_b", "vocab_size", "agent_emb", "agent_hid", "pretrain_epochs", "pretrain_batch_size",
                    "lm_emb", "lm_hid", "lm_epochs", "max_message_tokens", "eval_batch_size"):
            require(getattr(self, key) >= 1, f"task.{key}", getattr(self, key), "an integer >= 1")
        for key in ("pretrain_limit", "min_message_tokens", "game_sentences", "eval_sentences", "test_sentences"):
            require(getattr(self, key) >= 0, f"task.{key}", getattr(self, key), ">= 0")
        require(self.part_a + self.part_b <= 28000, "task.part_b", self.part_b,
                f"<= {28000 - self.part_a}: parts A and B leave at least 1,000 of the 29,000 train triples for the game")
        require(self.min_message_tokens < self.max_message_tokens, "task.min_message_tokens", self.min_message_tokens,
                f"< task.max_message_tokens ({self.max_message_tokens})")
        require(0 <= self.agent_dropout < 1, "task.agent_dropout", self.agent_dropout, "in [0, 1)")
        require(self.pretrain_lr > 0 and self.listener_lr > 0, "task.listener_lr", self.listener_lr, "> 0 (and pretrain_lr too)")
        require(self.vocab_size >= 64, "task.vocab_size", self.vocab_size, ">= 64")


# ----------------------------------------------------------------------------------------------- data

def normalise(line: str) -> str:
    return " ".join(line.lower().split())


def multi30k_file(data_dir: Path | None, cache_dir: Path, split: str, lang: str) -> Path:
    name = f"{MULTI30K_FILES[split][0]}.{lang}.gz"
    candidates = [data_dir / "multi30k" / "task1" / "raw" / name, data_dir / "multi30k" / name] if data_dir else []
    return find_or_download(candidates, MULTI30K_URL.format(name), cache_dir / "downloads" / "multi30k" / name,
                            f"Multi30k {name}", "pass --data-dir (or set ERBENCH_DATA) to a folder holding multi30k/task1/raw/*.gz")


@functools.lru_cache(maxsize=2)
def read_split(paths: tuple[Path, ...], expected: int) -> tuple[list[str], ...]:
    """One split's (fr, en, de) lines, normalised; checked to be complete and aligned."""
    columns = []
    for path in paths:
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                columns.append([normalise(line) for line in f.read().splitlines()])
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise ErbenchError(f"cannot read {path}: {e}", "replace it with the intact file from github.com/multi30k/dataset") from None
        if len(columns[-1]) != expected:
            raise ErbenchError(f"{path} has {len(columns[-1])} lines, not {expected}",
                               "use the complete Multi30k task 1 files (github.com/multi30k/dataset, data/task1/raw)")
    return tuple(columns)


def split_parts(part_a: int, part_b: int, total: int = 29000) -> dict[str, np.ndarray]:
    """Disjoint index sets of the train triples: A, B and C (the rest), from a seed-0 permutation."""
    order = np.random.default_rng(0).permutation(total)
    return {"a": order[:part_a], "b": order[part_a : part_a + part_b], "c": order[part_a + part_b :]}


def read_iwslt(data_dir: Path | None, pair: str) -> tuple[list[str], list[str]]:
    """IWSLT'16 TED training text (`train.tags.<pair>.<lang>`, metadata lines in <...> dropped), the paper's corpus."""
    source_lang, target_lang = pair.split("-")
    folder = (data_dir / "iwslt" / pair) if data_dir else Path("iwslt") / pair
    paths = [folder / f"train.tags.{pair}.{lang}" for lang in (source_lang, target_lang)]
    if not all(p.exists() for p in paths):
        raise ErbenchError(f"IWSLT'16 {pair} training files not found ({paths[0]}, ...)",
                           f"extract {pair}.tgz of the IWSLT 2016 release (wit3.fbk.eu/2016-01) into <data dir>/iwslt/{pair}/, "
                           "or use --set task.pretrain_corpus=multi30k")
    sides = [[normalise(line) for line in p.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("<")]
             for p in paths]
    if len(sides[0]) != len(sides[1]):
        raise ErbenchError(f"IWSLT'16 {pair} files are not aligned ({len(sides[0])} vs {len(sides[1])} lines)",
                           "re-extract the release")
    return sides[0], sides[1]


# ----------------------------------------------------------------------------------------------- tensors

def encode(sp, lines: list[str]) -> list[list[int]]:
    return [ids[: MAX_SENTENCE_TOKENS - 1] + [EOS] for ids in sp.encode(lines)]


def pad(rows: list[list[int]], device: torch.device | str = "cpu") -> torch.Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), PAD, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out.to(device)


def strip(ids: torch.Tensor) -> list[list[int]]:
    """Token ids before the first <eos> (or padding), per row."""
    rows = []
    for row in ids.tolist():
        end = next((i for i, t in enumerate(row) if t in (EOS, PAD)), len(row))
        rows.append(row[:end])
    return rows


def as_sentences(messages: torch.Tensor) -> torch.Tensor:
    """Messages as listener/LM input: each ends in exactly one <eos> (appended when the length limit cut it off)."""
    return pad([row + [EOS] for row in strip(messages)], messages.device)


def length_batches(lengths: list[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches of similar lengths (less padding): sort shuffled pools of 50 batches by length."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    batches = []
    pool = 50 * batch_size
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


# ----------------------------------------------------------------------------------------------- pretraining

@torch.no_grad()
def translate(agent: Seq2SeqAgent, sources: list[list[int]], device, batch_size: int = 256, max_tokens: int = MAX_SENTENCE_TOKENS,
              min_tokens: int = 0) -> torch.Tensor:
    """Greedy outputs, [N, <=max_tokens] ids (rows end at <eos>), in the order of `sources`."""
    was_training = agent.training
    agent.eval()
    outputs = [agent.decode(pad(sources[i : i + batch_size], device), max_tokens, min_tokens)
               for i in range(0, len(sources), batch_size)]
    agent.train(was_training)
    width = max(o.shape[1] for o in outputs)
    return torch.cat([F.pad(o, (0, width - o.shape[1])) for o in outputs])


def pretrain_agent(label: str, cfg: TranslationConfig, source: list[list[int]], target: list[list[int]],
                   val_source: list[list[int]], val_references: list[str], sp, device) -> tuple[Seq2SeqAgent, dict]:
    """Teacher-forced NLL (Adam, dropout, clip 1.0) for `pretrain_epochs`; the epoch with the best val BLEU is kept."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    agent = Seq2SeqAgent(sp.get_piece_size(), cfg.agent_emb, cfg.agent_hid, cfg.agent_dropout).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.pretrain_lr, betas=(0.9, 0.98))
    lengths = [max(len(s), len(t)) for s, t in zip(source, target)]
    steps_per_epoch = math.ceil(len(source) / cfg.pretrain_batch_size)
    best_bleu, best_state, curve, start = -1.0, None, [], time.perf_counter()
    with progress_bar(f"pretraining {label}", cfg.pretrain_epochs * steps_per_epoch) as advance:
        for epoch in range(cfg.pretrain_epochs):
            agent.train()
            for batch in length_batches(lengths, cfg.pretrain_batch_size, generator):
                src, tgt = pad([source[i] for i in batch], device), pad([target[i] for i in batch], device)
                loss = F.cross_entropy(agent.logits(src, tgt).transpose(1, 2), tgt, ignore_index=PAD)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(agent.parameters(), 1.0)
                optimizer.step()
                advance(info=f"loss {loss.item():.3f}")
            bleu = corpus_bleu(sp.decode(strip(translate(agent, val_source, device))), val_references)
            curve.append(round(bleu, 2))
            if bleu > best_bleu:
                best_bleu, best_state = bleu, copy.deepcopy(agent.state_dict())
    agent.load_state_dict(best_state)
    return agent.eval(), {f"{label}_val_bleu": best_bleu, f"{label}_val_bleu_per_epoch": curve,
                          f"{label}_seconds": time.perf_counter() - start}


def train_english_lm(cfg: TranslationConfig, sentences: list[list[int]], val: list[list[int]], vocab_size: int,
                     device) -> tuple[GruLM, dict]:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    lm = GruLM(vocab_size, cfg.lm_emb, cfg.lm_hid, dropout=0.2).to(device)
    optimizer = torch.optim.Adam(lm.parameters(), lr=1e-3)
    start = time.perf_counter()
    batches_per_epoch = math.ceil(len(sentences) / 64)
    with progress_bar("pretraining English LM", cfg.lm_epochs * batches_per_epoch) as advance:
        for _ in range(cfg.lm_epochs):
            lm.train()
            for batch in length_batches([len(s) for s in sentences], 64, generator):
                tokens = pad([sentences[i] for i in batch], device)
                loss = lm.token_nll(tokens).sum() / (tokens != PAD).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
                optimizer.step()
                advance(info=f"loss {loss.item():.3f}")
    lm.eval()
    return lm, {"lm_val_nll": lm_nll(lm, pad(val, device)), "lm_seconds": time.perf_counter() - start}


@torch.no_grad()
def lm_nll(lm: GruLM, sentences: torch.Tensor) -> float:
    """Per-token NLL over all real tokens (<eos> included); padding counts nowhere."""
    return (lm.token_nll(sentences).sum() / (sentences != PAD).sum()).item()


def save_module(module: torch.nn.Module, path: Path) -> None:
    """Weights as safetensors (data, never code) with the constructor's arguments as JSON metadata."""
    from safetensors.torch import save_model

    save_model(module, str(path), metadata={"config": json.dumps(module.config)})


def load_module(cls, path: Path, device) -> torch.nn.Module:
    from safetensors import safe_open
    from safetensors.torch import load_model

    with safe_open(str(path), "pt") as stored:
        config = json.loads(stored.metadata()["config"])
    module = cls(**config)
    load_model(module, str(path))
    return module.to(device).eval()



# ----------------------------------------------------------------------------------------------- task

class TranslationTask(Task):
    config_class = TranslationConfig
    name = "translation"
    asset_fields = ASSET_FIELDS

    def split(self, name: str) -> dict[str, list[str]]:
        """{"fr": [...], "en": [...], "de": [...]} of a Multi30k split (train, val or test)."""
        paths = tuple(multi30k_file(self.data_dir, self.cache_dir, name, lang) for lang in ("fr", "en", "de"))
        return dict(zip(("fr", "en", "de"), read_split(paths, MULTI30K_FILES[name][1])))

    def pretraining_text(self) -> dict[str, tuple[list[str], list[str]]]:
        """{"fr-en": (French, English), "en-de": (English, German)}: parts A and B, or IWSLT'16 at the paper scale."""
        cfg = self.cfg
        if cfg.pretrain_corpus == "iwslt":
            pairs = {pair: read_iwslt(self.data_dir, pair) for pair in ("fr-en", "en-de")}
        else:
            train, parts = self.split("train"), split_parts(cfg.part_a, cfg.part_b)
            pairs = {"fr-en": ([train["fr"][i] for i in parts["a"]], [train["en"][i] for i in parts["a"]]),
                     "en-de": ([train["en"][i] for i in parts["b"]], [train["de"][i] for i in parts["b"]])}
        if cfg.pretrain_limit:
            pairs = {pair: (src[: cfg.pretrain_limit], tgt[: cfg.pretrain_limit]) for pair, (src, tgt) in pairs.items()}
        return pairs

    # --- prepare: tokenizer, both agents and the English LM, once --------------------------------

    def build_assets(self, tmp: Path) -> dict:
        import sentencepiece as spm

        cfg, device, meta = self.cfg, self.device, {}
        text, val = self.pretraining_text(), self.split("val")
        meta["pretrain_pairs"] = {pair: len(src) for pair, (src, _) in text.items()}

        t0 = time.perf_counter()
        say(f"training a {cfg.vocab_size}-piece sentencepiece BPE on the pretraining text")
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter([line for src, tgt in text.values() for line in src + tgt]), model_writer=model,
            vocab_size=cfg.vocab_size, model_type="bpe", character_coverage=1.0, pad_id=PAD, unk_id=1, bos_id=2,
            eos_id=EOS, num_threads=2, minloglevel=2, input_sentence_size=2_000_000, shuffle_input_sentence=False)
        (tmp / "spm.model").write_bytes(model.getvalue())
        sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
        meta["tokenizer_seconds"] = time.perf_counter() - t0

        agents = {}
        for pair, (src, tgt) in text.items():
            source_lang, target_lang = pair.split("-")
            agent, stats = pretrain_agent(pair.replace("-", "_"), cfg, encode(sp, src), encode(sp, tgt),
                                          encode(sp, val[source_lang]), val[target_lang], sp, device)
            save_module(agent, tmp / f"{pair}.safetensors")
            agents[pair] = agent
            meta.update(stats)
        messages = translate(agents["fr-en"], encode(sp, val["fr"]), device, max_tokens=cfg.max_message_tokens,
                             min_tokens=cfg.min_message_tokens)
        german = translate(agents["en-de"], [row + [EOS] for row in strip(messages)], device)
        meta["pivot_val_bleu_de"] = corpus_bleu(sp.decode(strip(german)), val["de"])
        meta["pivot_val_bleu_en"] = corpus_bleu(sp.decode(strip(messages)), val["en"])

        english = text["fr-en"][1] + text["en-de"][0]
        lm, stats = train_english_lm(cfg, encode(sp, english), encode(sp, val["en"]), sp.get_piece_size(), device)
        save_module(lm, tmp / "en-lm.safetensors")
        meta.update(stats)
        return meta

    # --- load: agents, LM and encoded sentences for a run ----------------------------------------

    def load_policy(self) -> Seq2SeqAgent:
        """Load the pretrained agents and the LM; the FR->EN agent (returned) becomes the policy."""
        import sentencepiece as spm

        cfg = self.cfg
        with self.loading_assets("the translation agents"):
            self.sp = spm.SentencePieceProcessor(model_file=str(self.asset_dir / "spm.model"))
            policy = load_module(Seq2SeqAgent, self.asset_dir / "fr-en.safetensors", self.device)
            self.listener = load_module(Seq2SeqAgent, self.asset_dir / "en-de.safetensors", self.device)
            self.english_lm = load_module(GruLM, self.asset_dir / "en-lm.safetensors", self.device)
        self.listener.requires_grad_(cfg.listener_learns)
        self.listener_init = copy.deepcopy(self.listener.state_dict())
        self.listener_optimizer = torch.optim.Adam(self.listener.parameters(), lr=cfg.listener_lr, betas=(0.9, 0.98))
        self.nll_rollout = None  # the rollout whose listener NLL `self.nll` holds (see listener_nll)
        train, parts = self.split("train"), split_parts(cfg.part_a, cfg.part_b)
        game = parts["c"][: cfg.game_sentences or None]
        self.game = {"fr": encode(self.sp, [train["fr"][i] for i in game]), "de": encode(self.sp, [train["de"][i] for i in game])}
        self.held_out = {}
        for split, limit in (("val", cfg.eval_sentences), ("test", cfg.test_sentences)):
            rows = self.split(split)
            keep = sorted(np.random.default_rng(0).permutation(len(rows["fr"]))[:limit]) if limit else range(len(rows["fr"]))
            rows = {lang: [lines[i] for i in keep] for lang, lines in rows.items()}
            self.held_out[split] = {**rows, "fr_ids": encode(self.sp, rows["fr"]), "en_ids": encode(self.sp, rows["en"])}
        return policy

    def make_critic(self, policy: Seq2SeqAgent) -> Seq2SeqCritic:
        return Seq2SeqCritic(policy)

    # --- the protocol the trainer uses ------------------------------------------------------------

    def sample_prompts(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Indices of n French sentences of the game part."""
        return torch.randint(len(self.game["fr"]), (n,), generator=generator).to(self.device)

    def generate(self, model, prompts: torch.Tensor, logits_processor=None) -> Seq2SeqRollout:
        if logits_processor is not None:
            raise ErbenchError("the translation task cannot restrict sampling with a logits processor",
                               "use a method that samples the policy as it is (see `erbench list`)")
        source = pad([self.game["fr"][i] for i in prompts.tolist()], self.device)
        messages = model.decode(source, self.cfg.max_message_tokens, self.cfg.min_message_tokens, greedy=False)
        return Seq2SeqRollout(source, messages, self.cfg.min_message_tokens, example_ids=prompts)

    def references(self, rollout: Seq2SeqRollout) -> torch.Tensor:
        return pad([self.game["de"][i] for i in rollout.example_ids.tolist()], self.device)

    def listener_nll(self, rollout: Seq2SeqRollout) -> torch.Tensor:
        """The listener's per-message NLL of the German references, one pass per rollout: `score` reads it and
        `learn` trains on the same pass (the trainer calls them in that order, with no listener step between)."""
        if self.nll_rollout is not rollout:
            with torch.set_grad_enabled(self.cfg.listener_learns):
                self.nll = self.listener.nll(as_sentences(rollout.response_ids), self.references(rollout))
            self.nll_rollout = rollout
        return self.nll

    def score(self, rollout: Seq2SeqRollout) -> torch.Tensor:
        """Per message: the listener's mean log-likelihood of the German reference, or the sentence BLEU of its German."""
        if self.cfg.reward == "nll":
            return -self.listener_nll(rollout).detach()
        german = self.sp.decode(strip(self.listener.decode(as_sentences(rollout.response_ids), MAX_SENTENCE_TOKENS)))
        references = self.sp.decode(strip(self.references(rollout)))
        return torch.tensor([sentence_bleu(g, r) for g, r in zip(german, references)], device=self.device)

    def learn(self, rollout: Seq2SeqRollout) -> dict[str, float]:
        """One supervised step of the listener on the German references given the sampled messages."""
        if not self.cfg.listener_learns:
            return {}
        loss = self.listener_nll(rollout).mean()
        self.nll_rollout = None  # its graph is spent by this step
        self.listener_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.listener.parameters(), 1.0)
        self.listener_optimizer.step()
        return {"listener_loss": loss.item()}

    def state_dict(self) -> dict:
        return {"listener": self.listener.state_dict(), "listener_optimizer": self.listener_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.listener.load_state_dict(state["listener"])
        self.listener_optimizer.load_state_dict(state["listener_optimizer"])

    def on_policy_reset(self) -> None:
        if self.cfg.reset_listener:
            self.listener.load_state_dict(self.listener_init)
            self.listener_optimizer.state.clear()

    @torch.no_grad()
    def evaluate(self, model, init_model, split: str, samples: int = 0) -> dict:
        """Greedy pivot on held-out sentences: BLEU_De (reward), BLEU_En, English-LM NLL, human-pair NLL, KL to init;
        with `samples` N, the first N sentences' pivots and sentence BLEU (rl/ppo.py)."""
        if split not in self.held_out:
            raise ErbenchError(f"unknown split '{split}' for the translation task", "use val or test")
        rows, cfg = self.held_out[split], self.cfg
        messages = translate(model, rows["fr_ids"], self.device, cfg.eval_batch_size, cfg.max_message_tokens,
                             cfg.min_message_tokens)
        english = as_sentences(messages)
        german = translate(self.listener, [row + [EOS] for row in strip(messages)], self.device, cfg.eval_batch_size)
        english_text, german_text = self.sp.decode(strip(messages)), self.sp.decode(strip(german))
        kl, real_nll, real_tokens = [], 0.0, 0
        for start in range(0, len(messages), cfg.eval_batch_size):
            source = pad(rows["fr_ids"][start : start + cfg.eval_batch_size], self.device)
            batch = messages[start : start + cfg.eval_batch_size]
            rollout = Seq2SeqRollout(source, batch[:, : int((batch != PAD).sum(1).max())], cfg.min_message_tokens)
            kl.append((exact_kl(rollout.logits(model), rollout.logits(init_model)) * rollout.response_mask).sum(1))
            reference = pad(rows["en_ids"][start : start + cfg.eval_batch_size], self.device)
            real_nll += (model.nll(source, reference) * (reference != PAD).sum(1)).sum().item()
            real_tokens += int((reference != PAD).sum())
        bleu_de, kl = corpus_bleu(german_text, rows["de"]), torch.cat(kl)
        metrics = {
            "reward": bleu_de,  # the task's reward side in reports and plots: BLEU_De of the whole pivot
            "bleu_de": bleu_de,
            "bleu_en": corpus_bleu(english_text, rows["en"]),
            "lm_nll": lm_nll(self.english_lm, english.to(self.device)),
            "real_nll": real_nll / real_tokens,  # per token of the human English references
            "kl_to_init": kl.mean().item(),
            "bleu_de_sil": sil_bleu(german_text, rows["de"], "de"),
            "bleu_en_sil": sil_bleu(english_text, rows["en"], "en"),
            "message_tokens": (english != PAD).sum(1).float().mean().item() - 1,
        }
        if samples:  # reward = the sentence's BLEU_De on the corpus scale (0-100); response = the English pivot
            metrics["samples"] = [
                {"prompt": rows["fr"][i], "response": english_text[i], "german": german_text[i],
                 "reward": 100 * sentence_bleu(german_text[i], rows["de"][i]),
                 "bleu_en": 100 * sentence_bleu(english_text[i], rows["en"][i]), "kl_to_init": kl[i].item(),
                 "reference_en": rows["en"][i], "reference_de": rows["de"][i]}
                for i in range(min(samples, len(english_text)))]
        return metrics
