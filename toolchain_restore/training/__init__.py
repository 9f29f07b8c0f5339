"""The generic trainer shared by every model of the project."""

from ..runtime import resolve_device  # its home is runtime; kept here for the callers of training.resolve_device
from .trainer import Trainer, TrainerSettings, TrainingTask, lr_at, settings_markdown, step_rng

__all__ = ["Trainer", "TrainerSettings", "TrainingTask", "lr_at", "resolve_device", "settings_markdown", "step_rng"]
