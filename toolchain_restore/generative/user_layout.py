"""A layout a user gives a synthesis command (``--layout`` and ``--instance``), checked
against the model before any work: each problem is a one-line user error that names the
file and what the model expects."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InvalidInput, MissingInput
from .layout import read_integer_map

__all__ = ["read_user_layout", "layout_to_synthesize"]


def _read_map(path: Path, option: str) -> np.ndarray:
    if not path.is_file():
        raise MissingInput(f"{option} {path}: no such file (expected a single-channel integer PNG)")
    return read_integer_map(path)


def read_user_layout(label_path: str | os.PathLike, instance_path: str | os.PathLike | None, label_count: int,
                     multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The label map of ``--layout`` and the instance map of ``--instance`` (the label map
    itself without one), both H x W int64.

    Raises:
        MissingInput: a file that is not there.
        ImageReadError: a file that is not a single-channel integer image.
        InvalidInput: maps of different sizes, labels outside 0..label_count-1, or a height
            or width that is not a multiple of ``multiple`` (what the network needs).
    """
    label_path = Path(label_path)
    label = _read_map(label_path, "--layout")
    instance = label if instance_path is None else _read_map(Path(instance_path), "--instance")
    if instance.shape != label.shape:
        raise InvalidInput(f"--instance {instance_path}: {instance.shape[0]}x{instance.shape[1]} pixels, but the "
                           f"layout {label_path} is {label.shape[0]}x{label.shape[1]}; they must be the same size")
    low, high = int(label.min()), int(label.max())
    if low < 0 or high >= label_count:
        raise InvalidInput(f"--layout {label_path}: labels {low}..{high}, but this model knows 0..{label_count - 1} "
                           f"(label_count={label_count})")
    height, width = label.shape
    if height % multiple or width % multiple:
        raise InvalidInput(f"--layout {label_path}: {height}x{width} pixels; this model needs a height and width "
                           f"that are multiples of {multiple} (pad or crop it)")
    return label, instance


def layout_to_synthesize(layout: str | os.PathLike | None, instance: str | os.PathLike | None, scene: int,
                         label_count: int, multiple: int, height: int, width: int
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(label, instance, real photo or None) for a synthesis command: the user's ``--layout``
    (and ``--instance``) when given, else procedural test scene ``scene`` (``--scene``) of
    ``height`` x ``width`` with its real image. Raises as :func:`read_user_layout` and
    :func:`~.scenes.procedural_scene` do."""
    if layout:
        return (*read_user_layout(layout, instance, label_count, multiple), None)
    from .scenes import procedural_scene

    drawn = procedural_scene("test", scene, height, width, what="--scene")
    return drawn.label.astype(np.int64), drawn.instance.astype(np.int64), drawn.image
