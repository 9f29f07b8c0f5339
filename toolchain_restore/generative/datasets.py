"""Where the synthesis modules' (label, instance, image) triples come from: procedural
scenes (the embedded default) or a layout folder (pix2pixHD's official layout, Cityscapes
as downloaded, ADE20K SceneParsing); and the batches the trainer's tasks draw from them."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, Sequence, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidInput

__all__ = ["LayoutSource", "SceneDataSettings", "SynthesisSample", "synthesis_set", "label_count_of", "with_label_count",
           "folder_options",
           "sample_batch", "to_model_image", "from_model_image", "resize_maps"]


@dataclass
class LayoutSource:
    """Where layouts come from and at what size (the memory bank's source too)."""

    data: str = "procedural"
    """'procedural' (the embedded scene generator) or a layout folder: pix2pixHD's (train_label/, train_inst/, train_img/, test_*), Cityscapes as downloaded (gtFine/, leftImg8bit/) or ADE20K SceneParsing (images/, annotations/)."""
    label_count: int | None = None
    """Labels in the label maps (procedural: 7; a pix2pixHD-layout folder: required; Cityscapes and ADE20K: implied); values must lie below it."""
    height: int = 128
    """Procedural scenes: height of the output (folders keep their images' size unless load_width is set)."""
    width: int = 256
    """Procedural scenes: width of the output."""
    layout: Literal["auto", "pix2pixhd", "cityscapes", "ade20k"] = "auto"
    """A folder's layout; auto tells them apart by their folders."""
    cityscapes_labels: Literal["ids", "train_ids"] = "ids"
    """Cityscapes: the 35 label ids (pix2pixHD's label_nc 35), or the 19 train ids with the ignore label 255 as a 20th value (label_count 20)."""
    load_width: int | None = None
    """Folders: scale every sample to this width (aspect kept), then crop its centre to the model's size multiple; None = use the files as stored (sizes must fit the model)."""


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
    """A layout folder's samples; one whose file fails to decode is named once and the next
    readable sample stands in for it from then on."""

    def __init__(self, root: str, split: str, label_count: int, pad_to: int, **options: Any) -> None:
        from .layout import LayoutFolder

        self.folder = LayoutFolder(root, phase=split, label_count=label_count, require_images=split == "train",
                                   pad_to=pad_to, **options)
        self.unreadable: set[int] = set()

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> SynthesisSample:
        from ..data.images import ImageReadError

        for step in range(len(self.folder)):
            k = (index + step) % len(self.folder)
            if k in self.unreadable:
                continue
            try:
                s = self.folder[k]
            except ImageReadError as err:
                self.unreadable.add(k)
                warnings.warn(f"skipping sample {self.folder.names[k]!r}: {err}", stacklevel=2)
                continue
            # Without instance maps every labelled region is one instance: the label itself,
            # which is what the official code feeds when --no_instance is off but no maps exist.
            instance = s.instance if s.instance is not None else s.label
            return SynthesisSample(s.name, s.label, instance, s.image)
        raise ImageReadError(f"{self.folder.root} ({self.folder.phase}): none of its {len(self.folder)} samples can be "
                             f"decoded (each is named in a warning above)")


def label_count_of(data: str, label_count: int | None, layout: str = "auto", cityscapes_labels: str = "ids") -> int:
    """The label count a data source needs: the procedural classes, the one Cityscapes' or
    ADE20K's labels imply, or the user's for a folder in pix2pixHD's layout."""
    if data == "procedural":
        from .scenes import SCENE_CLASSES

        if label_count not in (None, len(SCENE_CLASSES)):
            raise InvalidInput(f"--label-count {label_count}: procedural scenes have {len(SCENE_CLASSES)} labels")
        return len(SCENE_CLASSES)
    from .folder_layouts import detect_layout, label_set

    found = detect_layout(data) if layout == "auto" else layout
    count = label_set(found, cityscapes_labels, label_count).label_count
    if count is None:
        raise InvalidInput(f"--label-count: give it for the folder {data} in pix2pixHD's layout (Cityscapes label ids: 35)")
    return count


SourceT = TypeVar("SourceT", bound=LayoutSource)


def with_label_count(source: SourceT) -> SourceT:
    """``source`` (settings with a layout source) with ``label_count`` filled in from its
    data (:func:`label_count_of`): what every model built from it needs."""
    return replace(source, label_count=label_count_of(source.data, source.label_count, source.layout,
                                                      source.cityscapes_labels))


def folder_options(source: LayoutSource, multiple: int = 1) -> dict[str, Any]:
    """The keywords of :func:`synthesis_set` that carry ``source``'s folder settings (layout,
    Cityscapes labels, resizing), cropping to the model's size ``multiple`` when resizing."""
    return {"layout": source.layout, "cityscapes_labels": source.cityscapes_labels, "load_width": source.load_width,
            "crop_to": multiple if source.load_width is not None else 1}


def synthesis_set(data: str, split: str, label_count: int, count: int = 0, height: int = 128, width: int = 256,
                  pad_to: int = 1, **options: Any) -> _Indexable:
    """The samples of ``split`` ('train' or 'test'): ``count`` procedural scenes of
    ``height`` x ``width`` when ``data`` is 'procedural', else the folder's (sizes padded
    to multiples of ``pad_to``; ``options`` are :class:`~.layout.LayoutFolder`'s layout,
    cityscapes_labels, load_width and crop_to, see :func:`folder_options`)."""
    if data == "procedural":
        return _ProceduralSet(split, count, height, width)
    return _FolderSet(data, split, label_count, pad_to, **options)


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
