"""Oracle toolchains: chosen with the ground truth, as upper bounds and demonstrations."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..metrics import batch_psnr
from ..tools import NUM_TOOLS, Toolbox

__all__ = ["GreedyResult", "greedy_toolchain"]


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
        candidates = torch.stack([toolbox(current[rows], i).clamp_(0, 1) for i in range(NUM_TOOLS)])
        scores = torch.stack([batch_psnr(c, H[rows]) for c in candidates])  # tools x rows
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
