"""The one generic trainer: tools, joint fine-tuning and the synthesis models all use it.

What it owns: the optimiser and learning-rate schedule, the loop with a progress bar,
TensorBoard (losses, held-out metrics, sample images, the settings as text), atomic
checkpoints that resume a killed run to the very result it would have reached, device
selection, and data-parallel training across processes started by ``torchrun``.

What a task owns (:class:`TrainingTask`): the model, how to make the batch of a given
step, the loss, and the held-out evaluation. Batches are a pure function of
``(seed, step, rank)``, so a resumed run sees exactly the data the killed one would have.
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import nn

from ..serialization import atomic_write
from ..nn import orthogonality_penalty, project_filters
from ..runtime import Precision, autocast, check_precision, precision_summary, resolve_device, resolve_precision

__all__ = ["TrainerSettings", "TrainingTask", "Trainer", "resolve_device", "lr_at", "settings_markdown", "step_rng"]


@dataclass
class TrainerSettings:
    """Settings of the generic training loop."""

    out_dir: str = "runs/train"
    """Folder for checkpoints, TensorBoard events and the resolved settings."""
    iterations: int = 1000
    """Optimiser steps in all."""
    lr: float = 1e-3
    """Initial learning rate."""
    optimizer: Literal["adam", "sgd"] = "adam"
    """Optimiser: Adam, or SGD with momentum 0.9."""
    beta1: float = 0.9
    """Adam's first-moment decay (GANs such as pix2pixHD use 0.5)."""
    weight_decay: float = 0.0
    """L2 weight decay."""
    schedule: Literal["constant", "step", "cosine", "linear"] = "cosine"
    """Learning-rate schedule: constant; step (times lr_gamma every lr_step_every); cosine or linear to lr_min."""
    lr_step_every: int = 1000
    """Steps between decays of the 'step' schedule."""
    lr_gamma: float = 0.5
    """Factor of each decay of the 'step' schedule."""
    lr_min: float = 0.0
    """Floor of the learning rate."""
    hold: int = 0
    """Steps at the full learning rate (after warm-up) before a cosine or linear decay starts (pix2pixHD: half the run)."""
    warmup: int = 0
    """Linear warm-up steps from 0 to lr."""
    grad_clip: float = 0.0
    """Clip the global gradient norm to this value (0 = no clipping)."""
    precision: Precision = "auto"
    """How the networks compute (the task's forward pass under torch.autocast): auto (bf16 where this machine runs it faster, else fp32), fp32, bf16, fp16 (CUDA; the loss is scaled against underflow)."""
    amp: Literal["off", "fp16", "bf16"] | None = None
    """Deprecated spelling of precision (off = fp32); given, it replaces precision."""
    filter_projection_every: int = 0
    """DCNet: scale the decoupled convolutions' filters to unit norm every N steps (official: 100; 0 = never)."""
    orthogonality_weight: float = 0.0
    """DCNet: weight of the orthogonality penalty |W W^T - I|^2 on decoupled filters (official: 1e-5; 0 = off)."""
    seed: int = 0
    """Seed of the model initialisation and of every batch."""
    device: str = "auto"
    """'auto' (cuda when available, else cpu), 'cpu', 'cuda' or 'cuda:N'."""
    checkpoint_every: int = 100
    """Steps between checkpoints (one is always written at the end)."""
    eval_every: int = 200
    """Steps between held-out evaluations (one is always run at the end)."""
    log_every: int = 10
    """Steps between TensorBoard loss records."""
    prefetch: int = 2
    """Batches prepared ahead in background threads."""
    resume: bool = True
    """Continue from out_dir's checkpoint when there is one."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        if self.amp is not None:
            import warnings

            warnings.warn("TrainerSettings.amp is deprecated; use precision ('fp32', 'bf16', 'fp16' or 'auto')",
                          DeprecationWarning, stacklevel=3)
            if self.amp not in ("off", "fp16", "bf16"):
                raise ValueError(f"amp must be 'off', 'fp16' or 'bf16', got {self.amp!r}")
            self.precision, self.amp = ("fp32" if self.amp == "off" else self.amp), None
        check_precision(self.precision)


class TrainingTask(Protocol):
    """What the trainer needs from a job."""

    model: nn.Module

    def make_batch(self, step: int, rank: int, world_size: int, seed: int) -> Any:
        """The batch of ``step`` for process ``rank``: a pure function of its arguments."""

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        """The scalar loss to minimise and named values to log under ``losses/``."""

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Held-out metrics, logged under ``eval/`` (called on rank 0 only)."""

    def sample_images(self, model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
        """Named 3 x H x W images in [0, 1] for TensorBoard (called on rank 0 only)."""


def lr_at(step: int, s: TrainerSettings) -> float:
    """Learning rate at optimiser step ``step`` (0-based)."""
    if s.warmup and step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    if s.schedule == "constant":
        lr = s.lr
    elif s.schedule == "step":
        lr = s.lr * s.lr_gamma ** (step // max(1, s.lr_step_every))
    else:
        progress = min(1.0, max(0, step - s.warmup - s.hold) / max(1, s.iterations - s.warmup - s.hold))
        factor = 0.5 * (1 + math.cos(math.pi * progress)) if s.schedule == "cosine" else 1.0 - progress
        lr = s.lr_min + (s.lr - s.lr_min) * factor
    return max(lr, s.lr_min)


def settings_markdown(*settings: Any) -> str:
    """A markdown table of one or more settings dataclasses, for TensorBoard's text tab."""
    rows = ["| setting | value |", "|---|---|"]
    for s in settings:
        for k, v in asdict(s).items():
            rows.append(f"| {type(s).__name__}.{k} | {v} |")
    return "\n".join(rows)


@dataclass
class _Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    active: bool = False

    @classmethod
    def from_env(cls) -> "_Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")), True)


@dataclass
class Trainer:
    """Runs a :class:`TrainingTask` under :class:`TrainerSettings`.

    Started by ``torchrun --nproc_per_node N``, it trains data-parallel (gloo on CPU,
    NCCL on GPU): each process makes its own batches (``rank`` differs), gradients are
    averaged across processes after every backward pass, and rank 0 writes checkpoints
    and TensorBoard. Averaging explicitly, rather than through DistributedDataParallel,
    lets a task call its model any number of times per step (one call per tool, a chain
    of tools, a generator and a discriminator).
    """

    settings: TrainerSettings
    extra_settings: tuple[Any, ...] = field(default_factory=tuple)
    """Other settings dataclasses of the job, recorded next to the trainer's."""

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.settings.out_dir) / "checkpoint.pt"

    def _make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        s = self.settings
        params = _trainable(model)
        if not params:
            raise ValueError("the model has no trainable parameters")
        if s.optimizer == "adam":
            return torch.optim.Adam(params, lr=s.lr, betas=(s.beta1, 0.999), weight_decay=s.weight_decay)
        if s.optimizer == "sgd":
            return torch.optim.SGD(params, lr=s.lr, momentum=0.9, weight_decay=s.weight_decay)
        raise ValueError(f"unknown optimizer {s.optimizer!r}; expected 'adam' or 'sgd'")

    def _save_checkpoint(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int,
                         scaler: torch.amp.GradScaler) -> None:
        state = {
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "grad_scaler": scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "settings": json.dumps(asdict(self.settings)),
        }
        atomic_write(self.checkpoint_path, lambda tmp: torch.save(state, tmp))

    def _load_checkpoint(self, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                         scaler: torch.amp.GradScaler) -> int:
        path = self.checkpoint_path
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except Exception as err:  # torch raises many types for a damaged file
            raise RuntimeError(
                f"cannot resume: checkpoint {path} is unreadable ({err}); delete it or pass resume=False"
            ) from err
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if state.get("grad_scaler"):
                scaler.load_state_dict(state["grad_scaler"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise RuntimeError(
                f"cannot resume: checkpoint {path} does not fit this model/settings ({err}); "
                f"use another out_dir or resume=False"
            ) from err
        torch.set_rng_state(state["torch_rng"].cpu())
        if state.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        return int(state["step"])

    def fit(self, task: TrainingTask) -> dict[str, float]:
        """Train to ``settings.iterations`` steps (resuming if possible); return the final evaluation."""
        s = self.settings
        dist = _Distributed.from_env()
        device = resolve_device(s.device)
        if dist.active:
            import torch.distributed as tdist

            if device.type == "cuda":
                device = torch.device("cuda", dist.local_rank)
                torch.cuda.set_device(device)
            if not tdist.is_initialized():
                tdist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        is_main = dist.rank == 0
        out_dir = Path(s.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)

        # The task built (and seeded) the model; under torchrun every process then takes rank
        # 0's weights. The torch RNG serves only the loop; a resumed run takes rank 0's from
        # the checkpoint (tasks that draw from it on several ranks resume statistically, not
        # bit for bit; batches come from step_rng and always resume exactly).
        torch.manual_seed(s.seed + 1000 * dist.rank)
        model = task.model.to(device)
        optimizer = self._make_optimizer(model)
        choice = resolve_precision(s.precision, device)
        precision = choice.precision
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        start = 0
        if s.resume and self.checkpoint_path.is_file():
            start = self._load_checkpoint(model, optimizer, device, scaler)
        if dist.active:
            _broadcast_parameters(model)

        writer = None
        if is_main:
            from torch.utils.tensorboard import SummaryWriter

            runtime = {"device": str(device), "precision": choice.precision, "precision_reason": choice.reason}
            (out_dir / "settings.json").write_text(json.dumps(
                {**{type(x).__name__: asdict(x) for x in (s, *self.extra_settings)}, "runtime": runtime}, indent=2))
            writer = SummaryWriter(str(out_dir))
            if start == 0:
                writer.add_text("settings", settings_markdown(s, *self.extra_settings), 0)
            # Every (re)start records what the precision resolved to on this machine.
            writer.add_text("precision", precision_summary(s.precision, device), start)

        metrics: dict[str, float] = {}
        pool = ThreadPoolExecutor(max_workers=max(1, s.prefetch))
        pending: dict[int, Future] = {}

        def request(step: int) -> None:
            if step < s.iterations and step not in pending:
                pending[step] = pool.submit(task.make_batch, step, dist.rank, dist.world_size, s.seed)

        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=s.iterations, initial=start, disable=not (s.progress and is_main), desc=out_dir.name)
            tick, tick_step = time.perf_counter(), start
            for step in range(start, s.iterations):
                for ahead in range(step, step + max(1, s.prefetch) + 1):
                    request(ahead)
                batch = pending.pop(step).result()
                lr = lr_at(step, s)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                model.train()
                with autocast(precision, device):
                    loss, logs = task.loss(model, batch, device)
                if s.orthogonality_weight > 0:
                    penalty = orthogonality_penalty(model)
                    loss = loss + s.orthogonality_weight * penalty
                    logs["orthogonality"] = penalty.item()
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower the learning rate")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if dist.active:
                    _average_gradients(model, dist.world_size)
                if s.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                done = step + 1
                if s.filter_projection_every and done % s.filter_projection_every == 0:
                    project_filters(model)
                bar.update(1)
                if writer is not None and (done % s.log_every == 0 or done == s.iterations):
                    writer.add_scalar("losses/loss", loss.item(), done)
                    for k, v in logs.items():
                        writer.add_scalar(f"losses/{k}", v, done)
                    writer.add_scalar("charts/learning_rate", lr, done)
                    now = time.perf_counter()
                    writer.add_scalar("charts/steps_per_second", (done - tick_step) / max(now - tick, 1e-9), done)
                    tick, tick_step = now, done
                    bar.set_postfix(loss=f"{loss.item():.4g}")
                last = done == s.iterations
                if is_main and (done % s.eval_every == 0 or last):
                    model.eval()
                    with torch.no_grad():
                        metrics = task.evaluate(model, device)
                        images = task.sample_images(model, device) if hasattr(task, "sample_images") else {}
                    for k, v in metrics.items():
                        writer.add_scalar(f"eval/{k}", v, done)
                    for k, img in images.items():
                        writer.add_image(f"images/{k}", img.clamp(0, 1).cpu(), done)
                    writer.flush()
                if done % s.checkpoint_every == 0 or last:
                    if is_main:
                        self._save_checkpoint(model, optimizer, done, scaler)
                    if dist.active:
                        torch.distributed.barrier()
            bar.close()
            if dist.active:
                _check_in_sync(model)
            if is_main and start >= s.iterations:
                model.eval()
                with torch.no_grad():
                    metrics = task.evaluate(model, device)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if writer is not None:
                writer.close()
        if is_main:
            (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        return metrics


def _trainable(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def _broadcast_parameters(model: nn.Module) -> None:
    """Start every process from rank 0's weights."""
    import torch.distributed as tdist

    with torch.no_grad():
        for tensor in model.state_dict().values():
            tdist.broadcast(tensor, src=0)


def _average_gradients(model: nn.Module, world_size: int) -> None:
    """Average the gradients of all trainable parameters over the processes, in one message."""
    import torch.distributed as tdist

    params = _trainable(model)
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    tdist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n


def _check_in_sync(model: nn.Module) -> None:
    """Fail loudly if the processes' weights drifted apart."""
    import torch.distributed as tdist

    with torch.no_grad():
        total = torch.stack([p.double().sum() for p in _trainable(model)]).sum().reshape(1)
        low, high = total.clone(), total.clone()
        tdist.all_reduce(low, op=tdist.ReduceOp.MIN)
        tdist.all_reduce(high, op=tdist.ReduceOp.MAX)
    if not torch.allclose(low, high, rtol=1e-9, atol=1e-9):
        raise RuntimeError(f"data-parallel processes ended with different weights ({low.item()} vs {high.item()})")


def step_rng(seed: int, step: int, rank: int = 0, stream: int = 0) -> np.random.Generator:
    """The random generator of one (seed, step, rank) batch: independent of any history."""
    return np.random.default_rng([seed, step, rank, stream])
