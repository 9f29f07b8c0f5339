"""Image quality metrics on RGB images in [0, 1] (float64), as in BasicSR / KAIR.

PSNR uses a peak of 1.0 over all pixels and channels, no border crop. SSIM follows
Wang et al. (Gaussian window, sigma 1.5, population covariance), averaged over RGB.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["psnr", "batch_psnr", "psnr_loss", "ssim", "to_float_image"]

# PSNR of identical images is infinite; cap it so averages stay finite.
PSNR_CAP = 100.0


def to_float_image(image: np.ndarray) -> np.ndarray:
    """uint8 (0-255) or float (0-1) H x W x C image to float64 in [0, 1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return image.astype(np.float64)


def psnr(estimate: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB of two images of the same shape (uint8, or float in [0, 1])."""
    if estimate.shape != target.shape:
        raise ValueError(f"shapes differ: {estimate.shape} vs {target.shape}")
    mse = float(np.mean((to_float_image(estimate) - to_float_image(target)) ** 2))
    return PSNR_CAP if mse <= 10 ** (-PSNR_CAP / 10) else float(-10.0 * np.log10(mse))


def batch_psnr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR (dB) of two N x C x H x W tensors in [0, 1], computed in float64."""
    mse = _per_sample_mse(estimate.detach().double(), target.detach().double())
    return -10.0 * torch.log10(mse.clamp_min(10 ** (-PSNR_CAP / 10)))


def _per_sample_mse(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if estimate.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(estimate.shape)} vs {tuple(target.shape)}")
    return (estimate - target).pow(2).flatten(1).mean(1)


def psnr_loss(estimate: torch.Tensor, target: torch.Tensor, floor: float = 1e-8) -> torch.Tensor:
    """Minus the mean per-sample PSNR (dB) of two N x C x H x W tensors, differentiable.

    Mean squared error over a batch lets a smooth patch, whose errors are tiny, count for
    almost nothing, while the mean PSNR gain the tools and the agent are scored by counts
    every patch alike; this loss is that score. ``floor`` (80 dB) keeps the log finite.
    """
    return 10.0 * torch.log10(_per_sample_mse(estimate.float(), target.float()) + floor).mean()


def ssim(estimate: np.ndarray, target: np.ndarray) -> float:
    """SSIM with Wang et al.'s settings, averaged over the RGB channels."""
    from skimage.metrics import structural_similarity

    return float(
        structural_similarity(
            to_float_image(estimate),
            to_float_image(target),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=-1,
        )
    )
