"""PoseWarp (Balakrishnan et al., CVPR 2018) as one module: source segmentation,
per-part spatial transforms, foreground and background synthesis, composite; or the
paper's U-Net baseline. Settings, presets and weight files.

All three U-Nets (and the baseline) are the project's pix2pix U-Net
(:class:`~toolchain_restore.generative.pix2pixhd.networks.UNetGenerator`), without
dropout; the segmentation and foreground heads take its raw last layer.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import nn

from ...config import with_changes
from ...serialization import load_weights, read_settings, save_weights
from ..pix2pixhd.networks import MultiscaleDiscriminator, UNetGenerator
from .pose import JOINT_COUNT, PART_COUNT, limb_log_prior, part_transforms, pose_heatmaps, warp_parts

__all__ = ["PoseWarpSettings", "PoseWarp", "preset", "save_posewarp", "load_posewarp", "POSEWARP_KIND"]

POSEWARP_KIND = "toolchain-restore/posewarp"


@dataclass
class PoseWarpSettings:
    """PoseWarp's architecture, losses and data. Defaults are the reference's (256x256 on a
    GPU) except the data; ``preset('cpu')`` scales the networks to 128x128 on a CPU."""

    data: str = "procedural"
    """'procedural' (embedded figure videos) or a folder in the official layout (frames/<video>/, info/<video>.mat)."""
    size: int = 256
    """Images are size x size (the reference: 256)."""
    architecture: Literal["modular", "unet"] = "modular"
    """modular: the warp-based model; unet: the paper's baseline ([source, source pose, target pose] -> target)."""
    transform: Literal["similarity", "affine"] = "similarity"
    """Per-part transform fitted by least squares: similarity (the reference code) or affine (the paper)."""
    ngf: int = 64
    """Channels of each U-Net's first level."""
    depth: int = 8
    """Stride-2 levels of each U-Net (size must be a multiple of 2^depth)."""
    loss: Literal["l1", "feature"] = "feature"
    """Reconstruction loss: l1, or the per-layer normalised feature loss (VGG-19 with vgg_weights, else fixed random multi-scale features)."""
    vgg_weights: str | None = None
    """torchvision VGG-19 weights for the feature loss (the reference's); None = features that need no download."""
    gan_weight: float = 0.1
    """Weight of the conditional GAN loss in the GAN stage (the reference: 0.1)."""
    gan_iterations: int = 0
    """Steps of the GAN fine-tuning stage after the main one (the reference: 10000; 0 = no GAN stage)."""
    ndf: int = 64
    """Channels of the discriminator's first layer."""
    n_layers_d: int = 3
    """Stride-2/1 convolutions of the PatchGAN discriminator."""
    batch_size: int = 4
    """Pairs per step (the reference: 4)."""
    augment: bool = True
    """The reference's augmentations: scale 0.90-1.05, rotation +-5 degrees, shift +-10 px at 256, saturation +-5%, flips."""
    train_videos: int = 2000
    """Procedural training videos (figure + background each)."""
    test_videos: int = 16
    """Procedural held-out videos (unseen figures, backgrounds from held-out photos)."""
    frames_per_video: int = 32
    """Poses per procedural video."""
    test_pairs: int = 32
    """Held-out pairs for evaluation."""
    feature_std_images: int = 16
    """Training images over which each feature layer's standard deviation is measured (its normalisation)."""

    RESUMABLE: ClassVar[frozenset[str]] = frozenset({"gan_iterations"})
    """The GAN stage's length is its own run's ``iterations`` (which may only grow there); the main stage ignores it."""


def preset(name: Literal["cpu", "paper"], **changes) -> PoseWarpSettings:
    """'paper': 256x256, U-Nets of 64 channels and 8 levels, batch 4; 'cpu': 128x128,
    U-Nets of 12 channels and 5 levels, batch 4, a budget for a 2-core CPU."""
    if name == "paper":
        base = PoseWarpSettings(gan_iterations=10000)
    elif name == "cpu":
        base = PoseWarpSettings(size=128, ngf=12, depth=5, ndf=16, train_videos=400)
    else:
        raise ValueError(f"unknown preset {name!r}; expected 'cpu' or 'paper'")
    return with_changes(base, changes, "PoseWarp")


_ARCHITECTURE_FIELDS = ("architecture", "ngf", "depth", "size")


def _unet(in_channels: int, out_channels: int, s: PoseWarpSettings, tanh: bool) -> UNetGenerator:
    return UNetGenerator(in_channels, out_channels, s.ngf, s.depth, dropout=0.0, final_tanh=tanh)


class PoseWarp(nn.Module):
    """The modular model (``segmenter``, ``foreground``, ``background``) or the baseline
    (``unet``), and, with a GAN stage, the ``discriminator`` on [image, source pose, target pose]."""

    def __init__(self, settings: PoseWarpSettings, discriminator: bool | None = None) -> None:
        super().__init__()
        s = self.settings = settings
        if s.size % 2**s.depth:
            raise ValueError(f"size {s.size} must be a multiple of 2^depth = {2**s.depth}")
        poses = 2 * JOINT_COUNT
        if s.architecture == "modular":
            self.segmenter = _unet(3 + JOINT_COUNT, PART_COUNT + 1, s, tanh=False)
            self.foreground = _unet(3 * PART_COUNT + JOINT_COUNT, 4, s, tanh=False)
            self.background = _unet(3 + 1 + JOINT_COUNT, 3, s, tanh=True)
        elif s.architecture == "unet":
            self.unet = _unet(3 + poses, 3, s, tanh=True)
        else:
            raise ValueError(f"architecture must be 'modular' or 'unet', got {s.architecture!r}")
        with_d = s.gan_iterations > 0 if discriminator is None else discriminator
        self.discriminator = MultiscaleDiscriminator(3 + poses, s.ndf, s.n_layers_d, 1) if with_d else None

    def pose_inputs(self, source_joints: torch.Tensor, target_joints: torch.Tensor) -> dict[str, torch.Tensor]:
        """Heatmaps of both poses, the segmentation prior and the part transforms (N x 10 x 2 x 3)."""
        size = self.settings.size
        src, tgt = source_joints.detach().cpu().double().numpy(), target_joints.detach().cpu().double().numpy()
        transforms = np.stack([part_transforms(a, b, self.settings.transform) for a, b in zip(src, tgt)])
        return {"source_pose": pose_heatmaps(source_joints.cpu(), size, size),
                "target_pose": pose_heatmaps(target_joints.cpu(), size, size),
                "prior": limb_log_prior(source_joints.cpu(), size, size),
                "transforms": torch.from_numpy(transforms).float()}

    def forward(self, source: torch.Tensor, source_joints: torch.Tensor, target_joints: torch.Tensor,
                poses: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Synthesise the source person in the target pose.

        Arguments:
            source: N x 3 x H x W in [-1, 1].
            source_joints, target_joints: N x 14 x 2 pixel coordinates (NaN = unknown).
            poses: :meth:`pose_inputs` precomputed (e.g. in the data threads).
        Returns:
            'output' (N x 3 x H x W in [-1, 1]); the modular model also 'masks' (N x 11 x H x W,
            channel 0 the background), 'warped' (N x 10 x 3 x H x W), 'foreground',
            'foreground_mask', 'background'.
        """
        device = source.device
        poses = self.pose_inputs(source_joints, target_joints) if poses is None else poses
        source_pose, target_pose = poses["source_pose"].to(device), poses["target_pose"].to(device)
        if self.settings.architecture == "unet":
            return {"output": self.unet(torch.cat([source, source_pose, target_pose], 1))}
        logits = self.segmenter(torch.cat([source, source_pose], 1)).float() + poses["prior"].to(device)
        masks = torch.softmax(logits, 1)
        warped = warp_parts(source.float(), masks[:, 1:], poses["transforms"].to(device))
        fg_out = self.foreground(torch.cat([warped.flatten(1, 2), target_pose], 1)).float()
        foreground, fg_mask = torch.tanh(fg_out[:, :3]), torch.sigmoid(fg_out[:, 3:4])
        background_mask = masks[:, :1]
        # The person is replaced by noise so the background network must fill the hole.
        if self.training:
            noise = torch.rand_like(source) * 2 - 1
        else:
            generator = torch.Generator(device=device).manual_seed(0)
            noise = torch.rand(source.shape, generator=generator, device=device, dtype=source.dtype) * 2 - 1
        holed = source * background_mask + noise * (1 - background_mask)
        background = self.background(torch.cat([holed, background_mask, source_pose], 1)).float()
        output = foreground * fg_mask + background * (1 - fg_mask)
        return {"output": output, "masks": masks, "warped": warped, "foreground": foreground,
                "foreground_mask": fg_mask, "background": background}

    def generators(self) -> nn.Module:
        """Every network but the discriminator (what synthesis needs)."""
        keep = nn.Module()
        for name, child in self.named_children():
            if name != "discriminator":
                setattr(keep, name, child)
        return keep


def save_posewarp(model: PoseWarp, path: str | os.PathLike, discriminator: bool = False, half: bool = False,
                  **extra) -> None:
    """Write a model's weights with its settings; by default without the discriminator."""
    keep = model.generators()
    if discriminator and model.discriminator is not None:
        keep.discriminator = model.discriminator
    config = {**extra, "settings": asdict(model.settings),
              "discriminator": bool(discriminator and model.discriminator is not None)}
    save_weights(keep, path, POSEWARP_KIND, config, half=half)


def load_posewarp(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                  expect: PoseWarpSettings | None = None) -> PoseWarp:
    """Rebuild the model a file describes and load it (eval mode).

    Raises:
        WeightsError: missing or corrupt file, another kind, settings unlike ``expect``, tensors that do not fit.
    """
    settings, config = read_settings(path, POSEWARP_KIND, PoseWarpSettings, _ARCHITECTURE_FIELDS, expect,
                                     "PoseWarp model")
    with_d = bool(config.get("discriminator", False))
    model = PoseWarp(settings, discriminator=with_d)
    target = model.generators()
    if with_d:
        target.discriminator = model.discriminator
    load_weights(target, path, POSEWARP_KIND)
    return model.to(map_location).eval()
