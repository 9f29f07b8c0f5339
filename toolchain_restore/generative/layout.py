"""Real data in pix2pixHD's official folder layout, checked file by file.

The official code reads ``ROOT/{phase}_label/`` (integer label maps), ``ROOT/{phase}_inst/``
(optional instance maps) and ``ROOT/{phase}_img/`` (photos), pairing files by sorted order
and trusting every value. This reader pairs them by name instead (Cityscapes names are
reduced to their common stem first), and turns the failures its users meet as crashes deep
inside training into errors naming the file: a label value beyond the label count (a CUDA
index error in the official code), sizes that differ, unpaired or unreadable files, and
sizes the generator cannot downsample.
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
from .scenes import Scene

__all__ = [
    "LABEL_EXTENSIONS",
    "PHOTO_EXTENSIONS",
    "CITYSCAPES_SUFFIXES",
    "LayoutSample",
    "LayoutFolder",
    "pad_to_multiple",
    "check_divisible",
    "write_layout",
    "sample_key",
    "read_integer_map",
]

LABEL_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")
"""Lossless formats accepted for label and instance maps (a JPEG would blur the integer values)."""
PHOTO_EXTENSIONS = (".png", ".jpg", ".jpeg")
"""Formats accepted for the photos."""
CITYSCAPES_SUFFIXES = ("_gtFine_labelIds", "_gtFine_instanceIds", "_leftImg8bit")
"""Endings of Cityscapes file stems that are dropped before pairing files."""
MAX_LISTED = 5
"""Names quoted in one error message; the rest are counted."""


def sample_key(path: str | os.PathLike) -> str:
    """The name a file is paired by: its stem without a Cityscapes suffix
    (``aachen_000000_000019_gtFine_labelIds.png`` -> ``aachen_000000_000019``)."""
    stem = Path(path).stem
    for suffix in CITYSCAPES_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return f"{shown} and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else shown


def _index_folder(folder: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    """Files of ``folder`` (not recursive) by pairing key; two files with one key are an error."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in extensions or path.name.startswith("."):
            continue
        key = sample_key(path)
        if key in found:
            raise ValueError(f"{folder}: {found[key].name} and {path.name} both stand for sample {key!r}; "
                             f"keep one of them")
        found[key] = path
    return found


def _check_pairing(labels: dict[str, Path], others: dict[str, Path], label_dir: Path, other_dir: Path,
                   what: str) -> None:
    lonely_labels = sorted(labels[k].name for k in set(labels) - set(others))
    lonely_others = sorted(others[k].name for k in set(others) - set(labels))
    problems = []
    if lonely_labels:
        problems.append(f"{len(lonely_labels)} label files in {label_dir} have no matching {what} in {other_dir}: "
                        f"{_listing(lonely_labels)}")
    if lonely_others:
        problems.append(f"{len(lonely_others)} {what} files in {other_dir} have no matching label in {label_dir}: "
                        f"{_listing(lonely_others)}")
    if problems:
        raise ValueError("; ".join(problems) + " (files are paired by name; Cityscapes suffixes "
                         f"{', '.join(CITYSCAPES_SUFFIXES)} are ignored)")


def read_integer_map(path: str | os.PathLike) -> np.ndarray:
    """A single-channel integer PNG (8-bit, palette indices, 16-bit or 32-bit) as H x W int64.

    Raises:
        FileNotFoundError: no such file.
        ImageReadError: not a readable image, or a colour / floating-point image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no label or instance file at {path}")
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
        raise ValueError(f"multiple must be >= 1, got {multiple}")
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
    raise ValueError(
        f"{name}: size {height} x {width} is not divisible by {multiple} (= {power}, two to the number of "
        f"downsamplings): each stride-2 convolution halves the size and the transposed convolutions would not "
        f"restore it. Resize the data, or pad it: LayoutFolder(..., pad_to={multiple}) pads to "
        f"{height + (-height % multiple)} x {width + (-width % multiple)}"
    )


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


class LayoutFolder:
    """The samples of one phase ('train', 'test', ...) of a folder in pix2pixHD's layout.

    Files are listed and paired when the folder is opened; each sample is read and checked
    when it is asked for (``folder[i]``), so opening a large folder is quick and a bad file
    is reported by name the moment it is used.
    """

    def __init__(self, root: str | os.PathLike, phase: str = "train", label_count: int | None = None,
                 require_images: bool = True, pad_to: int = 1) -> None:
        """Args:
            root: the folder holding ``{phase}_label/`` and ``{phase}_img/`` (and maybe ``{phase}_inst/``).
            phase: the folder-name prefix, usually 'train' or 'test'.
            label_count: how many label values the model knows (pix2pixHD's --label_nc); required.
            require_images: demand a photo for every label (training); when False, a missing
                ``{phase}_img/`` folder gives samples without photos.
            pad_to: pad every sample's bottom and right to multiples of this (1 = never pad).
        """
        if label_count is None or int(label_count) < 1:
            raise ValueError(f"label_count (the number of label values, pix2pixHD's --label_nc) must be a positive "
                             f"integer, got {label_count!r}")
        if int(pad_to) < 1:
            raise ValueError(f"pad_to must be >= 1, got {pad_to}")
        if not phase or "/" in phase or "\\" in phase:
            raise ValueError(f"phase must be a plain name such as 'train' or 'test', got {phase!r}")
        self.root = Path(root)
        self.phase = phase
        self.label_count = int(label_count)
        self.pad_to = int(pad_to)
        if not self.root.is_dir():
            raise FileNotFoundError(f"layout folder {self.root} does not exist")
        self.label_dir = self.root / f"{phase}_label"
        self.instance_dir = self.root / f"{phase}_inst"
        self.image_dir = self.root / f"{phase}_img"
        if not self.label_dir.is_dir():
            present = sorted(p.name for p in self.root.iterdir() if p.is_dir())
            raise FileNotFoundError(f"{self.label_dir} is missing: pix2pixHD's layout needs {phase}_label/, "
                                    f"{phase}_img/ and optionally {phase}_inst/ under {self.root} "
                                    f"(it holds: {', '.join(present) or 'no folders'})")
        labels = _index_folder(self.label_dir, LABEL_EXTENSIONS)
        if not labels:
            raise ValueError(f"{self.label_dir}: no label files ({', '.join(LABEL_EXTENSIONS)})")
        self.names: list[str] = sorted(labels)
        """The samples' pairing keys, in the order of ``folder[i]``."""
        self._labels = labels
        self._instances: dict[str, Path] | None = None
        if self.instance_dir.is_dir():
            self._instances = _index_folder(self.instance_dir, LABEL_EXTENSIONS)
            _check_pairing(labels, self._instances, self.label_dir, self.instance_dir, "instance map")
        self._images: dict[str, Path] | None = None
        if self.image_dir.is_dir():
            self._images = _index_folder(self.image_dir, PHOTO_EXTENSIONS)
            _check_pairing(labels, self._images, self.label_dir, self.image_dir, "image")
        elif require_images:
            raise FileNotFoundError(f"{self.image_dir} is missing: every label in {self.label_dir} needs its photo "
                                    f"there (pass require_images=False to read labels alone, e.g. at test time)")
        self._warned_padding = False

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"LayoutFolder({str(self.root)!r}, phase={self.phase!r}, {len(self)} samples)"

    @property
    def has_instances(self) -> bool:
        """Whether the folder has instance maps (``{phase}_inst/``)."""
        return self._instances is not None

    @property
    def has_images(self) -> bool:
        """Whether the folder has photos (``{phase}_img/``)."""
        return self._images is not None

    def __getitem__(self, index: int) -> LayoutSample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} of a folder of {len(self)}")
        name = self.names[index]
        label_path = self._labels[name]
        label = read_integer_map(label_path)
        low, high = int(label.min()), int(label.max())
        if low < 0 or high >= self.label_count:
            raise ValueError(f"{label_path}: label values span {low}..{high} (max {high}) but label_count is "
                             f"{self.label_count}, so values must lie in 0..{self.label_count - 1}. The official "
                             f"code would crash here with a CUDA index error (a device-side assert in scatter_); "
                             f"raise label_count (--label_nc) or remap the labels")
        sizes = {label_path: label.shape}
        instance = None
        if self._instances is not None:
            instance_path = self._instances[name]
            instance = read_integer_map(instance_path)
            sizes[instance_path] = instance.shape
        image = None
        if self._images is not None:
            image_path = self._images[name]
            image = read_image(image_path)
            sizes[image_path] = image.shape[:2]
        if len(set(sizes.values())) > 1:
            raise ValueError(f"sample {name!r}: its files differ in size: "
                             + ", ".join(f"{p.name} is {s[0]} x {s[1]}" for p, s in sizes.items()))
        original_size = None
        if self.pad_to > 1:
            h, w = label.shape
            label, (pad_h, pad_w) = pad_to_multiple(label, self.pad_to, "edge")
            if pad_h or pad_w:
                original_size = (h, w)
                if instance is not None:
                    instance, _ = pad_to_multiple(instance, self.pad_to, "edge")
                if image is not None:
                    image, _ = pad_to_multiple(image, self.pad_to, "reflect")
                if not self._warned_padding:
                    self._warned_padding = True
                    warnings.warn(f"{self.root} ({self.phase}): padded {label_path.name} from {h} x {w} to "
                                  f"{h + pad_h} x {w + pad_w} (bottom +{pad_h}, right +{pad_w} pixels) to reach "
                                  f"multiples of pad_to={self.pad_to}; other samples are padded the same way "
                                  f"without a further warning", stacklevel=2)
        return LayoutSample(name, label, instance, image, original_size)


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
            raise ValueError(f"{name}: instance ids span {scene.instance.min()}..{scene.instance.max()}, beyond "
                             f"a 16-bit PNG")
        Image.fromarray(np.ascontiguousarray(scene.label, dtype=np.uint8)).save(folders["label"] / f"{name}.png")
        Image.fromarray(np.ascontiguousarray(scene.instance, dtype=np.uint16)).save(folders["inst"] / f"{name}.png")
        Image.fromarray(np.ascontiguousarray(scene.image, dtype=np.uint8)).save(folders["img"] / f"{name}.png")
        names.append(name)
    return names
