"""Where a layout folder's files are: pix2pixHD's official layout, Cityscapes as downloaded
and ADE20K's SceneParsing release, each listed and paired by name.

- ``pix2pixhd``: ``{phase}_label/``, ``{phase}_inst/`` (optional), ``{phase}_img/``.
- ``cityscapes`` (the ``gtFine`` and ``leftImg8bit`` zips unpacked side by side):
  ``gtFine/{train,val}/<city>/*_gtFine_labelIds.png`` and ``*_gtFine_instanceIds.png``,
  ``leftImg8bit/{train,val}/<city>/*_leftImg8bit.png``; phase ``test`` reads ``val`` (the
  Cityscapes test split has no public labels). Label ids 0..33 of 35 (pix2pixHD's
  ``--label_nc 35``), or the 19 training classes with :data:`CITYSCAPES_TRAIN_IDS`.
- ``ade20k`` (``ADEChallengeData2016``): ``images/{training,validation}/*.jpg`` and
  ``annotations/{training,validation}/*.png``; phase ``test`` reads ``validation``. Label
  values 0..150: 150 classes and 0 for "other" (not labelled), no instance maps.

Files are paired by their stem less the Cityscapes suffixes; every error names the folder
and the files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import InvalidInput, MissingInput

__all__ = ["LAYOUTS", "Layout", "LayoutFiles", "LabelSet", "CITYSCAPES_SUFFIXES", "CITYSCAPES_TRAIN_IDS",
           "CITYSCAPES_TRAIN_CLASSES", "CITYSCAPES_IGNORE", "ADE20K_CLASSES", "sample_key", "detect_layout",
           "layout_files", "label_set"]

Layout = Literal["auto", "pix2pixhd", "cityscapes", "ade20k"]
LAYOUTS: tuple[str, ...] = ("auto", "pix2pixhd", "cityscapes", "ade20k")
"""The folder layouts a layout folder may have ('auto': told apart by their folders)."""
LABEL_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")
"""Lossless formats accepted for label and instance maps (a JPEG would blur the integer values)."""
PHOTO_EXTENSIONS = (".png", ".jpg", ".jpeg")
"""Formats accepted for the photos."""
CITYSCAPES_SUFFIXES = ("_gtFine_labelIds", "_gtFine_instanceIds", "_leftImg8bit")
"""Endings of Cityscapes file stems that are dropped before pairing files."""
MAX_LISTED = 5
"""Names quoted in one error message; the rest are counted."""

CITYSCAPES_LABEL_IDS = 35
"""Cityscapes label ids (0..33 in the PNGs, 34 for the license plate's -1): pix2pixHD's label_nc."""
CITYSCAPES_IGNORE = 255
"""The train id of every Cityscapes label that is not one of the 19 evaluated classes."""
CITYSCAPES_TRAIN_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                            "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                            "motorcycle", "bicycle")
"""The 19 classes Cityscapes is trained and evaluated on, by train id."""
_EVALUATED_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
                  27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CITYSCAPES_TRAIN_IDS = np.array([_EVALUATED_IDS.get(i, CITYSCAPES_IGNORE) for i in range(CITYSCAPES_LABEL_IDS)],
                                np.int64)
"""Label id -> train id (0..18, or 255 to ignore), as the Cityscapes scripts define them."""
ADE20K_CLASSES = 150
"""SceneParsing's classes; its annotations hold 1..150, and 0 for "other"."""


@dataclass(frozen=True)
class LabelSet:
    """How a layout's label values become the model's: ``raw_count`` values are accepted in
    the files, ``lookup`` (if any) maps them, and the model sees ``label_count`` values of
    which ``ignore`` (if any) stands for "not labelled" (left out of segmentation scores)."""

    name: str
    raw_count: int | None
    label_count: int | None
    ignore: int | None = None
    lookup: np.ndarray | None = None


def label_set(layout: str, cityscapes_labels: str = "ids", label_count: int | None = None) -> LabelSet:
    """The label set of a (detected) layout. Cityscapes ``train_ids`` maps the 35 ids to the
    19 classes and their ignore label (255) to a 20th value, 19, since a model's inputs
    take label values 0..label_count-1.

    Raises:
        ValueError: an unknown choice, or a ``label_count`` that the layout contradicts.
    """
    if layout == "cityscapes" and cityscapes_labels == "train_ids":
        void = len(CITYSCAPES_TRAIN_CLASSES)
        lookup = np.where(CITYSCAPES_TRAIN_IDS == CITYSCAPES_IGNORE, void, CITYSCAPES_TRAIN_IDS)
        labels = LabelSet("cityscapes train ids", CITYSCAPES_LABEL_IDS, len(CITYSCAPES_TRAIN_CLASSES) + 1,
                          len(CITYSCAPES_TRAIN_CLASSES), lookup)
    elif layout == "cityscapes" and cityscapes_labels == "ids":
        labels = LabelSet("cityscapes label ids", CITYSCAPES_LABEL_IDS, CITYSCAPES_LABEL_IDS)
    elif layout == "cityscapes":
        raise InvalidInput(f"cityscapes_labels must be 'ids' or 'train_ids', got {cityscapes_labels!r}")
    elif layout == "ade20k":
        labels = LabelSet("ADE20K classes", ADE20K_CLASSES + 1, ADE20K_CLASSES + 1, 0)
    elif layout == "pix2pixhd":
        return LabelSet("label values", label_count, label_count)
    else:
        raise InvalidInput(f"layout must be one of {', '.join(LAYOUTS[1:])} once detected, got {layout!r}")
    if label_count is not None and label_count != labels.label_count:
        raise InvalidInput(f"{labels.name} make label_count {labels.label_count}, not {label_count}: leave label_count "
                         f"unset (or give {labels.label_count}) for a {layout} folder")
    return labels


@dataclass
class LayoutFiles:
    """The files of one phase of a layout folder, by sample name (pairing key)."""

    labels: dict[str, Path]
    instances: dict[str, Path] | None
    images: dict[str, Path] | None
    where: str
    """The folder, as errors name it."""


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


def _index(folder: Path, extensions: tuple[str, ...], pattern: str = "*") -> dict[str, Path]:
    """Files of ``folder`` matching ``pattern`` (``**/`` patterns reach subfolders) by pairing
    key; two files with one key are an error."""
    found: dict[str, Path] = {}
    for path in sorted(folder.glob(pattern)):
        if not path.is_file() or path.suffix.lower() not in extensions or path.name.startswith("."):
            continue
        key = sample_key(path)
        if key in found:
            raise InvalidInput(f"{folder}: {found[key].relative_to(folder)} and {path.relative_to(folder)} both stand "
                             f"for sample {key!r}; keep one of them")
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
        raise InvalidInput("; ".join(problems) + " (files are paired by name; Cityscapes suffixes "
                         f"{', '.join(CITYSCAPES_SUFFIXES)} are ignored)")


def _present(root: Path) -> str:
    return ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir())) or "no folders"


def detect_layout(root: str | os.PathLike) -> str:
    """'cityscapes' for a folder holding ``gtFine/`` and ``leftImg8bit/``, 'ade20k' for one
    holding ``images/`` and ``annotations/``, else 'pix2pixhd'."""
    root = Path(root)
    if (root / "gtFine").is_dir() and (root / "leftImg8bit").is_dir():
        return "cityscapes"
    if (root / "images").is_dir() and (root / "annotations").is_dir():
        return "ade20k"
    return "pix2pixhd"


def _pix2pixhd_files(root: Path, phase: str, require_images: bool) -> LayoutFiles:
    """``{phase}_label/``, ``{phase}_inst/`` and ``{phase}_img/``, each flat."""
    label_dir, instance_dir, image_dir = (root / f"{phase}_{kind}" for kind in ("label", "inst", "img"))
    if not label_dir.is_dir():
        raise MissingInput(f"{label_dir} is missing: pix2pixHD's layout needs {phase}_label/, {phase}_img/ and "
                                f"optionally {phase}_inst/ under {root} (it holds: {_present(root)}); Cityscapes "
                                f"(gtFine/, leftImg8bit/) and ADE20K (images/, annotations/) are read as downloaded")
    labels = _index(label_dir, LABEL_EXTENSIONS)
    if not labels:
        raise InvalidInput(f"{label_dir}: no label files ({', '.join(LABEL_EXTENSIONS)})")
    instances = _index(instance_dir, LABEL_EXTENSIONS) if instance_dir.is_dir() else None
    if instances is not None:
        _check_pairing(labels, instances, label_dir, instance_dir, "instance map")
    images = None
    if image_dir.is_dir():
        images = _index(image_dir, PHOTO_EXTENSIONS)
        _check_pairing(labels, images, label_dir, image_dir, "image")
    elif require_images:
        raise MissingInput(f"{image_dir} is missing: every label in {label_dir} needs its photo there (pass "
                                f"require_images=False to read labels alone, e.g. at test time)")
    return LayoutFiles(labels, instances, images, f"{root} ({phase})")


_CITYSCAPES_SPLITS = {"train": "train", "test": "val", "val": "val"}
_ADE20K_SPLITS = {"train": "training", "test": "validation", "training": "training", "validation": "validation"}


def _split_folder(splits: dict[str, str], phase: str, dataset: str) -> str:
    if phase not in splits:
        raise InvalidInput(f"{dataset} has the phases {', '.join(splits)}; got {phase!r}")
    return splits[phase]


def _cityscapes_files(root: Path, phase: str, require_images: bool) -> LayoutFiles:
    """``gtFine/<split>/<city>/`` label and instance ids, ``leftImg8bit/<split>/<city>/`` photos."""
    split = _split_folder(_CITYSCAPES_SPLITS, phase, "Cityscapes")
    label_dir, image_dir = root / "gtFine" / split, root / "leftImg8bit" / split
    if not label_dir.is_dir():
        raise MissingInput(f"{label_dir} is missing: Cityscapes' {split} labels are gtFine/{split}/<city>/"
                                f"*_gtFine_labelIds.png (from gtFine_trainvaltest.zip)")
    labels = _index(label_dir, (".png",), "*/*_gtFine_labelIds.png")
    if not labels:
        raise InvalidInput(f"{label_dir}: no <city>/*_gtFine_labelIds.png files (the *_color.png maps are not label ids)")
    instances = _index(label_dir, (".png",), "*/*_gtFine_instanceIds.png") or None
    if instances is not None:
        _check_pairing(labels, instances, label_dir, label_dir, "instance map (*_gtFine_instanceIds.png)")
    images = _index(image_dir, PHOTO_EXTENSIONS, "*/*_leftImg8bit.*") if image_dir.is_dir() else {}
    if images:
        _check_pairing(labels, images, label_dir, image_dir, "photo (*_leftImg8bit.png)")
    elif require_images:
        raise MissingInput(f"{image_dir} holds no <city>/*_leftImg8bit.png photos (from "
                                f"leftImg8bit_trainvaltest.zip, unpacked beside gtFine/)")
    return LayoutFiles(labels, instances, images or None, f"{root} (Cityscapes {split})")


def _ade20k_files(root: Path, phase: str, require_images: bool) -> LayoutFiles:
    """``annotations/<split>/*.png`` label maps and ``images/<split>/*.jpg`` photos."""
    split = _split_folder(_ADE20K_SPLITS, phase, "ADE20K")
    label_dir, image_dir = root / "annotations" / split, root / "images" / split
    if not label_dir.is_dir():
        raise MissingInput(f"{label_dir} is missing: ADE20K SceneParsing's labels are annotations/{split}/*.png")
    labels = _index(label_dir, (".png",))
    if not labels:
        raise InvalidInput(f"{label_dir}: no .png annotations")
    images = _index(image_dir, PHOTO_EXTENSIONS) if image_dir.is_dir() else {}
    if images:
        _check_pairing(labels, images, label_dir, image_dir, "photo")
    elif require_images:
        raise MissingInput(f"{image_dir} holds no photos (ADE20K SceneParsing: images/{split}/*.jpg)")
    return LayoutFiles(labels, None, images or None, f"{root} (ADE20K {split})")


def layout_files(root: str | os.PathLike, phase: str, layout: str = "auto", require_images: bool = True) -> \
        tuple[str, LayoutFiles]:
    """The (detected) layout of ``root`` and the files of its ``phase``.

    Raises:
        FileNotFoundError: a missing folder (the message says what the layout expects).
        ValueError: an unknown layout or phase, no label files, or files that do not pair up.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingInput(f"layout folder {root} does not exist")
    if layout not in LAYOUTS:
        raise InvalidInput(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    found = detect_layout(root) if layout == "auto" else layout
    reader = {"pix2pixhd": _pix2pixhd_files, "cityscapes": _cityscapes_files, "ade20k": _ade20k_files}[found]
    return found, reader(root, phase, require_images)
