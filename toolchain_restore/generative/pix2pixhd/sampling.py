"""Synthesis from a layout with a trained model: one or several outputs (different
instance appearances from the feature clusters), held-out evaluation, picture sheets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...errors import InvalidInput
from ...serialization import shipped_weights
from ..datasets import SynthesisSample, from_model_image, to_model_image
from ..scenes import colorize_labels
from .clusters import FeatureClusters, instance_feature_map
from .model import Pix2PixHD, load_pix2pixhd
from .training import synthesis_metrics

__all__ = ["synthesize", "evaluate_synthesis", "write_sheet", "load_shipped", "SHIPPED_MODEL", "SHIPPED_CLUSTERS"]

SHIPPED_MODEL = "pix2pixhd.safetensors"
SHIPPED_CLUSTERS = "pix2pixhd-clusters.safetensors"


def load_shipped(device: str | torch.device = "cpu") -> tuple[Pix2PixHD, FeatureClusters | None]:
    """The model shipped for the procedural scenes and its feature clusters."""
    model = load_pix2pixhd(shipped_weights(SHIPPED_MODEL), device)
    clusters = FeatureClusters.load(shipped_weights(SHIPPED_CLUSTERS)) if model.encoder is not None else None
    return model, clusters


@torch.no_grad()
def synthesize(model: Pix2PixHD, label: np.ndarray, instance: np.ndarray | None = None,
               clusters: FeatureClusters | None = None, count: int = 1, seed: int = 0,
               choice: dict[int, int] | None = None, device: str | torch.device = "cpu") -> list[np.ndarray]:
    """``count`` images (H x W x 3 uint8) for one layout. With an encoder, each output
    draws every instance's appearance from its class's clusters (``choice`` pins
    instances to clusters: instance id -> cluster index); without one the outputs are
    identical, as the generator is deterministic.

    Raises:
        ValueError: the model needs clusters and none were given, or a bad ``choice``.
    """
    instance = label if instance is None else instance
    if model.encoder is not None and clusters is None:
        raise InvalidInput("this model synthesises from instance features: give its feature clusters file "
                           "(--clusters, made by toolchain-restore pix2pixhd encode-features)")
    rng = np.random.default_rng(seed)
    model = model.to(device).eval()
    label_t = torch.from_numpy(np.ascontiguousarray(label)).long()[None].to(device)
    instance_t = torch.from_numpy(np.ascontiguousarray(instance)).long()[None].to(device)
    outputs = []
    for _ in range(count):
        features = None
        if model.encoder is not None:
            features = instance_feature_map(label, instance, clusters, rng, choice)[None].to(device)
        outputs.append(from_model_image(model.generate(label_t, instance_t, features=features)[0]))
    return outputs


@torch.no_grad()
def evaluate_synthesis(images: Sequence[np.ndarray], samples: Sequence[SynthesisSample],
                       segmenter=None) -> dict[str, float]:
    """L1 and PSNR of synthesised images to the real ones and, given a segmenter, its pixel
    accuracy and mean IoU on the synthesised images against their layouts."""
    fake = torch.stack([to_model_image(x) for x in images])
    real = torch.stack([to_model_image(s.image) for s in samples])
    metrics = synthesis_metrics(fake, real)
    if segmenter is not None:
        from ..segmentation import segmentation_agreement

        labels = torch.stack([torch.from_numpy(np.ascontiguousarray(s.label)).long() for s in samples])
        scores = segmentation_agreement(segmenter, fake, labels)
        metrics.update(pixel_accuracy=scores["pixel_accuracy"], mean_iou=scores["mean_iou"])
    return metrics


def write_sheet(path: str | os.PathLike, label: np.ndarray, outputs: Sequence[np.ndarray],
                real: np.ndarray | None = None) -> None:
    """One picture: the layout, each output, then the real image if given, side by side."""
    from PIL import Image

    layout = colorize_labels(label)
    tiles = [layout, *outputs] + ([real] if real is not None else [])
    gap = np.full((label.shape[0], 4, 3), 255, np.uint8)
    row = np.concatenate([x for tile in tiles for x in (tile, gap)][:-1], axis=1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row).save(path)
