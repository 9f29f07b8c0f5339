"""Instance-level appearance control: encode every training instance with the trained
encoder, cluster the features per semantic class with K-means, and at inference give each
instance of a layout a cluster centre (at random, or the one the user names) to choose
its appearance."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from safetensors import SafetensorError

from ...errors import InvalidInput
from ...serialization import WeightsError, read_metadata
from ..datasets import SynthesisSample, to_model_image
from .model import Pix2PixHD

__all__ = ["encode_instances", "kmeans", "FeatureClusters", "cluster_features", "instance_feature_map",
           "CLUSTERS_KIND"]

CLUSTERS_KIND = "toolchain-restore/pix2pixhd-clusters"


@torch.no_grad()
def encode_instances(model: Pix2PixHD, samples: Sequence[SynthesisSample], device: str | torch.device = "cpu",
                     min_pixels: int = 16) -> dict[int, np.ndarray]:
    """One feature per instance of every sample (the encoder's instance average), grouped
    by the instance's class: label -> n x C array. Instances under ``min_pixels`` are skipped."""
    if model.encoder is None:
        raise ValueError("this model has no instance-feature encoder (it was trained with features=False)")
    model = model.to(device).eval()
    found: dict[int, list[np.ndarray]] = {}
    for s in samples:
        if s.image is None:
            raise ValueError(f"{s.name}: encoding features needs the real image")
        instance = torch.from_numpy(np.ascontiguousarray(s.instance)).long()[None].to(device)
        features = model.encoder(to_model_image(s.image)[None].to(device), instance)[0].float().cpu().numpy()
        for ident in np.unique(s.instance):
            mask = s.instance == ident
            if mask.sum() < min_pixels:
                continue
            label = int(np.bincount(s.label[mask].ravel()).argmax())
            row, col = np.argwhere(mask)[0]
            found.setdefault(label, []).append(features[:, row, col])
    return {label: np.stack(rows) for label, rows in sorted(found.items())}


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 100) -> np.ndarray:
    """Lloyd's K-means with k-means++ seeding: k x C centres (fewer when there are fewer
    distinct points)."""
    points = np.asarray(points, dtype=np.float64)
    k = min(k, len(np.unique(points, axis=0)))
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        distance = np.min(((points[:, None] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        centres.append(points[rng.choice(len(points), p=distance / distance.sum())])
    centres = np.array(centres)
    for _ in range(iterations):
        nearest = ((points[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        moved = np.array([points[nearest == j].mean(0) if (nearest == j).any() else centres[j] for j in range(k)])
        if np.allclose(moved, centres):
            break
        centres = moved
    return centres


class FeatureClusters:
    """K-means centres per semantic class: ``centres[label]`` is k x C."""

    def __init__(self, centres: dict[int, np.ndarray], feature_channels: int) -> None:
        self.centres = {int(k): np.asarray(v, dtype=np.float32) for k, v in centres.items()}
        self.feature_channels = feature_channels

    def save(self, path: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        from ...serialization import atomic_write

        tensors = {f"class_{k}": torch.from_numpy(v) for k, v in self.centres.items()}
        metadata = {"kind": CLUSTERS_KIND, "config": f'{{"feature_channels": {self.feature_channels}}}'}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureClusters":
        from safetensors.torch import load_file

        kind, config = read_metadata(path)
        if kind != CLUSTERS_KIND:
            raise WeightsError(f"{path}: holds {kind or 'unknown'!r}, expected feature clusters ({CLUSTERS_KIND!r}); "
                               "make them with `toolchain-restore pix2pixhd encode-features`")
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise WeightsError(f"{path}: not a readable clusters file ({err})") from err
        return cls({int(k.removeprefix("class_")): v.numpy() for k, v in tensors.items()}, config["feature_channels"])


def cluster_features(features: dict[int, np.ndarray], clusters: int = 10, seed: int = 0) -> FeatureClusters:
    """K-means per class (the reference: up to 10 clusters)."""
    rng = np.random.default_rng(seed)
    channels = next(iter(features.values())).shape[1] if features else 0
    return FeatureClusters({label: kmeans(rows, clusters, rng) for label, rows in features.items()}, channels)


def instance_feature_map(label: np.ndarray, instance: np.ndarray, clusters: FeatureClusters,
                         rng: np.random.Generator, choice: dict[int, int] | None = None) -> torch.Tensor:
    """C x H x W features for a layout: every instance gets one centre of its class's
    clusters, the one ``choice`` names (instance id -> cluster index) or a random one.
    Classes without clusters get zeros.

    Raises:
        InvalidInput: ``choice`` names an instance not in the layout or a cluster its class lacks.
    """
    choice = dict(choice or {})
    out = np.zeros((clusters.feature_channels, *label.shape), np.float32)
    ids = np.unique(instance)
    unknown = sorted(set(choice) - set(int(i) for i in ids))
    if unknown:
        raise InvalidInput(f"--choose: no instance {unknown} in this layout; its instances are {[int(i) for i in ids]}")
    for ident in ids:
        mask = instance == ident
        label_of = int(np.bincount(label[mask].ravel()).argmax())
        centres = clusters.centres.get(label_of)
        pick = choice.pop(int(ident), None)
        if centres is None:
            if pick is not None:
                raise InvalidInput(f"--choose: instance {int(ident)} is of class {label_of}, which has no feature clusters")
            continue
        if pick is None:
            pick = int(rng.integers(len(centres)))
        elif not 0 <= pick < len(centres):
            raise InvalidInput(f"--choose: instance {int(ident)} (class {label_of}) has clusters 0..{len(centres) - 1}, "
                               f"not {pick}")
        out[:, mask] = centres[pick][:, None]
    return torch.from_numpy(out)
