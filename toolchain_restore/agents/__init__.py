"""Policies that choose toolchains: oracles now; the recurrent DQN agent and baselines to come."""

from .oracle import GreedyResult, greedy_toolchain

__all__ = ["GreedyResult", "greedy_toolchain"]
