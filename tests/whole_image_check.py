"""Whole-image restoration by the shipped stack, as agent.md reports it: each photo named
(its top-left crop of at most 512 x 512) degraded at one severity with a fixed seed and
restored in both modes, with its PSNR gain and how far each channel's mean moved from the
ground truth's; and each real JPEG of ``--real`` restored as it is, with how far each
channel's mean moved from the input's (there is no ground truth). ``--clean`` restores the
photos' crops as they are, not degraded: what the stack does to a photograph that needs
nothing (PSNR of the result against the photo itself).

    python -m tests.whole_image_check runs/corpus/test/*.png --real ../shared/data/rl-restore-samples/mine
    python -m tests.whole_image_check runs/corpus/test/*.png --clean
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from toolchain_restore import restore
from toolchain_restore.data.images import read_image
from toolchain_restore.degrade import degrade
from toolchain_restore.metrics import psnr
from toolchain_restore.restore import MODES

CROP = 512


def channel_means(image: np.ndarray) -> np.ndarray:
    """Mean of each channel in levels of 255."""
    return image.reshape(-1, image.shape[-1]).astype(np.float64).mean(0)


def degraded_rows(paths: list[Path], level: str, seed: int) -> list[str]:
    rows = []
    for path in paths:
        clean = read_image(path)[:CROP, :CROP]
        degraded, _ = degrade(clean, level, np.random.default_rng(seed))
        for mode in MODES:
            restored = restore(degraded, mode).image
            shift = channel_means(restored) - channel_means(clean)
            rows.append(f"| {path.name} | {mode} | {psnr(degraded, clean):.2f} | {psnr(restored, clean):.2f} | "
                        f"{psnr(restored, clean) - psnr(degraded, clean):+.2f} | {' / '.join(f'{v:+.2f}' for v in shift)} |")
    return rows


def clean_rows(paths: list[Path]) -> list[str]:
    rows = []
    for path in paths:
        clean = read_image(path)[:CROP, :CROP]
        for mode in MODES:
            result = restore(clean, mode)
            chain = " > ".join(str(tool + 1) for tool in result.chain) if mode == "vote" else "per patch"
            rows.append(f"| {path.name} | {mode} | {psnr(result.image, clean):.2f} | {chain or '(none)'} |")
    return rows


def real_rows(folder: Path) -> list[str]:
    rows = []
    for path in sorted(folder.glob("*.jpg")):
        image = read_image(path)
        for mode in MODES:
            shift = channel_means(restore(image, mode).image) - channel_means(image)
            rows.append(f"| {path.name} | {mode} | {' / '.join(f'{v:+.2f}' for v in shift)} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", type=Path, help="clean photographs to degrade and restore")
    parser.add_argument("--level", default="moderate")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--real", type=Path, help="a folder of real degraded JPEGs (no ground truth)")
    parser.add_argument("--clean", action="store_true", help="restore the photos as they are, not degraded")
    args = parser.parse_args(argv)
    if args.images and args.clean:
        print("| clean photo | mode | PSNR of the result against the photo | vote chain (tools) |\n|---|---|---|---|")
        print("\n".join(clean_rows(args.images)))
    elif args.images:
        print(f"| photo ({args.level}, seed {args.seed}) | mode | input PSNR | restored PSNR | gain (dB) | "
              "channel mean - ground truth's (R / G / B) |\n|---|---|---|---|---|---|")
        print("\n".join(degraded_rows(args.images, args.level, args.seed)))
    if args.real:
        print("\n| real JPEG | mode | channel mean - input's (R / G / B) |\n|---|---|---|")
        print("\n".join(real_rows(args.real)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
