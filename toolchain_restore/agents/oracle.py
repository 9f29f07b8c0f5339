"""Oracle toolchains: chosen with the ground truth, as upper bounds and demonstrations."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..envs.toolchain import STOP, ToolchainBatch
from ..metrics import batch_psnr
from ..tools import NUM_TOOLS, Toolbox

__all__ = ["GreedyResult", "greedy_toolchain", "try_every_tool", "Chain", "all_chain_psnrs", "best_fixed_chain", "exhaustive_toolchain",
           "apply_chains"]

Chain = tuple[int, ...]
"""Tools (0..11) applied in order; the empty chain stops at once."""


@dataclass
class GreedyResult:
    """The greedy oracle's chain on one batch of images (all rows share the chain length bound)."""

    toolchains: list[list[int]]
    """Tools (0..11) applied to each row, in order."""
    psnrs: list[list[float]]
    """PSNR of each row before any tool, then after each applied tool."""
    steps: list[torch.Tensor] = field(default_factory=list)
    """The batch after each step (rows that stopped keep their image)."""

    @property
    def restored(self) -> torch.Tensor:
        return self.steps[-1]


@torch.no_grad()
def try_every_tool(toolbox: Toolbox, current: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every tool on every row of ``current`` (clamped): the candidates (tools x rows x ...)
    and their PSNR against ``H`` (tools x rows). The greedy oracle's step and its
    demonstrations both choose from these."""
    candidates = torch.stack([toolbox(current, i).clamp_(0, 1) for i in range(NUM_TOOLS)])
    return candidates, torch.stack([batch_psnr(c, H) for c in candidates])


@torch.no_grad()
def greedy_toolchain(toolbox: Toolbox, L: torch.Tensor, H: torch.Tensor, max_steps: int = 3) -> GreedyResult:
    """At each step apply the tool that raises PSNR most (judged with ``H``); stop when none helps.

    ``L`` and ``H`` are N x 3 x h x w tensors in [0, 1]. Every tool is tried on every row,
    so a step costs 12 tool passes.
    """
    current = L.clone()
    best_psnr = batch_psnr(current, H)
    active = torch.ones(len(L), dtype=torch.bool, device=L.device)
    chains: list[list[int]] = [[] for _ in range(len(L))]
    psnrs = [[float(p)] for p in best_psnr]
    steps = [current.clone()]
    for _ in range(max_steps):
        if not active.any():
            break
        rows = active.nonzero(as_tuple=True)[0]
        candidates, scores = try_every_tool(toolbox, current[rows], H[rows])
        top, choice = scores.max(dim=0)
        helps = top > best_psnr[rows]
        for k, r in enumerate(rows.tolist()):
            if helps[k]:
                current[r] = candidates[choice[k], k]
                best_psnr[r] = top[k]
                chains[r].append(int(choice[k]))
                psnrs[r].append(float(top[k]))
            else:
                active[r] = False
        steps.append(current.clone())
    return GreedyResult(chains, psnrs, steps)


@torch.no_grad()
def all_chain_psnrs(toolbox: Toolbox, L: torch.Tensor, H: torch.Tensor, max_steps: int = 3) -> dict[Chain, torch.Tensor]:
    """PSNR of every row after every chain of up to ``max_steps`` tools (1,885 chains for 3).

    Depth first, so only one batch per depth is alive; every chain costs one tool pass on
    all rows (about 10 minutes for 64 patches on a 2-core CPU, seconds on a GPU).
    """
    table: dict[Chain, torch.Tensor] = {(): batch_psnr(L, H)}

    def extend(chain: Chain, current: torch.Tensor) -> None:
        if len(chain) == max_steps:
            return
        for i in range(NUM_TOOLS):
            restored = toolbox(current, i).clamp_(0, 1)
            table[chain + (i,)] = batch_psnr(restored, H)
            extend(chain + (i,), restored)

    extend((), L)
    return table


def best_fixed_chain(table: dict[Chain, torch.Tensor]) -> tuple[Chain, float]:
    """The one chain with the highest mean PSNR over the rows of ``all_chain_psnrs``."""
    chain = max(table, key=lambda c: float(table[c].mean()))
    return chain, float(table[chain].mean())


def exhaustive_toolchain(table: dict[Chain, torch.Tensor]) -> tuple[list[Chain], torch.Tensor]:
    """Each row's best chain of the table (ties go to the shorter chain) and its PSNR."""
    chains = sorted(table, key=len)  # the empty chain first: stopping wins ties
    scores = torch.stack([table[c] for c in chains])  # chains x rows
    best, index = scores.max(dim=0)
    return [chains[k] for k in index.tolist()], best


@torch.no_grad()
def apply_chains(toolbox: Toolbox, L: torch.Tensor, chains: list[Chain]) -> torch.Tensor:
    """Row n restored by ``chains[n]`` (clamped after each tool, as in the environment)."""
    if len(chains) != len(L):
        raise ValueError(f"need one chain per row: {len(L)} rows, {len(chains)} chains")
    batch = ToolchainBatch(toolbox, L)
    for step in range(max((len(c) for c in chains), default=0)):
        batch.step([c[step] if step < len(c) else STOP for c in chains])
    return batch.state
