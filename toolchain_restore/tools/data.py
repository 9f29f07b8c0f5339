"""What each tool trains on: its own distortion drawn in its band, plus the robustness trick."""

from __future__ import annotations

import numpy as np

from ..degrade import DegradationParams, degrade
from ..data.patches import DegradeFn
from .specs import ToolSpec

__all__ = ["tool_params", "tool_degrade_fn", "ROBUST_NOISE_MAX", "ROBUST_JPEG_MIN", "ROBUST_PROBABILITY"]

ROBUST_NOISE_MAX = 5.0
"""Slight extra noise: std up to the first noise bin (0-255 scale)."""
ROBUST_JPEG_MIN = 80
"""Slight extra JPEG: quality within the first JPEG bin, 80..100."""
ROBUST_PROBABILITY = 0.5
"""Chance that each slight extra distortion is added to a training input."""

NO_JPEG = 101


def tool_params(spec: ToolSpec, rng: np.random.Generator, value: float | None = None, robust: bool = True) -> DegradationParams:
    """Degradation parameters for one training input of ``spec``'s tool.

    ``value`` fixes the tool's own distortion (e.g. the middle of its band); otherwise
    it is uniform in the band. With ``robust``, slight noise and slight JPEG are each
    added with probability ``ROBUST_PROBABILITY`` (the paper's robustness trick).
    """
    lo, hi = sorted(spec.band)
    own = float(rng.uniform(lo, hi)) if value is None else float(value)
    blur, noise, quality = 0.0, 0.0, NO_JPEG
    if robust:
        if rng.random() < ROBUST_PROBABILITY:
            noise = float(rng.uniform(0.0, ROBUST_NOISE_MAX))
        if rng.random() < ROBUST_PROBABILITY:
            quality = int(rng.integers(ROBUST_JPEG_MIN, 101))
    if spec.distortion == "blur":
        blur = own
    elif spec.distortion == "noise":
        noise = own
    else:
        quality = int(round(own))
    return DegradationParams(blur, noise, quality)


def tool_degrade_fn(spec: ToolSpec, value: float | None = None, robust: bool = True) -> DegradeFn:
    def fn(image: np.ndarray, rng: np.random.Generator, crop: tuple[int, int, int, int]):
        p = tool_params(spec, rng, value, robust)
        out, _ = degrade(image, rng=rng, blur_std=p.blur_std, noise_std=p.noise_std, jpeg_quality=p.jpeg_quality, crop=crop)
        return out, p

    return fn
