"""The pix2pixHD model as one module (generator, multi-scale discriminator, optional
instance-feature encoder), its settings, and its weight files."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

from ...config import with_changes
from ...serialization import load_weights, read_settings, save_weights
from ..datasets import SceneDataSettings
from .maps import instance_boundaries, one_hot_labels
from .networks import (FeatureEncoder, MultiscaleDiscriminator, Pix2PixHDGenerator, UNetGenerator,
                       image_size_multiple)

__all__ = ["Pix2PixHDSettings", "Pix2PixHD", "size_multiple", "save_pix2pixhd", "load_pix2pixhd", "PIX2PIXHD_KIND", "preset"]

PIX2PIXHD_KIND = "toolchain-restore/pix2pixhd"


@dataclass
class Pix2PixHDSettings(SceneDataSettings):
    """pix2pixHD's architecture, losses and data. Defaults are the reference's
    (2048x1024 Cityscapes on a GPU) except the data; ``preset('cpu')`` scales it to 128x256."""

    pad: bool = False
    """Pad folder images whose size is not a multiple of 2^(downsamplings) instead of refusing them."""
    instances: bool = True
    """Feed the instance boundary map (the official --no_instance turns it off)."""
    features: bool = False
    """Train the instance-feature encoder and feed its instance-wise averaged features (official --instance_feat)."""
    feature_channels: int = 3
    """Dimension of the instance features (official feat_num)."""
    nef: int = 16
    """Channels of the encoder's first layer."""
    n_downsample_encoder: int = 4
    """Stride-2 convolutions of the encoder."""
    generator: Literal["pix2pixhd", "unet"] = "pix2pixhd"
    """pix2pixhd: the coarse-to-fine generator; unet: pix2pix's single-scale U-Net (the baseline, no enhancers)."""
    unet_depth: int = 8
    """U-Net: stride-2 levels (pix2pix: 8 for 256x256)."""
    ngf: int = 32
    """Channels of the finest generator level (G1 alone has ngf * 2^n_local_enhancers: 64 for the reference's 32)."""
    n_downsample_global: int = 4
    """Stride-2 convolutions of the global generator."""
    n_blocks_global: int = 9
    """Residual blocks of the global generator."""
    n_local_enhancers: int = 1
    """Local enhancers on top of G1 (each doubles the resolution)."""
    n_blocks_local: int = 3
    """Residual blocks per local enhancer."""
    ndf: int = 64
    """Channels of each discriminator's first layer."""
    n_layers_d: int = 3
    """Stride-2/1 convolutions of each PatchGAN."""
    num_d: int = 3
    """Discriminators at successive half resolutions (paper: 3; official code default: 2)."""
    feature_matching: bool = True
    """The discriminator feature-matching loss (official --no_ganFeat_loss turns it off)."""
    lambda_feat: float = 10.0
    """Weight of the feature-matching (and VGG) loss."""
    lambda_l1: float = 0.0
    """Weight of an L1 loss to the real image (pix2pix: 100; pix2pixHD: none)."""
    vgg_weights: str | None = None
    """torchvision VGG-19 weights (.pth or .safetensors) to add the perceptual loss; None = off (nothing is downloaded)."""
    batch_size: int = 1
    """Layouts per step (per process under torchrun); the reference trains with 1."""
    flip: bool = True
    """Mirror training samples left-right at random."""
    fix_global_iterations: int = 0
    """Enhancer stage: steps with the global generator frozen before all layers train (official niter_fix_global)."""

    def enhancers_at(self, stage: str) -> int:
        return 0 if stage == "global" else self.n_local_enhancers

    def ngf_at(self, stage: str) -> int:
        return self.ngf * 2**self.n_local_enhancers if stage == "global" else self.ngf


def preset(name: Literal["cpu", "paper", "pix2pix"], **changes) -> Pix2PixHDSettings:
    """'paper': the reference's networks (ngf 32 with one enhancer, G1 at 64 with 4
    downsamplings and 9 blocks, 3 discriminators of 64) for 1024x2048 on a GPU; 'cpu': a
    budget for 128x256 procedural scenes on a 2-core CPU (narrower and shallower
    networks, same structure); 'pix2pix': the single-scale baseline at the cpu budget
    (U-Net of 6 levels, one PatchGAN, L1 weight 100, no boundary map, no feature matching)."""
    if name == "paper":
        base = Pix2PixHDSettings(height=1024, width=2048)
    elif name == "cpu":
        base = Pix2PixHDSettings(ngf=8, n_downsample_global=3, n_blocks_global=4, n_blocks_local=2, ndf=16, nef=8,
                                 n_downsample_encoder=3)
    elif name == "pix2pix":
        base = Pix2PixHDSettings(generator="unet", unet_depth=6, ngf=16, n_local_enhancers=0, ndf=16, num_d=1,
                                 instances=False, feature_matching=False, lambda_l1=100.0)
    else:
        raise ValueError(f"unknown preset {name!r}; expected 'cpu', 'paper' or 'pix2pix'")
    return with_changes(base, changes, "pix2pixHD")


# The settings that decide the shapes of the weights; a file records them and loading checks them.
_ARCHITECTURE_FIELDS = ("generator", "unet_depth", "label_count", "instances", "features", "feature_channels", "nef", "n_downsample_encoder",
                        "ngf", "n_downsample_global", "n_blocks_global", "n_local_enhancers", "n_blocks_local", "ndf",
                        "n_layers_d", "num_d")


def size_multiple(settings: Pix2PixHDSettings, stage: str = "enhancer") -> int:
    """What the height and width of a layout must be multiples of, for a model of these
    settings at ``stage``: 2^(downsamplings) of the generator, and of the encoder if any."""
    s = settings
    multiple = (2**s.unet_depth if s.generator == "unet"
                else image_size_multiple(s.n_downsample_global, s.enhancers_at(stage)))
    return max(multiple, 2**s.n_downsample_encoder) if s.features else multiple


class Pix2PixHD(nn.Module):
    """Generator, discriminators and (with ``features``) the encoder of one stage.

    Arguments:
        settings: the architecture; ``settings.label_count`` must be set.
        stage: 'global' (G1 alone, at the resolution divided by 2^enhancers) or 'enhancer' (the full generator).
    """

    def __init__(self, settings: Pix2PixHDSettings, stage: str = "enhancer") -> None:
        super().__init__()
        if settings.label_count is None:
            raise ValueError("settings.label_count must be set")
        self.settings, self.stage = settings, stage
        s = settings
        self.condition_channels = s.label_count + int(s.instances)
        in_channels = self.condition_channels + (s.feature_channels if s.features else 0)
        if s.generator == "unet":
            if s.n_local_enhancers:
                raise ValueError("the U-Net generator has no local enhancers: set n_local_enhancers=0")
            self.generator: nn.Module = UNetGenerator(in_channels, 3, s.ngf, s.unet_depth)
        elif s.generator == "pix2pixhd":
            self.generator = Pix2PixHDGenerator(in_channels, 3, s.ngf_at(stage), s.n_downsample_global,
                                                s.n_blocks_global, s.enhancers_at(stage), s.n_blocks_local)
        else:
            raise ValueError(f"generator must be 'pix2pixhd' or 'unet', got {s.generator!r}")
        self.discriminator = MultiscaleDiscriminator(self.condition_channels + 3, s.ndf, s.n_layers_d, s.num_d)
        self.encoder = (FeatureEncoder(3, s.feature_channels, s.nef, s.n_downsample_encoder) if s.features else None)

    @property
    def size_multiple(self) -> int:
        """Height and width of an input must be multiples of this."""
        return size_multiple(self.settings, self.stage)

    def condition(self, label: torch.Tensor, instance: torch.Tensor) -> torch.Tensor:
        """[one-hot labels, boundary map]: what the discriminators see beside the image."""
        h, w = label.shape[-2:]
        if h % self.size_multiple or w % self.size_multiple:
            raise ValueError(f"a {h}x{w} layout does not fit: height and width must be multiples of "
                             f"{self.size_multiple} (2^downsamplings); pad or crop it (folders: pad=True)")
        parts = [one_hot_labels(label, self.settings.label_count)]
        if self.settings.instances:
            parts.append(instance_boundaries(instance))
        return torch.cat(parts, dim=1)

    def generate(self, label: torch.Tensor, instance: torch.Tensor, features: torch.Tensor | None = None,
                 image: torch.Tensor | None = None) -> torch.Tensor:
        """The synthesised image (N x 3 x H x W in [-1, 1]). With an encoder the instance
        features are ``features`` (e.g. chosen cluster centres) or, if None, encoded from
        ``image`` (training, reconstruction)."""
        condition = self.condition(label, instance)
        if self.encoder is not None:
            if features is None:
                if image is None:
                    raise ValueError("this model uses instance features: pass features (see pix2pixhd.clusters) "
                                     "or the image to encode them from")
                features = self.encoder(image, instance)
            condition = torch.cat([condition, features], dim=1)
        return self.generator(condition)


def save_pix2pixhd(model: Pix2PixHD, path: str | os.PathLike, discriminator: bool = True,
                   half: bool = False, **extra) -> None:
    """Write a model's weights with its settings and stage; without its discriminators and
    in float16 (``half``) for a small file that only samples."""
    config = {**extra, "settings": asdict(model.settings), "stage": model.stage, "discriminator": discriminator}
    keep = nn.Module()
    keep.generator = model.generator
    if model.encoder is not None:
        keep.encoder = model.encoder
    if discriminator:
        keep.discriminator = model.discriminator
    save_weights(keep, path, PIX2PIXHD_KIND, config, half=half)


def load_pix2pixhd(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                   expect: Pix2PixHDSettings | None = None) -> Pix2PixHD:
    """Rebuild the model a file describes and load it (eval mode).

    Arguments:
        expect: settings the caller intends to use; every architecture setting that differs from the
            file's is named in the error (the official code's most reported loading problem).

    Raises:
        WeightsError: missing or corrupt file, another kind, settings that do not match ``expect``,
            or tensors that do not fit.
    """
    settings, config = read_settings(path, PIX2PIXHD_KIND, Pix2PixHDSettings, _ARCHITECTURE_FIELDS, expect,
                                     "pix2pixHD model")
    model = Pix2PixHD(settings, config.get("stage", "enhancer"))
    target = nn.Module()
    target.generator = model.generator
    if model.encoder is not None:
        target.encoder = model.encoder
    if config.get("discriminator", True):
        target.discriminator = model.discriminator
    load_weights(target, path, PIX2PIXHD_KIND)
    return model.to(map_location).eval()
