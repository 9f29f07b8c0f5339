"""``toolchain-restore sims``: build-bank, train, synthesize and test.

Each verb's options are a settings dataclass below (or the model's and the trainer's);
:data:`SIMS_COMMAND` is this package's entry in the command table."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ...config import Command, CommandParser, DeviceSettings, Preset, add_commands, option
from ...errors import InvalidInput, positive, run_reporting
from ...training import TrainerSettings, is_main_process
from ..datasets import LayoutSource
from .bank import MemoryBank, SegmentSettings
from .model import Sims, SimsSettings, preset
from .training import TRAINER_DEFAULTS

__all__ = ["SIMS_COMMAND", "add_sims_parser", "main", "SimsBankSettings", "SimsTrainOptions", "SimsModelSettings",
           "SimsSynthesizeSettings", "SimsTestSettings"]


@dataclass(kw_only=True)
class SimsBankSettings(SegmentSettings, LayoutSource):
    """sims build-bank: the training layouts cut into segments, written as a memory bank folder."""

    scenes: int = 100
    """Procedural training layouts."""
    output: str = "runs/sims/bank"
    """The bank folder to write."""


@dataclass(kw_only=True)
class SimsTrainOptions:
    """sims train: the preset the model options change, and the output file."""

    preset: Literal["cpu", "paper"] = "cpu"
    """cpu: 128x256 procedural scenes on a CPU; paper: the reference's scale on a GPU."""
    output: str | None = None
    """Where to write the model (default: OUT_DIR/sims.safetensors)."""


@dataclass(kw_only=True)
class SimsModelSettings(DeviceSettings):
    """A trained SIMS model and the memory bank it retrieves from."""

    weights: str | None = None
    """Model file (default: the shipped one)."""
    bank: str | None = None
    """Memory bank folder (default: the one --weights was trained with, else the shipped one)."""


@dataclass(kw_only=True)
class SimsSynthesizeSettings(SimsModelSettings):
    """sims synthesize: one layout through the whole pipeline."""

    layout: str | None = option(None, deprecated="LAYOUT")
    """Label map PNG (integer labels); default: a procedural test scene. (Once a positional LAYOUT, still read, with a warning.)"""
    instance: str | None = None
    """Instance map PNG for --layout (Cityscapes ids)."""
    scene: int = 0
    """Which procedural test scene (0..999999), without --layout."""
    output: str = "sims.png"
    """The picture to write."""


@dataclass(kw_only=True)
class SimsTestSettings(SimsModelSettings):
    """sims test: the held-out layouts, synthesised and scored."""

    data: str | None = None
    """'procedural' or a folder (default: the model's)."""
    scenes: int = 16
    """Procedural held-out layouts."""
    segmenter: str | None = None
    """Segmentation network for the agreement scores."""
    alignment: Literal["stn", "box"] | None = None
    """Override the model's alignment (box: the box-fit fallback)."""
    output: str = "runs/sims/test"
    """Folder for the synthesised images."""


def _build_bank(s: SimsBankSettings) -> int:
    from ..datasets import folder_options, label_count_of, synthesis_set

    positive(s.scenes, "--scenes")
    label_count = label_count_of(s.data, s.label_count, s.layout, s.cityscapes_labels)
    samples = synthesis_set(s.data, "train", label_count, s.scenes, s.height, s.width, **folder_options(s))
    bank = MemoryBank.build(samples, label_count, s.min_area, s.shape_size, s.context_size)
    bank.save(s.output)
    counts = {int(c): int(n) for c, n in zip(*np.unique(bank.labels, return_counts=True))}
    print(f"{len(bank)} segments from {len(samples)} layouts (per class: {counts}); wrote {s.output}")
    return 0


def _train(options: SimsTrainOptions, settings: SimsSettings, trainer: TrainerSettings) -> int:
    from .training import train_sims

    metrics = train_sims(settings, trainer, options.output)
    if not is_main_process():  # the other torchrun processes trained alongside; rank 0 reports
        return 0
    note = _ordering_note(settings)
    if note:
        print(note)
    print("held-out: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    print(f"wrote {options.output or f'{trainer.out_dir}/sims.safetensors'} (TensorBoard logs in {trainer.out_dir})")
    return 0


def _ordering_note(settings: SimsSettings) -> str | None:
    """The log line of a model whose ordering network is (or was) not trained; None when it is,
    or when it does not retrieve (no segments to order)."""
    from .model import learns_ordering
    from .ordering import ORDER_FALLBACK

    if learns_ordering(settings) or not settings.retrieval:
        return None
    return (f"note: the ordering network is not trained on {settings.data} (no depth-order labels there); "
            f"synthesis pastes segments {ORDER_FALLBACK}")


def _model_and_bank(s: SimsModelSettings) -> tuple[Sims, MemoryBank | None]:
    from .model import load_sims
    from .sampling import load_shipped

    device = s.torch_device()
    if s.weights is None and s.bank is None:
        return load_shipped(device)
    if s.weights is None:
        model, _ = load_shipped(device)
    else:
        model = load_sims(s.weights, device)
    note = _ordering_note(model.settings)
    if note:
        print(note)
    if s.bank is not None:
        bank = MemoryBank.open(s.bank)
        if model.settings.retrieval and bank.label_count != model.settings.label_count:
            raise InvalidInput(f"--bank {s.bank}: a bank of {bank.label_count} labels, but the model has "
                               f"{model.settings.label_count} (a bank of other data?)")
    elif model.settings.retrieval and model.settings.bank and s.weights is not None:
        bank = MemoryBank.open(model.settings.bank)  # the bank it was trained with
    elif model.settings.retrieval:
        _, bank = load_shipped(device)
    else:
        bank = None
    return model, bank


def _synthesize(s: SimsSynthesizeSettings) -> int:
    from ...data.image_io import check_writable
    from ..user_layout import layout_to_synthesize
    from .sampling import synthesize, write_sheet

    check_writable(s.output)
    model, bank = _model_and_bank(s)
    m = model.settings
    label, instance, real = layout_to_synthesize(s.layout, s.instance, s.scene, m.label_count, model.size_multiple,
                                                 m.height, m.width)
    image, result = synthesize(model, bank, label, instance, s.torch_device(), return_canvas=True)
    canvas = result.canvas if result is not None else None
    write_sheet(s.output, label, canvas, image, real)
    print(f"wrote {s.output}: layout, {'canvas, ' if canvas is not None else ''}output"
          f"{', real image' if real is not None else ''}")
    return 0


def _test(s: SimsTestSettings) -> int:
    from PIL import Image

    from ..datasets import folder_options, synthesis_set
    from ..segmentation import load_segmenter
    from .sampling import evaluate_sims

    positive(s.scenes, "--scenes")
    model, bank = _model_and_bank(s)
    if s.alignment is not None:
        model.settings.alignment = s.alignment
    m = model.settings
    segmenter = load_segmenter(s.segmenter, s.torch_device(), m.label_count) if s.segmenter else None
    samples = synthesis_set(s.data or m.data, "test", m.label_count, s.scenes, m.height, m.width, model.size_multiple,
                            **folder_options(m, model.size_multiple))
    samples = [samples[k] for k in range(len(samples))]
    metrics, images = evaluate_sims(model, bank, samples, segmenter, s.torch_device())
    out = Path(s.output)
    out.mkdir(parents=True, exist_ok=True)
    for sample, image in zip(samples, images):
        Image.fromarray(image).save(out / f"{sample.name}.png")
    print(", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    print(f"wrote {len(images)} images to {out}")
    return 0


SIMS_COMMAND = Command(
    "sims", "SIMS: semi-parametric image synthesis from layouts (build-bank / train / synthesize / test)",
    verbs=(
        Command("build-bank", "cut the training layouts into segments and write the memory bank folder", _build_bank,
                (SimsBankSettings,)),
        Command("train", "train the synthesis, alignment and ordering networks (resumes)", _train,
                (SimsTrainOptions, SimsSettings, TrainerSettings), TRAINER_DEFAULTS, preset=Preset(SimsSettings, preset)),
        Command("synthesize", "one layout (default: a procedural test scene) through the whole pipeline; writes "
                              "layout | canvas | output (| real) as one picture", _synthesize, (SimsSynthesizeSettings,),
                autocast=True),
        Command("test", "synthesise held-out layouts, write them, report L1 / PSNR (and segmentation agreement with "
                        "--segmenter)", _test, (SimsTestSettings,), autocast=True),
    ))
"""The ``sims`` entry of the command table."""


def add_sims_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``sims`` subcommand and its verbs to the main command's subparsers."""
    add_commands(sub, [SIMS_COMMAND])


def main(argv: list[str] | None = None) -> int:
    """``python -m toolchain_restore.generative.sims.cli VERB ...``: the same verbs as ``toolchain-restore sims``."""
    parser = CommandParser(prog="toolchain-restore-sims")
    add_sims_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sims", *(argv if argv is not None else sys.argv[1:])])
    return run_reporting(args.func, args)


if __name__ == "__main__":
    raise SystemExit(main())
