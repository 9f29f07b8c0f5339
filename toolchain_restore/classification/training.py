"""Classification as a task of the generic trainer (checkpoints, resume, TensorBoard, torchrun)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import positive
from ..nn import parse_conv_kind
from ..serialization import load_model, save_weights
from ..training import Trainer, TrainerSettings, is_main_process, step_rng
from .data import (ClassificationData, cifar10_batches, cifar100_batches, cifar_folder, distortion_patches,
                   folder_of_classes)
from .network import Classifier

__all__ = ["ClassificationSettings", "ClassificationTask", "load_data", "train_classifier", "save_classifier",
           "load_classifier", "CLASSIFIER_KIND"]

CLASSIFIER_KIND = "toolchain-restore/classifier"

HELD_OUT_EVERY = 5
"""A folder of class subfolders keeps every fifth image of each class (sorted by name) for testing."""


@dataclass
class ClassificationSettings:
    """What the classifier trains on, and its shape."""

    data: str = "distortions"
    """'distortions' (degraded patches labelled by band), a folder of class subfolders, or a CIFAR-10 / CIFAR-100 python folder (cifar-10-batches-py/, cifar-100-python/ or the folder holding them)."""
    images: str | None = None
    """For 'distortions': the folder of clean images (None = the embedded default; test patches from its test split)."""
    patch_size: int = 32
    """Side of the distortion patches (folder images are resized to it; CIFAR is 32)."""
    train_patches: int = 6000
    """Distortion patches made once, as the training set."""
    test_patches: int = 1200
    """Distortion patches from the held-out images, as the test set."""
    batch_size: int = 64
    """Images per step (per process under torchrun)."""
    conv: str = "plain"
    """The network's convolutions: 'plain' or DCNet decoupled, e.g. 'tanh_cos'."""
    radius: float = 1.0
    """Decoupled ball, tanh and seg operators: the operator radius rho (in units of the patch norm; learned: its start)."""
    learnable_radius: bool = False
    """Learn one radius per output channel, (r^2 + 1e-4) times a running mean of the patch norm (the official code's learnable operators)."""
    width: int = 16
    """Channels of the first stage (then 2x and 4x)."""
    data_seed: int = 0
    """Seed of the distortion patches (the same seed gives every run the same data)."""


def load_data(s: ClassificationSettings) -> tuple[ClassificationData, ClassificationData]:
    """(train, test) of the settings' data source."""
    if s.data == "distortions":
        rng = np.random.default_rng(s.data_seed)
        return (distortion_patches(s.train_patches, "train", rng, s.images, s.patch_size),
                distortion_patches(s.test_patches, "test", rng, s.images, s.patch_size))
    root = Path(s.data)
    cifar = cifar_folder(root)
    if cifar is not None:
        read = cifar10_batches if cifar[0] == "cifar10" else cifar100_batches
        return read(cifar[1], "train"), read(cifar[1], "test")
    everything = folder_of_classes(root, s.patch_size)
    index = torch.arange(len(everything))
    # Within each class the images are in name order, so every fifth one is a spread sample.
    rank_in_class = torch.zeros_like(index)
    for k in range(len(everything.classes)):
        rows = (everything.labels == k).nonzero(as_tuple=True)[0]
        rank_in_class[rows] = torch.arange(len(rows))
    test = rank_in_class % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
    pick = lambda m: ClassificationData(everything.images[m], everything.labels[m], everything.classes)  # noqa: E731
    return pick(~test), pick(test)


class ClassificationTask:
    """Cross-entropy on random batches of the training set; accuracy on the test set."""

    def __init__(self, settings: ClassificationSettings, seed: int = 0) -> None:
        self.settings = settings
        self.train, self.test = load_data(settings)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.model = Classifier(len(self.train.classes), settings.conv, settings.width, settings.radius,
                                    settings.learnable_radius)

    def make_batch(self, step: int, rank: int, world_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.train.batch(step_rng(seed, step, rank), self.settings.batch_size)

    def loss(self, model: nn.Module, batch, device: torch.device):
        x, y = (t.to(device) for t in batch)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        return loss, {"accuracy": float((logits.argmax(1) == y).float().mean())}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        correct, total_loss = 0, 0.0
        for lo in range(0, len(self.test), 256):
            x, y = self.test.images[lo : lo + 256].to(device), self.test.labels[lo : lo + 256].to(device)
            logits = model(x)
            correct += int((logits.argmax(1) == y).sum())
            total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
        return {"accuracy": correct / len(self.test), "loss": total_loss / len(self.test)}


def save_classifier(model: Classifier, path: str | os.PathLike, classes: tuple[str, ...], **extra) -> None:
    """Write a classifier as safetensors; its config holds the class names, ``conv``,
    ``width``, the operator radius and whether it is learned, and whatever ``extra``
    (training facts) is given."""
    save_weights(model, path, CLASSIFIER_KIND,
                 {**extra, "classes": list(classes), "conv": model.conv, "width": model.width, "radius": model.radius,
                  "learnable_radius": model.learnable_radius})


def load_classifier(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[Classifier, dict]:
    """Rebuild the classifier a file describes; return it in eval mode with the file's config.

    Raises:
        WeightsError: missing or corrupt file, weights of another kind, or tensors that do not fit.
    """
    # Files from before the radius settings hold a fixed radius of 1.
    model, config = load_model(path, CLASSIFIER_KIND,
                               lambda c: Classifier(len(c["classes"]), c["conv"], c["width"], float(c.get("radius", 1.0)),
                                                    bool(c.get("learnable_radius", False))), "classifier")
    return model.to(map_location).eval(), config


def check_classification_settings(settings: ClassificationSettings) -> None:
    """Refuse settings a classifier cannot train with, before any data is read.

    Raises:
        InvalidInput: an unknown --conv, or a size or count below 1 (each named by its option).
    """
    parse_conv_kind(settings.conv)
    for name in ("patch_size", "train_patches", "test_patches", "batch_size", "width"):
        positive(getattr(settings, name), "--" + name.replace("_", "-"))


def train_classifier(settings: ClassificationSettings, trainer: TrainerSettings,
                     output: str | os.PathLike | None = None) -> tuple[dict[str, float], ClassificationTask]:
    """Train (resuming from ``trainer.out_dir`` if it holds a checkpoint); write the
    classifier to ``output`` (default out_dir/classifier.safetensors); return the final
    test metrics and the task (its model and data)."""
    check_classification_settings(settings)
    task = ClassificationTask(settings, seed=trainer.seed)
    metrics = Trainer(trainer, (settings,)).fit(task)
    if is_main_process():
        output = Path(output) if output else Path(trainer.out_dir) / "classifier.safetensors"
        save_classifier(task.model.cpu(), output, task.train.classes, data=settings.data,
                        iterations=trainer.iterations, metrics=metrics)
    return metrics, task
