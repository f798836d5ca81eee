"""Pretraining a causal LM from scratch on a token stream (the `tiny` and `small` scales' own models)."""

import math
import time

import torch
from torch import nn

from erbench.progress import progress_bar


def token_stream(tokenizer, texts: list[str], eot_id: int, limit: int) -> torch.Tensor:
    """Documents joined by end-of-text, tokenized in chunks until `limit` tokens."""
    ids: list[int] = []
    for start in range(0, len(texts), 2000):
        for encoding in tokenizer.encode_batch(texts[start : start + 2000]):
            ids.extend(encoding.ids)
            ids.append(eot_id)
        if len(ids) >= limit:
            break
    return torch.tensor(ids[:limit], dtype=torch.long)


def load_scratch_lm(folder):
    """The tokenizer (tokenizer.json) and LM (lm/) that `prepare` trained from scratch into an asset folder. A missing or
    damaged tokenizer is an OSError naming the file (tokenizers raises a bare Exception), as from_pretrained's are."""
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    try:
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as e:
        raise OSError(f"{folder / 'tokenizer.json'}: {e}") from None
    return tokenizer, AutoModelForCausalLM.from_pretrained(folder / "lm")


def fused_gelu(model: nn.Module) -> nn.Module:
    """GPT-2's tanh GELU (`gelu_new`) as one fused kernel: transformers writes the same formula as five elementwise
    ops, twice as slow forward and backward on a CPU; the values agree to float rounding (2e-7)."""
    from transformers.activations import NewGELUActivation

    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, NewGELUActivation):
                setattr(module, name, nn.GELU(approximate="tanh"))
    return model


def pretrain_causal_lm(model: nn.Module, stream: torch.Tensor, context: int, train_tokens: int, batch_size: int, lr: float,
                       device: torch.device, compile: bool = False) -> tuple[nn.Module, dict]:
    """Next-token pretraining on blocks of the stream (AdamW, warmup + cosine); returns the model on the CPU."""
    blocks = stream[: len(stream) // context * context].view(-1, context)
    steps = max(1, train_tokens // (batch_size * context))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95), fused=True)
    warmup = max(1, steps // 50)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0)))))
    generator = torch.Generator().manual_seed(0)
    use_bf16 = device.type == "cuda"
    forward = torch.compile(model) if compile else model  # shares parameters with `model`

    def train_step(batch):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = forward(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    passes = math.ceil(steps * batch_size / len(blocks))
    order = torch.cat([torch.randperm(len(blocks), generator=generator) for _ in range(passes)])
    warmup_steps = min(10, steps - 1)  # throughput is measured after compilation and allocator warm-up
    start = warm = time.perf_counter()
    with progress_bar("pretraining LM", steps) as advance:
        for s in range(steps):
            if s == warmup_steps and s > 0:
                loss.item()
                warm = time.perf_counter()
            loss = train_step(blocks[order[s * batch_size : (s + 1) * batch_size]].to(device, non_blocking=True))
            schedule.step()
            advance(info=f"loss {loss.item():.3f}" if s % 20 == 0 else "")
    end = time.perf_counter()
    measured_tokens = (steps - warmup_steps) * batch_size * context
    return model.float().cpu(), {"lm_steps": steps, "lm_seconds": end - start,
                                 "lm_tokens_per_second": measured_tokens / max(end - warm, 1e-9)}


