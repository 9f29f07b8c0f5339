"""Fixed held-out sets of (L, H) patch pairs: drawn from held-out images, or read from pairs on disk.

A drawn set is identical across runs and methods: patch ``i`` comes from the generator
seeded ``seed + i``, exactly as ``ToolchainRestoreVectorEnv.reset(seed=seed)`` draws it, so
an evaluation here and one through the environment see the same patches.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from gymnasium.utils import seeding

from ..data.images import IMAGE_EXTENSIONS, read_image
from ..data.tensors import to_tensor
from .episode import draw_patch, make_sampler

__all__ = ["HeldOutSet", "held_out_set", "paired_folder_sets", "EVALUATION_SEED"]

EVALUATION_SEED = 12345
"""Seed of the held-out test sets everywhere in the project (cards, README, benchmarks)."""


@dataclass
class HeldOutSet:
    """N patches: low-quality input ``L`` and ground truth ``H``, N x 3 x P x P floats in [0, 1]."""

    name: str
    L: torch.Tensor
    H: torch.Tensor

    def __post_init__(self) -> None:
        if self.L.shape != self.H.shape or self.L.ndim != 4 or self.L.shape[1] != 3 or len(self.L) == 0:
            raise ValueError(f"held-out set {self.name!r}: L and H must be the same non-empty N x 3 x P x P, "
                             f"got {tuple(self.L.shape)} and {tuple(self.H.shape)}")

    def __len__(self) -> int:
        return len(self.L)


def held_out_set(level: str, patches: int, data: str | os.PathLike | None = None, seed: int = EVALUATION_SEED,
                 patch_size: int = 63, split: str = "test") -> HeldOutSet:
    """``patches`` patches of the held-out ``split`` of ``data`` (None: the embedded test
    images), degraded at ``level`` with the project's protocol (no training-only rules)."""
    if patches < 1:
        raise ValueError(f"patches must be positive, got {patches}")
    sampler = make_sampler(None if data is None else str(data), split, patch_size)
    drawn = [draw_patch(sampler, seeding.np_random(seed + i)[0], level, training_rules=False)[0] for i in range(patches)]
    return HeldOutSet(level, to_tensor([p.L for p in drawn]), to_tensor([p.H for p in drawn]))


_SUFFIX = re.compile(r"_(in|gt)$")


def _by_key(folder: Path) -> dict[str, Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    keyed: dict[str, Path] = {}
    for path in files:
        key = _SUFFIX.sub("", path.stem)  # the official severe set names two inputs without "_in"
        if key in keyed:
            raise ValueError(f"{folder}: {keyed[key].name} and {path.name} are both pair {key!r}")
        keyed[key] = path
    return keyed


def _tiles(image: np.ndarray, size: int) -> list[np.ndarray]:
    rows, cols = image.shape[0] // size, image.shape[1] // size
    return [image[r * size:(r + 1) * size, c * size:(c + 1) * size] for r in range(rows) for c in range(cols)]


def paired_folder_sets(root: str | os.PathLike, patch_size: int = 63) -> list[HeldOutSet]:
    """Test sets from the official layout: ``<name>_in/`` inputs beside ``<name>_gt/`` ground
    truths (``1_in.png`` pairs with ``1_gt.png``), one set per name, as in RL-Restore's
    ``data/test``. Pairs larger than a patch are cut into non-overlapping patches."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    names = sorted(p.name[:-3] for p in root.iterdir() if p.is_dir() and p.name.endswith("_in"))
    if not names:
        raise ValueError(f"{root} holds no '<name>_in' folder (expected e.g. moderate_in/ and moderate_gt/)")
    sets = []
    for name in names:
        gt_folder = root / f"{name}_gt"
        if not gt_folder.is_dir():
            raise ValueError(f"{root / (name + '_in')} has no ground-truth folder {gt_folder}")
        inputs, truths = _by_key(root / f"{name}_in"), _by_key(gt_folder)
        unpaired = sorted(set(inputs) ^ set(truths))
        if unpaired:
            raise ValueError(f"{root}: {name}_in and {name}_gt do not pair up; unmatched: {unpaired}")
        L, H = [], []
        for key in sorted(inputs):
            low, high = read_image(inputs[key]), read_image(truths[key])
            if low.shape != high.shape:
                raise ValueError(f"{inputs[key]} is {low.shape[1]}x{low.shape[0]} but {truths[key]} is "
                                 f"{high.shape[1]}x{high.shape[0]}")
            if min(low.shape[:2]) < patch_size:
                raise ValueError(f"{inputs[key]} is smaller than a {patch_size}x{patch_size} patch; "
                                 f"restore small images with `toolchain-restore restore`")
            L += _tiles(low, patch_size)
            H += _tiles(high, patch_size)
        sets.append(HeldOutSet(name, to_tensor(L), to_tensor(H)))
    return sets
