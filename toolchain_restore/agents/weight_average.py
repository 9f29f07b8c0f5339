"""Stochastic weight averaging of the Q-network (Izmailov et al., 2018; for deep Q-learning,
Nikishin et al., 2018): from a chosen step on, the network that is evaluated and written is
the running mean of the online network's weights, while acting and learning go on with
the online network itself. A DQN's greedy policy moves from one evaluation to the next by
more than the gaps it is chosen on; the mean of the weights along the end of a run
smooths that out at no cost per decision.

:func:`average_agents` takes the mean of whole agent files instead (a "model soup",
Wortsman et al., 2022): agents trained from the same start, whose weights a mean can join.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInput
from .policy import RecurrentQPolicy

__all__ = ["WeightAverage", "average_agents", "check_average_from"]


def check_average_from(start: int) -> int:
    """``start`` itself; a negative one is refused (train-agent checks it before its run writes)."""
    if start < 0:
        raise InvalidInput(f"--average-from (average_from) must be >= 0 (0 = no weight averaging), got {start}")
    return start


class WeightAverage:
    """The network a run shows: ``online`` itself when ``start`` is 0 (no averaging), else
    a copy that follows ``online`` exactly until environment step ``start`` and from then
    on holds the mean of its weights at every :meth:`update`.

    Args:
        online: the network being trained.
        start: the environment step at which averaging begins; 0 = never average.
    """

    def __init__(self, online: nn.Module, start: int) -> None:
        self.online, self.start, self.count = online, check_average_from(start), 0
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


def average_agents(paths: Sequence[str | os.PathLike]) -> RecurrentQPolicy:
    """The agent whose every weight is the mean of those of the agent files ``paths``
    (at least two, of one network shape, none with a stop gate); it keeps the first file's
    views and epsilon, and records the files in its training settings (``average_of``).

    Raises:
        InvalidInput: fewer than two files, a file with a stop gate, or files of another
            network shape than the first (each named).
    """
    if len(paths) < 2:
        raise InvalidInput(f"average-agents needs at least two agent files, got {len(paths)}")
    agents = [RecurrentQPolicy.load(path) for path in paths]
    first = agents[0]
    weights = [agent.network.state_dict() for agent in agents]
    shapes = [{name: tuple(t.shape) for name, t in w.items()} for w in weights]
    for path, agent, shape in zip(paths, agents, shapes):
        if agent.stop_gate is not None:
            raise InvalidInput(f"{path}: an agent with a stop gate; average the agents without one")
        if agent.network.conv != first.network.conv or shape != shapes[0]:
            raise InvalidInput(f"{path}: another network shape than {paths[0]}'s; only agents of one shape average")
    with torch.no_grad():
        first.network.load_state_dict({name: torch.stack([w[name].float() for w in weights]).mean(0)
                                       for name in shapes[0]})
    first.training_settings = {**(first.training_settings or {}), "average_of": [str(p) for p in paths]}
    return first
