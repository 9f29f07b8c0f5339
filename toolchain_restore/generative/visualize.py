"""Pictures of label maps for TensorBoard and sample sheets."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["label_palette", "colorize_labels"]


def label_palette(label_count: int) -> np.ndarray:
    """label_count x 3 uint8 colours: the procedural classes' own colours first, then
    well-separated hues (golden-angle steps) for further labels."""
    from .scenes import SCENE_PALETTE

    known = SCENE_PALETTE
    if label_count <= len(known):
        return known[:label_count]
    import colorsys

    extra = [colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.65, 0.9) for k in range(label_count - len(known))]
    return np.concatenate([known, (np.array(extra) * 255).round().astype(np.uint8)])


def colorize_labels(label: torch.Tensor | np.ndarray, label_count: int) -> torch.Tensor:
    """H x W labels -> 3 x H x W float image in [0, 1]."""
    label = torch.as_tensor(label).long()
    palette = torch.from_numpy(label_palette(label_count)).float() / 255
    return palette[label.clamp(0, label_count - 1)].permute(2, 0, 1)
