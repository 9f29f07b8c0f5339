"""The ``posewarp`` command: ``train``, ``test`` and ``synthesize``.

    toolchain-restore posewarp train --preset cpu --iterations 3000 --out-dir runs/posewarp
    toolchain-restore posewarp test [--weights FILE] [--data FOLDER] --output results/
    toolchain-restore posewarp synthesize --source IMG --source-pose JOINTS --target-pose JOINTS --output out.png
"""

from __future__ import annotations

import argparse
import sys

from ...config import add_precision_argument, add_settings_arguments, given_settings, settings_from_args
from ...training import TrainerSettings
from .model import PoseWarpSettings

__all__ = ["add_posewarp_parser"]


def _settings(args: argparse.Namespace) -> PoseWarpSettings:
    from .model import preset

    given = given_settings(PoseWarpSettings, args)
    return preset(args.preset, **given)


def _train(args: argparse.Namespace) -> int:
    from .training import train_posewarp

    settings = _settings(args)
    trainer = settings_from_args(TrainerSettings, args)
    metrics = train_posewarp(settings, trainer, args.output)
    print("held-out: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    print(f"wrote {args.output or f'{trainer.out_dir}/posewarp.safetensors'} (TensorBoard logs beside it)")
    return 0


def _model(args: argparse.Namespace):
    from .model import load_posewarp
    from .sampling import load_shipped

    return load_shipped() if args.weights is None else load_posewarp(args.weights)


def _test(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from .data import pair_source
    from .sampling import gradient_statistics, pose_picture, synthesize, write_sheet
    from .training import pose_metrics, to_model_image

    import torch

    model = _model(args)
    s = model.settings
    source = pair_source(args.data or s.data, "test", s.size, s.test_videos, s.frames_per_video, False)
    pairs = source.fixed(args.pairs)
    outputs = [r["output"] for lo in range(0, len(pairs), 8) for r in synthesize(model, pairs[lo:lo + 8])]
    fake = torch.stack([to_model_image(x) for x in outputs])
    real = torch.stack([to_model_image(p.target) for p in pairs])
    metrics = {k: float(np.mean(v)) for k, v in pose_metrics(fake, real).items()}
    grads = gradient_statistics(outputs)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    write_sheet(out / "posewarp_test.png", [[p.source, pose_picture(p.target_joints, s.size), o, p.target]
                                            for p, o in list(zip(pairs, outputs))[:8]])
    print(f"{len(pairs)} held-out pairs: ssim {metrics['ssim']:.4f}, l1 {metrics['l1']:.4f}, "
          f"output gradient mean {grads['mean']:.4f}")
    print(f"wrote {out / 'posewarp_test.png'} (source | target pose | output | real target)")
    return 0


def _synthesize(args: argparse.Namespace) -> int:
    from ...data.images import read_image
    from .sampling import pose_picture, prepare_pair, read_joints, synthesize, write_sheet

    try:
        image = read_image(args.source)
        if image.ndim == 2:
            image = image[..., None].repeat(3, axis=2)
        source_joints, source_box = read_joints(args.source_pose, args.frame)
        target_joints, target_box = read_joints(args.target_pose, args.target_frame or args.frame)
        model = _model(args)
        pair = prepare_pair(image[..., :3], source_joints, target_joints, model.settings.size,
                            (source_box, target_box))
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = synthesize(model, [pair])[0]
    write_sheet(args.output, [[pair.source, pose_picture(pair.target_joints, model.settings.size), result["output"]]])
    print(f"wrote {args.output} (source | target pose | output)")
    return 0


def add_posewarp_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``posewarp`` subcommand (verbs train, test, synthesize) to a subparsers object;
    each verb's handler (``func``) returns an exit code."""
    parser = sub.add_parser("posewarp", help="pose-guided human image synthesis (PoseWarp, Balakrishnan et al. 2018)")
    verbs = parser.add_subparsers(dest="verb", required=True)

    train = verbs.add_parser("train", help="train the modular model or the U-Net baseline")
    train.add_argument("--preset", choices=["cpu", "paper"], default="cpu",
                       help="cpu: 128x128 narrow U-Nets; paper: 256x256, 64 channels, GAN stage (default: cpu)")
    train.add_argument("--output", help="weights file to write (default: OUT_DIR/posewarp.safetensors)")
    add_settings_arguments(train, PoseWarpSettings, only_given=True)
    add_settings_arguments(train, TrainerSettings)
    train.set_defaults(func=_train, lr=1e-4, schedule="constant", out_dir="runs/posewarp")

    test = verbs.add_parser("test", help="SSIM and L1 on held-out pairs, and a picture")
    test.add_argument("--weights", help="a trained model (default: the shipped one)")
    test.add_argument("--data", help="an official-layout folder (default: the model's data)")
    test.add_argument("--pairs", type=int, default=32, help="held-out pairs (default: 32)")
    test.add_argument("--output", default="results/posewarp", help="folder for the picture")
    test.set_defaults(func=_test)
    add_precision_argument(test, autocast_run=True)

    synth = verbs.add_parser("synthesize", help="one source image in a target pose")
    synth.add_argument("--source", required=True, help="the source image")
    synth.add_argument("--source-pose", required=True,
                       help="joints of the source: .npy / .json 14 x 2 (x, y pixels) or an official .mat with --frame")
    synth.add_argument("--target-pose", required=True, help="joints of the target pose (same formats)")
    synth.add_argument("--frame", type=int, help="frame (1-based) of a .mat source pose (and target, without --target-frame)")
    synth.add_argument("--target-frame", type=int, help="frame (1-based) of a .mat target pose")
    synth.add_argument("--weights", help="a trained model (default: the shipped one)")
    synth.add_argument("--output", default="posewarp.png", help="picture to write: source | target pose | output")
    synth.set_defaults(func=_synthesize)
    add_precision_argument(synth, autocast_run=True)
