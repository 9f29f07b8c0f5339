"""The training framework shared by every model of the project: the run (directory,
settings, checkpoints, TensorBoard, schedule, ranks), callbacks, and the generic trainer."""

from ..runtime import resolve_device  # its home is runtime; kept here for the callers of training.resolve_device
from .callbacks import Callback, CallbackList, TrainingState
from .distributed import Distributed, is_main_process
from .resume import ResumeError
from .run import Run, settings_markdown
from .schedule import LearningRateSchedule
from .trainer import Trainer, TrainerSettings, TrainingTask, lr_at, settings_callbacks, step_rng, trainer_schedule

__all__ = ["Callback", "CallbackList", "Distributed", "LearningRateSchedule", "ResumeError", "Run", "Trainer",
           "TrainerSettings", "TrainingState", "TrainingTask", "is_main_process", "lr_at", "resolve_device",
           "settings_callbacks", "settings_markdown", "step_rng", "trainer_schedule"]
