"""Which segment is in front: overlapping pairs of thing segments, their features for the
ordering classifier, the true order where the data knows it (procedural scenes), and the
back-to-front paste order of a layout."""

from __future__ import annotations

import numpy as np
import torch

from .bank import THING_DEPTH, Segments, thumbnail

__all__ = ["overlapping_pairs", "pair_features", "true_pairs", "paste_order", "ORDER_FALLBACK"]


def overlapping_pairs(segments: Segments, touch: int = 2) -> np.ndarray:
    """P x 2 index pairs (i < j) of thing segments of different instances whose boxes,
    grown by ``touch`` pixels, overlap."""
    things = np.flatnonzero(segments.instances >= THING_DEPTH)
    if len(things) < 2:
        return np.zeros((0, 2), np.int64)
    b = segments.boxes[things].astype(np.int64)
    lo = np.maximum(b[:, None, :2], b[None, :, :2])
    hi = np.minimum(b[:, None, 2:], b[None, :, 2:])
    overlap = ((hi - lo + 2 * touch) > 0).all(-1)
    ids = segments.instances[things]
    overlap &= ids[:, None] != ids[None, :]
    i, j = np.nonzero(np.triu(overlap, 1))
    return np.stack([things[i], things[j]], axis=1)


def pair_features(segments: Segments, pairs: np.ndarray, size: int = 32):
    """The classifier's inputs: N x 2 x S x S masks in the union box, N x 2 classes, N x 2 x 4
    boxes over the image's height and width."""
    h, w = segments.size
    masks = np.zeros((len(pairs), 2, size, size), np.float32)
    for n, (a, b) in enumerate(pairs):
        ba, bb = segments.boxes[a], segments.boxes[b]
        y0, x0 = min(ba[0], bb[0]), min(ba[1], bb[1])
        y1, x1 = max(ba[2], bb[2]), max(ba[3], bb[3])
        union = np.zeros((y1 - y0, x1 - x0), bool)
        for k, index in enumerate((a, b)):
            union[:] = False
            by0, bx0, by1, bx1 = segments.boxes[index]
            union[by0 - y0:by1 - y0, bx0 - x0:bx1 - x0] = segments.masks[index]
            masks[n, k] = thumbnail(union, size)
    scale = np.array([h, w, h, w], np.float32)
    boxes = segments.boxes[pairs.reshape(-1)].reshape(-1, 2, 4).astype(np.float32) / scale
    return (torch.from_numpy(masks), torch.from_numpy(segments.labels[pairs].reshape(-1, 2)),
            torch.from_numpy(boxes))


def true_pairs(segments: Segments, depth_order: list[int], pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of ``pairs``, those whose two instances are both in ``depth_order`` (back to front),
    and for each whether the first is in front (1.0) or not (0.0)."""
    rank = {ident: k for k, ident in enumerate(depth_order)}
    keep, target = [], []
    for n, (a, b) in enumerate(pairs):
        ra, rb = rank.get(int(segments.instances[a])), rank.get(int(segments.instances[b]))
        if ra is None or rb is None or ra == rb:
            continue
        keep.append(n)
        target.append(float(ra > rb))
    return pairs[np.array(keep, np.int64)].reshape(-1, 2), np.array(target, np.float32)


ORDER_FALLBACK = "larger segments first"
"""The paste order without a trained ordering classifier (a model trained on data without
depth-order labels, e.g. a folder): every segment behind every smaller one."""


@torch.no_grad()
def paste_order(segments: Segments, orderer=None, size: int = 32) -> list[int]:
    """Back to front: stuff first (largest first), then things ranked by how many of their
    overlapping neighbours the classifier puts behind them (the bottom edge of the box, the
    lower the nearer, breaks ties). Without a classifier: :data:`ORDER_FALLBACK`, things too
    largest first, so that a small object is never hidden under a large one."""
    areas = np.array([m.sum() for m in segments.masks])
    by_area = [int(i) for i in np.argsort(-areas, kind="stable")]
    stuff = [i for i in by_area if segments.instances[i] < THING_DEPTH]
    if orderer is None:
        return stuff + [i for i in by_area if segments.instances[i] >= THING_DEPTH]
    things = np.flatnonzero(segments.instances >= THING_DEPTH)
    score = segments.boxes[:, 2].astype(np.float64) / max(segments.size[0], 1) * 1e-3
    pairs = overlapping_pairs(segments)
    if len(pairs):
        device = next(orderer.parameters()).device
        masks, classes, boxes = pair_features(segments, pairs, size)
        p = torch.sigmoid(orderer(masks.to(device), classes.to(device), boxes.to(device))).float().cpu().numpy()
        np.add.at(score, pairs[:, 0], p - 0.5)
        np.add.at(score, pairs[:, 1], 0.5 - p)
    return stuff + [int(i) for i in things[np.argsort(score[things], kind="stable")]]
