"""Elastic Reset for people who train with TRL (or any `transformers.Trainer`): a `TrainerCallback`.

    from erbench.integrations.trl import ElasticResetCallback
    trainer = RLOOTrainer(model=..., reward_funcs=..., args=..., train_dataset=...,
                          callbacks=[ElasticResetCallback(reset_every=17, ema_decay=0.995)])

It keeps an EMA of the trainable parameters (updated after every `ema_every` optimizer steps) and every
`reset_every` optimizer steps sets online <- EMA, then EMA <- theta0 (the trainable parameters at the start
of training), optionally clearing the optimizer state of those parameters. With LoRA only the adapters are
trainable, so only they are tracked and reset; the frozen base is never touched. The KL reference stays
whatever the trainer uses (theta0 for GRPO/RLOO with beta > 0), as in the paper's StackLLaMA runs.

Distributed training: under FSDP each process updates its own shards of the parameters (the operations are
elementwise; DTensor shards are handled through their local tensors). Under DeepSpeed ZeRO-3 the parameters
are gathered for the reset as TRL's `SyncRefModelCallback` does, and the EMA lives on every rank in full.

Align `reset_every` with generation boundaries when one generation feeds several optimizer steps
(`steps_per_generation` or `num_iterations` > 1), so that a reset never falls between updates on one batch.
"""

import contextlib

import torch
from transformers import TrainerCallback


def local(tensor: torch.Tensor) -> torch.Tensor:
    """The part of a parameter this process holds: the local shard of an FSDP2 DTensor, else the tensor."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def zero3_enabled() -> bool:
    try:
        from accelerate.state import AcceleratorState

        plugin = AcceleratorState().deepspeed_plugin
    except Exception:  # no accelerator state: not a distributed DeepSpeed run
        return False
    return plugin is not None and plugin.zero_stage == 3


class ElasticResetCallback(TrainerCallback):
    def __init__(self, reset_every: int | None, ema_decay: float = 0.995, ema_every: int = 1, reset_ema: bool = True,
                 reset_optimizer: bool = False, first_reset_after: int | None = None, reference_model=None):
        """`first_reset_after`: the step of the first reset (default `reset_every`; the paper's IMDB runs reset after
        steps 1, 18, 35: first_reset_after=1, reset_every=17). `reference_model`: keep the EMA in this model's
        parameters, e.g. `trainer.ref_model` (GRPO/RLOO with beta > 0, full fine-tuning), so that the KL penalty
        pulls towards the EMA as in the paper's IMDB runs; by default the EMA is a separate copy."""
        if reset_every is not None and reset_every < 1:
            raise ValueError(f"reset_every must be >= 1 or None, not {reset_every}")
        if first_reset_after is not None and first_reset_after < 1:
            raise ValueError(f"first_reset_after must be >= 1 or None, not {first_reset_after}")
        if not 0.0 <= ema_decay <= 1.0:
            raise ValueError(f"ema_decay must be in [0, 1], not {ema_decay}")
        if ema_every < 1:
            raise ValueError(f"ema_every must be >= 1, not {ema_every}")
        self.reset_every, self.ema_decay, self.ema_every = reset_every, ema_decay, ema_every
        self.reset_ema, self.reset_optimizer = reset_ema, reset_optimizer
        self.first_reset_after, self.reference_model = first_reset_after, reference_model
        self.params: list[torch.nn.Parameter] = []
        self.init: list[torch.Tensor] = []
        self.ema: list[torch.Tensor] = []
        self.resets: list[int] = []  # global steps after which the policy was reset

    @contextlib.contextmanager
    def full_parameters(self, modify: bool):
        """Under ZeRO-3, the gathered parameters (rank 0's changes are written back to every partition on exit);
        else the parameters as they are (whole, or this process's FSDP shards)."""
        if zero3_enabled():
            import deepspeed

            with deepspeed.zero.GatheredParameters(self.params, modifier_rank=0 if modify else None):
                yield
        else:
            yield

    def tensors(self) -> list[torch.Tensor]:
        return [local(p.data) for p in self.params]

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        # DDP and FSDP wrappers yield the wrapped model's parameters (FSDP: this process's shards).
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        with torch.no_grad(), self.full_parameters(modify=False):
            self.init = [t.detach().clone() for t in self.tensors()]
            if self.reference_model is None:
                self.ema = [t.clone() for t in self.init]
            else:
                reference = dict(self.reference_model.named_parameters())
                missing = [name for name, _ in named if name not in reference]
                if missing:
                    raise ValueError(f"reference_model has no parameter {missing[0]}: it must have the policy's architecture "
                                     "(full fine-tuning, not LoRA)")
                self.ema = [local(reference[name].data) for name, _ in named]
                torch._foreach_copy_(self.ema, self.init)

    def is_reset_due(self, step: int) -> bool:
        if self.reset_every is None:
            return False
        first = self.first_reset_after or self.reset_every
        return step >= first and (step - first) % self.reset_every == 0

    @torch.no_grad()
    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        step = state.global_step
        update_ema = step % self.ema_every == 0 and self.ema_decay < 1.0
        reset = self.is_reset_due(step)
        if not (update_ema or reset):
            return
        with self.full_parameters(modify=True):
            online = self.tensors()
            if update_ema:
                torch._foreach_lerp_(self.ema, online, 1.0 - self.ema_decay)
            if reset:
                torch._foreach_copy_(online, self.ema)
                if self.reset_ema:
                    torch._foreach_copy_(self.ema, self.init)
        if reset:
            if self.reset_optimizer and optimizer is not None:
                for p in self.params:  # only the policy's parameters: a value head's moments are kept
                    optimizer.state.pop(p, None)
            self.resets.append(step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Adds er/resets, er/dist_to_init and er/dist_to_ema (L2 over the tracked parameters) to the logs and to
        the trainer's log history, so plots show the sawtooth."""
        if logs is None or not self.params:
            return
        with torch.no_grad():
            extra = {
                "er/resets": len(self.resets),
                "er/dist_to_init": torch.stack([(t - q).float().norm() for t, q in zip(self.tensors(), self.init)]).norm().item(),
                "er/dist_to_ema": torch.stack([(t - q).float().norm() for t, q in zip(self.tensors(), self.ema)]).norm().item(),
            }
        logs.update(extra)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(extra)
