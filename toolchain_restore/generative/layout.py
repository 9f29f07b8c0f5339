"""Real data in a layout folder (pix2pixHD's official layout, Cityscapes as downloaded,
ADE20K SceneParsing), checked file by file.

The official code reads ``ROOT/{phase}_label/`` (integer label maps), ``ROOT/{phase}_inst/``
(optional instance maps) and ``ROOT/{phase}_img/`` (photos), pairing files by sorted order
and trusting every value. This reader pairs them by name instead (Cityscapes names are
reduced to their common stem first; :mod:`.folder_layouts` lists each layout), checks every
file's header and size when the folder is opened (a bad file is named in a warning and its
sample left out), and turns the failures its users meet as crashes deep inside training
into errors naming the file: a label value beyond the label count (a CUDA index error in
the official code), sizes that differ, unpaired files, and sizes the generator cannot
downsample. It can resize samples to a width and crop them to the model's size multiple,
so a folder need not be resized beforehand.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..data.images import ImageReadError, read_image
from ..data.screening import usable_images
from ..errors import InvalidInput, MissingInput
from .folder_layouts import (CITYSCAPES_SUFFIXES, LABEL_EXTENSIONS, PHOTO_EXTENSIONS, LabelSet, LayoutFiles,
                             label_set, layout_files, sample_key)
from .scenes import Scene

__all__ = [
    "LABEL_EXTENSIONS",
    "PHOTO_EXTENSIONS",
    "CITYSCAPES_SUFFIXES",
    "LayoutSample",
    "LayoutFolder",
    "pad_to_multiple",
    "check_divisible",
    "resize_to_width",
    "crop_to_multiple",
    "write_layout",
    "sample_key",
    "read_integer_map",
]


def read_integer_map(path: str | os.PathLike) -> np.ndarray:
    """A single-channel integer PNG (8-bit, palette indices, 16-bit or 32-bit) as H x W int64.

    Raises:
        FileNotFoundError: no such file.
        ImageReadError: not a readable image, or a colour / floating-point image.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"no label or instance file at {path}")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            # A palette image's raw values are its indices, which is how label PNGs are often stored.
            array = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{path}: not a readable image ({err})") from err
    if array.ndim != 2:
        raise ImageReadError(f"{path}: a {mode} image with {array.shape[2] if array.ndim == 3 else '?'} channels; a "
                             f"label or instance map must be a single-channel integer image (for Cityscapes use "
                             f"*_labelIds.png / *_instanceIds.png, not *_color.png)")
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise ImageReadError(f"{path}: pixel type {array.dtype} (mode {mode}); a label or instance map must hold "
                             f"integers")
    if array.size == 0:
        raise ImageReadError(f"{path}: image has no pixels")
    return array.astype(np.int64)


def pad_to_multiple(array: np.ndarray, multiple: int, mode: str = "edge") -> tuple[np.ndarray, tuple[int, int]]:
    """Pad the bottom and right of ``array`` (H x W or H x W x C) so that H and W are multiples
    of ``multiple``; return the padded array and (pad_h, pad_w). ``mode`` is numpy's pad mode:
    'edge' for label and instance maps (no new values appear), 'reflect' for photos."""
    if multiple < 1:
        raise InvalidInput(f"multiple must be >= 1, got {multiple}")
    h, w = array.shape[:2]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == 0 and pad_w == 0:
        return array, (0, 0)
    widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, widths, mode=mode), (pad_h, pad_w)


def check_divisible(height: int, width: int, multiple: int, name: str) -> None:
    """Fail clearly when ``height`` x ``width`` cannot pass a generator that halves the size
    log2(multiple) times and doubles it back (pix2pixHD: multiple = 2**n_downsample).

    Raises:
        ValueError: a size that is not divisible by ``multiple``; the message names ``name``.
    """
    if height % multiple == 0 and width % multiple == 0:
        return
    n = math.log2(multiple)
    power = f"2**{int(n)}" if n.is_integer() else str(multiple)
    raise InvalidInput(
        f"{name}: size {height} x {width} is not divisible by {multiple} (= {power}, two to the number of "
        f"downsamplings): each stride-2 convolution halves the size and the transposed convolutions would not "
        f"restore it. Resize the data, or pad it: LayoutFolder(..., pad_to={multiple}) pads to "
        f"{height + (-height % multiple)} x {width + (-width % multiple)}"
    )


def resize_to_width(array: np.ndarray, width: int, integer: bool) -> np.ndarray:
    """``array`` (H x W maps or H x W x 3 uint8 photos) scaled to ``width`` pixels wide, its
    height in proportion (rounded, at least 1): integer maps by their nearest pixel (no new
    values appear), photos bicubic."""
    if width < 1:
        raise InvalidInput(f"width must be >= 1, got {width}")
    h, w = array.shape[:2]
    height = max(1, round(h * width / w))
    if (height, width) == (h, w):
        return array
    if integer:
        rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
        cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
        return array[rows[:, None], cols[None, :]]
    return np.asarray(Image.fromarray(array).resize((width, height), Image.BICUBIC))


def crop_to_multiple(array: np.ndarray, multiple: int) -> np.ndarray:
    """The centre of ``array`` whose height and width are the largest multiples of ``multiple``
    that fit (a multiple of 1 keeps it whole).

    Raises:
        ValueError: a side shorter than ``multiple``.
    """
    h, w = array.shape[:2]
    if h < multiple or w < multiple:
        raise InvalidInput(f"a {h} x {w} sample is smaller than the size multiple {multiple}; give a larger width")
    new_h, new_w = h - h % multiple, w - w % multiple
    top, left = (h - new_h) // 2, (w - new_w) // 2
    return array[top : top + new_h, left : left + new_w]


@dataclass
class LayoutSample:
    """One sample of a layout folder: its name, label map, instance map and photo."""

    name: str
    """The pairing key of its files (the Cityscapes stem, or the plain stem)."""
    label: np.ndarray
    """H x W int64 label values, each below the folder's label_count."""
    instance: np.ndarray | None
    """H x W int64 instance ids, or None when the folder has no instance maps."""
    image: np.ndarray | None
    """H x W x 3 uint8 RGB photo, or None when the phase has no photos (test time)."""
    original_size: tuple[int, int] | None = None
    """(H, W) before padding, or None when the sample was not padded."""


def _screened(files: LayoutFiles) -> LayoutFiles:
    """``files`` without the samples one of whose files fails the header check (each bad
    file named in a warning).

    Raises:
        ImageReadError: no sample has all its files usable.
    """
    maps = [m for m in (files.labels, files.instances, files.images) if m is not None]
    everything = [path for m in maps for path in m.values()]
    bad = set(everything) - set(usable_images(everything, files.where))
    keep = [name for name in files.labels if not any(m[name] in bad for m in maps)]
    if not keep:
        raise ImageReadError(f"{files.where}: no sample has all its files usable (each bad file is named in a "
                             f"warning above)")
    pick = lambda m: None if m is None else {k: m[k] for k in keep}  # noqa: E731
    return LayoutFiles(pick(files.labels), pick(files.instances), pick(files.images), files.where)


class LayoutFolder:
    """The samples of one phase ('train', 'test', ...) of a layout folder: pix2pixHD's
    official layout, Cityscapes as downloaded or ADE20K SceneParsing (see
    :mod:`~toolchain_restore.generative.folder_layouts`).

    Files are listed, paired and their headers checked when the folder is opened (a sample
    with a bad file is named in a warning and left out); each sample is decoded and checked
    when it is asked for (``folder[i]``), so opening a large folder is quick and a bad label
    value is reported by name the moment it is used.
    """

    def __init__(self, root: str | os.PathLike, phase: str = "train", label_count: int | None = None,
                 require_images: bool = True, pad_to: int = 1, layout: str = "auto", cityscapes_labels: str = "ids",
                 load_width: int | None = None, crop_to: int = 1) -> None:
        """Args:
            root: the folder (pix2pixHD: holding ``{phase}_label/``, ``{phase}_img/``, maybe
                ``{phase}_inst/``; Cityscapes: ``gtFine/``, ``leftImg8bit/``; ADE20K: ``images/``, ``annotations/``).
            phase: 'train' or 'test' (Cityscapes' val, ADE20K's validation), or a pix2pixHD folder prefix.
            label_count: how many label values the model knows (pix2pixHD's --label_nc); required
                for pix2pixHD's layout, implied by Cityscapes' and ADE20K's.
            require_images: demand a photo for every label (training); when False, a missing
                photo folder gives samples without photos.
            pad_to: pad every sample's bottom and right to multiples of this (1 = never pad).
            layout: 'auto' (told by the folders), 'pix2pixhd', 'cityscapes' or 'ade20k'.
            cityscapes_labels: 'ids' (the 35 label ids) or 'train_ids' (the 19 classes, ignore as 19).
            load_width: scale every sample to this width first (aspect kept; None = as stored).
            crop_to: then crop its centre to multiples of this (the model's size multiple).
        """
        if int(pad_to) < 1 or int(crop_to) < 1:
            raise InvalidInput(f"pad_to and crop_to must be >= 1, got {pad_to} and {crop_to}")
        if not phase or "/" in phase or "\\" in phase:
            raise InvalidInput(f"phase must be a plain name such as 'train' or 'test', got {phase!r}")
        if load_width is not None and int(load_width) < 1:
            raise InvalidInput(f"load_width must be a positive number of pixels or None, got {load_width}")
        self.root, self.phase = Path(root), phase
        self.pad_to, self.crop_to, self.load_width = int(pad_to), int(crop_to), load_width
        self.layout, files = layout_files(self.root, phase, layout, require_images)
        self.labels: LabelSet = label_set(self.layout, cityscapes_labels, label_count)
        """How the files' label values become the model's (count, ignore value, mapping)."""
        if self.labels.label_count is None or self.labels.label_count < 1:
            raise InvalidInput(f"label_count (the number of label values, pix2pixHD's --label_nc) must be a positive "
                             f"integer, got {label_count!r}")
        self.label_count = self.labels.label_count
        self._files = _screened(files)
        self.names: list[str] = sorted(self._files.labels)
        """The samples' pairing keys, in the order of ``folder[i]``."""
        self._warned_padding = False

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"LayoutFolder({str(self.root)!r}, phase={self.phase!r}, layout={self.layout!r}, {len(self)} samples)"

    @property
    def has_instances(self) -> bool:
        """Whether the folder has instance maps."""
        return self._files.instances is not None

    @property
    def has_images(self) -> bool:
        """Whether the folder has photos."""
        return self._files.images is not None

    @property
    def ignore_label(self) -> int | None:
        """The model-side label value of pixels that carry no class (ADE20K's 0, Cityscapes'
        ignored train ids), to leave out of segmentation scores; None when every value is a class."""
        return self.labels.ignore

    def _read_label(self, name: str) -> np.ndarray:
        """The sample's label map, its values checked and mapped to the model's."""
        path = self._files.labels[name]
        label = read_integer_map(path)
        low, high, count = int(label.min()), int(label.max()), int(self.labels.raw_count or self.label_count)
        if low < 0 or high >= count:
            raise InvalidInput(f"{path}: label values span {low}..{high} (max {high}) but label_count is "
                             f"{count}, so values must lie in 0..{count - 1}. The official "
                             f"code would crash here with a CUDA index error (a device-side assert in scatter_); "
                             f"raise label_count (--label_nc) or remap the labels")
        return label if self.labels.lookup is None else self.labels.lookup[label]

    def _read(self, name: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Label, instance and photo of a sample, of one size."""
        label = self._read_label(name)
        sizes = {self._files.labels[name]: label.shape}
        instance = image = None
        if self._files.instances is not None:
            instance = read_integer_map(self._files.instances[name])
            sizes[self._files.instances[name]] = instance.shape
        if self._files.images is not None:
            image = read_image(self._files.images[name])
            sizes[self._files.images[name]] = image.shape[:2]
        if len(set(sizes.values())) > 1:
            raise InvalidInput(f"sample {name!r}: its files differ in size: "
                             + ", ".join(f"{p.name} is {s[0]} x {s[1]}" for p, s in sizes.items()))
        return label, instance, image

    def _fit(self, arrays: list[np.ndarray | None]) -> list[np.ndarray | None]:
        """Label, instance and photo scaled to ``load_width`` and cropped to ``crop_to``."""
        out = []
        for k, array in enumerate(arrays):
            if array is not None and self.load_width is not None:
                array = resize_to_width(array, int(self.load_width), integer=k < 2)
            out.append(None if array is None else crop_to_multiple(array, self.crop_to))
        return out

    def _pad(self, sample: LayoutSample) -> LayoutSample:
        """``sample`` padded to multiples of ``pad_to`` (a warning the first time)."""
        h, w = sample.label.shape
        label, (pad_h, pad_w) = pad_to_multiple(sample.label, self.pad_to, "edge")
        if not (pad_h or pad_w):
            return sample
        instance = None if sample.instance is None else pad_to_multiple(sample.instance, self.pad_to, "edge")[0]
        image = None if sample.image is None else pad_to_multiple(sample.image, self.pad_to, "reflect")[0]
        if not self._warned_padding:
            self._warned_padding = True
            warnings.warn(f"{self.root} ({self.phase}): padded {self._files.labels[sample.name].name} from {h} x {w} "
                          f"to {h + pad_h} x {w + pad_w} (bottom +{pad_h}, right +{pad_w} pixels) to reach multiples "
                          f"of pad_to={self.pad_to}; other samples are padded the same way without a further "
                          f"warning", stacklevel=3)
        return LayoutSample(sample.name, label, instance, image, (h, w))

    def __getitem__(self, index: int) -> LayoutSample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} of a folder of {len(self)}")
        name = self.names[index]
        label, instance, image = self._fit(list(self._read(name)))
        sample = LayoutSample(name, label, instance, image)
        return self._pad(sample) if self.pad_to > 1 else sample


def write_layout(root: str | os.PathLike, phase: str, scenes: list[Scene]) -> list[str]:
    """Write scenes as ``root/{phase}_label/scene_00000.png`` (8-bit labels),
    ``{phase}_inst/`` (16-bit instance ids, as Cityscapes' instanceIds PNGs) and
    ``{phase}_img/`` (RGB photos); return the sample names. A worked example of the format,
    and what the tests read back."""
    root = Path(root)
    folders = {kind: root / f"{phase}_{kind}" for kind in ("label", "inst", "img")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, scene in enumerate(scenes):
        name = f"scene_{i:05d}"
        if scene.instance.min() < 0 or scene.instance.max() > np.iinfo(np.uint16).max:
            raise InvalidInput(f"{name}: instance ids span {scene.instance.min()}..{scene.instance.max()}, beyond "
                             f"a 16-bit PNG")
        Image.fromarray(np.ascontiguousarray(scene.label, dtype=np.uint8)).save(folders["label"] / f"{name}.png")
        Image.fromarray(np.ascontiguousarray(scene.instance, dtype=np.uint16)).save(folders["inst"] / f"{name}.png")
        Image.fromarray(np.ascontiguousarray(scene.image, dtype=np.uint8)).save(folders["img"] / f"{name}.png")
        names.append(name)
    return names
