"""ToolchainRestore-v0: the single environment and the native batched vector environment."""

from .restore_env import ToolchainRestoreEnv
from .vector import ToolchainRestoreVectorEnv

__all__ = ["ToolchainRestoreEnv", "ToolchainRestoreVectorEnv"]
