"""Geometry and canvases: placing a retrieved segment onto a query mask (box fit, optional
affine refinement), the alignment network's crop frames, pasting segments back to front
onto a canvas, and the simulated training canvases of the reference.

Coordinates: image pixels with pixel centres at k + 0.5. A query's *frame* is its box
grown by ``margin`` of its size on every side; the alignment network works in the frame
resampled to S x S, with affine maps in the frame's [-1, 1] coordinates (output point to
input point, as ``torch.nn.functional.affine_grid``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .bank import Segment, Segments

__all__ = ["frame_of", "frame_points", "sample_crop", "fit_points", "frame_inputs", "place_segment",
           "compose_canvas", "CanvasSimulation", "simulate_canvas", "box_fit_mask"]


def frame_of(box, margin: float) -> np.ndarray:
    """The frame (float y0, x0, y1, x1) of a box: grown by ``margin`` of its size per side."""
    y0, x0, y1, x1 = (float(v) for v in box)
    h, w = y1 - y0, x1 - x0
    return np.array([y0 - margin * h, x0 - margin * w, y1 + margin * h, x1 + margin * w])


def frame_points(frame: np.ndarray, size: int) -> torch.Tensor:
    """size x size x 2 (y, x) image coordinates of the frame's grid of pixel centres."""
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    ys = float(frame[0]) + t * float(frame[2] - frame[0])
    xs = float(frame[1]) + t * float(frame[3] - frame[1])
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)


def _to_frame(points: torch.Tensor, frame: np.ndarray) -> torch.Tensor:
    lo = torch.tensor(frame[:2], dtype=torch.float32)
    extent = torch.tensor(frame[2:] - frame[:2], dtype=torch.float32)
    return 2 * (points - lo) / extent - 1


def _from_frame(coords: torch.Tensor, frame: np.ndarray) -> torch.Tensor:
    lo = torch.tensor(frame[:2], dtype=torch.float32)
    extent = torch.tensor(frame[2:] - frame[:2], dtype=torch.float32)
    return lo + (coords + 1) / 2 * extent


def apply_affine(theta: torch.Tensor, points_yx: torch.Tensor) -> torch.Tensor:
    """A 2 x 3 map in (x, y) order applied to ... x 2 (y, x) frame coordinates."""
    xy = points_yx.flip(-1)
    out = xy @ theta[:, :2].T + theta[:, 2]
    return out.flip(-1)


def fit_points(points: torch.Tensor, query_box, source_shape: tuple[int, int]) -> torch.Tensor:
    """Image points relative to the query box -> the source crop's pixel coordinates (the
    box fit: the source's box stretched onto the query's)."""
    y0, x0, y1, x1 = (float(v) for v in query_box)
    scale = torch.tensor([source_shape[0] / (y1 - y0), source_shape[1] / (x1 - x0)], dtype=torch.float32)
    return (points - torch.tensor([y0, x0], dtype=torch.float32)) * scale


def sample_crop(crop: torch.Tensor, points: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """C x h x w crop sampled at ... x 2 (y, x) points of its pixel coordinates -> C x ...; zero outside."""
    h, w = crop.shape[-2:]
    grid = torch.stack([2 * points[..., 1] / w - 1, 2 * points[..., 0] / h - 1], dim=-1)
    flat = grid.reshape(1, 1, -1, 2)
    out = F.grid_sample(crop[None].float(), flat, mode=mode, padding_mode="zeros", align_corners=False)
    return out[0, :, 0].reshape(crop.shape[0], *points.shape[:-1])


def _segment_tensors(segment: Segment) -> torch.Tensor:
    """4 x h x w: mask and RGB in [-1, 1] (zero outside the mask)."""
    mask = torch.from_numpy(segment.mask.astype(np.float32))[None]
    rgb = torch.from_numpy(segment.pixels.astype(np.float32)).permute(2, 0, 1) / 127.5 - 1
    return torch.cat([mask, rgb * mask], dim=0)


def source_points(points: torch.Tensor, query_box, frame: np.ndarray, source_shape, theta: torch.Tensor | None):
    """Where image points of the query's frame read the source crop: through the frame
    affine ``theta`` (None: identity), then the box fit."""
    if theta is not None:
        points = _from_frame(apply_affine(theta, _to_frame(points, frame)), frame)
    return fit_points(points, query_box, source_shape)


def frame_inputs(query_mask: np.ndarray, query_box, segment: Segment, size: int, margin: float,
                 perturb: torch.Tensor | None = None, image: np.ndarray | None = None):
    """The alignment network's inputs for one (query, segment) pair: query mask, segment
    mask and segment RGB box-fitted into the query's S x S frame (through ``perturb``, a
    frame affine, when given), and the real image in the frame when ``image`` is given."""
    frame = frame_of(query_box, margin)
    points = frame_points(frame, size)
    full = torch.from_numpy(query_mask.astype(np.float32))[None]
    # Nearest on the query mask: the target keeps its hard edge.
    q = sample_crop(full, points, "nearest")
    src = sample_crop(_segment_tensors(segment), source_points(points, query_box, frame, segment.mask.shape, perturb))
    real = None
    if image is not None:
        real = sample_crop(torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1) / 127.5 - 1, points)
    return q, src[:1], src[1:], real


def place_segment(segment: Segment, query_box, image_size: tuple[int, int], margin: float,
                  theta: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """The segment box-fitted onto the query box and warped by the frame affine ``theta``,
    at full resolution over the part of the query's frame inside the image: (mask in
    [0, 1], RGB uint8, the window of the image they cover)."""
    frame = frame_of(query_box, margin)
    h, w = image_size
    r0, c0 = max(int(np.floor(frame[0])), 0), max(int(np.floor(frame[1])), 0)
    r1, c1 = min(int(np.ceil(frame[2])), h), min(int(np.ceil(frame[3])), w)
    ys = torch.arange(r0, r1, dtype=torch.float32) + 0.5
    xs = torch.arange(c0, c1, dtype=torch.float32) + 0.5
    points = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)
    out = sample_crop(_segment_tensors(segment), source_points(points, query_box, frame, segment.mask.shape, theta))
    mask = out[0].clamp(0, 1)
    rgb = torch.where(mask > 1e-3, out[1:] / mask.clamp_min(1e-3), torch.zeros_like(out[1:]))
    rgb = ((rgb.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    return mask.numpy(), rgb, (slice(r0, r1), slice(c0, c1))


def box_fit_mask(source_mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A crop mask stretched (nearest) onto a box of ``shape``."""
    h, w = source_mask.shape
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(np.int64), w - 1)
    return source_mask[rows[:, None], cols[None, :]]


def compose_canvas(label: np.ndarray, query: Segments, placed: list, order: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Paste placed segments (``place_segment``'s outputs, None for a query without one) in
    ``order`` (back to front), each only where the layout has its class.

    Returns:
        H x W x 3 uint8 canvas and H x W bool canvas mask.
    """
    canvas = np.zeros((*label.shape, 3), np.uint8)
    filled = np.zeros(label.shape, bool)
    for index in order:
        if placed[index] is None:
            continue
        mask, rgb, window = placed[index]
        where = (mask > 0.5) & (label[window] == query.labels[index])
        canvas[window][where] = rgb[where]
        filled[window] |= where
    return canvas, filled


@dataclass
class CanvasSimulation:
    """How training canvases are simulated (the reference's recipe)."""

    colour_transfer: float = 0.3
    """Probability per segment of transferring the partner segment's colour statistics."""
    erase_width: int = 2
    """Pixels erased along the boundaries of every pasted region (0: none)."""
    move: float = 0.3
    """Probability per segment of a random small rotation and translation (the place it leaves is void)."""
    max_rotation: float = 5.0
    """Largest rotation, degrees."""
    max_shift: float = 0.08
    """Largest translation, as a fraction of the segment's box."""


def _move(content: np.ndarray, mask: np.ndarray, rng: np.random.Generator, s: CanvasSimulation):
    """Rotate and translate a box crop (content zero outside ``mask``) about its centre."""
    h, w = mask.shape
    angle = np.deg2rad(rng.uniform(-s.max_rotation, s.max_rotation))
    shift = rng.uniform(-s.max_shift, s.max_shift, 2) * (h, w)
    c, si = np.cos(angle), np.sin(angle)
    matrix = np.array([[c, -si], [si, c]])
    centre = np.array([h / 2, w / 2])
    offset = centre - matrix @ (centre + shift)
    moved_mask = ndimage.affine_transform(mask.astype(np.float32), matrix, offset, order=0, cval=0) > 0.5
    moved = np.stack([ndimage.affine_transform(content[..., k], matrix, offset, order=1, cval=0)
                      for k in range(3)], axis=-1)
    return moved, moved_mask


def simulate_canvas(image: np.ndarray, label: np.ndarray, query: Segments, partners: list[Segment | None],
                    rng: np.random.Generator, settings: CanvasSimulation = CanvasSimulation()):
    """A training canvas from the training image itself: for every segment, the ground-truth
    pixels inside the intersection of its mask and its partner's (the best-IoU same-class
    segment of another image, box-fitted onto it); colour transfer from the partner with
    some probability; a band erased along boundaries; with some probability a small random
    rotation and translation, the place it leaves being void (canvas mask 0).

    Returns:
        canvas (H x W x 3 uint8), canvas mask (H x W bool) and ``copied``: the H x W bool
        map of the ground-truth pixels the canvas was made from (always inside the intersections).
    """
    h, w = label.shape
    canvas = np.zeros((h, w, 3), np.uint8)
    filled = np.zeros((h, w), bool)
    copied = np.zeros((h, w), bool)
    order = np.argsort(query.boxes[:, 2], kind="stable")  # lower bottom edge: nearer, pasted later
    for index in order:
        partner = partners[index]
        if partner is None:
            continue
        y0, x0, y1, x1 = (int(v) for v in query.boxes[index])
        inter = query.masks[index] & box_fit_mask(partner.mask, (y1 - y0, x1 - x0))
        if settings.erase_width > 0:
            inter = ndimage.binary_erosion(inter, iterations=settings.erase_width, border_value=0)
        if not inter.any():
            continue
        copied[y0:y1, x0:x1] |= inter
        content = np.where(inter[..., None], image[y0:y1, x0:x1].astype(np.float32), 0.0)
        if rng.random() < settings.colour_transfer:
            ref = partner.pixels[partner.mask].astype(np.float32)
            src = content[inter]
            scale = (ref.std(0) + 1.0) / (src.std(0) + 1.0)
            content[inter] = (src - src.mean(0)) * scale + ref.mean(0)
        region = inter
        if rng.random() < settings.move:
            content, region = _move(content, inter, rng, settings)
        where = region & (label[y0:y1, x0:x1] == query.labels[index])
        canvas[y0:y1, x0:x1][where] = np.clip(np.round(content[where]), 0, 255).astype(np.uint8)
        filled[y0:y1, x0:x1] |= where
    return canvas, filled, copied
