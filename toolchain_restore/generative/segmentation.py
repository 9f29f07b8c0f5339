"""The segmentation side of the synthesis papers' evaluation protocol.

pix2pixHD (and SIMS after it) score a synthesiser by segmenting its images with a network
trained on real photos and comparing the result with the layout the images were made
from: pixel accuracy and mean IoU. No pretrained Cityscapes segmenter is at hand here, so
this module trains its own small U-Net on real procedural scenes (rendered photos, never
synthesised ones) and measures that "segmentation agreement".
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..serialization import WeightsError, load_model, save_weights
from ..training import Trainer, TrainerSettings, is_main_process, step_rng
from .scenes import SCENE_CLASSES, Scene, colorize_labels, procedural_split

__all__ = [
    "SEGMENTER_KIND",
    "SegmentationNet",
    "segmentation_scores",
    "SegmentationSettings",
    "SegmentationTask",
    "train_segmenter",
    "save_segmenter",
    "load_segmenter",
    "segmentation_agreement",
    "scenes_to_tensors",
]

SEGMENTER_KIND = "toolchain-restore/segmenter"
"""The ``kind`` tag of segmenter weights files."""


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class SegmentationNet(nn.Module):
    """A small U-Net: ``levels`` max-pool downsamplings (widths ``width`` .. ``width * 2**levels``),
    as many bilinear upsamplings each joined with the encoder's skip, two 3x3 conv + BatchNorm
    + ReLU per level, and a 1x1 convolution to class logits.

    Input: N x 3 x H x W images in [-1, 1]; output: N x classes x H x W logits. Sizes that
    are not multiples of 2**levels are padded (edge replication) inside and cropped back.
    """

    def __init__(self, classes: int = len(SCENE_CLASSES), width: int = 16, levels: int = 3) -> None:
        super().__init__()
        if classes < 2 or width < 1 or levels < 1:
            raise ValueError(f"need classes >= 2, width >= 1, levels >= 1; got {classes}, {width}, {levels}")
        self.classes, self.width, self.levels = classes, width, levels
        widths = [width * 2**i for i in range(levels + 1)]
        self.down = nn.ModuleList([_block(3, widths[0])] + [_block(widths[i], widths[i + 1]) for i in range(levels)])
        self.up = nn.ModuleList([_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(levels))])
        self.head = nn.Conv2d(widths[0], classes, 1)

    @property
    def multiple(self) -> int:
        """The factor the input is downsampled by at the bottom of the U."""
        return 2**self.levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected N x 3 x H x W images, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.multiple, -w % self.multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)[..., :h, :w]


def segmentation_scores(predicted: torch.Tensor, target: torch.Tensor, classes: int,
                        ignore_index: int | None = None) -> dict:
    """Pixel accuracy and IoU of a predicted segmentation against the target.

    Args:
        predicted: N x H x W (or H x W) class indices, or N x classes x H x W logits (argmax taken).
        target: class indices of the same N x H x W (or H x W) shape.
        classes: the number of classes.
        ignore_index: a target value whose pixels are left out (e.g. Cityscapes' 255), or None.

    Returns:
        ``{"pixel_accuracy": float, "mean_iou": float, "iou": list[float]}``. ``iou[c]`` is
        TP / (TP + FP + FN) of class c, NaN for a class absent from both the target and the
        prediction; ``mean_iou`` averages over the classes present in the target or the
        prediction (the others are undefined, not zero).

    Raises:
        ValueError: shapes that do not match, or target/predicted values outside 0..classes-1.
    """
    if predicted.ndim == target.ndim + 1:
        if predicted.shape[1] != classes:
            raise ValueError(f"logits have {predicted.shape[1]} channels, expected classes={classes}")
        predicted = predicted.argmax(dim=1)
    if predicted.shape != target.shape:
        raise ValueError(f"predicted shape {tuple(predicted.shape)} does not match target {tuple(target.shape)}")
    predicted, target = predicted.reshape(-1).long().cpu(), target.reshape(-1).long().cpu()
    if ignore_index is not None:
        keep = target != ignore_index
        predicted, target = predicted[keep], target[keep]
    for name, values in (("target", target), ("predicted", predicted)):
        if values.numel() and (values.min() < 0 or values.max() >= classes):
            raise ValueError(f"{name} values span {int(values.min())}..{int(values.max())}, outside 0..{classes - 1}")
    if target.numel() == 0:
        raise ValueError("no pixels to score")
    confusion = torch.bincount(target * classes + predicted, minlength=classes * classes).reshape(classes, classes)
    confusion = confusion.double()
    true_positive = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    iou = [float(tp / u) if u > 0 else math.nan for tp, u in zip(true_positive, union)]
    present = [v for v in iou if not math.isnan(v)]
    return {"pixel_accuracy": float(true_positive.sum() / confusion.sum()),
            "mean_iou": float(sum(present) / len(present)), "iou": iou}


def scenes_to_tensors(scenes: list[Scene]) -> tuple[torch.Tensor, torch.Tensor]:
    """Scenes as (N x 3 x H x W uint8 images, N x H x W uint8 labels), compact for keeping in memory."""
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(np.stack([s.label for s in scenes]))
    return images, labels


def _to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [-1, 1], the synthesis networks' image range."""
    return images.float().div(127.5).sub(1.0)


@torch.no_grad()
def _predict(model: SegmentationNet, images: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    out = []
    for lo in range(0, len(images), batch_size):
        x = images[lo : lo + batch_size].to(device)
        if x.dtype == torch.uint8:
            x = _to_unit_range(x)
        out.append(model(x.float()).argmax(dim=1).cpu())
    return torch.cat(out)


@dataclass
class SegmentationSettings:
    """What the evaluation segmenter trains on, and its shape."""

    height: int = 128
    """Height of the procedural scenes."""
    width: int = 256
    """Width of the procedural scenes."""
    train_scenes: int = 400
    """Scenes of the procedural train split, made once and kept in memory."""
    test_scenes: int = 50
    """Scenes of the procedural test split (seeds disjoint from training), for the held-out scores."""
    batch_size: int = 8
    """Scenes per step (per process under torchrun)."""
    net_width: int = 16
    """Channels of the U-Net's first level (doubling at each of the levels below)."""
    levels: int = 3
    """Downsamplings of the U-Net."""
    class_balance: float = 0.5
    """Cross-entropy weights of (class pixel frequency) ** -class_balance, normalised to average 1 per
    pixel: 0 = plain cross-entropy; 0.5 lets the small classes (people, trees) be learnt early."""
    jitter: float = 0.15
    """Strength of the random brightness, contrast and colour changes of training images, so the
    segmenter keys on shapes and textures rather than exact colours (synthesised images drift)."""


def _class_weights(labels: torch.Tensor, classes: int, balance: float) -> torch.Tensor:
    """Weights ``frequency ** -balance`` (absent classes get the largest), scaled so that the
    average weight over the training pixels is 1 and the loss keeps its usual scale."""
    frequency = torch.bincount(labels.reshape(-1).long(), minlength=classes).double()
    frequency /= frequency.sum()
    present = frequency > 0
    weights = torch.ones(classes, dtype=torch.float64)
    if balance > 0 and present.any():
        weights[present] = frequency[present] ** -balance
        weights[~present] = weights[present].max()
        weights /= (weights * frequency).sum()
    return weights.float()


class SegmentationTask:
    """Cross-entropy on random, flipped, colour-jittered procedural training scenes; pixel
    accuracy and mean IoU on the held-out test scenes."""

    def __init__(self, settings: SegmentationSettings, seed: int = 0) -> None:
        self.settings = settings
        self.classes = SCENE_CLASSES
        self.train_images, self.train_labels = scenes_to_tensors(
            procedural_split("train", settings.train_scenes, settings.height, settings.width))
        self.test_images, self.test_labels = scenes_to_tensors(
            procedural_split("test", settings.test_scenes, settings.height, settings.width))
        self.class_weights = _class_weights(self.train_labels, len(self.classes), settings.class_balance)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.model = SegmentationNet(len(self.classes), settings.net_width, settings.levels)

    def make_batch(self, step: int, rank: int, world_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.settings
        rng = step_rng(seed, step, rank)
        rows = torch.from_numpy(rng.integers(0, len(self.train_labels), s.batch_size))
        x, y = _to_unit_range(self.train_images[rows]), self.train_labels[rows].long()
        flip = torch.from_numpy(rng.random(s.batch_size) < 0.5)
        x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
        if s.jitter > 0:
            gain = torch.from_numpy(1 + s.jitter * rng.uniform(-1, 1, (s.batch_size, 3, 1, 1))).float()
            offset = torch.from_numpy(s.jitter * rng.uniform(-1, 1, (s.batch_size, 1, 1, 1))).float()
            x = (x * gain + offset).clamp(-1, 1)
        return x, y

    def loss(self, model: nn.Module, batch, device: torch.device):
        x, y = (t.to(device) for t in batch)
        logits = model(x)
        loss = F.cross_entropy(logits, y, weight=self.class_weights.to(device))
        return loss, {"pixel_accuracy": float((logits.argmax(1) == y).float().mean())}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        predicted = _predict(model, self.test_images, device, 16)
        scores = segmentation_scores(predicted, self.test_labels, len(self.classes))
        return {"pixel_accuracy": scores["pixel_accuracy"], "mean_iou": scores["mean_iou"]}

    @torch.no_grad()
    def sample_images(self, model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
        """The first test scene: photo, true labels and predicted labels, stacked vertically."""
        predicted = _predict(model, self.test_images[:1], device, 1)[0].numpy()
        rows = [self.test_images[0].permute(1, 2, 0).numpy(), colorize_labels(self.test_labels[0].numpy()),
                colorize_labels(predicted)]
        return {"segmentation": torch.from_numpy(np.concatenate(rows, axis=0)).permute(2, 0, 1).float() / 255.0}


def save_segmenter(model: SegmentationNet, path: str | os.PathLike, classes: tuple[str, ...] = SCENE_CLASSES,
                   **extra) -> None:
    """Write a segmenter as safetensors; its config holds the class names, the net's shape and
    whatever ``extra`` (training facts, metrics) is given."""
    if len(classes) != model.classes:
        raise ValueError(f"{len(classes)} class names for a segmenter of {model.classes} classes")
    save_weights(model, path, SEGMENTER_KIND,
                 {**extra, "classes": list(classes), "width": model.width, "levels": model.levels})


def load_segmenter(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                   label_count: int | None = None) -> SegmentationNet:
    """The segmenter a file describes, in eval mode (its class names: ``read_metadata(path)[1]["classes"]``).

    Raises:
        WeightsError: missing or corrupt file, weights of another kind, tensors that do not fit,
            or (given ``label_count``, the labels of the layouts it is to score) another number of classes.
    """
    model, _ = load_model(path, SEGMENTER_KIND, lambda c: SegmentationNet(len(c["classes"]), int(c["width"]),
                                                                        int(c["levels"])), "segmenter")
    if label_count is not None and model.classes != label_count:
        raise WeightsError(f"{path}: a segmenter of {model.classes} classes, but the layouts have {label_count} "
                           f"labels (a segmenter of other data?)")
    return model.to(map_location).eval()


def train_segmenter(settings: SegmentationSettings, trainer: TrainerSettings,
                    output: str | os.PathLike | None = None) -> dict[str, float]:
    """Train (resuming from ``trainer.out_dir`` if it holds a checkpoint); write the segmenter
    to ``output`` (default out_dir/segmenter.safetensors); return the final test metrics."""
    task = SegmentationTask(settings, seed=trainer.seed)
    metrics = Trainer(trainer, (settings,)).fit(task)
    if is_main_process():
        output = Path(output) if output else Path(trainer.out_dir) / "segmenter.safetensors"
        save_segmenter(task.model.cpu(), output, task.classes, height=settings.height, image_width=settings.width,
                       train_scenes=settings.train_scenes, iterations=trainer.iterations, metrics=metrics)
    return metrics


def segmentation_agreement(segmenter: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                           batch_size: int = 16) -> dict:
    """How well ``segmenter`` recovers the layouts ``labels`` (N x H x W) from images made
    from them (N x 3 x H x W in [-1, 1], e.g. a synthesiser's output): the scores of
    :func:`segmentation_scores`. The segmenter runs in eval mode on its own device.

    Raises:
        ValueError: mismatched shapes, or images outside [-1, 1] (e.g. 0..255 pixels).
    """
    if images.ndim != 4 or images.shape[1] != 3 or labels.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"need N x 3 x H x W images and N x H x W labels, got {tuple(images.shape)} and "
                         f"{tuple(labels.shape)}")
    low, high = float(images.min()), float(images.max())
    if low < -1.01 or high > 1.01:
        raise ValueError(f"images must lie in [-1, 1], got values in [{low:.3g}, {high:.3g}]")
    classes = getattr(segmenter, "classes", None)
    if not isinstance(classes, int):
        raise ValueError("the segmenter must say how many classes it predicts (a .classes attribute)")
    try:
        device = next(segmenter.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    was_training = segmenter.training
    segmenter.eval()
    try:
        predicted = _predict(segmenter, images.float(), device, batch_size)
    finally:
        segmenter.train(was_training)
    return segmentation_scores(predicted, labels, classes)
