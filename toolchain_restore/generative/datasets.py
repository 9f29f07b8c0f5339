"""Where the synthesis modules' (label, instance, image) triples come from: procedural
scenes (the embedded default) or a folder in pix2pixHD's official layout; and the
batches the trainer's tasks draw from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["LayoutSource", "SceneDataSettings", "SynthesisSample", "synthesis_set", "label_count_of", "sample_batch",
           "to_model_image", "from_model_image", "resize_maps"]


@dataclass
class LayoutSource:
    """Where layouts come from and at what size (the memory bank's source too)."""

    data: str = "procedural"
    """'procedural' (the embedded scene generator) or a folder in pix2pixHD's official layout (train_label/, train_inst/, train_img/, test_*)."""
    label_count: int | None = None
    """Labels in the label maps (procedural: 7; Cityscapes ids: 35); values must lie below it."""
    height: int = 128
    """Procedural scenes: height of the output (folders keep their images' size)."""
    width: int = 256
    """Procedural scenes: width of the output."""


@dataclass
class SceneDataSettings(LayoutSource):
    """Where a layout-to-image model's (label, instance, image) triples come from; the first
    fields of the pix2pixHD and SIMS settings."""

    train_scenes: int = 400
    """Procedural scenes to train on."""
    test_scenes: int = 16
    """Procedural held-out scenes for evaluation and TensorBoard."""


@dataclass
class SynthesisSample:
    """One layout and its photo: H x W integer labels, H x W instance ids, H x W x 3 uint8."""

    name: str
    label: np.ndarray
    instance: np.ndarray
    image: np.ndarray | None


class _Indexable(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> SynthesisSample: ...


class _ProceduralSet:
    def __init__(self, split: str, count: int, height: int, width: int) -> None:
        from .scenes import procedural_split

        self.samples = [SynthesisSample(f"{split}_{k:05d}", s.label.astype(np.int64), s.instance.astype(np.int64),
                                        s.image) for k, s in enumerate(procedural_split(split, count, height, width))]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> SynthesisSample:
        return self.samples[index]


class _FolderSet:
    def __init__(self, root: str, split: str, label_count: int, pad_to: int) -> None:
        from .layout import LayoutFolder

        self.folder = LayoutFolder(root, phase=split, label_count=label_count, require_images=split == "train",
                                   pad_to=pad_to)

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> SynthesisSample:
        s = self.folder[index]
        # Without instance maps every labelled region is one instance: the label itself,
        # which is what the official code feeds when --no_instance is off but no maps exist.
        instance = s.instance if s.instance is not None else s.label
        return SynthesisSample(s.name, s.label, instance, s.image)


def label_count_of(data: str, label_count: int | None) -> int:
    """The label count a data source needs: the procedural classes, or the user's for a folder."""
    if data == "procedural":
        from .scenes import SCENE_CLASSES

        if label_count not in (None, len(SCENE_CLASSES)):
            raise ValueError(f"procedural scenes have {len(SCENE_CLASSES)} labels, not {label_count}")
        return len(SCENE_CLASSES)
    if label_count is None:
        raise ValueError(f"give label_count for the folder {data} (Cityscapes label ids: 35)")
    return label_count


def synthesis_set(data: str, split: str, label_count: int, count: int = 0, height: int = 128, width: int = 256,
                  pad_to: int = 1) -> _Indexable:
    """The samples of ``split`` ('train' or 'test'): ``count`` procedural scenes of
    ``height`` x ``width`` when ``data`` is 'procedural', else the folder's (official
    layout, sizes padded to multiples of ``pad_to``)."""
    if data == "procedural":
        return _ProceduralSet(split, count, height, width)
    return _FolderSet(data, split, label_count, pad_to)


def to_model_image(image: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 3 x H x W float in [-1, 1], the generators' range."""
    return torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1.0


def from_model_image(image: torch.Tensor) -> np.ndarray:
    """3 x H x W in [-1, 1] -> H x W x 3 uint8."""
    return ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def resize_maps(label: torch.Tensor, instance: torch.Tensor, image: torch.Tensor | None,
                factor: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Shrink N x H x W maps (nearest) and N x 3 x H x W images (area) by an integer factor."""
    if factor == 1:
        return label, instance, image
    size = (label.shape[-2] // factor, label.shape[-1] // factor)
    nearest = lambda m: F.interpolate(m[:, None].double(), size=size, mode="nearest")[:, 0].long()  # noqa: E731
    return nearest(label), nearest(instance), None if image is None else F.interpolate(image, size=size, mode="area")


def sample_batch(samples: Sequence[SynthesisSample], rng: np.random.Generator, batch_size: int,
                 flip: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``batch_size`` random samples, each mirrored left-right with probability 1/2 when
    ``flip``: N x H x W labels and instances, N x 3 x H x W images in [-1, 1]."""
    labels, instances, images = [], [], []
    for index in rng.integers(0, len(samples), batch_size):
        s = samples[int(index)]
        label, instance, image = s.label, s.instance, s.image
        if flip and rng.random() < 0.5:
            label, instance, image = label[:, ::-1], instance[:, ::-1], image[:, ::-1]
        labels.append(torch.from_numpy(np.ascontiguousarray(label)).long())
        instances.append(torch.from_numpy(np.ascontiguousarray(instance)).long())
        images.append(to_model_image(image))
    if len({tuple(t.shape) for t in labels}) > 1:
        raise ValueError("a batch needs images of one size; use batch_size 1 for a folder of mixed sizes")
    return torch.stack(labels), torch.stack(instances), torch.stack(images)
