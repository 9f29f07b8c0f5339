"""SIMS's losses: the default one needs no downloaded weights (L1, multi-scale image
gradients, semantic cross-entropy); the reference's class-masked VGG-19 loss when the
user supplies VGG-19 weights; the alignment network's masked L1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import VGG19Features

__all__ = ["gradient_loss", "ClassMaskedVGGLoss", "alignment_loss"]


def gradient_loss(estimate: torch.Tensor, target: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """L1 between horizontal and vertical finite differences of the two images at
    ``scales`` resolutions (each an average-pooled half of the previous), averaged."""
    total = estimate.new_zeros(())
    for k in range(scales):
        if k:
            if min(estimate.shape[-2:]) < 4:
                break
            estimate, target = F.avg_pool2d(estimate, 2), F.avg_pool2d(target, 2)
        for dim in (-1, -2):
            total = total + (estimate.diff(dim=dim) - target.diff(dim=dim)).abs().mean()
    return total / scales


class ClassMaskedVGGLoss(nn.Module):
    """The reference's perceptual loss: at relu1_1 .. relu5_1 (CRN-style weights), the L1
    between the features of estimate and target inside each class's mask (resized to the
    layer), each class normalised by its area, summed over the classes present."""

    weights = (1 / 2.6, 1 / 4.8, 1 / 3.7, 1 / 5.6, 10 / 1.5)

    def __init__(self, vgg: VGG19Features) -> None:
        super().__init__()
        self.vgg = vgg

    def forward(self, estimate: torch.Tensor, target: torch.Tensor, label: torch.Tensor, label_count: int):
        masks = F.one_hot(label.long(), label_count).permute(0, 3, 1, 2).float()
        total = estimate.new_zeros(())
        for w, a, b in zip(self.weights, self.vgg(estimate), self.vgg(target)):
            m = F.interpolate(masks, size=a.shape[-2:], mode="area")
            diff = (a - b.detach()).abs().mean(1, keepdim=True)
            per_class = (diff * m).sum((2, 3)) / m.sum((2, 3)).clamp_min(1e-6)
            total = total + w * per_class.sum(1).mean()
        return total


def alignment_loss(theta: torch.Tensor, query: torch.Tensor, source_mask: torch.Tensor, source_rgb: torch.Tensor,
                   real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked L1 of the warped segment against the real image inside the query mask (both
    premultiplied by the warped mask), and L1 between the warped mask and the query mask."""
    from .networks import warp

    warped = warp(theta, torch.cat([source_mask, source_rgb * source_mask], dim=1))
    mask, rgb = warped[:, :1], warped[:, 1:]
    pixel = (query * (rgb - real * mask).abs()).sum() / (3 * query.sum() + 1.0)
    return pixel, (mask - query).abs().mean()
