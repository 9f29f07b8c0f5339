"""Synthesis with a trained PoseWarp model: one source image and two poses to an image,
joints files, picture sheets, the shipped model, and the gradient-magnitude statistics
the paper uses to compare losses (sharper outputs have larger gradients)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...errors import InvalidInput, MissingInput
from ...serialization import shipped_weights
from ..datasets import from_model_image
from .data import PosePair, apply_affine, crop_matrix, read_video_info, transform_joints
from .model import PoseWarp, load_posewarp
from .pose import JOINT_COUNT, check_joints, pose_heatmaps
from .training import pairs_to_batch

__all__ = ["SHIPPED_MODEL", "load_shipped", "synthesize", "read_joints", "prepare_pair", "write_sheet",
           "gradient_statistics", "pose_picture"]

SHIPPED_MODEL = "posewarp.safetensors"


def load_shipped(device: str | torch.device = "cpu") -> PoseWarp:
    """The modular model shipped for the procedural figures (128x128)."""
    return load_posewarp(shipped_weights(SHIPPED_MODEL), device)


def read_joints(path: str | os.PathLike, frame: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """14 x 2 joints (x, y pixels) from a .npy or .json array, or frame ``frame`` (1-based) of an
    official .mat info file (then also its box x, y, w, h; else None).

    Raises:
        MissingInput: no such file.
        InvalidInput: unreadable, a wrong shape, a .mat without --frame or beyond its frames.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"no joints file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".mat":
        joints, boxes = read_video_info(path)
        if frame is None:
            raise InvalidInput(f"{path} holds {len(joints)} frames of joints: choose one with --frame N (1-based)")
        if not 1 <= frame <= len(joints):
            raise InvalidInput(f"{path}: frame {frame} is out of range 1..{len(joints)}")
        return check_joints(joints[frame - 1], f"{path} frame {frame}"), boxes[frame - 1]
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise InvalidInput(f"{path}: not a readable .npy array ({err})") from err
    elif suffix == ".json":
        try:
            array = np.array(json.loads(path.read_text()), dtype=np.float64)
        except (json.JSONDecodeError, ValueError, TypeError) as err:
            raise InvalidInput(f"{path}: not a JSON array of numbers ({err})") from err
    else:
        raise InvalidInput(f"{path}: joints must be .npy, .json (14 x 2 x/y pixels) or an official .mat")
    return check_joints(array, str(path)), None


def _box_of(joints: np.ndarray) -> np.ndarray:
    known = joints[np.isfinite(joints).all(1)]
    if not len(known):
        raise InvalidInput("no known joints to frame the person by")
    lo, hi = known.min(0), known.max(0)
    pad = 0.1 * (hi - lo).max()
    return np.array([lo[0] - pad, lo[1] - pad, hi[0] - lo[0] + 2 * pad, hi[1] - lo[1] + 2 * pad])


def prepare_pair(image: np.ndarray, source_joints: np.ndarray, target_joints: np.ndarray, size: int,
                 boxes: Sequence[np.ndarray | None] = (None, None)) -> PosePair:
    """Crop and scale a source image (any size) and both poses to the model's size x size,
    by the boxes (from the joints where not given); the pair's ``crop`` is the map from the
    image to the crop, for :func:`~.data.paste_back`. An image already of the model's size
    is used as it is (``crop`` None)."""
    source_joints, target_joints = check_joints(source_joints, "source joints"), check_joints(target_joints, "target joints")
    if image.shape[:2] == (size, size) and all(b is None for b in boxes):
        return PosePair(image, source_joints, image, target_joints)
    box_a = boxes[0] if boxes[0] is not None else _box_of(source_joints)
    box_b = boxes[1] if boxes[1] is not None else _box_of(target_joints)
    matrix = crop_matrix(np.stack([box_a, box_b]), size)
    crop = apply_affine(image, matrix, size)
    return PosePair(crop, transform_joints(source_joints, matrix), crop, transform_joints(target_joints, matrix),
                    matrix)


@torch.no_grad()
def synthesize(model: PoseWarp, pairs: Sequence[PosePair], device: str | torch.device = "cpu") -> list[dict]:
    """For each pair (its target image is ignored), the output (H x W x 3 uint8) and, for the
    modular model, 'masks' (11 x H x W) and 'warped' (H x W x 3 uint8, the parts summed)."""
    model = model.to(device).eval()
    batch = pairs_to_batch(model, list(pairs))
    result = model(batch["source"].to(device), batch["source_joints"], batch["target_joints"], batch["poses"])
    out = []
    for k in range(len(pairs)):
        item = {"output": from_model_image(result["output"][k])}
        if "masks" in result:
            item["masks"] = result["masks"][k].float().cpu().numpy()
            item["warped"] = from_model_image(result["warped"][k].sum(0))
        out.append(item)
    return out


def pose_picture(joints: np.ndarray, size: int) -> np.ndarray:
    """size x size x 3 uint8 picture of a pose: its heatmaps in colour over black."""
    maps = pose_heatmaps(joints, size, size, sigma=max(1.5, size / 64)).numpy()
    hues = np.array([[255, 80, 80], [255, 255, 255]] + [[80, 160, 255]] * 3 + [[255, 200, 60]] * 3 +
                    [[80, 255, 120]] * 3 + [[220, 100, 255]] * 3, np.float64)[:JOINT_COUNT]
    picture = np.einsum("khw,kc->hwc", maps, hues)
    return picture.clip(0, 255).astype(np.uint8)


def write_sheet(path: str | os.PathLike, rows: Sequence[Sequence[np.ndarray]]) -> None:
    """One picture: each row's images side by side (e.g. source | target pose | output)."""
    from PIL import Image

    lines = []
    for tiles in rows:
        gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
        lines.append(np.concatenate([x for tile in tiles for x in (tile, gap)][:-1], axis=1))
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 4), (0, width - line.shape[1]), (0, 0)), constant_values=255) for line in lines]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(lines, axis=0)[:-4]).save(path)


def gradient_statistics(images: Sequence[np.ndarray]) -> dict[str, float]:
    """Mean, median and 90th percentile of the gradient magnitude of the grey images
    (finite differences, on [0, 1])."""
    magnitudes = []
    for image in images:
        grey = image.astype(np.float64).mean(-1) / 255
        gx, gy = np.diff(grey, axis=1)[:-1], np.diff(grey, axis=0)[:, :-1]
        magnitudes.append(np.hypot(gx, gy).ravel())
    m = np.concatenate(magnitudes)
    return {"mean": float(m.mean()), "median": float(np.median(m)), "p90": float(np.percentile(m, 90))}
