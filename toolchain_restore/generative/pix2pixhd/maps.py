"""The generator's inputs made from label and instance maps: one-hot labels, instance
boundary maps and instance-wise averages of a feature map."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["one_hot_labels", "instance_boundaries", "instance_average"]


def one_hot_labels(label: torch.Tensor, label_count: int) -> torch.Tensor:
    """N x H x W integer labels -> N x label_count x H x W floats.

    Raises:
        ValueError: a label is negative or not below ``label_count`` (the official code
            fails here with an opaque CUDA index error).
    """
    if label.dim() != 3:
        raise ValueError(f"labels must be N x H x W, got shape {tuple(label.shape)}")
    low, high = int(label.min()), int(label.max())
    if low < 0 or high >= label_count:
        raise ValueError(f"label values must lie in 0..{label_count - 1} (label_count={label_count}); found "
                         f"{low}..{high}: raise label_count, or map the extra labels to one of the others")
    return F.one_hot(label.long(), label_count).permute(0, 3, 1, 2).float()


def instance_boundaries(instance: torch.Tensor) -> torch.Tensor:
    """N x H x W instance ids -> N x 1 x H x W map: 1 where a pixel's id differs from one
    of its 4 neighbours (both pixels of such a pair are marked), else 0."""
    if instance.dim() != 3:
        raise ValueError(f"instance maps must be N x H x W, got shape {tuple(instance.shape)}")
    edge = torch.zeros(instance.shape, dtype=torch.bool, device=instance.device)
    horizontal = instance[:, :, 1:] != instance[:, :, :-1]
    vertical = instance[:, 1:, :] != instance[:, :-1, :]
    edge[:, :, 1:] |= horizontal
    edge[:, :, :-1] |= horizontal
    edge[:, 1:, :] |= vertical
    edge[:, :-1, :] |= vertical
    return edge.unsqueeze(1).float()


def instance_average(features: torch.Tensor, instance: torch.Tensor) -> torch.Tensor:
    """Replace every pixel's feature by the mean over its instance (per image): N x C x H x W
    features and N x H x W ids -> N x C x H x W. Vectorised with one scatter per batch."""
    n, c, h, w = features.shape
    if instance.shape != (n, h, w):
        raise ValueError(f"instance map of shape {tuple(instance.shape)} does not fit features {tuple(features.shape)}")
    # Ids made unique across the batch, then compacted to 0..K-1 so the sums fit in K slots.
    ids = instance.reshape(n, -1).long()
    ids = ids - ids.min() + 1
    offset = (ids.max() + 1) * torch.arange(n, device=ids.device).unsqueeze(1)
    _, compact = torch.unique(ids + offset, return_inverse=True)
    compact = compact.reshape(-1)
    slots = int(compact.max()) + 1
    flat = features.permute(0, 2, 3, 1).reshape(-1, c)
    sums = torch.zeros(slots, c, dtype=flat.dtype, device=flat.device).index_add_(0, compact, flat)
    counts = torch.zeros(slots, dtype=flat.dtype, device=flat.device).index_add_(
        0, compact, torch.ones_like(compact, dtype=flat.dtype))
    means = sums / counts.unsqueeze(1)
    return means[compact].reshape(n, h, w, c).permute(0, 3, 1, 2)
