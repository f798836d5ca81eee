"""The parts of the task protocol most tasks share; a task overrides what it needs (see rl/ppo.py for the protocol)."""

from torch import nn

from erbench.rl.policy import Critic


class Task:
    def make_critic(self, policy: nn.Module) -> nn.Module:
        """The value model; by default a causal LM's transformer with a scalar head."""
        return Critic(policy)

    def learn(self, rollout) -> dict[str, float]:
        """Train the task's own models (a listener, say) on a rollout; returns their statistics. Default: none."""
        return {}

    def on_policy_reset(self) -> None:
        """Called after a method resets the policy."""

    def state_dict(self) -> dict:
        """What the task's own models learned during training (for checkpoints). Default: nothing."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
