"""The generic trainer shared by every model of the project."""

from .trainer import Trainer, TrainerSettings, TrainingTask, lr_at, resolve_device, settings_markdown, step_rng

__all__ = ["Trainer", "TrainerSettings", "TrainingTask", "lr_at", "resolve_device", "settings_markdown", "step_rng"]
