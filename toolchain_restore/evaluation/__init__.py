"""The paper's test protocol: fixed test sets, every method on them, one report."""

from .protocol import (CNNMethod, ExhaustiveOracleMethod, GreedyOracleMethod, InputMethod, Method, MethodResult,
                       PolicyMethod, Restoration, evaluate, run_policy)
from .report import markdown_report, plot_report
from .run import EvaluationSettings, run_evaluation, search_fixed_chain
from .test_sets import EVALUATION_SEED, TestSet, held_out_set, paired_folder_sets

__all__ = [
    "CNNMethod", "ExhaustiveOracleMethod", "GreedyOracleMethod", "InputMethod", "Method", "MethodResult",
    "PolicyMethod", "Restoration", "evaluate", "run_policy", "markdown_report", "plot_report",
    "EvaluationSettings", "run_evaluation", "search_fixed_chain", "EVALUATION_SEED", "TestSet", "held_out_set",
    "paired_folder_sets",
]
