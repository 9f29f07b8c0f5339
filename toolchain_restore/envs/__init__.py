"""ToolchainRestore-v0: the toolchain core, the single environment and the native batched
vector environment, policy roll-outs and the held-out sets they are measured on."""

from .held_out import EVALUATION_SEED, HeldOutSet, held_out_set, paired_folder_sets
from .restore_env import ToolchainRestoreEnv
from .toolchain import NUM_ACTIONS, STOP, ToolchainBatch, check_action, check_actions, run_policy
from .vector import ToolchainRestoreVectorEnv

__all__ = ["ToolchainRestoreEnv", "ToolchainRestoreVectorEnv", "ToolchainBatch", "run_policy", "check_action",
           "check_actions", "STOP", "NUM_ACTIONS", "HeldOutSet", "held_out_set", "paired_folder_sets",
           "EVALUATION_SEED"]
