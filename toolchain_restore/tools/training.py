"""Training the toolbox: each tool on its own band, MSE, L1 or per-patch PSNR, with the generic trainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import CleanImages
from ..errors import InvalidInput
from ..data import PatchSampler, image_set
from ..data.tensors import to_tensor
from ..metrics import batch_psnr, psnr_loss
from ..training import Trainer, TrainerSettings, is_main_process, step_rng
from .data import tool_degrade_fn
from .specs import NUM_TOOLS, TOOL_SPECS, ToolSpec
from .toolbox import Toolbox

__all__ = ["ToolTrainingSettings", "ToolTrainingTask", "train_toolbox", "band_test_set", "evaluate_tools"]


@dataclass
class ToolTrainingSettings(CleanImages):
    """What the tools train on."""

    tools: list[int] = field(default_factory=lambda: list(range(1, NUM_TOOLS + 1)))
    """Which tools to train, numbered 1..12 as in the paper."""
    batch_size: int = 32
    """Patches per tool per step."""
    patch_size: int = 63
    """Side of the training patches."""
    robust: bool = True
    """Add slight noise and slight JPEG to the inputs (the paper's robustness trick)."""
    augment: bool = False
    """Put each training pair through one of the 8 flips / transposes at random."""
    eval_patches: int = 64
    """Held-out patches per tool for the evaluation at the middle of its band."""
    init: str | None = None
    """Start from this toolbox file instead of random weights."""
    init_seed: int = 0
    """Seed of the initial weights (batches are seeded by the trainer's --seed)."""
    conv: str = "plain"
    """The tools' convolutions: 'plain' (the paper's) or DCNet decoupled, e.g. 'tanh_cos' (ignored with --init)."""
    loss: Literal["mse", "l1", "psnr"] = "mse"
    """'mse' over the batch (the paper's); 'l1' (EDSR's), whose pull does not shrink with the error, so
    smooth patches (tiny errors, high PSNR) count for more; or 'psnr': minus the mean per-patch PSNR,
    the score the tools are measured by, where they count most."""

    RESUMABLE: ClassVar[frozenset[str]] = frozenset({"eval_patches"})
    """The held-out evaluation's size may change on resume; what the tools train on may not."""


def band_test_set(
    spec: ToolSpec, count: int, data: str | None = None, patch_size: int = 63, seed: int = 1234, value: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, H) held-out patches with only ``spec``'s distortion, at ``value`` (default: mid-band)."""
    sampler = PatchSampler(image_set(data, "test"), patch_size)
    rng = np.random.default_rng([seed, spec.index])
    fn = tool_degrade_fn(spec, spec.mid if value is None else value, robust=False)
    patches = [sampler.sample(rng, fn) for _ in range(count)]
    return to_tensor([p.L for p in patches]), to_tensor([p.H for p in patches])


@torch.no_grad()
def evaluate_tools(
    toolbox: Toolbox, test_sets: dict[int, tuple[torch.Tensor, torch.Tensor]], device: torch.device, tools: list[int] | None = None
) -> np.ndarray:
    """Mean PSNR gain (dB) of each tool (rows) on each test set (columns, by tool index)."""
    tools = list(range(NUM_TOOLS)) if tools is None else tools
    gains = np.full((NUM_TOOLS, NUM_TOOLS), np.nan)
    for j, (L, H) in test_sets.items():
        L, H = L.to(device), H.to(device)
        before = batch_psnr(L, H)
        for i in tools:
            after = batch_psnr(toolbox(L, i).clamp(0, 1), H)
            gains[i, j] = float((after - before).mean())
    return gains


class ToolTrainingTask:
    """Every selected tool takes one MSE step on a batch of its own band per trainer step."""

    def __init__(self, settings: ToolTrainingSettings) -> None:
        self.settings = settings
        bad = [t for t in settings.tools if not 1 <= t <= NUM_TOOLS]
        if bad or not settings.tools:
            raise InvalidInput(f"--tools must be numbers in 1..{NUM_TOOLS}, got {settings.tools}")
        self.indices = sorted({t - 1 for t in settings.tools})
        with torch.random.fork_rng():
            torch.manual_seed(settings.init_seed)
            self.model = Toolbox.load(settings.init) if settings.init else Toolbox(conv=settings.conv)
        # Tools not being trained stay frozen, so the optimiser leaves them as they are.
        for i, tool in enumerate(self.model.tools):
            tool.requires_grad_(i in self.indices)
        self.sampler = PatchSampler(image_set(settings.data, "train"), settings.patch_size, augment=settings.augment)
        self.degrade_fns = {i: tool_degrade_fn(TOOL_SPECS[i], robust=settings.robust) for i in self.indices}
        self._test_sets: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None

    def make_batch(self, step: int, rank: int, world_size: int, seed: int) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        batch = {}
        for i in self.indices:
            rng = step_rng(seed, step, rank, stream=i)
            patches = [self.sampler.sample(rng, self.degrade_fns[i]) for _ in range(self.settings.batch_size)]
            batch[i] = (to_tensor([p.L for p in patches]), to_tensor([p.H for p in patches]))
        return batch

    def loss(self, model: nn.Module, batch, device: torch.device):
        total = torch.zeros((), device=device)
        logs = {}
        for i, (L, H) in batch.items():
            L, H = L.to(device, non_blocking=True), H.to(device, non_blocking=True)
            E = model(L, i)
            mse = torch.mean((E - H) ** 2)
            total = total + self._loss(E, H, mse)
            logs[f"mse/tool{i + 1:02d}"] = mse.item()
        return total, logs

    def _loss(self, E: torch.Tensor, H: torch.Tensor, mse: torch.Tensor) -> torch.Tensor:
        if self.settings.loss == "l1":
            return torch.mean(torch.abs(E - H))
        return psnr_loss(E, H) if self.settings.loss == "psnr" else mse

    def test_sets(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        if self._test_sets is None:
            self._test_sets = {
                i: band_test_set(TOOL_SPECS[i], self.settings.eval_patches, self.settings.data, self.settings.patch_size)
                for i in self.indices
            }
        return self._test_sets

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        gains = evaluate_tools(model, self.test_sets(), device, self.indices)
        out = {f"psnr_gain/tool{i + 1:02d}": float(gains[i, i]) for i in self.indices}
        out["psnr_gain/mean"] = float(np.mean([gains[i, i] for i in self.indices]))
        return out

    def sample_images(self, model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
        images = {}
        for i in self.indices:
            L, H = self.test_sets()[i]
            L, H = L[:1].to(device), H[:1].to(device)
            E = model(L, i).clamp(0, 1)
            images[f"tool{i + 1:02d}_L_E_H"] = torch.cat([L[0], E[0], H[0]], dim=2)
        return images


def train_toolbox(settings: ToolTrainingSettings, trainer: TrainerSettings, output: str | Path | None = None) -> dict[str, float]:
    """Train the selected tools; write the toolbox to ``output`` (default out_dir/toolbox.safetensors)."""
    task = ToolTrainingTask(settings)
    metrics = Trainer(trainer, (settings,)).fit(task)
    if is_main_process():
        output = Path(output) if output else Path(trainer.out_dir) / "toolbox.safetensors"
        task.model.cpu().save(output, tools=[i + 1 for i in task.indices], iterations=trainer.iterations)
    return metrics
