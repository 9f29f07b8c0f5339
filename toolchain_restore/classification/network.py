"""A small classification CNN whose convolutions are a setting (plain or DCNet decoupled)."""

from __future__ import annotations

import torch
from torch import nn

from ..nn import conv2d

__all__ = ["Classifier"]


class Classifier(nn.Module):
    """Three stages of two 3x3 convolutions (BatchNorm, ReLU after each, as DCNet's
    networks), the second of each stage with stride 2; global average pooling; a linear
    layer to the classes. Widths ``width``, ``2 width``, ``4 width``.
    """

    def __init__(self, classes: int, conv: str = "plain", width: int = 16) -> None:
        super().__init__()
        self.conv, self.width = conv, width
        layers: list[nn.Module] = []
        channels = 3
        for stage in range(3):
            out = width * 2**stage
            for stride in (1, 2):
                layers += [conv2d(conv, channels, out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out),
                           nn.ReLU(inplace=True)]
                channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))
