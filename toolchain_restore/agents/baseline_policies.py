"""Policies without learning, for comparison: uniformly random actions and one fixed chain.

Both follow Stable-Baselines3's predictor protocol like :class:`RecurrentQPolicy`, so the
same evaluation runs every policy.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..envs.episode import NUM_ACTIONS, STOP
from ..tools import NUM_TOOLS

__all__ = ["RandomPolicy", "FixedChainPolicy", "parse_chain"]


def _batch_size(observation: dict[str, Any]) -> tuple[int, bool]:
    if not isinstance(observation, dict) or "image" not in observation:
        raise ValueError("observation must be a dict with 'image' (ToolchainRestore-v0's)")
    image = np.asarray(observation["image"])
    single = image.ndim == 3
    return (1 if single else image.shape[0]), single


class RandomPolicy:
    """Every action (12 tools and stop) equally likely at every step."""

    def __init__(self, seed: int | np.random.Generator | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def predict(self, observation: dict[str, Any], state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        # ``deterministic`` cannot apply: randomness is this policy's definition.
        n, single = _batch_size(observation)
        actions = self.rng.integers(0, NUM_ACTIONS, n)
        return (actions[0] if single else actions), state


class FixedChainPolicy:
    """The same toolchain for every patch, then stop; reads the step from the observation."""

    def __init__(self, chain: Sequence[int]) -> None:
        chain = tuple(int(a) for a in chain)
        if any(not 0 <= a < NUM_TOOLS for a in chain):
            raise ValueError(f"a chain holds tools 0..{NUM_TOOLS - 1} (tools 1..12), got {list(chain)}")
        self.chain = chain

    def predict(self, observation: dict[str, Any], state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        n, single = _batch_size(observation)
        if "step" not in observation:
            raise ValueError("FixedChainPolicy needs the observation's 'step'")
        steps = np.asarray(observation["step"]).reshape(n)
        lookup = np.array(self.chain + (STOP,))
        actions = lookup[np.minimum(steps, len(self.chain))]
        return (actions[0] if single else actions), state


def parse_chain(text: str) -> tuple[int, ...]:
    """'6,12,11' (tool numbers 1..12, as printed in reports) to tool indices (5, 11, 10)."""
    try:
        numbers = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise ValueError(f"a chain is comma-separated tool numbers 1..12, got {text!r}") from None
    if any(not 1 <= k <= NUM_TOOLS for k in numbers):
        raise ValueError(f"tool numbers are 1..{NUM_TOOLS}, got {text!r}")
    return tuple(k - 1 for k in numbers)
