"""Stochastic weight averaging of the Q-network (Izmailov et al., 2018; for deep Q-learning,
Nikishin et al., 2018): from a chosen step on, the network that is evaluated and written is
the running mean of the online network's weights, while acting and learning go on with
the online network itself. A DQN's greedy policy moves from one evaluation to the next by
more than the gaps it is chosen on; the mean of the weights along the end of a run
smooths that out at no cost per decision."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["WeightAverage"]


class WeightAverage:
    """The network a run shows: ``online`` itself when ``start`` is 0 (no averaging), else
    a copy that follows ``online`` exactly until environment step ``start`` and from then
    on holds the mean of its weights at every :meth:`update`.

    Args:
        online: the network being trained.
        start: the environment step at which averaging begins; 0 = never average.
    """

    def __init__(self, online: nn.Module, start: int) -> None:
        if start < 0:
            raise ValueError(f"average_from must be >= 0 (0 = no averaging), got {start}")
        self.online, self.start, self.count = online, start, 0
        self.network = online if start == 0 else copy.deepcopy(online)

    @property
    def averaging(self) -> bool:
        return self.start > 0

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold the online weights into the mean (environment step ``step``); before
        ``start``, copy them."""
        if not self.averaging:
            return
        if step < self.start:
            self.network.load_state_dict(self.online.state_dict())
            return
        self.count += 1
        for mean, current in zip(self.network.state_dict().values(), self.online.state_dict().values()):
            if mean.is_floating_point():
                mean.add_(current - mean, alpha=1.0 / self.count)
            else:
                mean.copy_(current)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the mean and how many weights it holds."""
        return {"weights": self.network.state_dict(), "count": self.count} if self.averaging else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not self.averaging:
            return
        if not state:
            raise ValueError("the checkpoint holds no weight average, but the settings ask for one (average_from)")
        self.network.load_state_dict(state["weights"])
        self.count = int(state["count"])
