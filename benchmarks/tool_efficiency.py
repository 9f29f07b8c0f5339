"""Multiply-adds per second of batched tool inference against this machine's own ceiling,
in float32 and in bfloat16, all measured in the same run: the ceiling is a large plain
3x3 convolution at the tools' widest width (64 channels) on the same number of 63x63
images.

    python -m benchmarks.tool_efficiency [--quick] [--device cpu]

The toolbox runs ``Toolbox.apply_tools`` with one random tool per image (each tool once on its
rows, as the vector env does), once at precision fp32 and once at bf16 (the same weights,
``Toolbox.with_precision``). The ceiling convolution runs in float32, under bf16 autocast
(what the toolbox's bf16 does) and, as a third reference, with bf16 weights and inputs (no
autocast casts). Every figure is the median over ``--repeats`` timed windows, the five
kinds interleaved so they all see the same machine load; each ratio is one of two medians.
Targets of the benchmarks issue: fp32 efficiency at least 50%; where the machine has
native bf16, the bf16 toolbox at least 2x the fp32 one at batch 32 and at least 50% of
the bf16 (autocast) ceiling. Without native bf16 (bf16 emulated) those two are n/a.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from benchmarks import Section, Target, auto_choice, bf16_target, median, resolve_device, run_alone
from toolchain_restore import load_toolbox
from toolchain_restore.tools import NUM_TOOLS

PATCH = 63
CEILING_CHANNELS = 64
FULL = {"batch": [1, 32, 128], "seconds": 2.0, "repeats": 3}
QUICK = {"batch": [1, 32], "seconds": 0.3, "repeats": 3}
TARGET_EFFICIENCY = 0.5
TARGET_BF16_SPEEDUP = 2.0
TARGET_BF16_BATCH = 32
KINDS = ("toolbox", "toolbox_bf16", "ceiling", "ceiling_bf16", "ceiling_bf16_weights")
"""Raw keys: the toolbox in fp32 and bf16; the ceiling conv in fp32, under bf16 autocast, with bf16 weights and inputs."""


@torch.no_grad()
def macs_per_second(run: Callable[[], None], macs: int, seconds: float) -> float:
    """Multiply-adds per second of ``run`` (which spends ``macs``) over a window of at least
    ``seconds`` and at least one call (the caller warms ``run`` up first)."""
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < seconds:
        run()
        calls += 1
    return calls * macs / (time.perf_counter() - start)


def workloads(batch: int, device: str, seed: int = 0) -> dict[str, tuple[Callable[[], None], int]]:
    """Each of :data:`KINDS` as (a call that runs it once on ``batch`` images, its multiply-adds)."""
    generator = torch.Generator().manual_seed(seed)
    toolbox = load_toolbox(device=device, precision="fp32")
    x = torch.rand(batch, 3, PATCH, PATCH, generator=generator).to(device)
    tools = torch.randint(0, NUM_TOOLS, (batch,), generator=generator).to(device)
    tool_macs = sum(toolbox.macs(int(t), PATCH, PATCH) for t in tools)
    conv = nn.Conv2d(CEILING_CHANNELS, CEILING_CHANNELS, 3, padding=1).to(device).to(memory_format=torch.channels_last)
    feature = torch.rand(batch, CEILING_CHANNELS, PATCH, PATCH, generator=generator).to(device)
    feature = feature.contiguous(memory_format=torch.channels_last)
    conv16, feature16 = copy.deepcopy(conv).to(torch.bfloat16), feature.to(torch.bfloat16)
    conv_macs = batch * PATCH * PATCH * CEILING_CHANNELS * CEILING_CHANNELS * 9
    device_type = torch.device(device).type

    def sync() -> None:
        if device_type == "cuda":
            torch.cuda.synchronize()

    def tools_at(precision: str) -> Callable[[], None]:
        box = toolbox.with_precision(precision)
        return lambda: (box.apply_tools(x, tools), sync())

    def ceiling(autocast: bool) -> None:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            conv(feature)
        sync()

    return {"toolbox": (tools_at("fp32"), tool_macs), "toolbox_bf16": (tools_at("bf16"), tool_macs),
            "ceiling": (lambda: ceiling(False), conv_macs), "ceiling_bf16": (lambda: ceiling(True), conv_macs),
            "ceiling_bf16_weights": (lambda: (conv16(feature16), sync()), conv_macs)}


def measure(batch: int, seconds: float, repeats: int, device: str, seed: int = 0) -> dict[str, list[float]]:
    """Every window's multiply-adds per second of each of :data:`KINDS`, the kinds interleaved."""
    runs = workloads(batch, device, seed)
    with torch.no_grad():
        for run_once, _ in runs.values():
            run_once()  # warm-up: oneDNN picks its kernels on the first call
    raw: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for _ in range(repeats):
        for kind in KINDS:
            raw[kind].append(macs_per_second(*runs[kind], seconds))
    return raw


def _row(batch: str, r: dict[str, list[float]]) -> str:
    """The table row of one batch size: each kind's median G multiply-adds/s and the ratios of those medians."""
    m = {kind: median(r[kind]) for kind in KINDS}
    return (f"| {batch} | " + " | ".join(f"{m[kind] / 1e9:.2f}" for kind in KINDS)
            + f" | {100 * m['toolbox'] / m['ceiling']:.0f}% | {100 * m['toolbox_bf16'] / m['ceiling_bf16']:.0f}% "
            f"| {m['toolbox_bf16'] / m['toolbox']:.2f}x | {m['ceiling_bf16'] / m['ceiling']:.2f}x "
            f"| {m['ceiling_bf16_weights'] / m['ceiling']:.2f}x |")


def _targets(raw: dict[str, dict[str, list[float]]], device: str) -> list[Target]:
    """The fp32 efficiency target and the two bf16 targets (n/a without native bf16), from the medians."""
    m = {batch: {kind: median(r[kind]) for kind in KINDS} for batch, r in raw.items()}
    above_one = [v for batch, v in m.items() if int(batch) > 1]
    targets = []
    if above_one:
        worst = min(v["toolbox"] / v["ceiling"] for v in above_one)
        targets.append(Target("batched tool inference at least 50% of the machine's convolution ceiling "
                              "(fp32, every batch above 1)", f"{100 * worst:.0f}% (lowest)", worst >= TARGET_EFFICIENCY))
    at = m.get(str(TARGET_BF16_BATCH))
    targets.append(bf16_target(f"bf16 toolbox at least {TARGET_BF16_SPEEDUP:g}x the fp32 toolbox at batch "
                               f"{TARGET_BF16_BATCH} (CPU with native bf16)",
                               at["toolbox_bf16"] / at["toolbox"] if at else None, TARGET_BF16_SPEEDUP, device))
    worst16 = min((v["toolbox_bf16"] / v["ceiling_bf16"] for v in above_one), default=None)
    targets.append(bf16_target("bf16 toolbox at least 50% of the bf16 (autocast) convolution ceiling (every batch "
                               "above 1, CPU with native bf16)", worst16, TARGET_EFFICIENCY, device, unit="%"))
    return targets


def run(quick: bool = False, device: str = "cpu", figures: Path | None = None, **overrides) -> Section:
    """Both ceilings and the toolbox, in fp32 and bf16, at each batch size; the targets."""
    p = {**(QUICK if quick else FULL), **overrides}
    device = resolve_device(device)
    start = time.perf_counter()
    raw = {str(batch): measure(batch, p["seconds"], p["repeats"], device) for batch in p["batch"]}
    c = f"{CEILING_CHANNELS}-channel 3x3 conv"
    text = (f"`Toolbox.apply_tools` on 63x63 images, one random tool per image (each tool runs once on its rows), at precision "
            f"fp32 and bf16, against a {c} on as many 63x63 images in float32, under bf16 autocast and with bf16 "
            f"weights and inputs; G multiply-adds/s, median of {p['repeats']} windows of {p['seconds']} s each, the "
            f"five interleaved. fp32 efficiency = toolbox fp32 / conv fp32; bf16 efficiency = toolbox bf16 / conv bf16 "
            f"autocast. (Precision \"auto\" here: {auto_choice(device)}.)\n\n"
            f"| batch | toolbox fp32 | toolbox bf16 | conv fp32 | conv bf16 autocast | conv bf16 weights | fp32 efficiency "
            "| bf16 efficiency | toolbox bf16 / fp32 | conv bf16 autocast / fp32 | conv bf16 weights / fp32 |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(_row(b, r) for b, r in raw.items()))
    return Section("Tool inference efficiency", text, {"params": p, "device": device, "precision_auto": auto_choice(device),
                                                       "by_batch": raw}, [], _targets(raw, device),
                   time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    run_alone(run, __doc__, QUICK, FULL, argv, ("batch",))

if __name__ == "__main__":
    main()
