"""Between uint8 H x W x 3 images (numpy) and float N x 3 x H x W tensors in [0, 1] (torch)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["to_tensor", "to_uint8", "check_image_batch"]


def to_tensor(images_hwc: list[np.ndarray] | np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 H x W x 3 images (a list, or an N x H x W x 3 array) to float N x 3 x H x W in [0, 1]."""
    array = np.stack(images_hwc) if isinstance(images_hwc, list) else images_hwc
    return torch.from_numpy(np.ascontiguousarray(array)).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(state: torch.Tensor) -> np.ndarray:
    """Float N x 3 x H x W in [0, 1] to its uint8 view (rounded), N x 3 x H x W numpy."""
    return state.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).cpu().numpy()


def check_image_batch(x: torch.Tensor) -> None:
    """Refuse anything but a float N x 3 x H x W tensor, with a message that says what came."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected an N x 3 x H x W tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected a float tensor in [0, 1], got dtype {x.dtype}")
