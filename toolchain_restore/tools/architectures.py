"""The two tool architectures of RL-Restore.

Both are fully convolutional, stride 1, zero "same" padding, and predict a residual that
is added to their input: ``E = L + net(L)``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn import conv2d

__all__ = ["SmallTool", "LargeTool", "ResidualBlock"]


def _start_near_identity(last: nn.Conv2d) -> None:
    # A residual tool starts close to the identity when its last layer is small. Not zero:
    # with a zero last layer the first Adam steps move the inner layers on pure noise and
    # can leave every ReLU dead (seen on the light noise and JPEG bands).
    with torch.no_grad():
        last.weight.mul_(0.1)
        last.bias.zero_()


class SmallTool(nn.Module):
    """3 convolutions: 9x9 3->32, ReLU, 5x5 32->16, ReLU, 5x5 16->3 (21,827 parameters).

    ``conv``: 'plain' (the paper's) or a DCNet decoupled convolution for every layer
    ('tanh_cos', ...; see ``toolchain_restore.nn``). An unweighted decoupled layer ignores
    the filter's scale, so only plain and weighted tools start near the identity.
    """

    def __init__(self, conv: str = "plain") -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv2d(conv, 3, 32, 9, padding=4),
            nn.ReLU(inplace=True),
            conv2d(conv, 32, 16, 5, padding=2),
            nn.ReLU(inplace=True),
            conv2d(conv, 16, 3, 5, padding=2),
        )
        _start_near_identity(self.body[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The residual is added in the input's float32 even when the body ran in bf16 / fp16.
        return x + self.body(x).to(x.dtype)


class ResidualBlock(nn.Module):
    """conv 3x3, ReLU, conv 3x3, plus the block's input."""

    def __init__(self, channels: int, conv: str = "plain") -> None:
        super().__init__()
        self.conv1 = conv2d(conv, channels, channels, 3, padding=1)
        self.conv2 = conv2d(conv, channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


class LargeTool(nn.Module):
    """5x5 3->64, ReLU, 1x1 64->32, 2 residual blocks at 32, 1x1 32->64, ReLU, 5x5 64->3
    (50,851 parameters). ``conv`` as for :class:`SmallTool`."""

    def __init__(self, conv: str = "plain") -> None:
        super().__init__()
        self.head = conv2d(conv, 3, 64, 5, padding=2)
        self.reduce = conv2d(conv, 64, 32, 1)
        self.blocks = nn.Sequential(ResidualBlock(32, conv), ResidualBlock(32, conv))
        self.expand = conv2d(conv, 32, 64, 1)
        self.tail = conv2d(conv, 64, 3, 5, padding=2)
        _start_near_identity(self.tail)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.reduce(torch.relu(self.head(x)))
        h = self.blocks(h)
        h = torch.relu(self.expand(h))
        return x + self.tail(h).to(x.dtype)
