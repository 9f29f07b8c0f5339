"""How good the tools are: each tool on each tool's band, held-out patches, mid-band values."""

from __future__ import annotations

import numpy as np

from ..runtime import resolve_device
from .specs import NUM_TOOLS, TOOL_SPECS
from .toolbox import load_toolbox
from .training import band_test_set, evaluate_tools

__all__ = ["cross_gains", "tool_report"]


def cross_gains(toolbox, data: str | None = None, patches: int = 200, device: str = "auto",
                precision: str = "auto") -> np.ndarray:
    """gains[i, j]: mean PSNR gain (dB) of tool i on held-out patches at the middle of tool j's band."""
    dev = resolve_device(device)
    tb = load_toolbox(toolbox, dev, precision)
    sets = {j: band_test_set(TOOL_SPECS[j], patches, data) for j in range(NUM_TOOLS)}
    return evaluate_tools(tb, sets, dev)


def tool_report(toolbox=None, data: str | None = None, patches: int = 200, device: str = "auto",
                precision: str = "auto") -> str:
    """A markdown table: each tool's gain on its own band and the best other tool of its type there."""
    gains = cross_gains(toolbox, data, patches, device, precision)
    lines = [
        "| tool | band (mid) | gain on own band (dB) | best other tool of its type there (dB) |",
        "|---|---|---|---|",
    ]
    for j, spec in enumerate(TOOL_SPECS):
        group = range(4 * (j // 4), 4 * (j // 4) + 4)
        others = [(gains[i, j], i) for i in group if i != j]
        best, who = max(others)
        lines.append(
            f"| {j + 1} {spec.name} ({spec.size}) | {spec.band[0]:g}..{spec.band[1]:g} ({spec.mid:g}) | "
            f"{gains[j, j]:+.2f} | {best:+.2f} (tool {who + 1}) |"
        )
    return "\n".join(lines)
