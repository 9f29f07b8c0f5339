"""The paper's Table 3 protocol: every method on the same fixed test sets.

Per method and test set: PSNR and SSIM (Wang et al., RGB) of input and output averaged
over patches, mean multiply-adds per patch (the agent's own network included), mean
chain length, stop rate per step and tool usage. A method is anything with a ``name`` and
``run(L, H) -> Restoration``; policies with Stable-Baselines3's ``predict`` become methods
through :class:`PolicyMethod`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from ..agents.oracle import Chain, all_chain_psnrs, apply_chains, exhaustive_toolchain, greedy_toolchain
from ..data.tensors import to_uint8
from ..envs.toolchain import run_policy
from ..metrics import batch_psnr, ssim
from ..tools import NUM_TOOLS, Toolbox
from ..envs.held_out import HeldOutSet

__all__ = [
    "Restoration", "Method", "InputMethod", "PolicyMethod", "GreedyOracleMethod", "ExhaustiveOracleMethod",
    "CNNMethod", "MethodResult", "run_policy", "evaluate",
]


@dataclass
class Restoration:
    """What a method made of a batch: the estimate ``E`` and how it got there."""

    E: torch.Tensor
    """N x 3 x P x P in [0, 1]."""
    macs: np.ndarray
    """Multiply-adds spent on each patch."""
    chains: list[Chain] | None = None
    """Each patch's toolchain, for toolchain methods."""


class Method(Protocol):
    name: str

    def run(self, L: torch.Tensor, H: torch.Tensor) -> Restoration: ...


def _chain_macs(toolbox: Toolbox, chains: Sequence[Chain], size: int) -> np.ndarray:
    return np.array([sum(toolbox.macs(i, size, size) for i in c) for c in chains], dtype=np.float64)


class InputMethod:
    """The degraded input itself (what every gain is measured against)."""

    name = "input"

    def run(self, L: torch.Tensor, H: torch.Tensor) -> Restoration:
        return Restoration(L.clone(), np.zeros(len(L)), None)


@dataclass
class PolicyMethod:
    """A policy with the predictor protocol choosing the tools (agent, random, fixed chain, SB3)."""

    name: str
    policy: Any
    toolbox: Toolbox
    decision_macs: int = 0
    """Multiply-adds of one decision of the policy on one patch (0 for policies without a network)."""
    max_steps: int = 3

    def run(self, L: torch.Tensor, H: torch.Tensor) -> Restoration:
        E, chains, decisions = run_policy(self.policy, self.toolbox, L, self.max_steps)
        macs = _chain_macs(self.toolbox, chains, L.shape[-1]) + decisions * self.decision_macs
        return Restoration(E, macs, chains)


@dataclass
class GreedyOracleMethod:
    """At each step the tool that helps most, judged with the ground truth (an upper bound)."""

    toolbox: Toolbox
    max_steps: int = 3
    name: str = "greedy oracle"

    def run(self, L: torch.Tensor, H: torch.Tensor) -> Restoration:
        result = greedy_toolchain(self.toolbox, L, H, self.max_steps)
        chains = [tuple(c) for c in result.toolchains]
        # Deciding costs every tool on every active patch: 12 passes per step.
        tried = np.array([min(len(c) + 1, self.max_steps) for c in chains], dtype=np.float64)
        per_step = sum(self.toolbox.macs(i, L.shape[-2], L.shape[-1]) for i in range(NUM_TOOLS))
        return Restoration(result.restored, tried * per_step, chains)


@dataclass
class ExhaustiveOracleMethod:
    """Each patch's best chain of all chains up to ``max_steps`` tools (1,885 for 3)."""

    toolbox: Toolbox
    max_steps: int = 3
    name: str = "exhaustive oracle"

    def run(self, L: torch.Tensor, H: torch.Tensor) -> Restoration:
        table = all_chain_psnrs(self.toolbox, L, H, self.max_steps)
        chains, _ = exhaustive_toolchain(table)
        E = apply_chains(self.toolbox, L, chains)
        # The search runs every chain; report what the chosen chain costs, as for the others.
        return Restoration(E, _chain_macs(self.toolbox, chains, L.shape[-1]), chains)


@dataclass
class CNNMethod:
    """One network restores the whole patch (DnCNN- and VDSR-style baselines)."""

    name: str
    model: nn.Module
    batch_size: int = 32

    @torch.no_grad()
    def run(self, L: torch.Tensor, H: torch.Tensor) -> Restoration:
        self.model.eval()
        E = torch.cat([self.model(L[i:i + self.batch_size]).clamp_(0.0, 1.0) for i in range(0, len(L), self.batch_size)])
        return Restoration(E, np.full(len(L), float(self.model.macs(L.shape[-2], L.shape[-1]))), None)


@dataclass
class MethodResult:
    """One row of the report: one method on one test set."""

    method: str
    test_set: str
    patches: int
    input_psnr: float
    psnr: float
    input_ssim: float
    ssim: float
    macs: float
    """Mean multiply-adds per patch."""
    chain_length: float | None = None
    stop_rate: list[float] | None = None
    """Per step t = 1..max_steps: of the patches that reached decision t, the share that stopped there."""
    tool_usage: list[float] | None = None
    """Share of all tool applications that went to each tool (1..12)."""
    restoration: Restoration | None = field(default=None, repr=False)

    @property
    def gain(self) -> float:
        return self.psnr - self.input_psnr


def _mean_ssim(E: torch.Tensor, H: torch.Tensor) -> float:
    e, h = to_uint8(E).transpose(0, 2, 3, 1), to_uint8(H).transpose(0, 2, 3, 1)
    return float(np.mean([ssim(a, b) for a, b in zip(e, h)]))


def _chain_statistics(chains: Sequence[Chain], max_steps: int) -> tuple[float, list[float], list[float]]:
    lengths = np.array([len(c) for c in chains])
    stop_rate = []
    for t in range(1, max_steps + 1):
        reached = lengths >= t - 1
        stopped = reached & (lengths == t - 1)
        stop_rate.append(float(stopped.sum() / reached.sum()) if reached.any() else float("nan"))
    usage = np.bincount([i for c in chains for i in c], minlength=NUM_TOOLS).astype(np.float64)
    return float(lengths.mean()), stop_rate, (usage / max(1.0, usage.sum())).tolist()


def evaluate(methods: Sequence[Method], test_sets: Sequence[HeldOutSet], max_steps: int = 3,
             writer: Any = None, keep: bool = False) -> list[MethodResult]:
    """Every method on every test set. ``writer`` (a TensorBoard SummaryWriter) receives
    ``evaluate/<set>/<method>/<metric>`` scalars; ``keep`` keeps each restoration."""
    results = []
    for test_set in test_sets:
        L, H = test_set.L, test_set.H
        input_psnr = float(batch_psnr(L, H).mean())
        input_ssim = _mean_ssim(L, H)
        for method in methods:
            restoration = method.run(L, H)
            row = MethodResult(
                method=method.name, test_set=test_set.name, patches=len(test_set), input_psnr=input_psnr,
                psnr=float(batch_psnr(restoration.E, H).mean()), input_ssim=input_ssim,
                ssim=_mean_ssim(restoration.E, H), macs=float(np.mean(restoration.macs)),
                restoration=restoration if keep else None,
            )
            if restoration.chains is not None:
                row.chain_length, row.stop_rate, row.tool_usage = _chain_statistics(restoration.chains, max_steps)
            results.append(row)
            if writer is not None:
                tag = f"evaluate/{test_set.name}/{method.name.replace(' ', '_')}"
                for key in ("psnr", "ssim", "gain", "macs"):
                    writer.add_scalar(f"{tag}/{key}", getattr(row, key), 0)
    return results
