"""The numerics of the RL phase, one setting for every trainer (erbench's PPO, TRL's RLOO and GRPO) on a CPU and on
CUDA: fp32 weights and maths, no autocast, activations kept for the backward (no gradient checkpointing). On CUDA
runner.pick_device lets fp32 matmuls use TF32 for every trainer alike. TRL's configs default to bf16 autocast and
gradient checkpointing, memory savers for large models on GPUs that change the numbers and, on a CPU, cost several
times the time: TRAINING_ARGUMENTS overrides them. PrecisionProbe reads what a model's training forwards actually ran
in, for the records."""

import torch
from torch import nn

# transformers.TrainingArguments fields (TRL's RLOOConfig / GRPOConfig) that give erbench's precision
TRAINING_ARGUMENTS = {"bf16": False, "fp16": False, "gradient_checkpointing": False}


class PrecisionProbe:
    """Watches a model's forwards (rollouts, updates, evaluations): `observed` is, at the latest forward, the parameters'
    dtype, the autocast dtype (None: no autocast), whether the model recomputes activations in its training backwards
    (gradient checkpointing) and torch's fp32 matmul precision ("highest": fp32; "high": TF32). Empty until the first
    forward. The hook sits on the input embedding, inside the model's forward, where an autocast that wraps the
    forward (accelerate's mixed precision) is already on."""

    def __init__(self, model: nn.Module):
        self.observed: dict = {}
        self.model = model
        embedding = next(m for m in model.modules() if isinstance(m, nn.Embedding))
        embedding.register_forward_pre_hook(self.watch)

    def watch(self, embedding: nn.Module, inputs) -> None:
        device = embedding.weight.device.type
        autocast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        self.observed.update({
            "dtype": str(embedding.weight.dtype).removeprefix("torch."),
            "autocast": None if autocast is None else str(autocast).removeprefix("torch."),
            # transformers' models flag each checkpointed block (what is_gradient_checkpointing reads)
            "gradient_checkpointing": any(getattr(m, "gradient_checkpointing", False) is True for m in self.model.modules()),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        })
