"""The pivot-translation agents (SIL/Lee `RNNAttn`, paper.md §3.1.1) and the English GRU language model.

Agent: Embedding -> 1-layer unidirectional GRU encoder over the source (tokens + <eos>); a GRUCell
decoder with input feeding (the previous attentional output is concatenated to the token
embedding), started from the mean of the encoder outputs over valid positions; Luong "general"
attention score = h_s . W z_t, attentional output o_t = tanh(W [c_t; z_t]); logits = Linear(o_t).
Source and target embeddings are separate tables over one shared sentencepiece id space
(pad 0, unk 1, bos 2, eos 3), so one agent's output ids are valid input ids of the other.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

PAD, UNK, BOS, EOS = 0, 1, 2, 3
BANNED = -1e9  # added to the logit of a token that cannot be emitted: probability exactly 0, log-probs stay finite


class Seq2SeqAgent(nn.Module):
    def __init__(self, vocab_size: int, emb: int, hid: int, dropout: float = 0.0):
        super().__init__()
        self.config = {"vocab_size": vocab_size, "emb": emb, "hid": hid, "dropout": dropout}
        self.source_embedding = nn.Embedding(vocab_size, emb, padding_idx=PAD)
        self.encoder = nn.GRU(emb, hid, batch_first=True)
        self.target_embedding = nn.Embedding(vocab_size, emb, padding_idx=PAD)
        self.cell = nn.GRUCell(emb + hid, hid)
        self.attention_key = nn.Linear(hid, hid, bias=False)
        self.attention_out = nn.Linear(2 * hid, hid, bias=False)
        self.output = nn.Linear(hid, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def encode(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encoder outputs [B, S, H], source mask [B, S] and the decoder's initial state [B, H]."""
        mask = source != PAD
        lengths = mask.sum(1).clamp(min=1)
        embedded = self.dropout(self.source_embedding(source))
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, _ = pad_packed_sequence(self.encoder(packed)[0], batch_first=True, total_length=source.shape[1])
        initial = (outputs * mask.unsqueeze(-1)).sum(1) / lengths.unsqueeze(-1)
        return outputs, mask, initial

    def step(self, token: torch.Tensor, state: torch.Tensor, feed: torch.Tensor, memory) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoder step: (new state, attentional output o_t) after reading `token` [B]."""
        outputs, mask = memory
        state = self.cell(torch.cat([self.dropout(self.target_embedding(token)), feed], -1), state)
        scores = torch.bmm(outputs, self.attention_key(state).unsqueeze(-1)).squeeze(-1).masked_fill(~mask, float("-inf"))
        context = torch.bmm(scores.softmax(-1).unsqueeze(1), outputs).squeeze(1)
        return state, torch.tanh(self.attention_out(torch.cat([context, state], -1)))

    def features(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: the attentional outputs [B, T, H] that predict target[:, t] given target[:, :t]."""
        outputs, mask, state = self.encode(source)
        feed = torch.zeros_like(state)
        previous = torch.cat([torch.full_like(target[:, :1], BOS), target[:, :-1]], 1)
        features = []
        for t in range(target.shape[1]):
            state, feed = self.step(previous[:, t], state, feed, (outputs, mask))
            features.append(feed)
        return self.dropout(torch.stack(features, 1))

    def logits(self, source: torch.Tensor, target: torch.Tensor, min_tokens: int = 0) -> torch.Tensor:
        """[B, T, V] logits of each target token, restricted as `decode` restricts them (padding positions are not)."""
        return self.project(self.features(source, target), target, min_tokens)

    def project(self, features: torch.Tensor, target: torch.Tensor, min_tokens: int = 0) -> torch.Tensor:
        """The logits of `features` (from `features(source, target)`), restricted as `logits` says."""
        bans = restrictions(target.shape[1], min_tokens, self.output.out_features, target.device)
        return self.output(features).float() + bans * (target != PAD).unsqueeze(-1)

    def nll(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sentence mean token NLL of `target` (ending in <eos>, padded with 0): [B]."""
        logits = self.logits(source, target)
        mask = (target != PAD).float()
        token_nll = F.cross_entropy(logits.transpose(1, 2), target, reduction="none", ignore_index=PAD)
        return token_nll.sum(1) / mask.sum(1).clamp(min=1)

    @torch.no_grad()
    def decode(self, source: torch.Tensor, max_tokens: int, min_tokens: int = 0, greedy: bool = True) -> torch.Tensor:
        """Greedy or sampled (temperature 1) decoding: [B, <=max_tokens] ids, <eos> included, 0 after it."""
        outputs, mask, state = self.encode(source)
        feed = torch.zeros_like(state)
        token = torch.full((len(source),), BOS, dtype=torch.long, device=source.device)
        finished = torch.zeros(len(source), dtype=torch.bool, device=source.device)
        tokens, bans = [], restrictions(max_tokens, min_tokens, self.output.out_features, source.device)
        for t in range(max_tokens):
            state, feed = self.step(token, state, feed, (outputs, mask))
            logits = self.output(feed).float() + bans[t]
            token = logits.argmax(-1) if greedy else torch.multinomial(logits.softmax(-1), 1).squeeze(1)
            token = token.masked_fill(finished, PAD)
            tokens.append(token)
            finished |= token == EOS
            if finished.all():
                break
        return torch.stack(tokens, 1)


def restrictions(length: int, min_tokens: int, vocab_size: int, device) -> torch.Tensor:
    """[T, V] additive logit bias: never emit <pad> or <bos>; no <eos> before `min_tokens` tokens.
    (An addition, not in-place writes, so the backward pass copies nothing.)"""
    bans = torch.zeros(length, vocab_size, device=device)
    bans[:, [PAD, BOS]] = BANNED
    bans[:min_tokens, EOS] = BANNED
    return bans


class GruLM(nn.Module):
    """The English language model that measures syntactic drift: embedding -> 1-layer GRU -> softmax."""

    def __init__(self, vocab_size: int, emb: int, hid: int, dropout: float = 0.0):
        super().__init__()
        self.config = {"vocab_size": vocab_size, "emb": emb, "hid": hid, "dropout": dropout}
        self.embedding = nn.Embedding(vocab_size, emb, padding_idx=PAD)
        self.gru = nn.GRU(emb, hid, batch_first=True)
        self.output = nn.Linear(hid, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def token_nll(self, tokens: torch.Tensor) -> torch.Tensor:
        """NLL of each token of `tokens` ([B, T], ending in <eos>, padded with 0) after <bos>: [B, T], 0 at padding."""
        inputs = torch.cat([torch.full_like(tokens[:, :1], BOS), tokens[:, :-1]], 1)
        hidden, _ = self.gru(self.dropout(self.embedding(inputs)))
        logits = self.output(self.dropout(hidden)).float()
        return F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none") * (tokens != PAD)
