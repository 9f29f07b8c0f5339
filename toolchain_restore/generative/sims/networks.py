"""SIMS's three networks: the spatial transformer that aligns a retrieved segment to a
query mask, the pairwise ordering classifier, and the cascaded-refinement synthesis
network."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AlignmentNet", "OrderingNet", "SynthesisNet", "warp", "IDENTITY_AFFINE"]

IDENTITY_AFFINE = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def warp(theta: torch.Tensor, images: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Resample N x C x H x W ``images`` by N x 2 x 3 affine maps (output coordinates to
    input coordinates, both in [-1, 1]); zeros outside."""
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(min(4, cout), cout), nn.LeakyReLU(0.2))


class AlignmentNet(nn.Module):
    """Spatial transformer: from a query mask and a retrieved segment (mask and RGB) in one
    S x S crop frame, regress the affine map (N x 2 x 3) that warps the segment onto the
    query. Starts at the identity (the last layer is zero)."""

    def __init__(self, size: int = 32, width: int = 16) -> None:
        super().__init__()
        if size < 16 or size & (size - 1):
            raise ValueError(f"the alignment crop size must be a power of two of at least 16, got {size}")
        self.size = size
        layers, cin, s = [], 5, size
        for k in range(3):
            layers.append(_conv(cin, width * 2**k, 2))
            cin, s = width * 2**k, s // 2
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(cin * 16, 64), nn.LeakyReLU(0.2), nn.Linear(64, 6))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self.register_buffer("identity", torch.tensor(IDENTITY_AFFINE).view(1, 2, 3))

    def forward(self, query_mask: torch.Tensor, source_mask: torch.Tensor, source_rgb: torch.Tensor) -> torch.Tensor:
        """N x 1 x S x S query mask, N x 1 x S x S segment mask, N x 3 x S x S segment RGB
        in [-1, 1] -> N x 2 x 3 affine maps."""
        x = torch.cat([query_mask, source_mask, source_rgb * source_mask], dim=1)
        return self.identity + self.head(self.features(x)).view(-1, 2, 3)


class OrderingNet(nn.Module):
    """Which of two overlapping segments is in front: logit of 'A in front of B' from their
    masks in the crop of their union box (2 x S x S), their classes and their boxes in
    image-relative coordinates. Antisymmetric by construction: swapping A and B negates
    the logit."""

    def __init__(self, label_count: int, size: int = 32, width: int = 16) -> None:
        super().__init__()
        self.label_count, self.size = label_count, size
        self.features = nn.Sequential(_conv(2, width, 2), _conv(width, 2 * width, 2), nn.AdaptiveAvgPool2d(4),
                                      nn.Flatten())
        self.head = nn.Sequential(nn.Linear(2 * width * 16 + 2 * label_count + 8, 64), nn.LeakyReLU(0.2),
                                  nn.Linear(64, 1))

    def _score(self, masks: torch.Tensor, classes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(classes.long(), self.label_count).float().flatten(1)
        return self.head(torch.cat([self.features(masks), onehot, boxes.flatten(1)], dim=1))[:, 0]

    def forward(self, masks: torch.Tensor, classes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """N x 2 x S x S masks (A, B), N x 2 classes, N x 2 x 4 boxes (y0, x0, y1, x1 over the
        image's height and width) -> N logits of 'A in front of B'."""
        swapped = self._score(masks.flip(1), classes.flip(1), boxes.flip(1))
        return self._score(masks, classes, boxes) - swapped


class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(_conv(cin, cout), _conv(cout, cout))


class SynthesisNet(nn.Module):
    """Cascaded-refinement encoder-decoder on [label one-hot, canvas, canvas mask].

    Encoder: a block at full resolution, then ``levels`` stride-2 blocks. Decoder, coarse to
    fine: each scale's block sees the upsampled previous output, the encoder's skip at that
    scale and the input downsampled to it (CRN's refinement modules). Heads: RGB (tanh) and
    semantic logits.
    """

    def __init__(self, label_count: int, ngf: int = 32, levels: int = 4, max_channels: int = 256) -> None:
        super().__init__()
        self.label_count, self.levels = label_count, levels
        cin = label_count + 4
        widths = [min(ngf * 2**k, max_channels) for k in range(levels + 1)]
        self.encoder = nn.ModuleList([_Block(cin, widths[0])] + [
            nn.Sequential(_conv(widths[k], widths[k + 1], 2), _conv(widths[k + 1], widths[k + 1]))
            for k in range(levels)])
        self.decoder = nn.ModuleList()
        for k in reversed(range(levels + 1)):
            above = widths[k + 1] if k < levels else 0
            self.decoder.append(_Block(above + widths[k] + cin, widths[k]))
        self.to_image = nn.Conv2d(widths[0], 3, 3, padding=1)
        self.to_labels = nn.Conv2d(widths[0], label_count, 1)

    @property
    def multiple(self) -> int:
        return 2**self.levels

    def forward(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """N x (labels + 4) x H x W -> (N x 3 x H x W image in [-1, 1], N x labels x H x W logits)."""
        h, w = condition.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"a {h}x{w} input does not fit: height and width must be multiples of {self.multiple}")
        inputs, skips, x = [condition], [], condition
        for k, block in enumerate(self.encoder):
            x = block(x)
            skips.append(x)
            if k:
                inputs.append(F.avg_pool2d(inputs[-1], 2))
        out = None
        for k, block in zip(reversed(range(self.levels + 1)), self.decoder):
            parts = [skips[k], inputs[k]]
            if out is not None:
                parts.insert(0, F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=False))
            out = block(torch.cat(parts, dim=1))
        return torch.tanh(self.to_image(out)), self.to_labels(out)
