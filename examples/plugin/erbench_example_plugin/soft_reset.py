"""Soft reset (shrink towards the start, in the spirit of Ash & Adams' shrink-and-perturb): every n iterations
the online policy moves a fraction `strength` of the way back to the initial model. strength = 1 is `reset`.

Uses only erbench's public method API: `self.online` / `self.init` are the policy's and theta0's trainable
parameters, `maybe_reset` runs after each iteration, `is_due` is erbench's reset clock.
"""

from dataclasses import dataclass

import torch

from erbench.methods.base import Method, is_due


@dataclass(frozen=True)
class SoftResetConfig:
    reset_every: int = 17  # iterations between soft resets (a task's recipe may set it for every method)
    first_reset_after: int | None = None  # iterations completed at the first one; None = reset_every
    strength: float = 0.5  # online <- online + strength * (theta0 - online)

    def __post_init__(self):
        if not 0 < self.strength <= 1:
            from erbench.errors import ErbenchError

            raise ErbenchError(f"impossible value method.strength={self.strength!r}", "method.strength must be in (0, 1]")


class SoftReset(Method):
    @torch.no_grad()
    def maybe_reset(self, completed: int) -> bool:
        if not is_due(completed, self.cfg.reset_every, self.cfg.first_reset_after):
            return False
        torch._foreach_lerp_(self.online, self.init, self.cfg.strength)
        self.reset_iterations.append(completed)
        return True
