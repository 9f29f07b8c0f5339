"""``toolchain-restore pix2pixhd``: train, export, test, sample and encode-features.

Each verb's options are a settings dataclass below (or the model's and the trainer's);
:data:`PIX2PIXHD_COMMAND` is this package's entry in the command table."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from ...config import Command, DeviceSettings, Preset, add_commands, option
from ...errors import InvalidInput, positive
from ...training import TrainerSettings, is_main_process
from .clusters import FeatureClusters
from .model import Pix2PixHD, Pix2PixHDSettings, preset
from .training import TRAINER_DEFAULTS

__all__ = ["PIX2PIXHD_COMMAND", "add_pix2pixhd_parser", "Pix2PixHDTrainOptions", "Pix2PixHDExportSettings",
           "Pix2PixHDModelSettings", "Pix2PixHDEncodeSettings", "Pix2PixHDSampleSettings", "Pix2PixHDTestSettings"]


@dataclass(kw_only=True)
class Pix2PixHDTrainOptions:
    """pix2pixhd train: the preset the model options change, the stages, the output file."""

    preset: Literal["cpu", "paper", "pix2pix"] = "cpu"
    """cpu: narrow networks for 128x256 procedural scenes; paper: the reference's for 1024x2048 on a GPU; pix2pix: the single-scale U-Net baseline at the cpu budget."""
    global_iterations: int | None = None
    """Steps of the global stage (default: --iterations)."""
    output: str | None = None
    """Where to write the model (default: OUT_DIR/pix2pixhd.safetensors)."""


@dataclass(kw_only=True)
class Pix2PixHDExportSettings:
    """pix2pixhd export: a trained model, and where its sampling-only copy goes."""

    weights: str
    """A trained model file."""
    output: str
    """Where to write the small file."""


@dataclass(kw_only=True)
class Pix2PixHDModelSettings(DeviceSettings):
    """A trained model, and the layouts it is run on."""

    weights: str | None = None
    """Model file (default: the shipped one)."""
    seed: int = 0
    """Seed of the cluster choices."""
    data: str | None = None
    """'procedural' or a folder in the official layout (default: the model's)."""


@dataclass(kw_only=True)
class Pix2PixHDEncodeSettings(Pix2PixHDModelSettings):
    """pix2pixhd encode-features: the model whose encoder describes every training instance."""

    # A field, not a bare annotation: a bare one would take the base class's None as its default.
    weights: str = field()
    """Model file."""
    num_clusters: int = option(10, deprecated="--clusters")
    """K-means clusters per class (reference: 10); --clusters, its old spelling, names a clusters file elsewhere."""
    scenes: int | None = None
    """Procedural training scenes (default: the model's)."""
    output: str = "runs/pix2pixhd/clusters.safetensors"
    """Where to write the clusters."""


@dataclass(kw_only=True)
class _ClusteredModelSettings(Pix2PixHDModelSettings):
    """A trained model with the feature clusters its sampling draws appearances from."""

    clusters: str | None = None
    """Feature clusters file of the model (from encode-features); default: the shipped model's, without --weights."""


@dataclass(kw_only=True)
class Pix2PixHDSampleSettings(_ClusteredModelSettings):
    """pix2pixhd sample: several outputs for one layout."""

    layout: str | None = None
    """Label map PNG (integer labels); default: a procedural test scene."""
    instance: str | None = None
    """Instance map PNG for --layout."""
    scene: int = 0
    """Which procedural test scene (0..999999), without --layout."""
    outputs: int = 3
    """Outputs, each with its own instance appearances."""
    choose: str | None = None
    """Pin instances to clusters: INSTANCE=CLUSTER,..."""
    output: str = "pix2pixhd_sample.png"
    """The picture to write."""


@dataclass(kw_only=True)
class Pix2PixHDTestSettings(_ClusteredModelSettings):
    """pix2pixhd test: the held-out layouts, synthesised and scored."""

    scenes: int = 16
    """Procedural held-out scenes."""
    segmenter: str | None = None
    """Segmentation network for the agreement scores (default for procedural scenes: the shipped one)."""
    output: str = "runs/pix2pixhd/test"
    """Folder for the synthesised images."""


def _pix2pixhd_train(options: Pix2PixHDTrainOptions, settings: Pix2PixHDSettings, trainer: TrainerSettings) -> int:
    from . import train_pix2pixhd

    # hold defaults to None here: half of however many --iterations were asked for.
    trainer = replace(trainer, hold=trainer.iterations // 2 if trainer.hold is None else trainer.hold)
    metrics = train_pix2pixhd(settings, trainer, options.global_iterations, options.output)
    if not is_main_process():  # the other torchrun processes trained alongside; rank 0 reports
        return 0
    print("held-out: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    print(f"wrote {options.output or f'{trainer.out_dir}/pix2pixhd.safetensors'} (TensorBoard logs beside it)")
    return 0


def _pix2pixhd_model(s: _ClusteredModelSettings) -> tuple[Pix2PixHD, FeatureClusters | None]:
    """The model (--weights, else the shipped one) on --device, and its clusters (--clusters,
    else the shipped model's own): both options are honoured with or without the other."""
    from . import load_pix2pixhd
    from .sampling import load_shipped

    device = s.torch_device()
    if s.weights is None:
        model, clusters = load_shipped(device)
    else:
        model, clusters = load_pix2pixhd(s.weights, device), None
    if s.clusters is not None:
        clusters = FeatureClusters.load(s.clusters)
        _check_clusters(model, clusters, s.clusters)
    return model, clusters


def _check_clusters(model: Pix2PixHD, clusters: FeatureClusters, path: str) -> None:
    m = model.settings
    if model.encoder is None:
        raise InvalidInput(f"--clusters {path}: this model has no instance-feature encoder (it was trained with "
                           f"features=False), so it takes no clusters")
    if clusters.feature_channels != m.feature_channels:
        raise InvalidInput(f"--clusters {path}: features of {clusters.feature_channels} channels, but this model's "
                           f"encoder makes {m.feature_channels} (clusters of another model?)")


def _pix2pixhd_encode_features(s: Pix2PixHDEncodeSettings) -> int:
    from ..datasets import folder_options, synthesis_set
    from . import load_pix2pixhd
    from .clusters import cluster_features, encode_instances

    positive(s.num_clusters, "--num-clusters")
    device = s.torch_device()
    model = load_pix2pixhd(s.weights, device)
    m = model.settings
    samples = synthesis_set(s.data or m.data, "train", m.label_count, s.scenes or m.train_scenes, m.height,
                            m.width, model.size_multiple if m.pad else 1, **folder_options(m, model.size_multiple))
    features = encode_instances(model, samples, device=device)
    clusters = cluster_features(features, s.num_clusters, s.seed)
    clusters.save(s.output)
    print(", ".join(f"class {k}: {len(features[k])} instances -> {len(v)} clusters" for k, v in clusters.centres.items()))
    print(f"wrote {s.output}")
    return 0


def _parse_choice(text: str | None) -> dict[int, int]:
    if not text:
        return {}
    try:
        return {int(k): int(v) for k, v in (item.split("=") for item in text.split(","))}
    except ValueError:
        raise InvalidInput(f"--choose takes INSTANCE=CLUSTER pairs separated by commas, e.g. 5001=2,6000=0; "
                           f"got {text!r}") from None


def _pix2pixhd_sample(s: Pix2PixHDSampleSettings) -> int:
    from ...data.image_io import check_writable
    from ..user_layout import layout_to_synthesize
    from .sampling import synthesize, write_sheet

    check_writable(s.output)
    positive(s.outputs, "--outputs")
    choice = _parse_choice(s.choose)
    model, clusters = _pix2pixhd_model(s)
    m = model.settings
    label, instance, real = layout_to_synthesize(s.layout, s.instance, s.scene, m.label_count, model.size_multiple,
                                                 m.height, m.width)
    outputs = synthesize(model, label, instance, clusters, s.outputs, s.seed, choice, device=s.torch_device())
    write_sheet(s.output, label, outputs, real)
    ids = [int(i) for i in np.unique(instance) if i >= 1000]
    print(f"wrote {s.output}: layout, {len(outputs)} output(s){', real image' if real is not None else ''}; "
          f"instances you can --choose: {ids[:12]}{' ...' if len(ids) > 12 else ''}")
    return 0


def _segmenter(path: str | None, data: str, label_count: int, device):
    """The segmenter of ``pix2pixhd test``'s agreement scores on ``device``: --segmenter, else
    the shipped one for procedural scenes, else None."""
    from ...serialization import shipped_weights
    from ..segmentation import load_segmenter

    if path is None and data != "procedural":
        return None
    return load_segmenter(path or shipped_weights("segmenter.safetensors"), device, label_count)


def _pix2pixhd_test(s: Pix2PixHDTestSettings) -> int:
    from PIL import Image

    from ..datasets import folder_options, synthesis_set
    from .sampling import evaluate_synthesis, synthesize

    positive(s.scenes, "--scenes")
    model, clusters = _pix2pixhd_model(s)
    m = model.settings
    device = s.torch_device()
    segmenter = _segmenter(s.segmenter, s.data or m.data, m.label_count, device)
    data = synthesis_set(s.data or m.data, "test", m.label_count, s.scenes, m.height, m.width,
                         model.size_multiple if m.pad else 1, **folder_options(m, model.size_multiple))
    samples = [data[k] for k in range(len(data))]
    # Every image is made before the first is written: a problem leaves the output folder as it was.
    images = [synthesize(model, x.label, x.instance, clusters, 1, s.seed + k, device=device)[0]
              for k, x in enumerate(samples)]
    out = Path(s.output)
    out.mkdir(parents=True, exist_ok=True)
    for sample, image in zip(samples, images):
        Image.fromarray(image).save(out / f"{sample.name}.png")
    if all(x.image is not None for x in samples):
        metrics = evaluate_synthesis(images, samples, segmenter)
        print(", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    print(f"wrote {len(images)} images to {out}")
    return 0


def _pix2pixhd_export(s: Pix2PixHDExportSettings) -> int:
    from . import load_pix2pixhd, save_pix2pixhd

    model = load_pix2pixhd(s.weights)
    save_pix2pixhd(model, s.output, discriminator=False, half=True, exported_from=str(s.weights))
    print(f"wrote {s.output}: generator{' and encoder' if model.encoder is not None else ''} in float16")
    return 0


PIX2PIXHD_COMMAND = Command(
    "pix2pixhd", "pix2pixHD: image synthesis from semantic layouts (train / test / encode-features / sample)",
    verbs=(
        Command("train", "the staged schedule: global generator, then the enhancer(s)", _pix2pixhd_train,
                (Pix2PixHDTrainOptions, Pix2PixHDSettings, TrainerSettings), {**TRAINER_DEFAULTS, "hold": None},
                preset=Preset(Pix2PixHDSettings, preset)),
        Command("export", "a small file that only samples: no discriminators, float16", _pix2pixhd_export,
                (Pix2PixHDExportSettings,)),
        Command("test", "synthesise the held-out layouts, write them, report L1 / PSNR and segmentation agreement "
                        "(procedural scenes: with the shipped segmenter)", _pix2pixhd_test, (Pix2PixHDTestSettings,),
                autocast=True),
        Command("sample", "several outputs for one layout (default: a procedural test scene with the shipped model), "
                          "as one picture", _pix2pixhd_sample, (Pix2PixHDSampleSettings,), autocast=True),
        Command("encode-features", "encode every training instance and cluster the features per class (K-means), "
                                   "for sample / test", _pix2pixhd_encode_features, (Pix2PixHDEncodeSettings,),
                autocast=True),
    ))
"""The ``pix2pixhd`` entry of the command table."""


def add_pix2pixhd_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``pix2pixhd`` subcommand and its verbs to the main command's subparsers."""
    add_commands(sub, [PIX2PIXHD_COMMAND])
