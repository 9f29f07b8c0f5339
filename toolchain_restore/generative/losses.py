"""Losses shared by the synthesis modules: least-squares GAN, discriminator feature
matching, and the VGG-19 perceptual loss when the user supplies VGG-19 weights (nothing
is downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["lsgan_loss", "feature_matching_loss", "VGG19Features", "VGGLoss", "load_vgg19"]


def lsgan_loss(predictions: list[list[torch.Tensor]], real: bool) -> torch.Tensor:
    """Mean squared distance of every discriminator's last output to 1 (real) or 0 (fake),
    summed over the discriminators."""
    target = 1.0 if real else 0.0
    return sum(F.mse_loss(outputs[-1], torch.full_like(outputs[-1], target)) for outputs in predictions)


def feature_matching_loss(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between the discriminators' intermediate features (all layers but the last) on
    fake and real images; as the reference code, each term is weighted by
    4 / (n_layers + 1) (the number of matched layers) and 1 / (discriminators). Real
    features are treated as constants."""
    total = fake[0][0].new_zeros(())
    for fake_outputs, real_outputs in zip(fake, real):
        layer_weight = 4.0 / (len(fake_outputs) - 1)
        for f, r in zip(fake_outputs[:-1], real_outputs[:-1]):
            total = total + layer_weight / len(fake) * F.l1_loss(f, r.detach())
    return total


# torchvision's VGG-19 'features' indices of the convolutions up to relu5_1, and the
# slices ending at relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1.
_VGG19_CONVS = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256), 12: (256, 256),
                14: (256, 256), 16: (256, 256), 19: (256, 512), 21: (512, 512), 23: (512, 512), 25: (512, 512),
                28: (512, 512)}
_VGG19_POOLS = (4, 9, 18, 27)
_SLICE_ENDS = (2, 7, 12, 21, 30)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """VGG-19's convolutional layers up to relu5_1, frozen; returns the activations at
    relu1_1 .. relu5_1 of an image in [-1, 1] (normalised with ImageNet's statistics,
    which torchvision's weights expect)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(_SLICE_ENDS[-1]):
            if index in _VGG19_CONVS:
                layers.append(nn.Conv2d(*_VGG19_CONVS[index], 3, padding=1))
            elif index in _VGG19_POOLS:
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.ReLU(inplace=False))
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = ((image + 1) / 2 - self.mean) / self.std
        outputs, start = [], 0
        for end in _SLICE_ENDS:
            x = self.features[start:end](x)
            outputs.append(x)
            start = end
        return outputs


def load_vgg19(path: str | os.PathLike) -> VGG19Features:
    """VGG-19 feature layers from a user's weights file: torchvision's ``vgg19`` state dict
    (``features.N.weight`` / ``.bias``, the classifier is ignored) as .pth or .safetensors.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: unreadable, or not VGG-19's feature weights (names the missing or misshaped tensors).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no VGG-19 weights at {path}: pass the path of torchvision's vgg19 weights "
                                "(e.g. vgg19-dcbb9e9d.pth), or leave the perceptual loss off")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch and safetensors raise many types for a damaged file
        raise ValueError(f"{path}: not a readable weights file ({err})") from err
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict of tensors, found {type(state).__name__}")
    model = VGG19Features()
    wanted = {f"features.{k}": v for k, v in model.features.state_dict().items()}
    missing = [k for k in wanted if k not in state]
    misshaped = [f"{k} {tuple(state[k].shape)} (VGG-19: {tuple(v.shape)})" for k, v in wanted.items()
                 if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or misshaped:
        raise ValueError(f"{path}: not VGG-19's feature weights; missing {missing[:4]}"
                         f"{' ...' if len(missing) > 4 else ''}, misshaped {misshaped[:4]}")
    model.features.load_state_dict({k.removeprefix("features."): state[k] for k in wanted})
    return model.eval()


class VGGLoss(nn.Module):
    """pix2pixHD's perceptual loss: L1 between VGG-19 activations of the estimate and the
    ground truth at relu1_1 .. relu5_1, weighted 1/32, 1/16, 1/8, 1/4, 1."""

    weights = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)

    def __init__(self, vgg: VGG19Features) -> None:
        super().__init__()
        self.vgg = vgg

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        e, h = self.vgg(estimate), self.vgg(target)
        return sum(w * F.l1_loss(a, b.detach()) for w, a, b in zip(self.weights, e, h))
