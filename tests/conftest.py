import os

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

os.environ.setdefault("ERBENCH_QUIET", "1")


@pytest.fixture
def tiny_lm():
    """A randomly initialised 2-layer GPT-2 (the tiny scale's architecture, smaller)."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config).eval()
