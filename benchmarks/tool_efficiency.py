"""Multiply-adds per second of batched tool inference against this machine's own ceiling,
measured in the same run: a large plain 3x3 convolution at the tools' widest width (64
channels) on the same number of 63x63 images.

    python -m benchmarks.tool_efficiency [--quick] [--device cpu]

The toolbox runs ``Toolbox.apply`` with one random tool per image (each tool once on its
rows, as the vector env does). Every figure is the median over ``--repeats`` timed
windows, the two kinds interleaved so both see the same machine load; the efficiency is
the ratio of the two medians. The target of the benchmarks issue is at least 50%.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from benchmarks import Section, Target, median, resolve_device, run_alone
from toolchain_restore import load_toolbox
from toolchain_restore.tools import NUM_TOOLS

PATCH = 63
CEILING_CHANNELS = 64
FULL = {"batch": [1, 32, 128], "seconds": 2.0, "repeats": 3}
QUICK = {"batch": [1, 32], "seconds": 0.3, "repeats": 3}
TARGET_EFFICIENCY = 0.5


@torch.no_grad()
def macs_per_second(run: Callable[[], None], macs: int, seconds: float) -> float:
    """Multiply-adds per second of ``run`` (which spends ``macs``) over a window of ``seconds``."""
    run()  # warm-up: oneDNN picks its kernels on the first call
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        calls += 1
    return calls * macs / (time.perf_counter() - start)


def measure(batch: int, seconds: float, repeats: int, device: str, seed: int = 0) -> dict[str, list[float]]:
    """Every window's multiply-adds per second of the toolbox and of the ceiling convolution."""
    generator = torch.Generator().manual_seed(seed)
    toolbox = load_toolbox(device=device)
    x = torch.rand(batch, 3, PATCH, PATCH, generator=generator).to(device)
    tools = torch.randint(0, NUM_TOOLS, (batch,), generator=generator).to(device)
    tool_macs = sum(toolbox.macs(int(t), PATCH, PATCH) for t in tools)

    conv = nn.Conv2d(CEILING_CHANNELS, CEILING_CHANNELS, 3, padding=1).to(device).to(memory_format=torch.channels_last)
    feature = torch.rand(batch, CEILING_CHANNELS, PATCH, PATCH, generator=generator).to(device)
    feature = feature.contiguous(memory_format=torch.channels_last)
    conv_macs = batch * PATCH * PATCH * CEILING_CHANNELS * CEILING_CHANNELS * 9

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def run_tools() -> None:
        toolbox.apply(x, tools)
        sync()

    def run_conv() -> None:
        conv(feature)
        sync()

    raw: dict[str, list[float]] = {"toolbox": [], "ceiling": []}
    for _ in range(repeats):
        raw["toolbox"].append(macs_per_second(run_tools, tool_macs, seconds))
        raw["ceiling"].append(macs_per_second(run_conv, conv_macs, seconds))
    return raw


def run(quick: bool = False, device: str = "cpu", figures: Path | None = None, **overrides) -> Section:
    p = {**(QUICK if quick else FULL), **overrides}
    device = resolve_device(device)
    start = time.perf_counter()
    raw, rows, worst = {}, [], None
    for batch in p["batch"]:
        r = raw[str(batch)] = measure(batch, p["seconds"], p["repeats"], device)
        toolbox, ceiling = median(r["toolbox"]), median(r["ceiling"])
        rows.append(f"| {batch} | {toolbox / 1e9:.2f} | {ceiling / 1e9:.2f} | {100 * toolbox / ceiling:.0f}% |")
        if batch > 1:
            worst = min(worst or 1e9, toolbox / ceiling)
    text = (f"`Toolbox.apply` on 63x63 images, one random tool per image (each tool runs once on its rows), against a "
            f"{CEILING_CHANNELS}-channel 3x3 convolution on as many 63x63 images; median of {p['repeats']} windows of "
            f"{p['seconds']} s each, interleaved.\n\n"
            f"| batch | toolbox G multiply-adds/s | {CEILING_CHANNELS}-channel 3x3 conv G multiply-adds/s | efficiency |\n"
            "|---|---|---|---|\n" + "\n".join(rows))
    targets = []
    if worst is not None:
        targets.append(Target("batched tool inference at least 50% of the machine's convolution ceiling "
                              "(every batch above 1)", f"{100 * worst:.0f}% (lowest)", worst >= TARGET_EFFICIENCY))
    return Section("Tool inference efficiency", text, {"params": p, "device": device, "by_batch": raw}, [], targets,
                   time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    run_alone(run, __doc__, QUICK, FULL, argv, ("batch",))

if __name__ == "__main__":
    main()
