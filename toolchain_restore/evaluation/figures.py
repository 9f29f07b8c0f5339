"""Deprecated: the toolchain pictures live in :mod:`toolchain_restore.envs.figures`; this
module re-exports them for one release."""

from ..envs.figures import ChainTrace, chain_text, toolchain_figure, trace_policy

__all__ = ["ChainTrace", "chain_text", "toolchain_figure", "trace_policy"]
