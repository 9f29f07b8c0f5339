"""The paper's test protocol: fixed held-out sets, every method on them, one report."""

import warnings as _warnings

from ..envs.held_out import EVALUATION_SEED, HeldOutSet, held_out_set, paired_folder_sets
from ..envs.toolchain import run_policy
from .protocol import (CNNMethod, ExhaustiveOracleMethod, GreedyOracleMethod, InputMethod, Method, MethodResult,
                       PolicyMethod, Restoration, evaluate)
from .report import markdown_report, plot_report
from .run import EvaluationSettings, run_evaluation, search_fixed_chain

__all__ = [
    "CNNMethod", "ExhaustiveOracleMethod", "GreedyOracleMethod", "InputMethod", "Method", "MethodResult",
    "PolicyMethod", "Restoration", "evaluate", "run_policy", "markdown_report", "plot_report",
    "EvaluationSettings", "run_evaluation", "search_fixed_chain", "EVALUATION_SEED", "HeldOutSet", "held_out_set",
    "paired_folder_sets",
]


def __getattr__(name: str):
    if name == "TestSet":  # the old name, kept one release
        _warnings.warn("toolchain_restore.evaluation.TestSet is deprecated; use HeldOutSet", DeprecationWarning,
                       stacklevel=2)
        return HeldOutSet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
