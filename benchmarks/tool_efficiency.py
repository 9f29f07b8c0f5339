"""Multiply-adds per second of batched tool inference against this machine's own ceiling,
measured in the same run: a large plain 3x3 convolution at the tools' widest width (64
channels) on the same number of 63x63 images.

    python -m benchmarks.tool_efficiency [--batch 1 32 128] [--seconds 2] [--repeats 3]

The toolbox runs ``Toolbox.apply`` with one random tool per image (each tool once on its
rows, as the vector env does). Every figure is the median over ``--repeats`` timed
windows, the two kinds interleaved so both see the same machine load; the efficiency is
the ratio of the two medians. The target of the benchmarks issue is at least 50%.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch import nn

from benchmarks import machine_line
from toolchain_restore import load_toolbox
from toolchain_restore.tools import NUM_TOOLS

PATCH = 63
CEILING_CHANNELS = 64


@torch.no_grad()
def macs_per_second(run: Callable[[], None], macs: int, seconds: float) -> float:
    """Multiply-adds per second of ``run`` (which spends ``macs``) over a window of ``seconds``."""
    run()  # warm-up: oneDNN picks its kernels on the first call
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        calls += 1
    return calls * macs / (time.perf_counter() - start)


def measure(batch: int, seconds: float, repeats: int, device: str, seed: int = 0) -> dict[str, float]:
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

    achieved, ceiling = [], []
    for _ in range(repeats):
        achieved.append(macs_per_second(run_tools, tool_macs, seconds))
        ceiling.append(macs_per_second(run_conv, conv_macs, seconds))
    a, c = statistics.median(achieved), statistics.median(ceiling)
    return {"toolbox": a, "ceiling": c, "efficiency": a / c}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32, 128], help="63x63 images per call")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one timed window")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per kind (median)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    print(machine_line(args.device))
    print(f"| batch | toolbox G multiply-adds/s | {CEILING_CHANNELS}-channel 3x3 conv G multiply-adds/s | efficiency |")
    print("|---|---|---|---|")
    for batch in args.batch:
        r = measure(batch, args.seconds, args.repeats, args.device)
        print(f"| {batch} | {r['toolbox'] / 1e9:.1f} | {r['ceiling'] / 1e9:.1f} | {100 * r['efficiency']:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
