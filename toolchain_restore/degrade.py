"""The RL-Restore degradation protocol: Gaussian blur -> Gaussian noise -> JPEG.

Every training and test patch of the project is made here. The order, grids and
severity bands follow the official RL-Restore data pipeline:

1. Gaussian blur, 21x21 kernel of standard deviation ``blur_std``, replicate border.
2. Additive Gaussian noise of standard deviation ``noise_std / 255``, clipped to [0, 1].
3. JPEG at quality ``jpeg_quality``: the image is encoded and decoded again.

Each distortion has 10 levels; level ``i`` (1..10) draws its value uniformly inside
bin ``i`` of its grid. A severity band keeps the ordered level triples ``(k, m, n)`` whose
``k + m + n - 2`` falls inside the band (163 mild, 434 moderate, 163 severe triples).

A region of an image (``crop=``) is degraded exactly as the same region of the degraded
whole image: blur reads the image's real neighbours (replicated only at the image's own
border) and JPEG runs on a region aligned to the image's 16x16 macro-block grid with one
macro-block of margin, so that block boundaries and chroma upsampling match.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from PIL import Image

__all__ = [
    "BLUR_GRID",
    "NOISE_GRID",
    "JPEG_GRID",
    "SEVERITY_BANDS",
    "Severity",
    "DegradationParams",
    "level_triples",
    "sample_params",
    "degrade",
    "gaussian_blur",
    "add_noise",
    "jpeg_roundtrip",
]

BLUR_GRID: tuple[float, ...] = tuple(0.5 * i for i in range(11))
"""Blur standard deviation grid (pixels): level i draws from [grid[i-1], grid[i]]."""
NOISE_GRID: tuple[float, ...] = tuple(5.0 * i for i in range(11))
"""Noise standard deviation grid on the 0-255 scale."""
JPEG_GRID: tuple[float, ...] = (100, 80, 60, 50, 40, 35, 30, 25, 20, 15, 10)
"""JPEG quality grid, from light to heavy."""

SEVERITY_BANDS: dict[str, tuple[int, int]] = {
    "mild": (9, 11),
    "moderate": (12, 17),
    "severe": (18, 20),
}
"""Inclusive bounds on ``k + m + n - 2`` for each severity."""

Severity = Literal["mild", "moderate", "severe"]

BLUR_KERNEL_SIZE = 21
BLUR_RADIUS = BLUR_KERNEL_SIZE // 2
# 4:2:0 chroma subsampling makes the JPEG coding unit 16x16 pixels.
JPEG_MCU = 16


@dataclass(frozen=True)
class DegradationParams:
    """What one call of :func:`degrade` drew (or was given)."""

    blur_std: float
    noise_std: float
    jpeg_quality: int
    levels: tuple[int, int, int] | None = None
    """The (blur, noise, JPEG) level triple, when drawn from a severity band."""

    def as_dict(self) -> dict:
        d = asdict(self)
        d["levels"] = None if self.levels is None else list(self.levels)
        return d


@lru_cache(maxsize=None)
def level_triples(level: Severity) -> tuple[tuple[int, int, int], ...]:
    """All ordered level triples (blur, noise, JPEG) of a severity band."""
    if level not in SEVERITY_BANDS:
        raise ValueError(f"unknown severity {level!r}; expected one of {sorted(SEVERITY_BANDS)}")
    lo, hi = SEVERITY_BANDS[level]
    return tuple(
        (k, m, n)
        for k in range(1, 11)
        for m in range(1, 11)
        for n in range(1, 11)
        if lo <= k + m + n - 2 <= hi
    )


def _draw_in_bin(grid: tuple[float, ...], level: int, rng: np.random.Generator) -> float:
    a, b = grid[level - 1], grid[level]
    return float(rng.uniform(min(a, b), max(a, b)))


def sample_params(level: Severity, rng: np.random.Generator) -> DegradationParams:
    """Draw a level triple uniformly from the band, then a value uniformly in each bin."""
    triples = level_triples(level)
    k, m, n = triples[int(rng.integers(len(triples)))]
    return DegradationParams(
        blur_std=_draw_in_bin(BLUR_GRID, k, rng),
        noise_std=_draw_in_bin(NOISE_GRID, m, rng),
        jpeg_quality=int(round(_draw_in_bin(JPEG_GRID, n, rng))),
        levels=(k, m, n),
    )


@lru_cache(maxsize=256)
def _gaussian_taps(std: float) -> np.ndarray:
    # The 21x21 Gaussian is separable: its outer product of these taps.
    x = np.arange(BLUR_KERNEL_SIZE, dtype=np.float64) - BLUR_RADIUS
    taps = np.exp(-(x**2) / (2.0 * std * std))
    return taps / taps.sum()


def _blur_valid(padded: np.ndarray, std: float) -> np.ndarray:
    """Separable 21x21 Gaussian over an image already padded by BLUR_RADIUS on each side."""
    taps = _gaussian_taps(round(std, 12))
    h = padded.shape[0] - 2 * BLUR_RADIUS
    w = padded.shape[1] - 2 * BLUR_RADIUS
    rows = np.zeros((h, padded.shape[1], padded.shape[2]), dtype=np.float64)
    for i, t in enumerate(taps):
        rows += t * padded[i : i + h]
    out = np.zeros((h, w, padded.shape[2]), dtype=np.float64)
    for j, t in enumerate(taps):
        out += t * rows[:, j : j + w]
    return out


def gaussian_blur(image: np.ndarray, std: float) -> np.ndarray:
    """21x21 Gaussian blur with replicate border of a float H x W x C image."""
    if std <= 1e-8:
        return image.astype(np.float64, copy=True)
    padded = np.pad(image.astype(np.float64), ((BLUR_RADIUS,) * 2, (BLUR_RADIUS,) * 2, (0, 0)), mode="edge")
    return _blur_valid(padded, std)


def add_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian noise of ``std`` on the 0-255 scale to a [0, 1] image and clip."""
    if std <= 0:
        return np.clip(image, 0.0, 1.0)
    noisy = image + rng.standard_normal(image.shape) * (std / 255.0)
    return np.clip(noisy, 0.0, 1.0)


def jpeg_roundtrip(image_u8: np.ndarray, quality: int) -> np.ndarray:
    """Encode a uint8 H x W x 3 image as JPEG (4:2:0) at ``quality`` and decode it."""
    buffer = io.BytesIO()
    Image.fromarray(image_u8, mode="RGB").save(buffer, format="JPEG", quality=int(quality), subsampling="4:2:0")
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be H x W x 3 (RGB), got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: shape {image.shape}")
    if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"image must be uint8 or float in [0, 1], got dtype {image.dtype}")
    if image.dtype != np.uint8:
        if not np.isfinite(image).all() or image.min() < 0.0 or image.max() > 1.0:
            raise ValueError("a float image must hold finite values in [0, 1]")


def _as_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 or float pixels (already checked) as float64 in [0, 1]."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float64) * (1.0 / 255.0)
    return pixels.astype(np.float64)


def _quantize(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def degrade(
    image: np.ndarray,
    level: Severity | None = "moderate",
    rng: np.random.Generator | int | None = None,
    *,
    blur_std: float | None = None,
    noise_std: float | None = None,
    jpeg_quality: int | None = None,
    crop: tuple[int, int, int, int] | None = None,
) -> tuple[np.ndarray, DegradationParams]:
    """Degrade an RGB image with blur, then noise, then JPEG.

    Args:
        image: H x W x 3, uint8 or float in [0, 1].
        level: severity band to draw a mix from ("mild", "moderate", "severe"). Ignored
            when all three explicit parameters are given.
        rng: a numpy Generator or a seed; the same seed gives the same output.
        blur_std: explicit Gaussian blur std in pixels (0 = none).
        noise_std: explicit noise std on the 0-255 scale (0 = none).
        jpeg_quality: explicit JPEG quality 1..100, or 101 for no JPEG at all.
        crop: ``(top, left, height, width)``; degrade only that region, exactly as it
            would look cut from the degraded whole image (noise drawn for the region).

    Returns:
        The degraded uint8 image (the crop when given) and the parameters used.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    explicit = (blur_std, noise_std, jpeg_quality)
    if all(v is not None for v in explicit):
        if not (isinstance(jpeg_quality, (int, np.integer)) or float(jpeg_quality).is_integer()):
            raise ValueError(f"jpeg_quality must be a whole number in 1..100 (101 = no JPEG), got {jpeg_quality}")
        params = DegradationParams(float(blur_std), float(noise_std), int(jpeg_quality))
    elif any(v is not None for v in explicit):
        raise ValueError("give all three of blur_std, noise_std and jpeg_quality, or none of them")
    else:
        if level is None:
            raise ValueError("give a severity level or explicit blur_std, noise_std and jpeg_quality")
        params = sample_params(level, rng)
    if params.blur_std < 0 or not math.isfinite(params.blur_std):
        raise ValueError(f"blur_std must be >= 0, got {params.blur_std}")
    if params.noise_std < 0 or not math.isfinite(params.noise_std):
        raise ValueError(f"noise_std must be >= 0, got {params.noise_std}")
    if not 1 <= params.jpeg_quality <= 101:
        raise ValueError(f"jpeg_quality must be in 1..100 (101 = no JPEG), got {params.jpeg_quality}")

    _check_image(image)
    height, width = image.shape[:2]
    if crop is None:
        crop = (0, 0, height, width)
    top, left, ch, cw = (int(v) for v in crop)
    if ch < 1 or cw < 1 or top < 0 or left < 0 or top + ch > height or left + cw > width:
        raise ValueError(f"crop {crop} does not fit inside an image of {height}x{width}")

    # Region that JPEG must see: macro-block aligned, one macro-block of margin.
    y0 = max(0, (top // JPEG_MCU - 1) * JPEG_MCU)
    x0 = max(0, (left // JPEG_MCU - 1) * JPEG_MCU)
    y1 = min(height, (-(-(top + ch) // JPEG_MCU) + 1) * JPEG_MCU)
    x1 = min(width, (-(-(left + cw) // JPEG_MCU) + 1) * JPEG_MCU)

    if params.blur_std > 1e-8:
        rows = np.clip(np.arange(y0 - BLUR_RADIUS, y1 + BLUR_RADIUS), 0, height - 1)
        cols = np.clip(np.arange(x0 - BLUR_RADIUS, x1 + BLUR_RADIUS), 0, width - 1)
        region = _blur_valid(_as_float(image[np.ix_(rows, cols)]), params.blur_std)
    else:
        region = _as_float(image[y0:y1, x0:x1])
    region = add_noise(region, params.noise_std, rng)
    region_u8 = _quantize(region)
    if params.jpeg_quality <= 100:
        region_u8 = jpeg_roundtrip(region_u8, params.jpeg_quality)
    out = region_u8[top - y0 : top - y0 + ch, left - x0 : left - x0 + cw]
    return np.ascontiguousarray(out), params
