"""Hooks into a training loop, in the spirit of Stable-Baselines3's callbacks.

A model's extras (DCNet's filter projection and orthogonality penalty, the DQN's held-out
evaluation) live with the model as a :class:`Callback` instead of inside a loop. Both the
generic :class:`~toolchain_restore.training.Trainer` and the recurrent DQN call the same
hooks, in this order::

    on_train_start                       once, after resuming and opening the writer
    on_loss -> on_step_end               every step (on_loss once per gradient step)
    on_evaluate                          at each held-out evaluation, on rank 0
    on_train_end                         once, after the last step

"Step" is the loop's own counter: optimiser steps for the trainer, environment steps
(summed over the envs) for the DQN.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from .run import Run

__all__ = ["Callback", "CallbackList", "TrainingState"]


@dataclass
class TrainingState:
    """What a callback sees of the loop. Callbacks read it, and may add entries to ``logs``
    (logged under ``losses/`` by the trainer) and ``metrics``."""

    run: Run
    """The run: its directory, TensorBoard writer (``run.writer``) and rank."""
    model: nn.Module
    """The network being trained (the DQN's online Q-network)."""
    device: torch.device
    step: int = 0
    """Steps done so far (during ``on_loss``: before the current one)."""
    logs: dict[str, float] = field(default_factory=dict)
    """Named values of the current step."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The latest held-out metrics."""


class Callback:
    """Base class: every hook does nothing; override the ones a model needs."""

    def on_train_start(self, state: TrainingState) -> None:
        """Once, before the first step of this process (also after a resume)."""

    def on_loss(self, state: TrainingState, loss: torch.Tensor) -> torch.Tensor:
        """Before backward: return the loss to minimise (``loss`` plus any extra terms)."""
        return loss

    def on_step_end(self, state: TrainingState) -> None:
        """After the optimiser step(s) of ``state.step``."""

    def on_evaluate(self, state: TrainingState) -> None:
        """At a held-out evaluation (rank 0 only), after the loop's own metrics are in ``state.metrics``."""

    def on_train_end(self, state: TrainingState) -> None:
        """Once, after the last step."""


class CallbackList(Callback):
    """Several callbacks called in order; ``on_loss`` passes each one's loss to the next."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_train_start(self, state: TrainingState) -> None:
        for callback in self.callbacks:
            callback.on_train_start(state)

    def on_loss(self, state: TrainingState, loss: torch.Tensor) -> torch.Tensor:
        for callback in self.callbacks:
            loss = callback.on_loss(state, loss)
        return loss

    def on_step_end(self, state: TrainingState) -> None:
        for callback in self.callbacks:
            callback.on_step_end(state)

    def on_evaluate(self, state: TrainingState) -> None:
        for callback in self.callbacks:
            callback.on_evaluate(state)

    def on_train_end(self, state: TrainingState) -> None:
        for callback in self.callbacks:
            callback.on_train_end(state)
