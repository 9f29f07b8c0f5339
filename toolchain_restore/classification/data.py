"""Labelled images for classification: degraded patches labelled by distortion band, a
folder of class subfolders, or CIFAR-10's / CIFAR-100's python batches."""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data import IMAGE_EXTENSIONS, ImageReadError, PatchSampler, image_set, read_image
from ..data.screening import usable_images
from ..errors import InvalidInput, MissingInput, NotAFolder
from ..tools.data import tool_degrade_fn
from ..tools.specs import TOOL_SPECS

__all__ = ["DISTORTION_CLASSES", "ClassificationData", "distortion_patches", "folder_of_classes", "cifar10_batches",
           "cifar100_batches", "cifar_folder"]

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
            raise InvalidInput(f"need N x 3 x H x W images and N labels, got {tuple(self.images.shape)} and "
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


def _class_images(folder: Path, size: int) -> list[np.ndarray]:
    """The images under one class folder (any depth), resized to ``size`` x ``size``: every
    file's header checked first (each bad one named in a warning), then decoded, a file that
    fails to decode named and skipped.

    Raises:
        ValueError: the folder holds no image files.
        ImageReadError: none of them is usable.
    """
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InvalidInput(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    images = []
    for path in usable_images(files, str(folder)):
        try:
            image = read_image(path)
        except ImageReadError as err:
            warnings.warn(f"skipping unreadable image {err}", stacklevel=2)
            continue
        images.append(np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC)))
    if not images:
        raise ImageReadError(f"{folder}: none of its {len(files)} image files could be decoded (each is named in a "
                             f"warning above)")
    return images


def folder_of_classes(root: str | os.PathLike, size: int = 32) -> ClassificationData:
    """Every usable image under ``root/<class>/`` (any depth), resized to ``size`` x ``size``;
    the classes are the subfolder names in sorted order."""
    root = Path(root)
    if not root.is_dir():
        raise NotAFolder(f"{root} is not a folder of class subfolders")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    if len(classes) < 2:
        raise InvalidInput(f"{root}: need at least two class subfolders, found {list(classes)}")
    images, labels = [], []
    for k, name in enumerate(classes):
        found = _class_images(root / name, size)
        images.extend(found)
        labels.extend([k] * len(found))
    return ClassificationData(_to_float(np.stack(images)), torch.tensor(labels), classes)


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _unpickle(path: Path, what: str) -> dict:
    """One pickled dict of a CIFAR python folder (keys as bytes).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a pickled dict (a damaged or foreign file), named with ``what`` it should be.
    """
    if not path.is_file():
        raise MissingInput(f"no {what} at {path}")
    with open(path, "rb") as f:
        try:
            content = pickle.load(f, encoding="bytes")
        except Exception as err:  # a damaged or foreign file: say which
            raise InvalidInput(f"{path}: not a {what} ({err})") from err
    if not isinstance(content, dict):
        raise InvalidInput(f"{path}: not a {what} (a pickled {type(content).__name__}, expected a dict)")
    return content


def _cifar_images(batch: dict, labels_key: bytes, path: Path, what: str) -> tuple[np.ndarray, list[int]]:
    """N x 32 x 32 x 3 uint8 images and their labels from one CIFAR batch (channel-major rows)."""
    if b"data" not in batch or labels_key not in batch:
        raise InvalidInput(f"{path}: a {what} holds b'data' and {labels_key!r}; found keys {sorted(batch)}")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise InvalidInput(f"{path}: data of shape {data.shape}, expected N x 3072")
    labels = [int(v) for v in batch[labels_key]]
    if len(labels) != len(data):
        raise InvalidInput(f"{path}: {len(data)} images but {len(labels)} {labels_key.decode()}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _labelled(images: list[np.ndarray], labels: list[int], classes: tuple[str, ...], where: Path) -> ClassificationData:
    if labels and (min(labels) < 0 or max(labels) >= len(classes)):
        raise InvalidInput(f"{where}: labels span {min(labels)}..{max(labels)}, outside 0..{len(classes) - 1}")
    return ClassificationData(_to_float(np.concatenate(images)), torch.tensor(labels).long(), classes)


def cifar10_batches(root: str | os.PathLike, split: str) -> ClassificationData:
    """CIFAR-10 in its python layout (``cifar-10-batches-py/``): ``data_batch_1`` ..
    ``data_batch_5`` (train) or ``test_batch`` (test), each a pickled dict of ``data``
    (N x 3072 uint8) and ``labels``. Only open files you trust: the format is Python's pickle."""
    root = Path(root)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise MissingInput(f"{root}: missing CIFAR-10 python batches {missing}")
    images, labels = [], []
    for name in names:
        batch = _unpickle(root / name, "CIFAR-10 python batch")
        array, found = _cifar_images(batch, b"labels", root / name, "CIFAR-10 python batch")
        images.append(array)
        labels.extend(found)
    return _labelled(images, labels, CIFAR10_CLASSES, root)


CIFAR100_FILES = ("train", "test", "meta")
"""The files of CIFAR-100's python layout (``cifar-100-python/``)."""


def cifar100_batches(root: str | os.PathLike, split: str) -> ClassificationData:
    """CIFAR-100 in its python layout (``cifar-100-python/``): ``train`` or ``test``, a
    pickled dict of ``data`` (N x 3072 uint8) and ``fine_labels`` (the 100 classes the
    DCNet paper reports), with the class names from ``meta``'s ``fine_label_names``. Only
    open files you trust: the format is Python's pickle."""
    root = Path(root)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    missing = [n for n in CIFAR100_FILES if not (root / n).is_file()]
    if missing:
        raise MissingInput(f"{root}: missing CIFAR-100 python files {missing} (expected "
                                f"{', '.join(CIFAR100_FILES)})")
    meta = _unpickle(root / "meta", "CIFAR-100 meta file")
    names = meta.get(b"fine_label_names")
    if not isinstance(names, list) or not names:
        raise InvalidInput(f"{root / 'meta'}: no b'fine_label_names' list; found keys {sorted(meta)}")
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    batch = _unpickle(root / split, "CIFAR-100 python batch")
    images, labels = _cifar_images(batch, b"fine_labels", root / split, "CIFAR-100 python batch")
    return _labelled([images], labels, classes, root / split)


def cifar_folder(root: str | os.PathLike) -> tuple[str, Path] | None:
    """('cifar10' or 'cifar100', the folder of its files) when ``root`` is a CIFAR python
    folder or holds one as downloaded (``cifar-10-batches-py/``, ``cifar-100-python/``), else None."""
    root = Path(root)
    for folder in (root, root / "cifar-10-batches-py", root / "cifar-100-python"):
        if (folder / "test_batch").is_file():
            return "cifar10", folder
        if all((folder / n).is_file() for n in CIFAR100_FILES):
            return "cifar100", folder
    return None
