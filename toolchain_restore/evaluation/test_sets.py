"""Deprecated: the held-out sets live in :mod:`toolchain_restore.envs.held_out` (``TestSet`` is
now ``HeldOutSet``). This module re-exports them, with a warning, for one release."""

from __future__ import annotations

import warnings

from ..envs.held_out import EVALUATION_SEED, HeldOutSet, held_out_set, paired_folder_sets

__all__ = ["TestSet", "HeldOutSet", "held_out_set", "paired_folder_sets", "EVALUATION_SEED"]

warnings.warn("toolchain_restore.evaluation.test_sets is deprecated; import from toolchain_restore.envs.held_out "
              "(TestSet is now HeldOutSet)", DeprecationWarning, stacklevel=2)

TestSet = HeldOutSet
