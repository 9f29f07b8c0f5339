"""Held-out patches degraded the way a user's own pipeline would, for checking the shipped
system against the agents issue's targets: the paper's protocol from its text
(``../shared/reference/rl-restore.md``), none of ``toolchain_restore.degrade``'s code. Each
whole image gets one mix (scipy blur with replicated borders, numpy noise, Pillow JPEG),
then patches are cut from it, as the official MATLAB scripts do.

    python -m tests.independent_degradation runs/independent --patches 256
    toolchain-restore evaluate --pairs runs/independent --methods input agent random fixed greedy baselines

writes ``<level>_in/`` and ``<level>_gt/`` PNG folders (the official layout) and evaluates them.
"""

from __future__ import annotations

import argparse
import io
import itertools
from pathlib import Path

import numpy as np
import skimage
from PIL import Image
from scipy.ndimage import gaussian_filter

BANDS = {"mild": (9, 11), "moderate": (12, 17), "severe": (18, 20)}
BLUR_STD = np.linspace(0.0, 5.0, 11)
NOISE_STD = np.linspace(0.0, 50.0, 11)
JPEG_QUALITY = (100, 80, 60, 50, 40, 35, 30, 25, 20, 15, 10)
TEST_IMAGES = ("chelsea.png", "coffee.png", "camera.png", "coins.png")
"""scikit-image's photographs that the project holds out from all training."""


def degrade_independently(clean: np.ndarray, level: str, rng: np.random.Generator) -> np.ndarray:
    """A uint8 RGB image degraded with one random mix of ``level``'s band."""
    low, high = BANDS[level]
    mixes = [m for m in itertools.product(range(1, 11), repeat=3) if low <= sum(m) - 2 <= high]
    k, m, n = mixes[rng.integers(len(mixes))]
    blur = rng.uniform(BLUR_STD[k - 1], BLUR_STD[k])
    noise = rng.uniform(NOISE_STD[m - 1], NOISE_STD[m])
    quality = int(round(rng.uniform(JPEG_QUALITY[n], JPEG_QUALITY[n - 1])))
    x = clean / 255.0
    if blur > 0:  # a 21 x 21 kernel: radius 10
        x = np.stack([gaussian_filter(x[..., c], blur, mode="nearest", truncate=10.0 / blur) for c in range(3)], -1)
    x = np.clip(x + rng.standard_normal(x.shape) * noise / 255.0, 0.0, 1.0)
    encoded = io.BytesIO()
    Image.fromarray((x * 255.0 + 0.5).astype(np.uint8)).save(encoded, "JPEG", quality=quality)
    return np.asarray(Image.open(encoded).convert("RGB"))


def independent_patches(level: str, patches: int, seed: int, per_image: int = 2,
                        size: int = 63, images_dir: Path | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``patches`` (L, H) pairs: a random held-out image at a random scale (1, 2/3, 1/3),
    degraded whole, ``per_image`` random patches cut from it, and again. The images are the
    embedded default's test images, or every PNG / JPEG in ``images_dir`` (e.g. the corpus's
    test split), read here with Pillow alone."""
    rng = np.random.default_rng(seed)
    if images_dir is None:
        folder = Path(skimage.__file__).parent / "data"
        paths = [folder / name for name in TEST_IMAGES]
    else:
        paths = sorted(p for p in Path(images_dir).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not paths:
            raise SystemExit(f"error: no PNG or JPEG images in {images_dir}")
    images = [np.asarray(Image.open(path).convert("RGB")) for path in paths]
    L, H = [], []
    while len(L) < patches:
        clean = images[rng.integers(len(images))]
        scale = (1.0, 2 / 3, 1 / 3)[rng.integers(3)]
        if scale != 1.0:
            width_height = (round(clean.shape[1] * scale), round(clean.shape[0] * scale))
            clean = np.asarray(Image.fromarray(clean).resize(width_height, Image.BICUBIC))
        degraded = degrade_independently(clean, level, rng)
        for _ in range(per_image):
            top, left = rng.integers(clean.shape[0] - size + 1), rng.integers(clean.shape[1] - size + 1)
            L.append(degraded[top:top + size, left:left + size])
            H.append(clean[top:top + size, left:left + size])
    return L[:patches], H[:patches]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write <level>_in/ and <level>_gt/ into")
    parser.add_argument("--patches", type=int, default=256, help="patches per severity")
    parser.add_argument("--seed", type=int, default=777, help="severity i uses seed + i")
    parser.add_argument("--images", type=Path, default=None,
                        help="folder of held-out clean images (default: the embedded default's test images), "
                             "e.g. runs/corpus/test")
    args = parser.parse_args()
    for i, level in enumerate(BANDS):
        pairs = independent_patches(level, args.patches, args.seed + i, images_dir=args.images)
        for kind, images in zip(("in", "gt"), pairs):
            folder = args.out / f"{level}_{kind}"
            folder.mkdir(parents=True, exist_ok=True)
            for j, image in enumerate(images):
                Image.fromarray(image).save(folder / f"{j:04d}_{kind}.png")
    print(f"wrote {args.patches} pairs per severity under {args.out}")


if __name__ == "__main__":
    main()
