"""From a layout to a photo with a trained model and a memory bank: cut the layout into
segments, retrieve candidates, align them (spatial transformer or box fit), keep the
best-fitting candidate of each, order them, paste them onto a canvas, and synthesise."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...errors import InvalidInput
from ...serialization import shipped_weights
from ..datasets import from_model_image, to_model_image
from .bank import MemoryBank, Segments, describe_segments
from .canvas import compose_canvas, frame_inputs, place_segment
from .model import Sims, load_sims
from .networks import warp
from .ordering import paste_order

__all__ = ["CanvasResult", "build_canvas", "synthesize", "align_candidates", "load_shipped", "write_sheet", "evaluate_sims",
           "SHIPPED_MODEL", "SHIPPED_BANK"]

SHIPPED_MODEL = "sims.safetensors"
SHIPPED_BANK = "sims_bank"


def load_shipped(device: str | torch.device = "cpu") -> tuple[Sims, MemoryBank]:
    """The model and the memory bank shipped for the procedural scenes."""
    from importlib import resources

    from ...serialization import WeightsError

    model = load_sims(shipped_weights(SHIPPED_MODEL), device)
    folder = Path(str(resources.files("toolchain_restore") / "weights" / SHIPPED_BANK))
    if not (folder / "index.json").is_file():
        raise WeightsError(f"the shipped memory bank {SHIPPED_BANK} is missing from the install ({folder})")
    return model, MemoryBank.open(folder)


@dataclass
class CanvasResult:
    """A layout's canvas and how it was made."""

    canvas: np.ndarray
    """H x W x 3 uint8, black where empty."""
    mask: np.ndarray
    """H x W bool: where the canvas has pixels."""
    segments: Segments
    """The layout's segments (queries)."""
    chosen: np.ndarray
    """Per query segment, the bank segment pasted (-1: none)."""
    order: list[int]
    """Query segments back to front."""
    thetas: list


def _refine(theta: torch.Tensor, query: torch.Tensor, source_mask: torch.Tensor, steps: int) -> torch.Tensor:
    theta = theta.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([theta], lr=0.01)
    for _ in range(steps):
        optimiser.zero_grad()
        loss = (warp(theta, source_mask) - query).abs().mean()
        loss.backward()
        optimiser.step()
    return theta.detach()


@torch.no_grad()
def align_candidates(model: Sims | None, segments: Segments, candidates: np.ndarray, bank: MemoryBank,
                     alignment: str = "stn", size: int = 32, margin: float = 0.25, refine_steps: int = 0,
                     device: str | torch.device = "cpu"):
    """Align every candidate (nq x k bank indices, -1: none) to its query; returns per
    query the chosen bank index (best mask IoU in the query's frame after alignment, -1:
    none) and its frame affine (None: the box fit alone)."""
    rows, items = [], []
    for q in range(len(segments)):
        full = segments.full_mask(q)
        for index in candidates[q]:
            if index < 0:
                continue
            seg = bank.segment(int(index))
            qm, sm, srgb, _ = frame_inputs(full, segments.boxes[q], seg, size, margin)
            rows.append((q, int(index)))
            items.append((qm, sm, srgb))
    chosen = np.full(len(segments), -1, np.int64)
    thetas: list = [None] * len(segments)
    if not items:
        return chosen, thetas
    qm, sm, srgb = (torch.stack([it[k] for it in items]).to(device) for k in range(3))
    if alignment == "stn":
        if model is None:
            raise ValueError("alignment 'stn' needs a model with an alignment network")
        theta = model.aligner.to(device)(qm, sm, srgb)
        if refine_steps:
            with torch.enable_grad():
                theta = _refine(theta, qm, sm, refine_steps)
    elif alignment == "box":
        theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], device=device).expand(len(items), 2, 3)
    else:
        raise ValueError(f"alignment must be 'stn' or 'box', got {alignment!r}")
    warped = warp(theta, sm) > 0.5
    target = qm > 0.5
    iou = ((warped & target).flatten(1).sum(1).float() / (warped | target).flatten(1).sum(1).clamp_min(1).float())
    best = np.full(len(segments), -np.inf)
    for n, (q, index) in enumerate(rows):
        if iou[n] > best[q]:
            best[q], chosen[q] = float(iou[n]), index
            thetas[q] = theta[n].cpu() if alignment == "stn" else None
    return chosen, thetas


def build_canvas(model: Sims | None, bank: MemoryBank, label: np.ndarray, instance: np.ndarray | None = None,
                 settings=None, device: str | torch.device = "cpu") -> CanvasResult:
    """The canvas of a layout: retrieval (top-k per segment, same class), alignment, the
    paste order (the ordering classifier where it was trained, see ``Sims.ordering_learned``;
    else, and without a model, ``ordering.ORDER_FALLBACK``), pasting.

    Raises:
        BankError: a class of the layout the bank has no segment of.
        ValueError: labels outside the bank's label count.
    """
    s = settings if settings is not None else model.settings
    label = np.asarray(label)
    segments = describe_segments(label, instance, bank.label_count, s.min_area, bank.shapes.shape[1],
                                 bank.context.shape[1])
    candidates, _ = bank.retrieve(segments, s.top_k, s.weights)
    chosen, thetas = align_candidates(model, segments, candidates, bank, s.alignment, s.align_size, s.align_margin,
                                      s.align_refine_steps, device)
    learned = model is not None and model.ordering_learned
    order = paste_order(segments, model.orderer.to(device) if learned else None, s.shape_size)
    placed = [None if chosen[q] < 0 else place_segment(bank.segment(int(chosen[q])), segments.boxes[q], label.shape,
                                                        s.align_margin, thetas[q]) for q in range(len(segments))]
    canvas, mask = compose_canvas(label, segments, placed, order)
    return CanvasResult(canvas, mask, segments, chosen, order, thetas)


@torch.no_grad()
def synthesize(model: Sims, bank: MemoryBank | None, label: np.ndarray, instance: np.ndarray | None = None,
               device: str | torch.device = "cpu", return_canvas: bool = False):
    """The image (H x W x 3 uint8) for one layout; with ``return_canvas`` also its
    :class:`CanvasResult` (None without retrieval).

    Raises:
        ValueError: labels outside the model's label count, a size that does not fit the network,
            or a model that retrieves and no bank.
    """
    model = model.to(device).eval()
    label = np.asarray(label)
    n = model.settings.label_count
    if label.min() < 0 or label.max() >= n:
        raise ValueError(f"label values must lie in 0..{n - 1} (label_count={n}); found "
                         f"{int(label.min())}..{int(label.max())}")
    result = None
    canvas = np.zeros((*label.shape, 3), np.uint8)
    mask = np.zeros(label.shape, bool)
    if model.settings.retrieval:
        if bank is None:
            raise ValueError("this model synthesises from retrieved segments: give it a memory bank "
                             "(toolchain-restore sims build-bank)")
        if bank.label_count != n:
            raise InvalidInput(f"the memory bank has {bank.label_count} labels, the model {n} (a bank of other data?)")
        result = build_canvas(model, bank, label, instance, device=device)
        canvas, mask = result.canvas, result.mask
    label_t = torch.from_numpy(np.ascontiguousarray(label)).long()[None].to(device)
    canvas_t = to_model_image(canvas)[None].to(device)
    mask_t = torch.from_numpy(mask.astype(np.float32))[None, None].to(device)
    image, _ = model(label_t, canvas_t, mask_t)
    out = from_model_image(image[0])
    return (out, result) if return_canvas else out


def write_sheet(path: str | os.PathLike, label: np.ndarray, canvas: np.ndarray | None, output: np.ndarray,
                real: np.ndarray | None = None) -> None:
    """One picture: the layout, the canvas, the output, then the real image if given."""
    from PIL import Image

    from ..scenes import colorize_labels

    tiles = [colorize_labels(label)] + ([canvas] if canvas is not None else []) + [output]
    tiles += [real] if real is not None else []
    gap = np.full((label.shape[0], 4, 3), 255, np.uint8)
    row = np.concatenate([x for tile in tiles for x in (tile, gap)][:-1], axis=1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row).save(path)


def evaluate_sims(model: Sims, bank: MemoryBank | None, samples: Sequence, segmenter=None,
                  device: str | torch.device = "cpu") -> tuple[dict[str, float], list[np.ndarray]]:
    """pix2pixHD's measures (L1, PSNR, segmentation agreement) on held-out samples and, with
    retrieval, the canvases' coverage (share of pixels pasted) and their L1 to the real image
    where pasted (both on [0, 1]); returns them and the images."""
    from ..pix2pixhd.sampling import evaluate_synthesis

    images, coverage, canvas_l1 = [], [], []
    for s in samples:
        image, result = synthesize(model, bank, s.label, s.instance, device, return_canvas=True)
        images.append(image)
        if result is not None and s.image is not None:
            coverage.append(float(result.mask.mean()))
            if result.mask.any():
                diff = np.abs(result.canvas.astype(np.float32) - np.asarray(s.image, np.float32)) / 255
                canvas_l1.append(float(diff[result.mask].mean()))
    metrics = evaluate_synthesis(images, list(samples), segmenter)
    if coverage:
        metrics["canvas_coverage"] = float(np.mean(coverage))
    if canvas_l1:
        metrics["canvas_l1"] = float(np.mean(canvas_l1))
    return metrics, images
