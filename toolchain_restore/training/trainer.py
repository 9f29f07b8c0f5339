"""The one generic trainer: tools, joint fine-tuning and the synthesis models all use it.

What it owns: the optimiser, the loop (prefetched batches, precision, gradient clipping,
data-parallel gradient averaging across processes started by ``torchrun``), and what it
logs: losses, held-out metrics and sample images. The run directory, settings file,
checkpoints, resuming (by the rule of :mod:`~toolchain_restore.training.resume`),
TensorBoard writer, learning-rate schedule and progress bar are the
:class:`~toolchain_restore.training.run.Run`'s, shared with the recurrent DQN; a model's
extras (DCNet's filter projection and orthogonality penalty) are
:class:`~toolchain_restore.training.callbacks.Callback` hooks.

What a task owns (:class:`TrainingTask`): the model, how to make the batch of a given
step, the loss, and the held-out evaluation. Batches are a pure function of
``(seed, step, rank)``, so a resumed run sees exactly the data the killed one would have.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import torch
from torch import nn

from ..config import TrainingRunSettings
from ..runtime import Precision, autocast, check_precision, precision_summary, resolve_device, resolve_precision
from .callbacks import Callback, CallbackList, TrainingState
from .distributed import Distributed, average_gradients, broadcast_parameters, check_in_sync, trainable
from .resume import settings_record
from .run import CHECKPOINT_NAME, METRICS_NAME, Run, settings_markdown
from .schedule import LearningRateSchedule

__all__ = ["TrainerSettings", "TrainingTask", "Trainer", "resolve_device", "lr_at", "settings_markdown", "step_rng",
           "trainer_schedule", "settings_callbacks"]


@dataclass
class TrainerSettings(TrainingRunSettings):
    """Settings of the generic training loop. ``precision`` applies to the task's forward
    pass, under torch.autocast; with fp16 (CUDA) the loss is scaled against underflow.
    A resumed run may change where and how it computes, how often it logs, evaluates and
    checkpoints, and ``hold`` (pix2pixHD derives it from ``iterations``); ``iterations``
    may grow (:mod:`~toolchain_restore.training.resume`)."""

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
    amp: Literal["off", "fp16", "bf16"] | None = None
    """Deprecated spelling of precision (off = fp32); given, it replaces precision."""
    filter_projection_every: int = 0
    """DCNet: scale the decoupled convolutions' filters to unit norm every N steps (official: 100; 0 = never)."""
    orthogonality_weight: float = 0.0
    """DCNet: weight of the orthogonality penalty |W W^T - I|^2 on decoupled filters (official: 1e-5; 0 = off)."""
    checkpoint_every: int = 100
    """Steps between checkpoints (one is always written at the end)."""
    eval_every: int = 200
    """Steps between held-out evaluations (one is always run at the end)."""
    log_every: int = 10
    """Steps between TensorBoard loss records."""
    prefetch: int = 2
    """Batches prepared ahead in background threads."""
    progress: bool = True
    """Show a progress bar."""

    RESUMABLE: ClassVar[frozenset[str]] = frozenset({"checkpoint_every", "eval_every", "log_every", "prefetch",
                                                     "progress", "hold"})

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


def trainer_schedule(s: TrainerSettings) -> LearningRateSchedule:
    """The learning-rate schedule that ``s`` describes."""
    return LearningRateSchedule(lr=s.lr, kind=s.schedule, iterations=s.iterations, lr_min=s.lr_min, warmup=s.warmup,
                                hold=s.hold, step_every=s.lr_step_every, gamma=s.lr_gamma)


def lr_at(step: int, s: TrainerSettings) -> float:
    """Learning rate at optimiser step ``step`` (0-based)."""
    return trainer_schedule(s).at(step)


def settings_callbacks(s: TrainerSettings) -> list[Callback]:
    """The hooks that ``s`` asks for: DCNet's training aids when filter_projection_every or
    orthogonality_weight is set."""
    if not (s.filter_projection_every or s.orthogonality_weight > 0):
        return []
    # Imported here: nn's aids build on training's Callback, so a module-level import would be circular.
    from ..nn.training_aids import DCNetTrainingAids

    return [DCNetTrainingAids(s.filter_projection_every, s.orthogonality_weight)]


class _Prefetcher:
    """Makes the batches of the next ``prefetch`` steps in background threads."""

    def __init__(self, task: TrainingTask, s: TrainerSettings, dist: Distributed) -> None:
        self.task, self.settings, self.dist = task, s, dist
        self.pool = ThreadPoolExecutor(max_workers=max(1, s.prefetch))
        self.pending: dict[int, Future] = {}

    def take(self, step: int) -> Any:
        """The batch of ``step``, once the batches of the steps after it are under way."""
        s = self.settings
        for ahead in range(step, step + max(1, s.prefetch) + 1):
            if ahead < s.iterations and ahead not in self.pending:
                self.pending[ahead] = self.pool.submit(self.task.make_batch, ahead, self.dist.rank,
                                                       self.dist.world_size, s.seed)
        return self.pending.pop(step).result()

    def __enter__(self) -> "_Prefetcher":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Throughput:
    """Optimiser steps per second since the previous record."""

    def __init__(self, step: int) -> None:
        self.tick, self.tick_step = time.perf_counter(), step

    def rate(self, step: int) -> float:
        now = time.perf_counter()
        rate = (step - self.tick_step) / max(now - self.tick, 1e-9)
        self.tick, self.tick_step = now, step
        return rate


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
    callbacks: tuple[Callback, ...] = field(default_factory=tuple)
    """Hooks into the loop, called after those the settings ask for (:func:`settings_callbacks`)."""

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.settings.out_dir) / CHECKPOINT_NAME

    @property
    def run_settings(self) -> tuple[Any, ...]:
        """Every settings dataclass of the run, the trainer's first: what the resume rule compares."""
        return (self.settings, *self.extra_settings)

    def check_folder(self) -> None:
        """The resume rule on out_dir, touching nothing: a ResumeError where :meth:`fit`
        would refuse. A job of several stages checks them all before training the first."""
        s = self.settings
        Run.check_folder(s.out_dir, self.run_settings, resume=s.resume, overwrite=s.overwrite)

    def _make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        s = self.settings
        params = trainable(model)
        if not params:
            raise ValueError("the model has no trainable parameters")
        if s.optimizer == "adam":
            return torch.optim.Adam(params, lr=s.lr, betas=(s.beta1, 0.999), weight_decay=s.weight_decay)
        if s.optimizer == "sgd":
            return torch.optim.SGD(params, lr=s.lr, momentum=0.9, weight_decay=s.weight_decay)
        raise ValueError(f"unknown optimizer {s.optimizer!r}; expected 'adam' or 'sgd'")

    def fit(self, task: TrainingTask) -> dict[str, float]:
        """Train to ``settings.iterations`` steps (resuming if possible); return the final evaluation."""
        s = self.settings
        device = resolve_device(s.device)
        run = Run(s.out_dir, settings=self.run_settings, resume=s.resume, overwrite=s.overwrite,
                  schedule=trainer_schedule(s))
        device = run.distributed.setup(device)
        # The task built (and seeded) the model; under torchrun every process then takes rank
        # 0's weights. The torch RNG serves only the loop; a resumed run takes rank 0's from
        # the checkpoint (tasks that draw from it on several ranks resume statistically, not
        # bit for bit; batches come from step_rng and always resume exactly).
        torch.manual_seed(s.seed + 1000 * run.distributed.rank)
        model = task.model.to(device)
        optimizer = self._make_optimizer(model)
        choice = resolve_precision(s.precision, device)
        scaler = torch.amp.GradScaler(device.type, enabled=choice.precision == "fp16")
        start = 0
        if run.has_checkpoint:
            state = run.load_checkpoint(device)
            run.restore(state, {"model": model, "optimizer": optimizer}, optional={"grad_scaler": scaler})
            start = int(state["step"])
        if run.distributed.active:
            broadcast_parameters(model)

        callbacks = CallbackList([*settings_callbacks(s), *self.callbacks])
        loop = TrainingState(run, model, device, start)
        with run:
            runtime = {"device": str(device), "precision": choice.precision, "precision_reason": choice.reason}
            run.write_settings({**settings_record(self.run_settings), "runtime": runtime})
            # Every (re)start records what the precision resolved to on this machine.
            run.open_writer(start, settings_markdown(s, *self.extra_settings), precision_summary(s.precision, device))
            callbacks.on_train_start(loop)
            metrics = self._loop(task, run, optimizer, scaler, choice.precision, callbacks, loop)
            callbacks.on_train_end(loop)
        if run.is_main:
            (run.out_dir / METRICS_NAME).write_text(json.dumps(metrics, indent=2))
        return metrics

    def _loop(self, task: TrainingTask, run: Run, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
              precision: Precision, callbacks: Callback, loop: TrainingState) -> dict[str, float]:
        """Steps from ``loop.step`` to the end: the batch, the learning rate, one optimiser
        step, then logging, evaluation and checkpoints at their intervals."""
        s, model, start = self.settings, loop.model, loop.step
        metrics: dict[str, float] = {}
        bar = run.progress_bar(s.iterations, start, run.out_dir.name, s.progress)
        throughput = _Throughput(start)
        with _Prefetcher(task, s, run.distributed) as batches:
            for step in range(start, s.iterations):
                batch = batches.take(step)
                lr = run.set_learning_rate(optimizer, step)
                loss = self._optimise(task, batch, optimizer, scaler, precision, callbacks, loop)
                done = loop.step = step + 1
                callbacks.on_step_end(loop)
                bar.update(1)
                if run.is_main and (done % s.log_every == 0 or done == s.iterations):
                    w = run.writer
                    w.add_scalar("losses/loss", loss.item(), done)
                    for k, v in loop.logs.items():
                        w.add_scalar(f"losses/{k}", v, done)
                    w.add_scalar("charts/learning_rate", lr, done)
                    w.add_scalar("charts/steps_per_second", throughput.rate(done), done)
                    w.add_scalar("charts/cpu_minutes", run.cpu_seconds / 60, done)
                    bar.set_postfix(loss=f"{loss.item():.4g}")
                last = done == s.iterations
                if run.is_main and (done % s.eval_every == 0 or last):
                    metrics = self._evaluate(task, callbacks, loop)
                if done % s.checkpoint_every == 0 or last or run.stop_requested:
                    run.save_checkpoint({"step": done, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                         "grad_scaler": scaler.state_dict(), "settings": json.dumps(asdict(s))})
                    run.stop_if_requested(done)
            bar.close()
        if run.distributed.active:
            check_in_sync(model)
        if run.is_main and start >= s.iterations:
            model.eval()
            with torch.no_grad():
                metrics = task.evaluate(model, loop.device)
        return metrics

    def _optimise(self, task: TrainingTask, batch: Any, optimizer: torch.optim.Optimizer,
                  scaler: torch.amp.GradScaler, precision: Precision, callbacks: Callback,
                  loop: TrainingState) -> torch.Tensor:
        """One optimiser step on ``batch``; returns the loss it minimised (the callbacks' terms included)."""
        s, model, device = self.settings, loop.model, loop.device
        model.train()
        with autocast(precision, device):
            loss, loop.logs = task.loss(model, batch, device)
        loss = callbacks.on_loss(loop, loss)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {loop.step}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if loop.run.distributed.active:
            average_gradients(model, loop.run.distributed.world_size)
        if s.grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        return loss

    def _evaluate(self, task: TrainingTask, callbacks: Callback, loop: TrainingState) -> dict[str, float]:
        """The task's held-out metrics and sample images into TensorBoard, then the callbacks' evaluation."""
        model, device, done, writer = loop.model, loop.device, loop.step, loop.run.writer
        model.eval()
        with torch.no_grad():
            metrics = task.evaluate(model, device)
            images = task.sample_images(model, device) if hasattr(task, "sample_images") else {}
        for k, v in metrics.items():
            writer.add_scalar(f"eval/{k}", v, done)
        for k, img in images.items():
            writer.add_image(f"images/{k}", img.clamp(0, 1).cpu(), done)
        loop.metrics = metrics
        callbacks.on_evaluate(loop)
        writer.flush()
        return metrics


def step_rng(seed: int, step: int, rank: int = 0, stream: int = 0) -> np.random.Generator:
    """The random generator of one (seed, step, rank) batch: independent of any history."""
    return np.random.default_rng([seed, step, rank, stream])
