"""toolchain-restore: RL-Restore's toolbox and the ToolchainRestore-v0 Gymnasium environment.

Importing the package registers ``ToolchainRestore-v0`` (single and native vector entry
points)::

    import gymnasium as gym
    import toolchain_restore

    env = gym.make("ToolchainRestore-v0", level="moderate")
    envs = gym.make_vec("ToolchainRestore-v0", num_envs=32, vectorization_mode="vector_entrypoint")
"""

from gymnasium.envs.registration import register, registry

from .degrade import DegradationParams, degrade
from .tools import Toolbox, load_toolbox
from .agents import load_agent  # after tools: the agents build on them
from .restore import RestoreResult, restore  # after agents: it drives the agent and the tools


__all__ = ["degrade", "DegradationParams", "Toolbox", "load_toolbox", "load_agent", "restore", "RestoreResult", "ENV_ID"]
__version__ = "0.1.0"

ENV_ID = "ToolchainRestore-v0"

if ENV_ID not in registry:
    register(
        id=ENV_ID,
        entry_point="toolchain_restore.envs.restore_env:ToolchainRestoreEnv",
        vector_entry_point="toolchain_restore.envs.vector:ToolchainRestoreVectorEnv",
    )
