"""A small classification CNN whose convolutions are a setting (plain or DCNet decoupled)."""

from __future__ import annotations

import torch
from torch import nn

from ..nn import conv2d, parse_conv_kind

RADIUS_MAGNITUDES = ("ball", "tanh", "seg")
"""The decoupled magnitudes whose shape the operator radius sets (the others ignore it)."""

__all__ = ["Classifier"]


def _radius_options(conv: str, radius: float, learnable_radius: bool) -> dict:
    """The decoupled layers' radius keywords for ``conv`` (none for a plain convolution).

    Raises:
        ValueError: a radius other than the default or a learned one asked of a kind that has no use for it.
    """
    parsed = parse_conv_kind(conv)
    uses_radius = parsed is not None and parsed[0] in RADIUS_MAGNITUDES
    if (learnable_radius or radius != 1.0) and not uses_radius:
        raise ValueError(f"the operator radius (radius {radius}, learnable_radius {learnable_radius}) shapes only "
                         f"the decoupled {', '.join(RADIUS_MAGNITUDES)} magnitudes; --conv {conv} has no use for it "
                         f"(e.g. --conv tanh_cos)")
    return {"radius": radius, "learnable_radius": learnable_radius} if parsed is not None else {}


class Classifier(nn.Module):
    """Three stages of two 3x3 convolutions (BatchNorm, ReLU after each, as DCNet's
    networks), the second of each stage with stride 2; global average pooling; a linear
    layer to the classes. Widths ``width``, ``2 width``, ``4 width``. Decoupled ball, tanh
    and seg convolutions take the operator ``radius``, fixed or (``learnable_radius``)
    learned per output channel.
    """

    def __init__(self, classes: int, conv: str = "plain", width: int = 16, radius: float = 1.0,
                 learnable_radius: bool = False) -> None:
        super().__init__()
        self.conv, self.width = conv, width
        self.radius, self.learnable_radius = float(radius), bool(learnable_radius)
        options = _radius_options(conv, self.radius, self.learnable_radius)
        layers: list[nn.Module] = []
        channels = 3
        for stage in range(3):
            out = width * 2**stage
            for stride in (1, 2):
                layers += [conv2d(conv, channels, out, 3, stride=stride, padding=1, bias=False, **options),
                           nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))
