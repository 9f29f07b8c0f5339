"""Episode replay: whole toolchains, because the agent's LSTM needs the full chain."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from ..tools import NUM_TOOLS

__all__ = ["Episode", "EpisodeBatch", "EpisodeReplay"]


@dataclass
class Episode:
    """One chain: T actions, the T + 1 images seen before and after them."""

    images: np.ndarray
    """(T + 1) x 3 x P x P uint8."""
    actions: np.ndarray
    """T int64, 0..12."""
    rewards: np.ndarray
    """T float32."""

    @property
    def length(self) -> int:
        return len(self.actions)


@dataclass
class EpisodeBatch:
    """Episodes padded to the longest, time first."""

    images: torch.Tensor
    """(T + 1) x B x 3 x P x P uint8."""
    previous: torch.Tensor
    """(T + 1) x B x 12 one-hot of the previous tool (zeros at the start and after stop)."""
    actions: torch.Tensor
    """T x B int64."""
    rewards: torch.Tensor
    """T x B float32."""
    done: torch.Tensor
    """T x B float32: 1 at each episode's last action."""
    mask: torch.Tensor
    """T x B float32: 1 where a real step is, 0 in the padding."""


class EpisodeReplay:
    """Keeps the most recent episodes, up to ``capacity`` steps in all."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.episodes: deque[Episode] = deque()
        self.steps = 0

    def __len__(self) -> int:
        return len(self.episodes)

    def add(self, episode: Episode) -> None:
        if episode.length < 1 or len(episode.images) != episode.length + 1:
            raise ValueError(f"an episode needs T >= 1 actions and T + 1 images, got {episode.length} and {len(episode.images)}")
        self.episodes.append(episode)
        self.steps += episode.length
        while self.steps > self.capacity and len(self.episodes) > 1:
            self.steps -= self.episodes.popleft().length

    def sample(self, count: int, rng: np.random.Generator, device: torch.device | str = "cpu") -> EpisodeBatch:
        if not self.episodes:
            raise ValueError("the replay memory is empty")
        chosen = [self.episodes[i] for i in rng.integers(len(self.episodes), size=count)]
        steps = max(e.length for e in chosen)
        size = chosen[0].images.shape[1:]
        images = np.zeros((steps + 1, count, *size), dtype=np.uint8)
        previous = np.zeros((steps + 1, count, NUM_TOOLS), dtype=np.float32)
        actions = np.zeros((steps, count), dtype=np.int64)
        rewards = np.zeros((steps, count), dtype=np.float32)
        done = np.zeros((steps, count), dtype=np.float32)
        mask = np.zeros((steps, count), dtype=np.float32)
        for b, e in enumerate(chosen):
            t = e.length
            images[: t + 1, b] = e.images
            actions[:t, b] = e.actions
            rewards[:t, b] = e.rewards
            done[t - 1, b] = 1.0
            mask[:t, b] = 1.0
            tools = np.nonzero(e.actions < NUM_TOOLS)[0]
            previous[tools + 1, b, e.actions[tools]] = 1.0
        as_tensor = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
        return EpisodeBatch(*(as_tensor(a) for a in (images, previous, actions, rewards, done, mask)))
