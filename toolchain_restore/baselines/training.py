"""Training a DnCNN or VDSR baseline on the agent's data stream, with the generic trainer.

For the comparison to be fair the baseline must see what the agent sees: patches of the
train split, one random mix of the severity band per patch, drawn by the environment's
own :func:`~toolchain_restore.envs.episode.draw_patch` (same sampler, same degradation,
same training rule that skips patches above 50 dB). And it is scored on the very
held-out patches the agent's evaluation draws (:func:`~toolchain_restore.evaluation.held_out_set`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import nn

from ..config import TrainingPatches
from ..data.tensors import to_tensor
from ..degrade import SEVERITY_BANDS
from ..envs.episode import check_arguments, draw_patch, make_sampler
from ..envs.held_out import EVALUATION_SEED, HeldOutSet, held_out_set
from ..metrics import batch_psnr
from ..training import Trainer, TrainerSettings, is_main_process, step_rng
from .cnn import BASELINE_ARCHITECTURES, load_baseline, save_baseline

__all__ = ["CNNBaselineSettings", "CNNBaselineTask", "train_baseline", "evaluate_baseline"]

_EVAL_CHUNK = 32


@dataclass
class CNNBaselineSettings(TrainingPatches):
    """What the baseline is and what it trains on."""

    arch: Literal["dncnn", "vdsr"] = "dncnn"
    """Architecture: dncnn (17 conv, BatchNorm) or vdsr (20 conv, no BatchNorm)."""
    depth: int | None = None
    """Conv layers; None = the paper's (17 for dncnn, 20 for vdsr). Fewer makes a small variant like VDSR-s."""
    channels: int = 64
    """Channels of the hidden layers (64 in the paper)."""
    conv: str = "plain"
    """Convolutions of all but the last layer: 'plain' or DCNet decoupled, e.g. 'tanh_cos'."""
    level: Literal["mild", "moderate", "severe"] = "moderate"
    """Severity band of the training patches: moderate, as the agent and the paper."""
    patch_size: int = 63
    """Side of the training patches: 63, the agent's. Smaller (e.g. 40) costs ~2.5x less per step on a
    CPU and the fully convolutional networks still restore 63x63 patches (receptive fields 35 / 41
    pixels), at the price of ~2.5x fewer pixels seen per step."""
    batch_size: int = 16
    """Patches per step (per process under torchrun)."""
    training_rules: bool = True
    """Skip patches whose input is already above 50 dB, as the agent's training env does."""
    augment: bool = False
    """Put each training pair through one of the 8 flips / transposes at random."""
    eval_patches: int = 128
    """Held-out patches per severity (the agent's CPU preset evaluates 128)."""
    eval_patch_size: int = 63
    """Side of the held-out patches: 63, the protocol's and the agent's, whatever patch_size is."""
    eval_seed: int = EVALUATION_SEED
    """Seed of the held-out patches; the default draws exactly the agent evaluation's patches."""
    init: str | None = None
    """Start from this baseline file instead of random weights (its architecture must match arch)."""
    init_seed: int = 0
    """Seed of the initial weights (batches are seeded by the trainer's --seed)."""

    RESUMABLE: ClassVar[frozenset[str]] = frozenset({"eval_patches", "eval_patch_size", "eval_seed"})
    """The held-out evaluation may change on resume; what the network is and trains on may not."""


@torch.no_grad()
def evaluate_baseline(model: nn.Module, L: torch.Tensor, H: torch.Tensor, device: torch.device | str = "cpu") -> dict[str, float]:
    """Mean input PSNR, output PSNR (output clipped to [0, 1]) and gain in dB over the patches."""
    was_training = model.training
    model.eval()
    before, after = [], []
    for start in range(0, len(L), _EVAL_CHUNK):  # chunks bound the activations' memory
        l, h = L[start : start + _EVAL_CHUNK].to(device), H[start : start + _EVAL_CHUNK].to(device)
        before.append(batch_psnr(l, h).cpu())
        after.append(batch_psnr(model(l).clamp(0, 1), h).cpu())
    model.train(was_training)
    b, a = torch.cat(before), torch.cat(after)
    return {"input_psnr": float(b.mean()), "psnr": float(a.mean()), "gain": float((a - b).mean())}


class CNNBaselineTask:
    """One MSE step of the baseline on a batch of the agent's training patches per trainer step."""

    def __init__(self, settings: CNNBaselineSettings) -> None:
        if settings.arch not in BASELINE_ARCHITECTURES:
            raise ValueError(f"arch must be one of {sorted(BASELINE_ARCHITECTURES)}, got {settings.arch!r}")
        check_arguments(settings.level, "train", 1, settings.patch_size, None, [])
        check_arguments(settings.level, "test", 1, settings.eval_patch_size, None, [])
        for name in ("batch_size", "eval_patches"):
            if getattr(settings, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(settings, name)}")
        self.settings = settings
        with torch.random.fork_rng():
            torch.manual_seed(settings.init_seed)
            if settings.init:
                self.model = load_baseline(settings.init, precision=None)  # the trainer's autocast
                if self.model.arch != settings.arch:
                    raise ValueError(f"--init {settings.init} is a {self.model.arch}, but arch is {settings.arch}")
            else:
                self.model = BASELINE_ARCHITECTURES[settings.arch](depth=settings.depth, channels=settings.channels,
                                                                  conv=settings.conv)
        # The env's cached sampler: the same images and the same decoded-image cache.
        self.sampler = make_sampler(settings.data, "train", settings.patch_size, settings.augment)
        self._test_sets: dict[str, HeldOutSet] | None = None

    def make_batch(self, step: int, rank: int, world_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(L, H) patches of ``step``: a pure function of (seed, step, rank), so resuming is exact."""
        rng = step_rng(seed, step, rank)
        s = self.settings
        patches = [draw_patch(self.sampler, rng, s.level, s.training_rules)[0] for _ in range(s.batch_size)]
        return to_tensor([p.L for p in patches]), to_tensor([p.H for p in patches])

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device):
        L, H = (x.to(device, non_blocking=True) for x in batch)
        E = model(L)
        mse = torch.mean((E - H) ** 2)
        return mse, {"mse": mse.item(), "train_psnr": float(batch_psnr(E.clamp(0, 1), H).mean())}

    def test_sets(self) -> dict[str, HeldOutSet]:
        """The held-out patches of every severity (drawn once, on first use)."""
        if self._test_sets is None:
            s = self.settings
            self._test_sets = {
                level: held_out_set(level, s.eval_patches, s.data, s.eval_seed, s.eval_patch_size)
                for level in SEVERITY_BANDS
            }
        return self._test_sets

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        out = {}
        for level, test in self.test_sets().items():
            for key, value in evaluate_baseline(model, test.L, test.H, device).items():
                out[f"{key}/{level}"] = value
        return out

    def sample_images(self, model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
        images = {}
        for level, test in self.test_sets().items():
            l, h = test.L[:1].to(device), test.H[:1].to(device)
            images[f"{level}_L_E_H"] = torch.cat([l[0], model(l).clamp(0, 1)[0], h[0]], dim=2)
        return images


def train_baseline(settings: CNNBaselineSettings, trainer: TrainerSettings, output: str | Path | None = None) -> dict[str, float]:
    """Train the baseline; write it to ``output`` (default out_dir/<arch>.safetensors); return
    the final held-out metrics (``psnr/moderate``, ``gain/severe``, ...)."""
    task = CNNBaselineTask(settings)
    metrics = Trainer(trainer, (settings,)).fit(task)
    if is_main_process():
        output = Path(output) if output else Path(trainer.out_dir) / f"{settings.arch}.safetensors"
        save_baseline(
            task.model.cpu(),
            output,
            level=settings.level,
            data=settings.data,
            patch_size=settings.patch_size,
            batch_size=settings.batch_size,
            iterations=trainer.iterations,
            metrics=metrics,
        )
    return metrics
