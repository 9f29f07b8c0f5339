"""Policies that choose toolchains: the recurrent Q-network of RL-Restore and the oracles."""

from .network import RecurrentQNetwork
from .oracle import GreedyResult, greedy_toolchain
from .policy import RecurrentQPolicy, load_agent

__all__ = ["GreedyResult", "greedy_toolchain", "RecurrentQNetwork", "RecurrentQPolicy", "load_agent"]
