"""SIMS's memory bank: every connected component of every class of the training layouts,
cut into a segment (mask, pixels, class, bounding box, context), stored on disk in a
compact indexed format and read lazily; and the vectorised retrieval over it.

On disk a bank is one folder:

- ``index.json``: format version, label count, thumbnail sizes, segment count, the source
  images' names and sizes, and the byte lengths of the packed files;
- ``meta.npy`` (N x 10 int64): class, source image, box y0 x0 y1 x1 (end exclusive), area,
  pixel offset, mask offset, instance id;
- ``shapes.npy`` (N x T x T uint8): the mask resized to a T x T thumbnail of its box;
- ``context.npy`` (N x C x C uint8): the labels in the box enlarged to twice its size, sampled on a
  C x C grid, 255 where the segment itself lies or outside the image;
- ``masks.npy``: every segment's box mask, bit-packed (np.packbits) and concatenated;
- ``pixels.npy``: every segment's RGB pixels inside its mask (raster order), concatenated.

The small index arrays are read at open; the two packed files are memory-mapped, so a
segment's pixels are read only when it is used and a large bank need not fit in memory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from ...errors import InvalidInput

__all__ = ["SegmentSettings", "Segment", "Segments", "MemoryBank", "BankError", "describe_segments", "thumbnail", "BANK_FORMAT",
           "THING_DEPTH"]

BANK_FORMAT = 1
"""Version of the on-disk layout."""
VOID = 255
"""Context label of positions outside the image or on the segment itself."""
THING_DEPTH = 1000
"""Instance ids of things are ``label * 1000 + k`` (Cityscapes); smaller ids are stuff."""
_META_COLUMNS = 10


@dataclass
class SegmentSettings:
    """How layouts are cut into segments: by the memory bank, and by SIMS for its queries."""

    min_area: int = 16
    """Smallest connected component, in pixels, that becomes a segment (bank and queries)."""
    shape_size: int = 32
    """Side of the mask thumbnails the shape IoU compares."""
    context_size: int = 16
    """Side of the context thumbnails (labels in the box grown to twice its size)."""


class BankError(InvalidInput):
    """A memory bank folder is missing or corrupt, or a query does not fit it."""


@dataclass
class Segment:
    """One segment read from a bank: its box crop."""

    label: int
    """Semantic class."""
    box: tuple[int, int, int, int]
    """y0, x0, y1, x1 in its source image (end exclusive)."""
    mask: np.ndarray
    """h x w bool, the box crop of the component."""
    pixels: np.ndarray
    """h x w x 3 uint8 crop of the source image, zero outside the mask."""
    source: int
    """Index of the source image in the bank."""
    instance: int
    """Instance id in the source image."""


@dataclass
class Segments:
    """The connected components of one layout, as arrays (what retrieval and pasting need)."""

    labels: np.ndarray
    """N int64 classes."""
    boxes: np.ndarray
    """N x 4 int64 y0, x0, y1, x1 (end exclusive)."""
    masks: list[np.ndarray]
    """N box crops, bool."""
    shapes: np.ndarray
    """N x T x T uint8 mask thumbnails."""
    context: np.ndarray
    """N x C x C uint8 context labels (255: void)."""
    instances: np.ndarray
    """N int64 instance id of each component."""
    size: tuple[int, int]
    """Height and width of the layout."""

    def __len__(self) -> int:
        return len(self.labels)

    def full_mask(self, index: int) -> np.ndarray:
        """The component's mask at the layout's size."""
        out = np.zeros(self.size, bool)
        y0, x0, y1, x1 = self.boxes[index]
        out[y0:y1, x0:x1] = self.masks[index]
        return out


def thumbnail(crop: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of an h x w array to size x size (pixel centres)."""
    h, w = crop.shape[:2]
    rows = np.minimum(((np.arange(size) + 0.5) * h / size).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size) + 0.5) * w / size).astype(np.int64), w - 1)
    return crop[rows[:, None], cols[None, :]]


def _context(label: np.ndarray, own: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Labels on a size x size grid over the box enlarged to twice its height and width,
    void outside the image and on the component itself."""
    y0, x0, y1, x1 = (float(v) for v in box)
    h, w = y1 - y0, x1 - x0
    ys = y0 - h / 2 + (np.arange(size) + 0.5) * 2 * h / size
    xs = x0 - w / 2 + (np.arange(size) + 0.5) * 2 * w / size
    rows, cols = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    inside = ((rows >= 0) & (rows < label.shape[0]))[:, None] & ((cols >= 0) & (cols < label.shape[1]))[None, :]
    r, c = np.clip(rows, 0, label.shape[0] - 1), np.clip(cols, 0, label.shape[1] - 1)
    out = label[r[:, None], c[None, :]].astype(np.uint8)
    out[~inside | own[r[:, None], c[None, :]]] = VOID
    return out


def describe_segments(label: np.ndarray, instance: np.ndarray | None = None, label_count: int | None = None,
                      min_area: int = 16, shape_size: int = 32, context_size: int = 16) -> Segments:
    """Cut a layout into segments: the connected components of each instance (of each class
    where ``instance`` is None), those of at least ``min_area`` pixels, with their thumbnails.

    Raises:
        ValueError: maps of different sizes, or a label outside 0..label_count-1.
    """
    label = np.asarray(label)
    instance = label if instance is None else np.asarray(instance)
    if label.ndim != 2 or instance.shape != label.shape:
        raise ValueError(f"label and instance maps must be H x W of one size, got {label.shape} and {instance.shape}")
    if label_count is not None and (label.min() < 0 or label.max() >= label_count):
        raise ValueError(f"label values must lie in 0..{label_count - 1} (label_count={label_count}); found "
                         f"{int(label.min())}..{int(label.max())}")
    if label.max() >= VOID:
        raise ValueError(f"a memory bank holds at most {VOID} labels; found label {int(label.max())}")
    labels, boxes, masks, shapes, contexts, ids = [], [], [], [], [], []
    for ident in np.unique(instance):
        region = instance == ident
        components, count = ndimage.label(region)
        for k, window in enumerate(ndimage.find_objects(components), start=1):
            if window is None:
                continue
            crop = components[window] == k
            area = int(crop.sum())
            if area < min_area:
                continue
            box = np.array([window[0].start, window[1].start, window[0].stop, window[1].stop], np.int64)
            values = label[window][crop]
            cls = int(np.bincount(values.astype(np.int64)).argmax())
            own = np.zeros(label.shape, bool)
            own[window] = crop
            labels.append(cls)
            boxes.append(box)
            masks.append(crop)
            shapes.append(thumbnail(crop, shape_size).astype(np.uint8))
            contexts.append(_context(label, own, box, context_size))
            ids.append(int(ident))
    return Segments(np.array(labels, np.int64), np.array(boxes, np.int64).reshape(-1, 4), masks,
                    np.array(shapes, np.uint8).reshape(-1, shape_size, shape_size),
                    np.array(contexts, np.uint8).reshape(-1, context_size, context_size),
                    np.array(ids, np.int64), tuple(label.shape))


def _score_matrix(q_shapes, q_context, q_boxes, q_sizes, b_shapes, b_context, b_boxes, b_sizes, label_count,
                  weights) -> np.ndarray:
    """nq x nb compatibility: weighted shape IoU, context IoU and box IoU (in coordinates
    relative to each image's size), all as matrix products."""
    ws, wc, wb = weights
    q = q_shapes.reshape(len(q_shapes), -1).astype(np.float32)
    b = b_shapes.reshape(len(b_shapes), -1).astype(np.float32)
    inter = q @ b.T
    shape_iou = inter / np.maximum(q.sum(1)[:, None] + b.sum(1)[None, :] - inter, 1.0)
    score = ws * shape_iou
    if wc:
        qc = q_context.reshape(len(q_context), -1)
        bc = b_context.reshape(len(b_context), -1)
        qv, bv = (qc != VOID).astype(np.float32), (bc != VOID).astype(np.float32)
        both = qv @ bv.T
        agree = np.zeros_like(both)
        for cls in np.intersect1d(np.unique(qc), np.unique(bc)):
            if cls == VOID:
                continue
            agree += (qc == cls).astype(np.float32) @ (bc == cls).astype(np.float32).T
        union = qv.sum(1)[:, None] + bv.sum(1)[None, :] - both + (both - agree)
        score = score + wc * agree / np.maximum(union, 1.0)
    if wb:
        qn = q_boxes / np.concatenate([q_sizes, q_sizes], axis=1)
        bn = b_boxes / np.concatenate([b_sizes, b_sizes], axis=1)
        ih = np.clip(np.minimum(qn[:, None, 2], bn[None, :, 2]) - np.maximum(qn[:, None, 0], bn[None, :, 0]), 0, None)
        iw = np.clip(np.minimum(qn[:, None, 3], bn[None, :, 3]) - np.maximum(qn[:, None, 1], bn[None, :, 1]), 0, None)
        area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
        inter_box = ih * iw
        score = score + wb * inter_box / np.maximum(area(qn)[:, None] + area(bn)[None, :] - inter_box, 1e-9)
    return score


class MemoryBank:
    """Segments of a set of training layouts with their images, in memory or memory-mapped
    from a bank folder. Build with :meth:`build`, write with :meth:`save`, read with
    :meth:`open`."""

    def __init__(self, meta: np.ndarray, shapes: np.ndarray, context: np.ndarray, masks: np.ndarray,
                 pixels: np.ndarray, label_count: int, sources: list[str], sizes: np.ndarray) -> None:
        self.meta, self.shapes, self.context = meta, shapes, context
        self.masks_packed, self.pixels_packed = masks, pixels
        self.label_count, self.sources, self.sizes = label_count, sources, sizes
        self.path: Path | None = None

    # ---- building and storing --------------------------------------------------------------
    @classmethod
    def build(cls, samples: Sequence, label_count: int, min_area: int = 16, shape_size: int = 32,
              context_size: int = 16) -> "MemoryBank":
        """The bank of ``samples`` (objects with ``name``, ``label``, ``instance``, ``image``).

        Raises:
            ValueError: a sample without an image, or a label outside 0..label_count-1.
        """
        meta, shapes, contexts, mask_parts, pixel_parts, names, sizes = [], [], [], [], [], [], []
        pixel_offset = mask_offset = 0
        for source in range(len(samples)):
            sample = samples[source]
            if sample.image is None:
                raise ValueError(f"{sample.name}: a memory bank needs the image of every layout")
            image = np.asarray(sample.image)
            if image.shape[:2] != np.asarray(sample.label).shape:
                raise ValueError(f"{sample.name}: image {image.shape[:2]} and label map "
                                 f"{np.asarray(sample.label).shape} differ in size")
            segs = describe_segments(sample.label, sample.instance, label_count, min_area, shape_size, context_size)
            names.append(str(sample.name))
            sizes.append(segs.size)
            for k in range(len(segs)):
                y0, x0, y1, x1 = segs.boxes[k]
                mask = segs.masks[k]
                area = int(mask.sum())
                packed = np.packbits(mask.reshape(-1))
                meta.append([segs.labels[k], source, y0, x0, y1, x1, area, pixel_offset, mask_offset,
                             segs.instances[k]])
                mask_parts.append(packed)
                pixel_parts.append(image[y0:y1, x0:x1][mask].reshape(-1))
                pixel_offset += area
                mask_offset += len(packed)
            shapes.append(segs.shapes)
            contexts.append(segs.context)
        cat = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)  # noqa: E731
        return cls(np.array(meta, np.int64).reshape(-1, _META_COLUMNS),
                   np.concatenate(shapes) if shapes else np.zeros((0, shape_size, shape_size), np.uint8),
                   np.concatenate(contexts) if contexts else np.zeros((0, context_size, context_size), np.uint8),
                   cat(mask_parts, np.uint8), cat(pixel_parts, np.uint8), label_count, names,
                   np.array(sizes, np.int64).reshape(-1, 2))

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the bank folder (the index last, so a half-written folder is refused)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        index = folder / "index.json"
        if index.exists():
            index.unlink()
        arrays = {"meta": self.meta, "shapes": self.shapes, "context": self.context, "masks": self.masks_packed,
                  "pixels": self.pixels_packed, "sizes": self.sizes}
        for name, array in arrays.items():
            np.save(folder / f"{name}.npy", np.ascontiguousarray(array))
        info = {"format": BANK_FORMAT, "label_count": self.label_count, "segments": len(self),
                "shape_size": int(self.shapes.shape[1]), "context_size": int(self.context.shape[1]),
                "mask_bytes": int(len(self.masks_packed)), "pixel_bytes": int(len(self.pixels_packed)),
                "sources": self.sources}
        tmp = folder / "index.json.tmp"
        tmp.write_text(json.dumps(info))
        os.replace(tmp, index)
        self.path = folder
        return folder

    @classmethod
    def open(cls, folder: str | os.PathLike) -> "MemoryBank":
        """Read a bank folder; the masks and pixels stay on disk (memory-mapped).

        Raises:
            BankError: no such folder, no index, a missing or damaged array, or arrays that
                do not agree with the index.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise BankError(f"no memory bank at {folder} (build one: toolchain-restore sims build-bank)")
        index = folder / "index.json"
        if not index.is_file():
            raise BankError(f"{folder}: not a memory bank (no index.json; was build-bank interrupted?)")
        try:
            info = json.loads(index.read_text())
            version, count = info["format"], int(info["segments"])
            label_count, sources = int(info["label_count"]), list(info["sources"])
            mask_bytes, pixel_bytes = int(info["mask_bytes"]), int(info["pixel_bytes"])
            shape_size, context_size = int(info["shape_size"]), int(info["context_size"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise BankError(f"{index}: corrupt index ({err!r})") from err
        if version != BANK_FORMAT:
            raise BankError(f"{folder}: bank format {version}, this version reads {BANK_FORMAT}; rebuild it")
        arrays = {}
        for name in ("meta", "shapes", "context", "masks", "pixels", "sizes"):
            path = folder / f"{name}.npy"
            if not path.is_file():
                raise BankError(f"{folder}: {name}.npy is missing")
            try:
                arrays[name] = np.load(path, mmap_mode="r" if name in ("masks", "pixels") else None,
                                       allow_pickle=False)
            except (ValueError, OSError, EOFError) as err:
                raise BankError(f"{path}: damaged ({err})") from err
        meta = arrays["meta"]
        expected = {"meta": (count, _META_COLUMNS), "shapes": (count, shape_size, shape_size),
                    "context": (count, context_size, context_size), "masks": (mask_bytes,),
                    "pixels": (pixel_bytes,), "sizes": (len(sources), 2)}
        for name, shape in expected.items():
            if tuple(arrays[name].shape) != shape:
                raise BankError(f"{folder}: {name}.npy has shape {tuple(arrays[name].shape)}, the index says {shape}")
        if count:
            boxes_ok = ((meta[:, 2] < meta[:, 4]) & (meta[:, 3] < meta[:, 5])).all()
            ends_ok = ((meta[:, 7] + meta[:, 6]) * 3 <= pixel_bytes).all() and (meta[:, 8] < mask_bytes).all()
            if not (boxes_ok and ends_ok and (meta[:, 0] < label_count).all() and (meta[:, 1] < len(sources)).all()):
                raise BankError(f"{folder}: meta.npy does not agree with the packed files (damaged)")
        bank = cls(meta, arrays["shapes"], arrays["context"], arrays["masks"], arrays["pixels"], label_count,
                   sources, arrays["sizes"])
        bank.path = folder
        return bank

    # ---- access ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.meta)

    @property
    def labels(self) -> np.ndarray:
        return self.meta[:, 0]

    @property
    def source_of(self) -> np.ndarray:
        return self.meta[:, 1]

    @property
    def boxes(self) -> np.ndarray:
        return self.meta[:, 2:6]

    def segment(self, index: int) -> Segment:
        """Read one segment (its mask and pixels come from the packed files)."""
        if not 0 <= index < len(self):
            raise IndexError(f"segment {index} of a bank of {len(self)}")
        cls, source, y0, x0, y1, x1, area, p_off, m_off, ident = (int(v) for v in self.meta[index])
        h, w = y1 - y0, x1 - x0
        packed = np.asarray(self.masks_packed[m_off:m_off + (h * w + 7) // 8])
        mask = np.unpackbits(packed, count=h * w).reshape(h, w).astype(bool)
        if int(mask.sum()) != area:
            raise BankError(f"segment {index}: its mask does not match its area (damaged bank)")
        pixels = np.zeros((h, w, 3), np.uint8)
        pixels[mask] = np.asarray(self.pixels_packed[3 * p_off:3 * (p_off + area)]).reshape(-1, 3)
        return Segment(cls, (y0, x0, y1, x1), mask, pixels, source, ident)

    def segments_of(self, source: int) -> np.ndarray:
        """Indices of the segments cut from source image ``source``."""
        return np.flatnonzero(self.meta[:, 1] == source)

    # ---- retrieval -------------------------------------------------------------------------
    def retrieve(self, query: Segments, k: int = 10, weights: tuple[float, float, float] = (1.0, 0.5, 0.5),
                 exclude_sources: np.ndarray | Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most compatible same-class bank segments of every query segment.

        Arguments:
            weights: of the shape IoU (mask thumbnails), the context IoU (surrounding labels) and the
                box IoU (position and size relative to the image).
            exclude_sources: per query segment, a bank source image whose segments it may not use
                (-1: none), e.g. the query's own image when simulating training canvases.

        Returns:
            nq x k indices (-1 where the class has fewer candidates) and their scores (-inf there).

        Raises:
            BankError: a query class the bank has no segment of, or thumbnails of another size.
        """
        nq = len(query)
        sizes = np.tile(np.array(query.size, np.int64), (nq, 1))
        return self.retrieve_arrays(query.labels, query.shapes, query.context, query.boxes, sizes, k, weights,
                                    exclude_sources)

    def retrieve_arrays(self, labels: np.ndarray, shapes: np.ndarray, context: np.ndarray, boxes: np.ndarray,
                        sizes: np.ndarray, k: int = 10, weights: tuple[float, float, float] = (1.0, 0.5, 0.5),
                        exclude_sources=None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`retrieve` for queries given as arrays (of several layouts at once: ``sizes``
        is nq x 2, each query's layout height and width)."""
        nq = len(labels)
        indices = np.full((nq, k), -1, np.int64)
        scores = np.full((nq, k), -np.inf, np.float32)
        if nq == 0:
            return indices, scores
        if shapes.shape[1:] != self.shapes.shape[1:] or context.shape[1:] != self.context.shape[1:]:
            raise BankError(f"query thumbnails {shapes.shape[1:]}/{context.shape[1:]} do not fit the "
                            f"bank's {self.shapes.shape[1:]}/{self.context.shape[1:]}")
        present = set(np.unique(self.labels).tolist())
        missing = sorted(set(np.asarray(labels).tolist()) - present)
        if missing:
            raise BankError(f"the memory bank has no segment of class(es) {missing} (it has {sorted(present)}); "
                            "build it from data that shows them, or leave retrieval off")
        exclude = (np.full(nq, -1, np.int64) if exclude_sources is None
                   else np.asarray(exclude_sources, np.int64).reshape(nq))
        bank_sizes = self.sizes[self.source_of].astype(np.float64)
        for cls in np.unique(labels):
            rows = np.flatnonzero(labels == cls)
            cand = np.flatnonzero(self.labels == cls)
            for lo in range(0, len(rows), 2048):
                part = rows[lo:lo + 2048]
                score = _score_matrix(shapes[part], context[part], boxes[part].astype(np.float64),
                                      sizes[part].astype(np.float64), self.shapes[cand], self.context[cand],
                                      self.boxes[cand].astype(np.float64), bank_sizes[cand], self.label_count, weights)
                score[self.source_of[cand][None, :] == exclude[part][:, None]] = -np.inf
                take = min(k, len(cand))
                order = np.argsort(-score, axis=1, kind="stable")[:, :take]
                top = np.take_along_axis(score, order, axis=1)
                found = np.isfinite(top)
                indices[part, :take] = np.where(found, cand[order], -1)
                scores[part, :take] = top
        return indices, scores
