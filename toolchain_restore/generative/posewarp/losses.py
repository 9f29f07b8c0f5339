"""PoseWarp's feature loss: L1 between feature maps of the output and the target, each
layer divided by that layer's standard deviation over training images (the reference
normalises its VGG-19 layers so). The features are VGG-19's when the user supplies its
weights, else a fixed, seeded random convolutional pyramid that needs no download."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RandomFeatures", "NormalisedFeatureLoss", "feature_extractor"]


class RandomFeatures(nn.Module):
    """A frozen multi-scale feature pyramid with fixed random weights (rebuilt from ``seed``,
    never stored): the image itself, then three stages of 3x3 convolution, ReLU and 2x2
    average pooling. Random convolutional features still measure local structure and
    texture at several scales, which plain L1 on pixels does not."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64), seed: int = 1234) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.stages = nn.ModuleList()
        channels = 3
        for width in widths:
            conv = nn.Conv2d(channels, width, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * (2 / (9 * channels)) ** 0.5)
                conv.bias.zero_()
            self.stages.append(conv)
            channels = width
        self.requires_grad_(False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        outputs, x = [image], image
        for conv in self.stages:
            x = F.avg_pool2d(F.relu(conv(x)), 2)
            outputs.append(x)
        return outputs


def feature_extractor(vgg_weights: str | None) -> nn.Module:
    """VGG-19 (relu1_1 .. relu5_1) from the user's weights file, or :class:`RandomFeatures`."""
    if vgg_weights:
        from ..losses import load_vgg19

        return load_vgg19(vgg_weights)
    return RandomFeatures()


class NormalisedFeatureLoss(nn.Module):
    """Mean over layers of L1(features(output), features(target)) / std(layer).

    Arguments:
        extractor: image (N x 3 x H x W in [-1, 1]) -> list of feature maps; frozen.
        images: training images whose per-layer feature std sets the normalisation.
    """

    def __init__(self, extractor: nn.Module, images: torch.Tensor) -> None:
        super().__init__()
        self.extractor = extractor.eval().requires_grad_(False)
        with torch.no_grad():
            stds = [f.float().std().clamp_min(1e-6) for f in self.extractor(images)]
        self.register_buffer("stds", torch.stack(stds))

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        a, b = self.extractor(output), self.extractor(target)
        terms = [F.l1_loss(x.float(), y.detach().float()) / s for x, y, s in zip(a, b, self.stds)]
        return torch.stack(terms).mean()

    @property
    def layer_stds(self) -> list[float]:
        return [float(s) for s in self.stds]


_Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
