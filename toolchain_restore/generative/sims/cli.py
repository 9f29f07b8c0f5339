"""``toolchain-restore sims``: build-bank, train, synthesize and test."""

from __future__ import annotations

import argparse

from ...config import add_precision_argument, add_settings_arguments, given_settings, settings_from_args

__all__ = ["add_sims_parser"]


def _sims_settings(args: argparse.Namespace):
    from .model import SimsSettings, preset

    given = given_settings(SimsSettings, args)
    return preset(args.preset, **given)


def _build_bank(args: argparse.Namespace) -> int:
    from ..datasets import label_count_of, synthesis_set
    from .bank import MemoryBank

    label_count = label_count_of(args.data, args.label_count)
    samples = synthesis_set(args.data, "train", label_count, args.scenes, args.height, args.width)
    bank = MemoryBank.build(samples, label_count, args.min_area, args.shape_size, args.context_size)
    bank.save(args.output)
    counts = {int(c): int(n) for c, n in zip(*__import__("numpy").unique(bank.labels, return_counts=True))}
    print(f"{len(bank)} segments from {len(samples)} layouts (per class: {counts}); wrote {args.output}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from ...training import TrainerSettings
    from .training import train_sims

    settings = _sims_settings(args)
    trainer = settings_from_args(TrainerSettings, args)
    metrics = train_sims(settings, trainer, args.output)
    print("held-out: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    print(f"wrote {args.output or f'{trainer.out_dir}/sims.safetensors'} (TensorBoard logs in {trainer.out_dir})")
    return 0


def _model_and_bank(args: argparse.Namespace):
    from .bank import MemoryBank
    from .model import load_sims
    from .sampling import load_shipped

    device = args.device if args.device != "auto" else "cpu"
    if args.weights is None and args.bank is None:
        return load_shipped(device)
    if args.weights is None:
        model, _ = load_shipped(device)
    else:
        model = load_sims(args.weights, device)
    if args.bank is not None:
        bank = MemoryBank.open(args.bank)
    elif model.settings.retrieval and model.settings.bank and args.weights is not None:
        bank = MemoryBank.open(model.settings.bank)  # the bank it was trained with
    elif model.settings.retrieval:
        _, bank = load_shipped(device)
    else:
        bank = None
    return model, bank


def _synthesize(args: argparse.Namespace) -> int:
    import numpy as np

    from ..layout import read_integer_map
    from ..scenes import procedural_split
    from .sampling import synthesize, write_sheet

    model, bank = _model_and_bank(args)
    s = model.settings
    real = None
    if args.layout:
        label = read_integer_map(args.layout)
        instance = read_integer_map(args.instance) if args.instance else label
        if instance.shape != label.shape:
            raise SystemExit(f"the instance map {args.instance} is {instance.shape}, the layout {label.shape}")
    else:
        scene = procedural_split("test", args.scene + 1, s.height, s.width)[args.scene]
        label, instance, real = scene.label.astype(np.int64), scene.instance.astype(np.int64), scene.image
    try:
        image, result = synthesize(model, bank, label, instance, args.device if args.device != "auto" else "cpu",
                                   return_canvas=True)
    except ValueError as err:
        raise SystemExit(f"sims synthesize: {err}")
    canvas = result.canvas if result is not None else None
    write_sheet(args.output, label, canvas, image, real)
    print(f"wrote {args.output}: layout, {'canvas, ' if canvas is not None else ''}output"
          f"{', real image' if real is not None else ''}")
    return 0


def _test(args: argparse.Namespace) -> int:
    from pathlib import Path

    from PIL import Image

    from ..datasets import synthesis_set
    from .sampling import evaluate_sims

    model, bank = _model_and_bank(args)
    if args.alignment is not None:
        model.settings.alignment = args.alignment
    s = model.settings
    samples = synthesis_set(args.data or s.data, "test", s.label_count, args.scenes, s.height, s.width,
                            model.size_multiple)
    samples = [samples[k] for k in range(len(samples))]
    segmenter = None
    if args.segmenter:
        from ..segmentation import load_segmenter

        segmenter = load_segmenter(args.segmenter)
    metrics, images = evaluate_sims(model, bank, samples, segmenter, args.device if args.device != "auto" else "cpu")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for sample, image in zip(samples, images):
        Image.fromarray(image).save(out / f"{sample.name}.png")
    print(", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    print(f"wrote {len(images)} images to {out}")
    return 0


def add_sims_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``sims`` subcommand and its verbs to the main command's subparsers."""
    from ...training import TrainerSettings
    from .model import SimsSettings

    p = sub.add_parser("sims", help="SIMS: semi-parametric image synthesis from layouts (build-bank / train / "
                                    "synthesize / test)")
    verbs = p.add_subparsers(dest="verb", required=True)

    v = verbs.add_parser("build-bank", help="cut the training layouts into segments and write the memory bank folder")
    v.add_argument("--data", default="procedural", help="'procedural' or a folder in pix2pixHD's layout")
    v.add_argument("--label-count", type=int, default=None, help="labels of a folder's maps (procedural: 7)")
    v.add_argument("--scenes", type=int, default=100, help="procedural training layouts")
    v.add_argument("--height", type=int, default=128, help="procedural layout height")
    v.add_argument("--width", type=int, default=256, help="procedural layout width")
    v.add_argument("--min-area", type=int, default=16, help="smallest component that becomes a segment, pixels")
    v.add_argument("--shape-size", type=int, default=32, help="side of the mask thumbnails")
    v.add_argument("--context-size", type=int, default=16, help="side of the context thumbnails")
    v.add_argument("--output", default="runs/sims/bank", help="the bank folder to write")
    v.set_defaults(func=_build_bank)

    v = verbs.add_parser("train", help="train the synthesis, alignment and ordering networks (resumes)")
    v.add_argument("--preset", choices=["cpu", "paper"], default="cpu",
                   help="cpu: 128x256 procedural scenes on a CPU; paper: the reference's scale on a GPU")
    v.add_argument("--output", default=None, help="where to write the model (default: OUT_DIR/sims.safetensors)")
    add_settings_arguments(v, SimsSettings, only_given=True)
    add_settings_arguments(v, TrainerSettings)
    v.set_defaults(func=_train, out_dir="runs/sims", lr=5e-4, schedule="cosine")

    for name, func, text in (("synthesize", _synthesize, "one layout (default: a procedural test scene) through the "
                              "whole pipeline; writes layout | canvas | output (| real) as one picture"),
                             ("test", _test, "synthesise held-out layouts, write them, report L1 / PSNR (and "
                              "segmentation agreement with --segmenter)")):
        v = verbs.add_parser(name, help=text)
        v.add_argument("--weights", default=None, help="model file (default: the shipped one)")
        v.add_argument("--bank", default=None, help="memory bank folder (default: the one --weights was trained "
                                                    "with, else the shipped one)")
        v.add_argument("--device", default="auto", help="auto (cpu), cpu or cuda")
        v.set_defaults(func=func)
        add_precision_argument(v, autocast_run=True)
        if name == "synthesize":
            v.add_argument("layout", nargs="?", default=None, help="label map PNG (integer labels); default: a "
                                                                      "procedural test scene")
            v.add_argument("--instance", default=None, help="instance map PNG for LAYOUT (Cityscapes ids)")
            v.add_argument("--scene", type=int, default=0, help="which procedural test scene, without LAYOUT")
            v.add_argument("--output", default="sims.png", help="the picture to write")
        else:
            v.add_argument("--data", default=None, help="'procedural' or a folder (default: the model's)")
            v.add_argument("--scenes", type=int, default=16, help="procedural held-out layouts")
            v.add_argument("--segmenter", default=None, help="segmentation network for the agreement scores")
            v.add_argument("--alignment", choices=["stn", "box"], default=None,
                           help="override the model's alignment (box: the box-fit fallback)")
            v.add_argument("--output", default="runs/sims/test", help="folder for the synthesised images")


def main(argv: list[str] | None = None) -> int:
    """``python -m toolchain_restore.generative.sims.cli VERB ...``: the same verbs as ``toolchain-restore sims``."""
    parser = argparse.ArgumentParser(prog="toolchain-restore-sims")
    add_sims_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sims", *(argv if argv is not None else __import__("sys").argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
