"""Policy and critic wrappers the PPO trainer sees through a rollout.

A rollout knows how to ask a model for the logits of its response tokens (`rollout.logits(model)`),
in the same pass for the hidden states a value head on the policy reads (`rollout.forward(model,
hidden=True)`), and which response positions are real (`response_mask`, None when every response has
the full length), so the trainer serves causal LMs (left-padded prompts, fixed-length responses) and
seq2seq agents (source sentences, messages ended by <eos>) alike.

A critic is called as `critic(rollout, hidden)`; one whose `reads_policy_hidden` is True values the
policy's own hidden states (given by the trainer from the policy's forward pass, so the policy runs
once for both), one with its own body ignores `hidden` (None)."""

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Rollout:
    """A batch of prompts and the responses sampled for them (token ids, left-padded prompts)."""

    prompt_ids: torch.Tensor  # [B, P]
    prompt_mask: torch.Tensor  # [B, P]
    response_ids: torch.Tensor  # [B, T]
    # [B, T] 1 for the tokens each response keeps (responses of sampled lengths); None: all T tokens count.
    # Tokens past a response's length were sampled but are never scored, penalised or trained on.
    response_mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.response_ids.shape[0]

    def select(self, index: torch.Tensor) -> "Rollout":
        return Rollout(self.prompt_ids[index], self.prompt_mask[index], self.response_ids[index],
                       None if self.response_mask is None else self.response_mask[index])

    def model_inputs(self) -> dict[str, torch.Tensor]:
        input_ids = torch.cat([self.prompt_ids, self.response_ids], dim=1)
        mask = torch.cat([self.prompt_mask, torch.ones_like(self.response_ids)], dim=1)
        # Positions count real tokens only, as generate() does for left-padded prompts.
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        return {"input_ids": input_ids, "attention_mask": mask, "position_ids": position_ids}

    def forward(self, model: nn.Module, hidden: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits predicting each response token [B, T, V] and, with `hidden`, the last hidden state at the same
        positions [B, T, H] (after the final norm, what the LM head reads)."""
        response_len = self.response_ids.shape[1]
        # The LM head only where a response token is predicted (the last T + 1 positions, less the final one): at a
        # small model's large vocabulary the head costs as much as the trunk, and the prompt's logits are never read.
        outputs = model(**self.model_inputs(), output_hidden_states=hidden, logits_to_keep=response_len + 1)
        states = slice(self.prompt_ids.shape[1] - 1, self.prompt_ids.shape[1] + response_len - 1)
        return outputs.logits[:, :-1].float(), outputs.hidden_states[-1][:, states] if hidden else None

    def logits(self, model: nn.Module) -> torch.Tensor:
        return self.forward(model)[0]


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists as a left-padded batch (prompts end where generation starts) and its attention mask."""
    width = max((len(tokens) for tokens in sequences), default=1)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, tokens in enumerate(sequences):
        ids[row, width - len(tokens):] = torch.tensor(tokens, dtype=torch.long)
        mask[row, width - len(tokens):] = 1
    return ids, mask


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Log-probability of each token; with `allowed` ([B, T, V] bool) the distribution is renormalised over it."""
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    return torch.gather(F.log_softmax(logits, dim=-1), 2, tokens.unsqueeze(-1)).squeeze(-1)


class Sampler:
    """The sampling step as generate()'s last logits processor: draws the next token from softmax(scores) among
    the top k (all tokens with k = 0) and returns a score that is 0 at the drawn token and -inf elsewhere, which
    generate()'s greedy step then picks. generate()'s own sampling draws one random number per vocabulary entry
    (torch.multinomial over the full softmax), a quarter of a small model's CPU decode step at a 4k vocabulary;
    drawing among the k costs k. The same distribution as top-k sampling, other random numbers."""

    def __init__(self, top_k: int):
        self.top_k = top_k

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.top_k and self.top_k < scores.shape[-1]:
            values, candidates = scores.topk(self.top_k, dim=-1)
            token = candidates.gather(-1, torch.multinomial(values.softmax(-1), 1))
        else:
            token = torch.multinomial(scores.softmax(-1), 1)
        return torch.full_like(scores, -math.inf).scatter_(-1, token, 0.0)


@torch.no_grad()
def sample_responses(model: nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, response_tokens: int,
                     top_k: int, pad_token_id: int, banned_token_ids: list[int], logits_processor=None,
                     kv_cache: str = "dynamic", stopping_criteria=None) -> torch.Tensor:
    """Sample exactly `response_tokens` tokens per prompt (min_length = max_length, as the paper's IMDB env).
    kv_cache "static" preallocates the cache (fixed shapes, so transformers compiles the decode step on a GPU);
    it draws the same tokens as the growing "dynamic" cache (tests/test_policy.py). A per-row `stopping_criteria`
    (a transformers StoppingCriteria) may end the sampling early once every row is done; the result is then
    narrower, and rows done earlier hold padding after their end."""
    was_training = model.training
    model.eval()
    # generate() applies its own processors (min_new_tokens bans the end tokens) before these; its greedy step takes
    # the Sampler's draw. top_k=0 samples the full softmax; temperature and top-p are 1.
    processors = [p for p in (logits_processor, Sampler(top_k)) if p is not None]
    out = model.generate(
        input_ids=prompt_ids, attention_mask=prompt_mask, do_sample=False, top_k=None, top_p=None, temperature=None,
        max_new_tokens=response_tokens, min_new_tokens=response_tokens,
        pad_token_id=pad_token_id, eos_token_id=banned_token_ids or None, use_cache=True, logits_processor=processors,
        cache_implementation="static" if kv_cache == "static" else None,
        stopping_criteria=[stopping_criteria] if stopping_criteria is not None else None,
    )
    model.train(was_training)
    return out[:, prompt_ids.shape[1]:]


class Critic(nn.Module):
    """Value model: a copy of the initial LM's transformer with a scalar head (no bias), as in RL4LMs' IMDB critic."""

    reads_policy_hidden = False

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.body = copy.deepcopy(lm.base_model)
        self.head = nn.Linear(lm.config.hidden_size, 1, bias=False)
        nn.init.zeros_(self.head.weight)

    def forward(self, rollout: Rollout, hidden: None = None) -> torch.Tensor:
        """Value of each state before a response token is emitted: [B, T]."""
        states = self.body(**rollout.model_inputs()).last_hidden_state
        prompt_len, response_len = rollout.prompt_ids.shape[1], rollout.response_ids.shape[1]
        return self.head(states[:, prompt_len - 1 : prompt_len + response_len - 1]).squeeze(-1).float()


class ValueHead(nn.Module):
    """TRL's value head: a scalar head on the policy's own last hidden state. The value loss reaches the policy's
    trainable weights (a LoRA policy's adapters) through the policy's one forward pass, as in TRL; only the head
    is the critic's own parameter."""

    reads_policy_hidden = True

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.head = nn.Linear(policy.config.hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, rollout: Rollout, hidden: torch.Tensor) -> torch.Tensor:
        """Value of each state before a response token is emitted, from the policy's hidden states [B, T, H]: [B, T]."""
        return self.head(hidden).squeeze(-1).float()


@dataclass
class Seq2SeqRollout:
    """Source sentences and the messages sampled for them; a message ends at its <eos> (0 after it)."""

    source_ids: torch.Tensor  # [B, S]
    response_ids: torch.Tensor  # [B, T]
    min_tokens: int  # <eos> could not be sampled before this many tokens; the log-probs say the same
    example_ids: torch.Tensor | None = None  # [B] which of the task's examples each source is (for its reward)

    def __len__(self) -> int:
        return self.response_ids.shape[0]

    @property
    def response_mask(self) -> torch.Tensor:
        return (self.response_ids != 0).float()

    def select(self, index: torch.Tensor) -> "Seq2SeqRollout":
        return Seq2SeqRollout(self.source_ids[index], self.response_ids[index], self.min_tokens,
                              None if self.example_ids is None else self.example_ids[index])

    def forward(self, model: nn.Module, hidden: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits of each message token [B, T, V] and, with `hidden`, the decoder's attentional outputs [B, T, H]."""
        features = model.features(self.source_ids, self.response_ids)
        return model.project(features, self.response_ids, self.min_tokens), features if hidden else None

    def logits(self, model: nn.Module) -> torch.Tensor:
        return self.forward(model)[0]


class Seq2SeqCritic(nn.Module):
    """Per-token value head on the policy's own *detached* decoder states (SIL/Lee's A2C baseline: an MLP on
    the attentional output at each step). Only the head is a parameter of the critic; the policy is read,
    never trained, through it, so the value loss costs the policy no pass of its own."""

    reads_policy_hidden = True

    def __init__(self, agent: nn.Module, hidden: int = 256):
        super().__init__()
        self.head = nn.Sequential(nn.Linear(agent.config["hid"], hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.head[2].weight)
        nn.init.zeros_(self.head[2].bias)

    def forward(self, rollout: Seq2SeqRollout, hidden: torch.Tensor) -> torch.Tensor:
        """Value of each state before a message token is emitted, from the policy's decoder states: [B, T]."""
        return self.head(hidden.detach()).squeeze(-1).float()
