"""Learning-rate schedules shared by every training loop of the project.

One formula serves the generic trainer (``TrainerSettings.schedule``) and the recurrent
DQN (whose halving every ``lr_halve_every`` environment steps is the ``step`` schedule
with factor 0.5), so a schedule is computed the same way wherever it is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["LearningRateSchedule", "ScheduleKind"]

ScheduleKind = Literal["constant", "step", "cosine", "linear"]


@dataclass(frozen=True)
class LearningRateSchedule:
    """The learning rate as a function of the loop's step (0-based).

    ``warmup`` steps rise linearly from ``lr / warmup`` to ``lr``; then ``constant`` keeps
    ``lr``; ``step`` multiplies it by ``gamma`` every ``step_every`` steps; ``cosine`` and
    ``linear`` fall to ``lr_min`` at ``iterations``, after ``hold`` steps at the full rate.
    The rate never goes below ``lr_min``.
    """

    lr: float
    """Initial (peak) learning rate."""
    kind: ScheduleKind = "constant"
    """The shape after the warm-up."""
    iterations: int = 1
    """Where cosine and linear reach ``lr_min``."""
    lr_min: float = 0.0
    """Floor of the learning rate."""
    warmup: int = 0
    """Linear warm-up steps."""
    hold: int = 0
    """Steps at the full rate (after warm-up) before a cosine or linear decay starts."""
    step_every: int = 1000
    """Steps between the decays of ``step``."""
    gamma: float = 0.5
    """Factor of each decay of ``step``."""

    def at(self, step: int) -> float:
        """The learning rate of step ``step``."""
        if self.warmup and step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if self.kind == "constant":
            lr = self.lr
        elif self.kind == "step":
            lr = self.lr * self.gamma ** (step // max(1, self.step_every))
        else:
            span = max(1, self.iterations - self.warmup - self.hold)
            progress = min(1.0, max(0, step - self.warmup - self.hold) / span)
            # Any other kind decays linearly: the trainer has always read it so.
            factor = 0.5 * (1 + math.cos(math.pi * progress)) if self.kind == "cosine" else 1.0 - progress
            lr = self.lr_min + (self.lr - self.lr_min) * factor
        return max(lr, self.lr_min)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every parameter group of ``optimizer`` to the rate of ``step``; return it."""
        lr = self.at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr
