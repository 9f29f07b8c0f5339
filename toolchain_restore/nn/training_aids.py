"""DCNet's training aids as a training-loop callback.

The official code keeps decoupled filters at unit norm (projection every 100 iterations)
and spreads their directions with an orthogonality penalty (weight 1e-5). Both are
model-specific, so they live here, with the layers, and reach any loop of the project as
a :class:`~toolchain_restore.training.callbacks.Callback`; the generic trainer attaches
one when ``TrainerSettings.filter_projection_every`` or ``orthogonality_weight`` is set.
"""

from __future__ import annotations

import torch

from ..training.callbacks import Callback, TrainingState
from .decoupled import orthogonality_penalty, project_filters

__all__ = ["DCNetTrainingAids"]


class DCNetTrainingAids(Callback):
    """Projects the decoupled filters to unit norm every ``filter_projection_every`` steps
    (0 = never) and adds ``orthogonality_weight`` times :func:`orthogonality_penalty` to
    the loss (0 = off), logging the penalty as ``orthogonality``."""

    def __init__(self, filter_projection_every: int = 0, orthogonality_weight: float = 0.0) -> None:
        self.filter_projection_every = filter_projection_every
        self.orthogonality_weight = orthogonality_weight

    def on_loss(self, state: TrainingState, loss: torch.Tensor) -> torch.Tensor:
        if self.orthogonality_weight <= 0:
            return loss
        penalty = orthogonality_penalty(state.model)
        state.logs["orthogonality"] = penalty.item()
        return loss + self.orthogonality_weight * penalty

    def on_step_end(self, state: TrainingState) -> None:
        # Counted in the loop's steps, so "every 100" means after steps 100, 200, ...
        if self.filter_projection_every and state.step % self.filter_projection_every == 0:
            project_filters(state.model)
