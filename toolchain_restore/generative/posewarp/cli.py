"""The ``posewarp`` command: ``train``, ``test`` and ``synthesize``.

    toolchain-restore posewarp train --preset cpu --iterations 3000 --out-dir runs/posewarp
    toolchain-restore posewarp test [--weights FILE] [--data FOLDER] --output results/
    toolchain-restore posewarp synthesize --source IMG --source-pose JOINTS --target-pose JOINTS --output out.png
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal

from ...config import Command, DeviceSettings, Preset, add_commands
from ...errors import positive
from ...training import TrainerSettings, is_main_process
from .model import PoseWarp, PoseWarpSettings, preset
from .training import TRAINER_DEFAULTS

__all__ = ["POSEWARP_COMMAND", "add_posewarp_parser", "PoseWarpTrainOptions", "PoseWarpModelSettings",
           "PoseWarpTestSettings", "PoseWarpSynthesizeSettings"]


@dataclass(kw_only=True)
class PoseWarpTrainOptions:
    """posewarp train: the preset the model options change, and the output file."""

    preset: Literal["cpu", "paper"] = "cpu"
    """cpu: 128x128 narrow U-Nets; paper: 256x256, 64 channels, GAN stage."""
    output: str | None = None
    """Weights file to write (default: OUT_DIR/posewarp.safetensors)."""


@dataclass(kw_only=True)
class PoseWarpModelSettings(DeviceSettings):
    """A trained PoseWarp model."""

    weights: str | None = None
    """A trained model (default: the shipped one)."""


@dataclass(kw_only=True)
class PoseWarpTestSettings(PoseWarpModelSettings):
    """posewarp test: SSIM and L1 on held-out pairs, and a picture."""

    data: str | None = None
    """An official-layout folder (default: the model's data)."""
    pairs: int = 32
    """Held-out pairs."""
    output: str = "results/posewarp"
    """Folder for the picture."""


@dataclass(kw_only=True)
class PoseWarpSynthesizeSettings(PoseWarpModelSettings):
    """posewarp synthesize: one source image in a target pose."""

    source: str
    """The source image."""
    source_pose: str
    """Joints of the source: .npy / .json 14 x 2 (x, y pixels) or an official .mat with --frame."""
    target_pose: str
    """Joints of the target pose (same formats)."""
    frame: int | None = None
    """Frame (1-based) of a .mat source pose (and target, without --target-frame)."""
    target_frame: int | None = None
    """Frame (1-based) of a .mat target pose."""
    output: str = "posewarp.png"
    """Picture to write: source | target pose | output."""
    full_frame: str | None = None
    """Also write the source image at its full size with the output pasted back where the person was cut from."""


def _train(options: PoseWarpTrainOptions, settings: PoseWarpSettings, trainer: TrainerSettings) -> int:
    from .training import train_posewarp

    metrics = train_posewarp(settings, trainer, options.output)
    if not is_main_process():  # the other torchrun processes trained alongside; rank 0 reports
        return 0
    print("held-out: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    print(f"wrote {options.output or f'{trainer.out_dir}/posewarp.safetensors'} (TensorBoard logs beside it)")
    return 0


def _model(s: PoseWarpModelSettings) -> PoseWarp:
    from .model import load_posewarp
    from .sampling import load_shipped

    return load_shipped(s.torch_device()) if s.weights is None else load_posewarp(s.weights, s.torch_device())


def _test(s: PoseWarpTestSettings) -> int:
    from pathlib import Path

    import numpy as np
    import torch

    from .data import pair_source
    from .sampling import gradient_statistics, pose_picture, synthesize, write_sheet
    from .training import pose_metrics, to_model_image

    positive(s.pairs, "--pairs")
    model = _model(s)
    m = model.settings
    device = s.torch_device()
    source = pair_source(s.data or m.data, "test", m.size, m.test_videos, m.frames_per_video, False)
    pairs = source.fixed(s.pairs)
    outputs = [r["output"] for lo in range(0, len(pairs), 8) for r in synthesize(model, pairs[lo:lo + 8], device)]
    fake = torch.stack([to_model_image(x) for x in outputs])
    real = torch.stack([to_model_image(p.target) for p in pairs])
    metrics = {k: float(np.mean(v)) for k, v in pose_metrics(fake, real).items()}
    grads = gradient_statistics(outputs)
    out = Path(s.output)
    out.mkdir(parents=True, exist_ok=True)
    write_sheet(out / "posewarp_test.png", [[p.source, pose_picture(p.target_joints, m.size), o, p.target]
                                            for p, o in list(zip(pairs, outputs))[:8]])
    print(f"{len(pairs)} held-out pairs: ssim {metrics['ssim']:.4f}, l1 {metrics['l1']:.4f}, "
          f"output gradient mean {grads['mean']:.4f}")
    print(f"wrote {out / 'posewarp_test.png'} (source | target pose | output | real target)")
    return 0


def _synthesize(s: PoseWarpSynthesizeSettings) -> int:
    from ...data.image_io import check_writable
    from ...data.images import read_image
    from .sampling import pose_picture, prepare_pair, read_joints, synthesize, write_sheet

    check_writable(s.output)
    image = read_image(s.source)
    source_joints, source_box = read_joints(s.source_pose, s.frame)
    target_joints, target_box = read_joints(s.target_pose, s.target_frame or s.frame)
    model = _model(s)
    pair = prepare_pair(image, source_joints, target_joints, model.settings.size, (source_box, target_box))
    result = synthesize(model, [pair], s.torch_device())[0]
    write_sheet(s.output, [[pair.source, pose_picture(pair.target_joints, model.settings.size), result["output"]]])
    print(f"wrote {s.output} (source | target pose | output)")
    if s.full_frame:
        from .data import paste_back

        # An image already of the model's size was not cropped: the output is its full frame.
        whole = result["output"] if pair.crop is None else paste_back(image[..., :3], result["output"], pair.crop)
        write_sheet(s.full_frame, [[whole]])
        print(f"wrote {s.full_frame} (the output in the full {image.shape[1]} x {image.shape[0]} frame)")
    return 0


POSEWARP_COMMAND = Command(
    "posewarp", "pose-guided human image synthesis (PoseWarp, Balakrishnan et al. 2018)",
    verbs=(
        Command("train", "train the modular model or the U-Net baseline", _train,
                (PoseWarpTrainOptions, PoseWarpSettings, TrainerSettings), TRAINER_DEFAULTS,
                preset=Preset(PoseWarpSettings, preset)),
        Command("test", "SSIM and L1 on held-out pairs, and a picture", _test, (PoseWarpTestSettings,), autocast=True),
        Command("synthesize", "one source image in a target pose", _synthesize, (PoseWarpSynthesizeSettings,),
                autocast=True),
    ))
"""The ``posewarp`` entry of the command table."""


def add_posewarp_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``posewarp`` subcommand (verbs train, test, synthesize) to a subparsers object;
    each verb's handler (``func``) returns an exit code."""
    add_commands(sub, [POSEWARP_COMMAND])
