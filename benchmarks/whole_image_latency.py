"""Seconds to restore a whole image with the shipped agent (vote and blend modes) against
the shipped DnCNN-style baseline on the same image, measured in the same run.

    python -m benchmarks.whole_image_latency [--sizes 256 512 1024] [--repeats 3]

The image is a held-out embedded photograph, resized to each size and degraded at
moderate. Every figure is the median of ``--repeats`` runs, the three methods
interleaved so they see the same machine load; the ratios compare medians of the same
run. The benchmarks issue's target: vote mode at most 40% of DnCNN's time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np
import torch
from PIL import Image

from benchmarks import machine_line
from toolchain_restore import degrade, load_agent, load_toolbox, restore
from toolchain_restore.baselines import load_baseline
from toolchain_restore.data import image_set
from toolchain_restore.data.tensors import to_tensor
from toolchain_restore.serialization import shipped_weights


def seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def test_image(size: int, seed: int = 0) -> np.ndarray:
    """A held-out embedded photograph resized to size x size, degraded at moderate."""
    clean = image_set(None, "test").get(2)  # camera, 512 x 512
    clean = np.asarray(Image.fromarray(clean).resize((size, size), Image.BICUBIC))
    return degrade(clean, "moderate", np.random.default_rng(seed))[0]


def measure(size: int, repeats: int, device: str) -> dict[str, float]:
    image = test_image(size)
    agent, toolbox = load_agent(device=device), load_toolbox(device=device)
    dncnn = load_baseline(shipped_weights("dncnn.safetensors")).to(device).eval()

    def run_dncnn() -> None:
        with torch.no_grad():
            dncnn(to_tensor([image], device)).clamp_(0, 1).cpu()

    runs = {
        "vote": lambda: restore(image, "vote", agent, toolbox, device=device, progress=False),
        "blend": lambda: restore(image, "blend", agent, toolbox, device=device, progress=False),
        "dncnn": run_dncnn,
    }
    for run in runs.values():  # warm-up
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(seconds(run))
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {**medians, "vote_ratio": medians["vote"] / medians["dncnn"], "blend_ratio": medians["blend"] / medians["dncnn"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="image sides")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (median)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    print(machine_line(args.device))
    print("| size | vote s | blend s | DnCNN s | vote / DnCNN | blend / DnCNN |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        r = measure(size, args.repeats, args.device)
        print(f"| {size} | {r['vote']:.3f} | {r['blend']:.3f} | {r['dncnn']:.3f} | {100 * r['vote_ratio']:.0f}% "
              f"| {100 * r['blend_ratio']:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
