"""Arithmetic with a verifiable reward (issue 28): RL on problems whose answer a parser checks exactly; the drift
Elastic Reset should prevent is pass@k at large k (RL sharpens pass@1 and may narrow what the policy can still solve).

Answer format (every scale): a response's first line that starts with "####" is its answer line; it scores 1 when
it is exactly "#### N" (N an ASCII integer: an optional "-", no leading zeros, no "-0", at most 30 digits) ended by a newline
and N is the problem's answer; every other response scores 0 (no answer line, a malformed one, an unterminated one
that the length limit may have cut, a wrong number). Only the first answer line counts, so a second one never helps.
A response ends at its answer line: sampling stops there, and the tokens after it (when the batch samples on) are
masked out of the reward position, KL, losses and metrics.

Scales:
  tiny   problems generated from `problem_seed` (addition, subtraction, multiplication, chains of + and -), a
         character-level GPT-2-architecture LM pretrained by `prepare` on worked solutions of the train problems;
         RL prompts never show the `holdout` operation, whose accuracy is the capability probe
  small / paper  a hub instruct model (Qwen/Qwen2.5-0.5B-Instruct) on GSM8K's `#### N` answers (openai/gsm8k,
         config main: RL on train less its last `eval_problems`, val = those, test = the test split); the probe is
         generated problems of the `holdout` operation in the same prompt
"""

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from transformers import StoppingCriteria

from erbench.config import require
from erbench.errors import ErbenchError
from erbench.metrics.diversity import distinct_n
from erbench.metrics.pass_at_k import pass_at_k
from erbench.metrics.perplexity import perplexity
from erbench.progress import quiet_model_loading, say
from erbench.rl.kl import exact_kl
from erbench.rl.policy import Rollout, left_pad, sample_responses
from erbench.tasks.base import Task

OPERATIONS = ("add", "sub", "mul", "chain")
END_OF_TEXT = "<|endoftext|>"
CHARACTERS = "0123456789+-*=;:#QA \n"  # the tiny scale's whole vocabulary, after end-of-text
ANSWER_LINE = re.compile(r"#### (0|-?[1-9][0-9]{0,29})")
INSTRUCTION = "Solve the problem step by step, then give the final answer on its own last line as '#### <integer>'.\n\n"
ASSET_FIELDS = ("data", "policy", "operations", "max_digits", "chain_terms", "problem_seed", "train_problems",
                "lm_layers", "lm_width", "lm_heads", "lm_context", "lm_train_tokens", "lm_batch_size", "lm_lr")


@dataclass(frozen=True)
class ArithConfig:
    data: str = "generated"  # "generated": problems from problem_seed; else GSM8K (a hub id or a folder in its layout)
    policy: str = "scratch"  # "scratch": `prepare` trains a character-level LM on worked solutions; else a hub id or model dir
    operations: str = "add,sub,mul,chain"  # the operations generated problems draw from (comma-separated)
    holdout: str = "sub"  # the operation RL prompts never show: its accuracy is the capability probe ("" = none)
    max_digits: int = 3  # operands of add, sub and mul's first factor have 1..max_digits digits (mul's second: 1..2)
    chain_terms: int = 4  # terms of a chain (1-2 digit numbers joined by + and -, worked left to right)
    problem_seed: int = 0  # the seed the problems are generated from (the run's seed never changes them)
    train_problems: int = 30000  # generated problems whose worked solutions pretrain the LM; RL prompts are among them
    lm_layers: int = 4
    lm_width: int = 128
    lm_heads: int = 4
    lm_context: int = 128  # pretraining block length; the perplexity window
    lm_train_tokens: int = 3_000_000
    lm_batch_size: int = 32
    lm_lr: float = 1e-3
    lm_compile: bool = False
    top_k: int = 0  # rollout and evaluation sampling (0 = the full softmax, temperature 1)
    kv_cache: Literal["dynamic", "static"] = "dynamic"
    prompt_tokens: int = 256  # longer prompts (GSM8K) are dropped
    response_tokens: int = 64  # the most tokens a response may take to reach its answer line
    eval_problems: int = 32  # held-out problems per evaluation (val); test: test_problems
    test_problems: int = 64
    samples_per_problem: int = 64  # n of the unbiased pass@k (k = 1, 2, 4, ... up to n)
    kl_samples: int = 8  # the first samples of each problem the exact KL to the initial model is measured on
    probe_problems: int = 32  # held-out-operation problems per evaluation
    probe_samples: int = 4  # samples per probe problem
    ppl_solutions: int = 200  # reference worked solutions joined for the perplexity
    eval_batch_size: int = 256

    def __post_init__(self):
        for key in ("max_digits", "chain_terms", "train_problems", "lm_layers", "lm_width", "lm_heads", "lm_context",
                    "lm_train_tokens", "lm_batch_size", "prompt_tokens", "response_tokens", "eval_problems",
                    "test_problems", "samples_per_problem", "kl_samples", "probe_samples", "ppl_solutions", "eval_batch_size"):
            require(getattr(self, key) >= 1, f"task.{key}", getattr(self, key), "an integer >= 1")
        require(self.probe_problems >= 0, "task.probe_problems", self.probe_problems, ">= 0")
        require(self.chain_terms >= 2, "task.chain_terms", self.chain_terms, ">= 2")
        require(self.top_k >= 0, "task.top_k", self.top_k, ">= 0 (0 = no top-k)")
        require(self.lm_lr > 0, "task.lm_lr", self.lm_lr, "> 0")
        require(self.lm_width % self.lm_heads == 0, "task.lm_width", self.lm_width, f"a multiple of task.lm_heads ({self.lm_heads})")
        unknown = [op for op in self.ops if op not in OPERATIONS]
        require(not unknown and len(self.ops) > 0, "task.operations", self.operations,
                f"a comma-separated list of {', '.join(OPERATIONS)}")
        require(self.holdout in ("", *self.ops), "task.holdout", self.holdout, f"one of task.operations ({self.operations}), or empty")
        if self.data == "generated":
            require(len(self.rl_ops) > 0, "task.holdout", self.holdout, "an operation other than the only one in task.operations")

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(op.strip() for op in self.operations.split(",") if op.strip())

    @property
    def rl_ops(self) -> tuple[str, ...]:
        return tuple(op for op in self.ops if op != self.holdout)

    def ks(self) -> list[int]:
        """The k of pass@k: powers of two up to samples_per_problem."""
        return [2**i for i in range(int(math.log2(self.samples_per_problem)) + 1)]


# ----------------------------------------------------------------------------------------------- answers


def parse_answer(response: str) -> int | None:
    """The integer on the response's first line that starts with "####" when that line is exactly "#### N" and ends with
    a newline; None otherwise (never an exception: huge numbers, non-ASCII digits, several numbers are all None)."""
    for line in response.split("\n")[:-1]:  # complete lines only: the last piece has no newline yet
        if line.startswith("####"):
            match = ANSWER_LINE.fullmatch(line)
            return int(match[1]) if match else None
    return None


def is_correct(response: str, answer: int) -> bool:
    return parse_answer(response) == answer


@dataclass(frozen=True)
class Problem:
    prompt: str  # the text the policy continues
    answer: int
    solution: str  # a reference response: worked steps, then the answer line
    op: str = ""


def operands(rng: np.random.Generator, max_digits: int) -> int:
    digits = int(rng.integers(1, max_digits + 1))
    return int(rng.integers(0 if digits == 1 else 10 ** (digits - 1), 10**digits))


def generate_problem(op: str, rng: np.random.Generator, cfg: ArithConfig) -> Problem:
    """One problem in the tiny format: prompt "Q: <expression>\\nA:", response " <steps>\\n#### <answer>\\n"."""
    if op in ("add", "sub"):
        a, b = operands(rng, cfg.max_digits), operands(rng, cfg.max_digits)
        a, b = (max(a, b), min(a, b)) if op == "sub" else (a, b)
        answer = a + b if op == "add" else a - b
        expression = f"{a}{'+' if op == 'add' else '-'}{b}"
        steps = f"{expression}={answer}"
    elif op == "mul":
        a, b = operands(rng, cfg.max_digits), operands(rng, 2)
        expression, answer = f"{a}*{b}", a * b
        if b < 10:
            steps = f"{a}*{b}={answer}"
        else:  # partial products: the ones digit, the tens, their sum
            ones, tens = a * (b % 10), a * (b - b % 10)
            steps = f"{a}*{b % 10}={ones}; {a}*{b - b % 10}={tens}; {ones}+{tens}={answer}"
    else:
        terms = [operands(rng, 2) for _ in range(cfg.chain_terms)]
        signs = ["+" if s else "-" for s in rng.integers(0, 2, cfg.chain_terms - 1)]
        expression = str(terms[0]) + "".join(s + str(t) for s, t in zip(signs, terms[1:]))
        total, parts = terms[0], []
        for sign, term in zip(signs, terms[1:]):
            new = total + term if sign == "+" else total - term
            parts.append(f"{total}{sign}{term}={new}")
            total = new
        answer, steps = total, "; ".join(parts)
    return Problem(f"Q: {expression}\nA:", answer, f" {steps}\n#### {answer}\n", op)


@dataclass
class ProblemSplits:
    train: list[Problem]  # every operation: the pretraining text; RL prompts = those of the RL operations
    val: list[Problem]  # held out, RL operations
    test: list[Problem]
    probe_val: list[Problem]  # held out, the holdout operation
    probe_test: list[Problem]


def generate_splits(cfg: ArithConfig) -> ProblemSplits:
    """Distinct problems from `problem_seed`: the train problems first, from a stream of their own, so the held-out
    sizes (evaluation fields: changing them must not change the pretraining text) leave them as they are; then val,
    test and probe sets (equal shares of the operations), none of which repeats a train expression."""
    train_rng, held_out_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(cfg.problem_seed).spawn(2))
    seen: set[str] = set()

    def draw(ops: tuple[str, ...], n: int, rng: np.random.Generator) -> list[Problem]:
        problems, tries = [], 0
        while len(problems) < n:
            problem = generate_problem(ops[len(problems) % len(ops)], rng, cfg)
            tries += 1
            if problem.prompt not in seen:
                seen.add(problem.prompt)
                problems.append(problem)
            elif tries > 20 * n + 1000:
                raise ErbenchError(f"cannot generate {n} distinct problems of {', '.join(ops)} with task.max_digits={cfg.max_digits}",
                                   "raise task.max_digits or lower task.train_problems")
        return problems

    train = draw(cfg.ops, cfg.train_problems, train_rng)
    probe = (cfg.holdout,) if cfg.holdout else ()
    val, test = draw(cfg.rl_ops, cfg.eval_problems, held_out_rng), draw(cfg.rl_ops, cfg.test_problems, held_out_rng)
    probe_val = draw(probe, cfg.probe_problems, held_out_rng) if probe else []
    probe_test = draw(probe, cfg.probe_problems, held_out_rng) if probe else []
    return ProblemSplits(train, val, test, probe_val, probe_test)


def gsm8k_answer(text: str) -> int:
    """GSM8K's final answer: the integer after "#### " (thousands separators removed)."""
    return int(text.rsplit("####", 1)[1].strip().replace(",", ""))


def load_gsm8k(source: str) -> dict[str, list[dict]]:
    try:
        from datasets import load_dataset
    except ImportError:
        raise ErbenchError("GSM8K needs the datasets package", "pip install datasets") from None
    import datasets

    datasets.disable_progress_bars()
    rows = load_dataset(source, "main")
    return {split: list(rows[split]) for split in ("train", "test")}


# ----------------------------------------------------------------------------------------------- models


def char_tokenizer():
    """One token per character of the tiny format, end-of-text first; a `tokenizers.Tokenizer` like the other tasks'."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {END_OF_TEXT: 0, **{c: i + 1 for i, c in enumerate(CHARACTERS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=END_OF_TEXT))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens([END_OF_TEXT])
    return tokenizer


class AnswerLineStop(StoppingCriteria):
    """A per-row stopping criterion for `generate`: a row is done once its response holds a complete answer line; its
    response length (tokens up to that line's newline) is kept in `lengths` (the full width when it never ends)."""

    def __init__(self, pieces: list[str], prompt_width: int, rows: int):
        self.pieces, self.width = pieces, prompt_width
        self.lines, self.lengths = [""] * rows, [0] * rows

    def __call__(self, input_ids: torch.Tensor, scores=None, **kwargs) -> torch.Tensor:
        step = input_ids.shape[1] - self.width
        for row, token in enumerate(input_ids[:, -1].tolist()):
            if self.lengths[row]:
                continue
            *complete, self.lines[row] = (self.lines[row] + self.pieces[token]).split("\n")
            if any(line.startswith("####") for line in complete):
                self.lengths[row] = step
        return torch.tensor([bool(n) for n in self.lengths], device=input_ids.device)


class VerifiableReward:
    """1.0 for a text (prompt + response) whose response answers its prompt's problem correctly, else 0.0: the
    causal-lm contract's `task.reward(texts)` (TRL's RLOO/GRPO). The prompt is found as the longest known prompt the
    text starts with."""

    def __init__(self, answers: dict[str, int]):
        self.answers = answers
        self.lengths = sorted({len(p) for p in answers}, reverse=True)

    def __call__(self, texts: list[str]) -> np.ndarray:
        scores = []
        for text in texts:
            length = next((n for n in self.lengths if text[:n] in self.answers), None)
            if length is None:
                raise ErbenchError(f"no known arith prompt starts {text[:60]!r}", "score texts that begin with the task's prompts")
            scores.append(float(is_correct(text[length:], self.answers[text[:length]])))
        return np.asarray(scores, dtype=np.float32)


# ----------------------------------------------------------------------------------------------- task


class ArithTask(Task):
    config_class = ArithConfig
    name = "arith"
    asset_fields = ASSET_FIELDS
    asset_revision = 1  # 1: the train problems (the pretraining text) no longer depend on the held-out sizes

    def build_assets(self, tmp: Path) -> dict:
        cfg = self.cfg
        if cfg.policy != "scratch":
            return {"policy": cfg.policy, "data": cfg.data}  # the hub model is the initial policy: nothing to build
        from transformers import GPT2Config, GPT2LMHeadModel

        from erbench.models.causal_lm import fused_gelu, pretrain_causal_lm, token_stream

        splits = generate_splits(cfg)
        tokenizer = char_tokenizer()
        tokenizer.save(str(tmp / "tokenizer.json"))
        texts = [p.prompt + p.solution for p in splits.train]
        stream = token_stream(tokenizer, texts, 0, len(texts) * 80)
        torch.manual_seed(0)
        config = GPT2Config(vocab_size=tokenizer.get_vocab_size(), n_positions=cfg.lm_context, n_embd=cfg.lm_width,
                            n_layer=cfg.lm_layers, n_head=cfg.lm_heads, bos_token_id=0, eos_token_id=0, resid_pdrop=0.0,
                            embd_pdrop=0.0, attn_pdrop=0.0)
        say(f"pretraining the LM on the worked solutions of {len(texts)} problems ({len(stream)} characters)")
        model, stats = pretrain_causal_lm(fused_gelu(GPT2LMHeadModel(config)).to(self.device), stream, cfg.lm_context,
                                          cfg.lm_train_tokens, cfg.lm_batch_size, cfg.lm_lr, self.device, cfg.lm_compile)
        model.save_pretrained(tmp / "lm")
        return {"lm_text_tokens": len(stream), "train_problems": len(texts), **stats}

    # --- load -------------------------------------------------------------------------------------

    def load_policy(self) -> torch.nn.Module:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from erbench.models.causal_lm import load_scratch_lm

        cfg = self.cfg
        quiet_model_loading()
        with self.loading_assets("the arith LM", also=", or check the hub id and your network for the small and paper scales"):
            if cfg.policy == "scratch":
                self.tokenizer, model = load_scratch_lm(self.asset_dir)
                self.eot_id = self.pad_id = 0
                self.chat = None
            else:
                hub_tokenizer = AutoTokenizer.from_pretrained(cfg.policy)
                model = AutoModelForCausalLM.from_pretrained(cfg.policy, dtype=torch.float32)
                self.tokenizer = hub_tokenizer.backend_tokenizer
                self.eot_id = hub_tokenizer.eos_token_id
                self.pad_id = hub_tokenizer.pad_token_id if hub_tokenizer.pad_token_id is not None else self.eot_id
                self.chat = hub_tokenizer if hub_tokenizer.chat_template else None
        self.banned = sorted({self.eot_id, self.pad_id})
        self.pieces = [self.tokenizer.decode([i]) for i in range(self.tokenizer.get_vocab_size())]
        self.context = min(cfg.lm_context, getattr(model.config, "n_positions", None) or model.config.max_position_embeddings)
        self.problems = self.load_problems()
        self.prompts = {"train": self.encode(self.problems["train"])[0]}
        # Keyed by each prompt as decoded from its tokens, the text TRL's trainers hand the reward (integrations/trl_run.py)
        self.reward = VerifiableReward({text: p.answer for split in self.problems.values() if split
                                        for text, p in zip(self.decode_prompts(*self.encode(split)[0]), self.encode(split)[1])})
        self.solution_tokens = {split: self.tokenizer.encode(END_OF_TEXT.join(
            p.prompt + p.solution for p in self.problems[split][: cfg.ppl_solutions])).ids for split in ("val", "test")}
        return model.to(self.device)

    def load_problems(self) -> dict[str, list[Problem]]:
        """train (RL prompts), val, test, probe_val, probe_test."""
        cfg = self.cfg
        splits = generate_splits(cfg)
        if cfg.data == "generated":
            return {"train": [p for p in splits.train if p.op != cfg.holdout], "val": splits.val, "test": splits.test,
                    "probe_val": splits.probe_val, "probe_test": splits.probe_test}
        rows = load_gsm8k(cfg.data)
        gsm = lambda r: Problem(self.prompt_text(r["question"]), gsm8k_answer(r["answer"]), r["answer"] + "\n", "gsm8k")  # noqa: E731
        train = [gsm(r) for r in rows["train"]]
        reprompt = lambda p: Problem(self.prompt_text(f"What is {p.prompt[3:-3]}?"), p.answer, p.solution, p.op)  # noqa: E731
        return {"train": train[: -cfg.eval_problems], "val": train[-cfg.eval_problems:],
                "test": [gsm(r) for r in rows["test"]][: cfg.test_problems],
                "probe_val": [reprompt(p) for p in splits.probe_val], "probe_test": [reprompt(p) for p in splits.probe_test]}

    def prompt_text(self, question: str) -> str:
        """A GSM8K question (or a probe expression) as the hub model reads it: its chat template, else plain text."""
        if self.chat is None:
            return f"{INSTRUCTION}Question: {question}\nAnswer:"
        return self.chat.apply_chat_template([{"role": "user", "content": INSTRUCTION + question}], tokenize=False,
                                             add_generation_prompt=True)

    def encode(self, problems: list[Problem]) -> tuple[tuple[torch.Tensor, torch.Tensor], list[Problem]]:
        """Left-padded prompts (those under prompt_tokens tokens) and the problems they are."""
        encoded = [(e.ids, p) for e, p in zip(self.tokenizer.encode_batch([p.prompt for p in problems]), problems)
                   if len(e.ids) < self.cfg.prompt_tokens]
        if not encoded:
            raise ErbenchError(f"no arith prompt is shorter than task.prompt_tokens={self.cfg.prompt_tokens}", "raise task.prompt_tokens")
        return left_pad([ids for ids, _ in encoded], self.pad_id), [p for _, p in encoded]

    # --- the protocol the trainer uses ------------------------------------------------------------

    def sample_prompts(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.prompts["train"]
        index = torch.randint(len(ids), (n,), generator=generator)
        ids, mask = ids[index], mask[index]
        keep = mask.sum(0) > 0  # drop columns that are padding in every row
        return ids[:, keep].to(self.device), mask[:, keep].to(self.device)

    def generate(self, model, prompts: tuple[torch.Tensor, torch.Tensor], logits_processor=None) -> Rollout:
        """Sample until every row has written its answer line (or response_tokens); a response ends at its answer line."""
        prompt_ids, prompt_mask = prompts
        stop = AnswerLineStop(self.pieces, prompt_ids.shape[1], len(prompt_ids))
        response = sample_responses(model, prompt_ids, prompt_mask, self.cfg.response_tokens, self.cfg.top_k,
                                    pad_token_id=self.pad_id, banned_token_ids=self.banned, logits_processor=logits_processor,
                                    kv_cache=self.cfg.kv_cache, stopping_criteria=stop)
        lengths = torch.tensor([n or response.shape[1] for n in stop.lengths])
        response_mask = (torch.arange(response.shape[1]) < lengths[:, None]).float().to(response.device)
        return Rollout(prompt_ids, prompt_mask, response, response_mask)

    def texts(self, rollout: Rollout) -> tuple[list[str], list[str]]:
        """Prompts and responses (up to their answer lines; the end-of-text token is never part of one)."""
        responses = [row[m.bool()].tolist() for row, m in zip(rollout.response_ids.cpu(), rollout.response_mask.cpu())]
        return self.decode_prompts(rollout.prompt_ids, rollout.prompt_mask), self.tokenizer.decode_batch(responses)

    def score(self, rollout: Rollout) -> torch.Tensor:
        prompts, responses = self.texts(rollout)
        return torch.as_tensor(self.reward([p + r for p, r in zip(prompts, responses)]), device=rollout.response_ids.device)

    @torch.no_grad()
    def sample_problems(self, model, problems: list[Problem], n: int, init_model=None, kl_samples: int = 0):
        """n samples of each problem: [P, n] correctness, the responses (problem-major), and the exact KL to the
        initial model of the first kl_samples of each problem."""
        (ids, mask), kept = self.encode(problems)
        rows = torch.arange(len(kept)).repeat_interleave(n)
        correct, responses, kl = [], [], []
        for start in range(0, len(rows), self.cfg.eval_batch_size):
            batch = rows[start : start + self.cfg.eval_batch_size]
            batch_ids, batch_mask = ids[batch], mask[batch]
            keep = batch_mask.sum(0) > 0
            rollout = self.generate(model, (batch_ids[:, keep].to(self.device), batch_mask[:, keep].to(self.device)))
            _, texts = self.texts(rollout)
            correct += [is_correct(t, kept[i].answer) for t, i in zip(texts, batch.tolist())]
            responses += texts
            measured = ((start + torch.arange(len(batch))) % n) < kl_samples
            if init_model is not None and measured.any():
                part = rollout.select(measured.nonzero().squeeze(1).to(self.device))
                kl.append((exact_kl(part.logits(model), part.logits(init_model)) * part.response_mask).sum(1).cpu())
        return torch.tensor(correct, dtype=torch.float32).view(len(kept), n), responses, torch.cat(kl) if kl else None

    @torch.no_grad()
    def evaluate(self, model, init_model, split: str, samples: int = 0) -> dict:
        """pass@k (unbiased, n = samples_per_problem) on held-out problems, reward = pass@1; the held-out operation's
        accuracy; exact KL to the initial model; perplexity on reference solutions; distinct-n of the solutions.
        Sampling uses a fixed seed, so every evaluation of a run sees the same random numbers."""
        cfg = self.cfg
        kl_samples = min(cfg.kl_samples, cfg.samples_per_problem)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed + 1)
            correct, responses, kl = self.sample_problems(model, self.problems[split], cfg.samples_per_problem, init_model,
                                                          kl_samples)
            probe = self.problems[f"probe_{split}"]
            probe_correct = self.sample_problems(model, probe, cfg.probe_samples)[0] if probe else None
        n, hits = correct.shape[1], correct.sum(1).long().tolist()
        per_problem = correct.mean(1)
        solutions = [r.split("\n#### ")[0] for r in responses]  # the worked steps, the answer line left out
        metrics = {
            "reward": per_problem.mean().item(),
            "reward_stderr": (per_problem.std() / math.sqrt(len(per_problem))).item() if len(per_problem) > 1 else 0.0,
            **{f"pass@{k}": float(np.mean([pass_at_k(n, c, k) for c in hits])) for k in cfg.ks()},
            **({"holdout_accuracy": probe_correct.mean().item()} if probe_correct is not None else {}),
            "answer_rate": float(np.mean([parse_answer(r) is not None for r in responses])),
            "kl_to_init": kl.mean().item(),
            "perplexity": perplexity(model, self.solution_tokens[split], self.context, device=self.device),
            "distinct_1": distinct_n(solutions, 1),
            "distinct_2": distinct_n(solutions, 2),
            "response_tokens": float(np.mean([len(self.tokenizer.encode(r).ids) for r in responses[::n]])),
        }
        if samples:
            problems = self.encode(self.problems[split])[1]
            metrics["samples"] = [{"prompt": problems[i].prompt, "response": responses[i * n], "reward": correct[i, 0].item(),
                                   "answer": problems[i].answer, "kl_to_init": kl[i * kl_samples].item()}
                                  for i in range(min(samples, len(problems)))]
        return metrics
