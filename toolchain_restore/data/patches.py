"""Random patches of clean images at the protocol's three scales, degraded on the fly.

Memory is bounded whatever the dataset size: only a few decoded and rescaled images
are cached (``cache_bytes``), and each patch is degraded from its own small region
(see :func:`toolchain_restore.degrade.degrade` with ``crop=``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image

from .cache import ImageCache
from .images import ImageSet

if TYPE_CHECKING:  # data sits below degrade: the parameters' type is only named here
    from ..degrade import DegradationParams

__all__ = ["SCALES", "Patch", "PatchSampler", "DegradeFn", "dihedral", "DIHEDRAL_TRANSFORMS"]

SCALES: tuple[float, ...] = (1.0, 2.0 / 3.0, 1.0 / 3.0)
"""Each source image is used at full size, at 2/3 and at 1/3 (bicubic)."""

DegradeFn = Callable[[np.ndarray, np.random.Generator, tuple[int, int, int, int]], tuple[np.ndarray, "DegradationParams"]]
"""(whole clean image, rng, crop) -> (degraded crop uint8, parameters)."""


@dataclass
class Patch:
    """One training or test sample: L (degraded input) and H (clean), both uint8 H x W x 3."""

    L: np.ndarray
    H: np.ndarray
    params: DegradationParams
    source: str
    """Which image, scale and position the patch came from."""


DIHEDRAL_TRANSFORMS = 8
"""The symmetries of a square: identity, flips, transposes and rotations."""


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """``image`` (H x W x C) under the ``k``-th of the 8 symmetries (0 = as is): transposed
    for k >= 4, then flipped left-right if k is odd, then upside down if bit 1 of k is set."""
    if not 0 <= k < DIHEDRAL_TRANSFORMS:
        raise ValueError(f"k must be in 0..{DIHEDRAL_TRANSFORMS - 1}, got {k}")
    out = image.transpose(1, 0, *range(2, image.ndim)) if k >= 4 else image
    if k % 2:
        out = out[:, ::-1]
    if (k // 2) % 2:
        out = out[::-1]
    return np.ascontiguousarray(out)


def rescale(image: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))


class PatchSampler:
    """Draws random ``patch_size`` patches from an :class:`ImageSet` at the three scales.

    With ``augment``, each degraded patch and its clean patch go through the same one of
    the 8 flips / transposes (drawn after the degradation, so the draws before it are those
    of an unaugmented sampler). Blur is isotropic and noise independent per pixel, so the
    pair is what degrading the transformed image would give, up to where JPEG's 8x8 grid
    falls, which a random crop position varies anyway.
    """

    def __init__(
        self,
        images: ImageSet,
        patch_size: int = 63,
        scales: tuple[float, ...] = SCALES,
        cache_bytes: int = 256 * 2**20,
        augment: bool = False,
    ) -> None:
        if patch_size < 1:
            raise ValueError(f"patch_size must be positive, got {patch_size}")
        self.augment = augment
        self.images = images
        self.patch_size = patch_size
        self.scales = scales
        self._scaled = ImageCache(cache_bytes)
        self._too_small: set[tuple[int, int]] = set()

    def scaled_image(self, index: int, scale_index: int) -> np.ndarray | None:
        """The image at one of the scales, or None if unreadable or smaller than a patch."""
        key = (index, scale_index)
        cached = self._scaled.get(key)
        if cached is not None:
            return cached
        if key in self._too_small:
            return None
        image = self.images.get(index)
        if image is None:
            return None
        image = rescale(image, self.scales[scale_index])
        if min(image.shape[:2]) < self.patch_size:
            self._too_small.add(key)
            return None
        self._scaled.put(key, image)
        return image

    def sample(self, rng: np.random.Generator, degrade_fn: DegradeFn, max_tries: int = 1000) -> Patch:
        """One random patch: image, scale and position uniform, degraded by ``degrade_fn``."""
        size = self.patch_size
        for _ in range(max_tries):
            index = int(rng.integers(len(self.images)))
            scale_index = int(rng.integers(len(self.scales)))
            image = self.scaled_image(index, scale_index)
            if image is None:
                continue
            top = int(rng.integers(image.shape[0] - size + 1))
            left = int(rng.integers(image.shape[1] - size + 1))
            crop = (top, left, size, size)
            degraded, params = degrade_fn(image, rng, crop)
            clean = np.ascontiguousarray(image[top : top + size, left : left + size])
            source = f"{self.images.paths[index].name}@{self.scales[scale_index]:.3f}+{top},{left}"
            if self.augment:
                k = int(rng.integers(DIHEDRAL_TRANSFORMS))
                degraded, clean, source = dihedral(degraded, k), dihedral(clean, k), f"{source}~{k}"
            return Patch(degraded, clean, params, source)
        raise ValueError(
            f"{self.images.name}: no image yields a {size}x{size} patch at any scale "
            f"(all unreadable or smaller than the patch)"
        )
