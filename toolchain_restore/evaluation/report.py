"""The evaluation as a markdown table and a PSNR-versus-compute chart."""

from __future__ import annotations

import math
import os
from typing import Sequence

from ..tools import NUM_TOOLS
from .protocol import MethodResult

__all__ = ["markdown_report", "summary_table", "plot_report"]


def _macs(value: float) -> str:
    return "0" if value == 0 else f"{value / 1e9:.3f} G" if value >= 1e8 else f"{value / 1e6:.1f} M"


def _rates(values: Sequence[float] | None) -> str:
    return "-" if values is None else " / ".join("-" if math.isnan(v) else f"{100 * v:.0f}%" for v in values)


def markdown_report(results: Sequence[MethodResult]) -> str:
    """One table per test set (PSNR, SSIM, gain, compute, chain statistics), then tool usage."""
    lines = []
    for name in dict.fromkeys(r.test_set for r in results):
        rows = [r for r in results if r.test_set == name]
        lines += [f"### {name} ({rows[0].patches} patches; input PSNR {rows[0].input_psnr:.2f} dB, "
                  f"SSIM {rows[0].input_ssim:.4f})", "",
                  "| method | PSNR | SSIM | gain (dB) | multiply-adds per patch | mean chain length | stop rate per step |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            length = "-" if r.chain_length is None else f"{r.chain_length:.2f}"
            lines.append(f"| {r.method} | {r.psnr:.2f} | {r.ssim:.4f} | {r.gain:+.2f} | {_macs(r.macs)} | {length} "
                         f"| {_rates(r.stop_rate)} |")
        lines.append("")
    chained = [r for r in results if r.tool_usage is not None]
    if chained:
        lines += ["### Tool usage (share of all tool applications)", "",
                  "| set | method | " + " | ".join(str(k + 1) for k in range(NUM_TOOLS)) + " |",
                  "|---|---|" + "---|" * NUM_TOOLS]
        for r in chained:
            lines.append(f"| {r.test_set} | {r.method} | " + " | ".join(f"{100 * u:.0f}" for u in r.tool_usage) + " |")
        lines.append("")
    return "\n".join(lines)


def summary_table(results: Sequence[MethodResult]) -> str:
    """One row per method, PSNR / SSIM per test set in columns, then mean multiply-adds per
    patch over all sets (the compact table of the README and the benchmark report)."""
    names = list(dict.fromkeys(r.test_set for r in results))
    by = {(r.method, r.test_set): r for r in results}
    lines = ["| method | " + " | ".join(f"{n} PSNR / SSIM" for n in names) + " | multiply-adds per patch |",
             "|---|" + "---|" * (len(names) + 1)]
    for method in dict.fromkeys(r.method for r in results):
        rows = [by[(method, n)] for n in names if (method, n) in by]
        cells = [f"{by[(method, n)].psnr:.2f} / {by[(method, n)].ssim:.4f}" if (method, n) in by else "-" for n in names]
        macs = sum(r.macs for r in rows) / len(rows)
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {_macs(macs)} |")
    return "\n".join(lines)


def plot_report(results: Sequence[MethodResult], path: str | os.PathLike) -> None:
    """PSNR against multiply-adds per patch, one panel per test set, one point per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r.test_set for r in results))
    methods = list(dict.fromkeys(r.method for r in results))
    colours = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for r in (r for r in results if r.test_set == name):
            ax.scatter(max(r.macs, 1e6), r.psnr, color=colours[r.method], label=r.method, s=40)
        ax.set_xscale("log")
        ax.set_xlabel("multiply-adds per patch")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
