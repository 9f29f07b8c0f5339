"""Labelled images for classification: degraded patches labelled by distortion band, a
folder of class subfolders, or CIFAR-10's python batches."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data import IMAGE_EXTENSIONS, PatchSampler, image_set, read_image
from ..tools.data import tool_degrade_fn
from ..tools.specs import TOOL_SPECS

__all__ = ["DISTORTION_CLASSES", "ClassificationData", "distortion_patches", "folder_of_classes", "cifar10_batches"]

DISTORTION_CLASSES = tuple(spec.name for spec in TOOL_SPECS)
"""blur1..4, noise1..4, jpeg1..4: the class of a patch is the band of its one distortion."""


@dataclass
class ClassificationData:
    """Images (float N x 3 x H x W in [0, 1]) and their labels (int64 N), with class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] != 3 or len(self.images) != len(self.labels):
            raise ValueError(f"need N x 3 x H x W images and N labels, got {tuple(self.images.shape)} and "
                             f"{tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, rng: np.random.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.from_numpy(rng.integers(0, len(self), size))
        return self.images[rows], self.labels[rows]


def _to_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def distortion_patches(count: int, split: str, rng: np.random.Generator, data: str | os.PathLike | None = None,
                       patch_size: int = 32) -> ClassificationData:
    """``count`` clean patches of ``split``'s images, each degraded by one distortion drawn
    uniformly within one of the 12 bands (the class, uniform), without the tools' extra
    robustness noise: the task is to name the distortion and its level."""
    sampler = PatchSampler(image_set(None if data is None else str(data), split), patch_size)
    labels = rng.integers(0, len(DISTORTION_CLASSES), count)
    patches = [sampler.sample(rng, tool_degrade_fn(TOOL_SPECS[k], robust=False)).L for k in labels]
    return ClassificationData(_to_float(np.stack(patches)), torch.from_numpy(labels).long(), DISTORTION_CLASSES)


def folder_of_classes(root: str | os.PathLike, size: int = 32) -> ClassificationData:
    """Every image under ``root/<class>/`` (any depth), resized to ``size`` x ``size``; the
    classes are the subfolder names in sorted order."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder of class subfolders")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    if len(classes) < 2:
        raise ValueError(f"{root}: need at least two class subfolders, found {list(classes)}")
    images, labels = [], []
    for k, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(f"{root / name}: no images ({', '.join(IMAGE_EXTENSIONS)})")
        for path in files:
            image = Image.fromarray(read_image(path)).resize((size, size), Image.BICUBIC)
            images.append(np.asarray(image))
            labels.append(k)
    return ClassificationData(_to_float(np.stack(images)), torch.tensor(labels), classes)


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def cifar10_batches(root: str | os.PathLike, split: str) -> ClassificationData:
    """CIFAR-10 in its python layout: ``data_batch_1`` .. ``data_batch_5`` (train) or
    ``test_batch`` (test), each a pickled dict of ``data`` (N x 3072 uint8) and ``labels``.
    Only open files you trust: the format is Python's pickle."""
    root = Path(root)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: missing CIFAR-10 python batches {missing}")
    images, labels = [], []
    for name in names:
        with open(root / name, "rb") as f:
            try:
                batch = pickle.load(f, encoding="bytes")
            except Exception as err:  # a damaged or foreign file: say which
                raise ValueError(f"{root / name}: not a CIFAR-10 python batch ({err})") from err
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"{root / name}: data of shape {data.shape}, expected N x 3072")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.extend(batch[b"labels"])
    return ClassificationData(_to_float(np.concatenate(images)), torch.tensor(labels).long(), CIFAR10_CLASSES)
