"""The shared PPO trainer: rollout -> task reward -> per-token KL shaping -> GAE -> clipped updates.

It knows neither tasks nor methods by name. It receives
  - a task with `sample_prompts(n, generator)` -> a batch of prompts (the task's own type),
    `generate(model, prompts, logits_processor)` -> rollout,
    `score(rollout)` -> [B] task rewards, `learn(rollout)` (the task's own models, e.g. a listener, learn
    from the rollout), `on_policy_reset()` and `evaluate(model, init_model, split, samples=N)` -> metrics,
    with N > 0 also "samples": the first N held-out prompts as dicts of at least prompt, response, reward and
    kl_to_init (the same prompts and random numbers at every evaluation, so they compare across steps and methods);
  - a method hook with `reference_model`, `init_model`, `after_update(unit)`, `maybe_reset(completed)`, and
    `sampling_processor(prompts)` / `action_mask(rollout)` for methods that restrict actions (NLPO);
  - a critic called as `critic(rollout, hidden)`, where `hidden` is the policy's hidden states from the same
    forward pass as its logits when the critic `reads_policy_hidden` (a value head), else None (rl/policy.py).

Batches are sequences, not RL4LMs' token transitions: one iteration samples `rollout_prompts`
responses of T tokens (= rollout_prompts * T transitions) and makes `ppo_epochs * num_minibatches`
optimizer steps on minibatches of whole sequences. A rollout whose responses end early (a
`response_mask`) pays the task reward at its last real token, and padding counts in no sum or mean.
"""

import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import nn

from erbench.config import TrainConfig
from erbench.rl.kl import make_kl_controller
from erbench.rl.policy import token_logprobs


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over [B, T] per-token rewards; the episode ends after token T."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    return advantages, advantages + values


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, kl_coef: float, mask: torch.Tensor | None) -> torch.Tensor:
    """[B, T] rewards: -beta * KL at every token, plus the task score at each response's last real token."""
    rewards = -kl_coef * kl
    last = torch.full_like(scores, kl.shape[1] - 1, dtype=torch.long) if mask is None else mask.sum(1).long() - 1
    rewards[torch.arange(len(scores), device=rewards.device), last] += scores
    return rewards


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x.mean() if mask is None else (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    if mask is None:
        return (x - x.mean()) / (x.std() + 1e-8)
    mean = masked_mean(x, mask)
    variance = ((x - mean) ** 2 * mask).sum() / (mask.sum() - 1).clamp(min=1)
    return (x - mean) / (variance.sqrt() + 1e-8) * mask


def make_optimizer(modules: list[nn.Module], cfg: TrainConfig) -> torch.optim.AdamW:
    """One AdamW over policy and critic; no weight decay on biases and LayerNorm weights (ndim < 2)."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)  # one kernel per step on a CPU too (torch >= 2.4)


class PPOTrainer:
    def __init__(self, cfg: TrainConfig, task, policy: nn.Module, critic: nn.Module, optimizer: torch.optim.Optimizer,
                 method, generator: torch.Generator):
        self.cfg, self.task, self.policy, self.critic = cfg, task, policy, critic
        self.optimizer, self.method, self.generator = optimizer, method, generator
        self.kl_controller = make_kl_controller(cfg.kl_controller, cfg.kl_coef, cfg.kl_target, cfg.kl_horizon, cfg.rollout_prompts)
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.seconds: dict[str, float] = defaultdict(float)  # time per phase, summed over iterations

    @contextmanager
    def timed(self, phase: str):
        start = time.perf_counter()
        yield
        self.seconds[phase] += time.perf_counter() - start

    def iteration(self, iteration: int) -> dict[str, float]:
        """One PPO iteration; returns its training statistics."""
        cfg = self.cfg
        with self.timed("rollout"):
            prompts = self.task.sample_prompts(cfg.rollout_prompts, self.generator)
            rollout = self.task.generate(self.policy, prompts, self.method.sampling_processor(prompts))
        with self.timed("reward"):
            scores = self.task.score(rollout)
        with self.timed("task_learning"):
            task_stats = self.task.learn(rollout)
        with self.timed("update"), torch.no_grad():
            mask = rollout.response_mask
            allowed = self.method.action_mask(rollout)
            logits, hidden = rollout.forward(self.policy, hidden=self.critic.reads_policy_hidden)
            old_logprobs = token_logprobs(logits, rollout.response_ids, allowed)
            ref_logprobs = token_logprobs(rollout.logits(self.method.reference_model), rollout.response_ids)
            values = self.critic(rollout, hidden)
            kl = old_logprobs - ref_logprobs  # sampled per-token KL estimate
            if mask is not None:
                kl, values = kl * mask, values * mask
            rewards = token_rewards(scores, kl, self.kl_controller.coef, mask)
            advantages, returns = gae(rewards, values, cfg.gamma, cfg.gae_lambda)
            if cfg.whiten_advantages:
                advantages = whiten(advantages, mask)

        stats: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=rollout.response_ids.device))
        steps = 0
        for _ in range(cfg.ppo_epochs if cfg.update_policy else 0):
            with self.timed("update"):
                order = torch.randperm(len(rollout), generator=self.generator).to(rollout.response_ids.device)
            for index in order.tensor_split(cfg.num_minibatches):
                with self.timed("update"):
                    step = self.optimize(rollout.select(index), old_logprobs[index], advantages[index], returns[index],
                                         None if allowed is None else allowed[index])
                for key, value in step.items():
                    stats[key] += value
                steps += 1
                with self.timed("ema_reset"):
                    self.method.after_update("opt_step")
            with self.timed("ema_reset"):
                self.method.after_update("ppo_epoch")

        sequence_kl = kl.sum(1).mean().item()
        self.kl_controller.update(sequence_kl)
        with self.timed("ema_reset"):
            self.method.after_update("iteration")
            reset = self.method.maybe_reset(iteration + 1)
        if reset:
            self.task.on_policy_reset()
        return {
            "iteration": iteration + 1,
            "score": scores.mean().item(),
            "kl": sequence_kl,
            "kl_coef": self.kl_controller.coef,
            **{key: (value / steps).item() for key, value in stats.items()},
            **task_stats,
            "reset": reset,
        }

    def optimize(self, batch, old_logprobs, advantages, returns, allowed) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        mask = batch.response_mask
        logits, hidden = batch.forward(self.policy, hidden=self.critic.reads_policy_hidden)  # one pass for both losses
        logprobs = token_logprobs(logits, batch.response_ids, allowed)
        ratio = torch.exp(logprobs - old_logprobs)
        clipped = torch.clamp(ratio, 1 - cfg.clip_range, 1 + cfg.clip_range)
        policy_loss = masked_mean(torch.max(-advantages * ratio, -advantages * clipped), mask)
        value_loss = masked_mean((self.critic(batch, hidden) - returns) ** 2, mask)  # SB3/RL4LMs: plain MSE, no value clipping
        loss = policy_loss + cfg.vf_coef * value_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
        self.optimizer.step()
        return {  # tensors, read once per iteration: a .item() per step would stall the GPU
            "policy_loss": policy_loss.detach(),
            "value_loss": value_loss.detach(),
            "clip_fraction": masked_mean(((ratio - 1).abs() > cfg.clip_range).float(), mask),
        }

    def train(self, on_iteration: Callable[[dict], None], on_eval: Callable[[int, dict, dict | None], None],
              start: int = 0, after_iteration: Callable[[int], None] | None = None) -> None:
        """Evaluate the initial policy, then alternate iterations and evaluations every `eval_every`.
        A resumed run passes the iterations already `start`ed; `after_iteration(done)` may checkpoint."""
        if start == 0:
            on_eval(0, *self.evaluate_all())
        for iteration in range(start, self.cfg.iterations):
            on_iteration(self.iteration(iteration))
            done = iteration + 1
            if done % self.cfg.eval_every == 0 or done == self.cfg.iterations:
                on_eval(done, *self.evaluate_all())
            if after_iteration is not None:
                after_iteration(done)

    def state_dict(self) -> dict:
        """Everything that changes during training, for an exact resume (with the global torch RNG, see checkpoint.py)."""
        return {"policy": self.policy.state_dict(), "critic": self.critic.state_dict(), "optimizer": self.optimizer.state_dict(),
                "kl_coef": self.kl_controller.coef, "generator": self.generator.get_state(), "method": self.method.state_dict(),
                "task": self.task.state_dict(), "seconds": dict(self.seconds)}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_controller.coef = state["kl_coef"]
        self.generator.set_state(state["generator"])
        self.method.load_state_dict(state["method"])
        self.task.load_state_dict(state["task"])
        self.seconds.update(state["seconds"])

    def evaluate_all(self) -> tuple[dict, dict | None]:
        """The online policy's val metrics, and the EMA's when asked for and the method keeps a separate one."""
        ema = self.method.ema_model
        evaluate_ema = self.cfg.eval_ema and ema is not None and ema is not self.method.init_model
        return self.evaluate(), (self.evaluate(model=ema) if evaluate_ema else None)

    def evaluate(self, split: str = "val", model: nn.Module | None = None) -> dict[str, float]:
        with self.timed("evaluate"):
            return self.task.evaluate(model if model is not None else self.policy, self.method.init_model, split,
                                      samples=self.cfg.eval_samples)
