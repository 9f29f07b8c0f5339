"""One training run's folder and the bookkeeping every training loop of the project shares.

A :class:`Run` owns, for the generic :class:`~toolchain_restore.training.Trainer` and the
recurrent DQN alike: the run directory, ``settings.json``, the resume rule
(:mod:`~toolchain_restore.training.resume`: continue only with the settings that define the
run, extend it with more steps, ``overwrite`` to start afresh), atomic checkpoints that
carry the random state, resuming, the TensorBoard writer, the learning-rate schedule, the
progress bar, and ``torchrun`` ranks (only rank 0 writes or prints). What a loop keeps in
its checkpoint is its own business; the run adds the random state and writes it.

Checkpoint format (``checkpoint.pt``, one ``torch.save`` dict):

- the loop's own entries (the trainer: ``step``, ``model``, ``optimizer``,
  ``grad_scaler``, ``settings`` as a JSON string; the DQN: ``settings`` as a dict, ``q``,
  ``target``, ``optimizer``, ``replay``, ``rng``, ``counters``);
- ``run_settings``: every settings dataclass of the run, ``{class name: fields}`` as a
  JSON string (what the resume rule compares; absent from older checkpoints);
- ``torch_rng``: :func:`torch.get_rng_state`;
- ``cuda_rng``: :func:`torch.cuda.get_rng_state_all` (``[]`` without CUDA);
- ``python_rng``: :func:`random.getstate` as nested lists;
- ``numpy_rng``: numpy's global generator, ``np.random.get_state(legacy=False)`` with its
  key as a list;
- ``cpu_seconds``: the CPU time of the run's process (all its threads) so far, summed
  over every resume: the training budget the cards record.

Lists rather than arrays keep the file loadable with ``weights_only=True``. Checkpoints
written before this module existed have the same entries less ``python_rng`` and
``numpy_rng`` (and the DQN's less ``cuda_rng``); a missing entry leaves that generator as
it is, which is exactly what the code of the time did on resume.

Files of a run (what ``overwrite`` deletes): ``checkpoint.pt``, ``settings.json``,
``metrics.json`` and the TensorBoard events, in the folder and in its sub-writers' folders.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np
import torch

from ..config import settings_markdown
from ..errors import Interrupted
from ..serialization import atomic_write
from .distributed import Distributed
from .resume import WAY_OUT, ResumeError, check_resume, read_checkpoint, settings_record, will_resume
from .schedule import LearningRateSchedule

__all__ = ["Run", "CHECKPOINT_NAME", "SETTINGS_NAME", "METRICS_NAME", "ResumeError", "random_state",
           "restore_random_state", "settings_markdown", "checkpoint_step"]

CHECKPOINT_NAME = "checkpoint.pt"
SETTINGS_NAME = "settings.json"
METRICS_NAME = "metrics.json"
EVENTS_PATTERN = "events.out.tfevents.*"
"""TensorBoard's event files."""


def checkpoint_step(state: Mapping[str, Any]) -> int:
    """The optimiser steps a generic trainer's checkpoint holds (its ``step``)."""
    return int(state["step"])


class Stateful(Protocol):
    """Anything with ``load_state_dict`` (modules, optimisers, grad scalers)."""

    def load_state_dict(self, state: Any) -> Any:
        ...


def random_state() -> dict[str, Any]:
    """The global random generators' state (torch, CUDA, Python, numpy), in checkpoint form."""
    numpy_state = np.random.get_state(legacy=False)
    version, internal, gauss = random.getstate()
    return {
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python_rng": [version, list(internal), gauss],
        "numpy_rng": {**numpy_state, "state": {**numpy_state["state"], "key": numpy_state["state"]["key"].tolist()}},
    }


def restore_random_state(state: Mapping[str, Any]) -> None:
    """Put back the generators that ``state`` (a checkpoint) holds; leave the others alone."""
    torch.set_rng_state(state["torch_rng"].cpu())
    if state.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    if state.get("python_rng") is not None:
        version, internal, gauss = state["python_rng"]
        random.setstate((version, tuple(internal), gauss))
    if state.get("numpy_rng") is not None:
        saved = state["numpy_rng"]
        key = np.asarray(saved["state"]["key"], dtype=np.uint32)
        np.random.set_state({**saved, "state": {**saved["state"], "key": key}})


class _NullWriter:
    """Stands in for the TensorBoard writer where nothing is written (ranks other than 0,
    before the writer opens): every method call is accepted and ignored, so loops and
    callbacks log without asking which process they run in."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None

    def __enter__(self) -> "_NullWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class Run:
    """The folder ``out_dir`` of one training run and what every loop does with it.

    Args:
        out_dir: the run directory (created at once).
        settings: the run's settings dataclasses, the loop's own first (it has ``EXTENT``):
            what the resume rule compares with the checkpoint's and the checkpoint keeps.
            Empty: nothing is compared (the checkpoint must only fit the model).
        resume: continue from the folder's checkpoint; off, a checkpoint there is an error.
        overwrite: start afresh: the folder's run files are deleted (rank 0).
        schedule: the learning-rate schedule :meth:`set_learning_rate` follows.
        distributed: the ``torchrun`` ranks (default: read from the environment).

    Raises:
        ResumeError: ``resume`` is off and the folder holds a checkpoint.
    """

    def __init__(self, out_dir: str | Path, *, settings: Sequence[Any] = (), resume: bool = True,
                 overwrite: bool = False, schedule: LearningRateSchedule | None = None,
                 distributed: Distributed | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.settings = tuple(settings)
        self.overwrite = overwrite
        self.schedule = schedule
        self.distributed = Distributed.from_env() if distributed is None else distributed
        self._resuming = will_resume(self.checkpoint_path, resume, overwrite)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if overwrite and self.is_main:
            self._delete_run_files(self.out_dir)
        self.resumed = False
        """Whether a checkpoint was loaded."""
        self.writer: Any = _NullWriter()
        """TensorBoard's SummaryWriter once :meth:`open_writer` ran on rank 0; a no-op stand-in otherwise."""
        self._bars: list[Any] = []
        self._cpu_at_start = time.process_time()
        self._cpu_before = 0.0
        self._stop_signal: str | None = None
        self._previous_handlers: dict[int, Any] = {}

    @classmethod
    def check_folder(cls, out_dir: str | Path, settings: Sequence[Any], *, resume: bool = True,
                     overwrite: bool = False, step_of: Callable[[Mapping[str, Any]], int] = checkpoint_step,
                     weights_only: bool = True) -> None:
        """The resume rule on ``out_dir`` without touching it: a :class:`ResumeError` where a
        run with ``settings`` could not start there. A job of several stages checks every
        stage's folder first, so that a refusal leaves every stage as it was."""
        path = Path(out_dir) / CHECKPOINT_NAME
        if will_resume(path, resume, overwrite) and settings:
            state = read_checkpoint(path, "cpu", weights_only=weights_only, mmap=True)
            check_resume(state, Path(out_dir) / SETTINGS_NAME, settings, step_of(state), Path(out_dir))

    # -- where things are -----------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    @property
    def settings_path(self) -> Path:
        return self.out_dir / SETTINGS_NAME

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints (rank 0)."""
        return self.distributed.is_main

    @property
    def has_checkpoint(self) -> bool:
        """Whether the run will resume: there is a checkpoint and ``overwrite`` is off."""
        return self._resuming

    @property
    def cpu_seconds(self) -> float:
        """CPU time of this process since the run started, earlier sessions included."""
        return self._cpu_before + time.process_time() - self._cpu_at_start

    @staticmethod
    def _delete_run_files(folder: Path) -> None:
        """Delete the files a run writes in ``folder`` (none of the user's others)."""
        for name in (CHECKPOINT_NAME, SETTINGS_NAME, METRICS_NAME):
            (folder / name).unlink(missing_ok=True)
        for events in folder.glob(EVENTS_PATTERN):
            events.unlink()

    # -- checkpoints ----------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write ``state`` plus the random state (and the run's settings) atomically (rank 0),
        then wait for every process."""
        if self.is_main:
            full = {**state, **random_state(), "cpu_seconds": self.cpu_seconds}
            if self.settings:
                full["run_settings"] = json.dumps(settings_record(self.settings))
            atomic_write(self.checkpoint_path, lambda tmp: torch.save(full, tmp))
        self.distributed.barrier()

    def load_checkpoint(self, map_location: torch.device | str, *,
                        step_of: Callable[[Mapping[str, Any]], int] = checkpoint_step,
                        weights_only: bool = True) -> dict[str, Any]:
        """Read the checkpoint and apply the resume rule to it (``step_of`` reads its step);
        then put the random state back and return it for the loop to restore its own parts
        from (:meth:`restore`). Rank 0 prints a line when the run is extended.

        Raises:
            ResumeError: an unreadable checkpoint, or settings the rule refuses.
        """
        state = read_checkpoint(self.checkpoint_path, map_location, weights_only=weights_only)
        extending = None  # a run without settings compares nothing
        if self.settings:
            extending = check_resume(state, self.settings_path, self.settings, step_of(state), self.out_dir)
        if extending and self.is_main:
            print(extending, flush=True)
        restore_random_state(state)
        # A checkpoint from before CPU time was kept counts from here.
        self._cpu_before = float(state.get("cpu_seconds", 0.0))
        self.resumed = True
        return state

    def restore(self, state: Mapping[str, Any], parts: Mapping[str, Stateful],
                optional: Mapping[str, Stateful] | None = None) -> None:
        """Load ``state[key]`` into each of ``parts`` (and of ``optional`` where the
        checkpoint has a non-empty entry); a part that does not fit is a clear error."""
        try:
            for key, part in parts.items():
                part.load_state_dict(state[key])
            for key, part in (optional or {}).items():
                if state.get(key):
                    part.load_state_dict(state[key])
        except (RuntimeError, ValueError, KeyError) as err:
            raise ResumeError(f"cannot resume: checkpoint {self.checkpoint_path} does not fit this model/settings "
                              f"({err}); {WAY_OUT}") from err

    # -- what rank 0 writes and shows -----------------------------------------------------
    def write_settings(self, content: Mapping[str, Any]) -> None:
        """Write ``settings.json`` (rank 0)."""
        if self.is_main:
            self.settings_path.write_text(json.dumps(content, indent=2))

    def open_writer(self, step: int, settings_text: str, precision_text: str, purge: bool = False) -> Any:
        """Open TensorBoard's writer on the run directory (rank 0) and record the settings
        (on a fresh run) and what the precision resolved to (on every start, at ``step``).
        ``purge``: a resumed run hides the events logged after its checkpoint."""
        if self.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out_dir), purge_step=step if purge and self.resumed else None)
            if not self.resumed:
                self.writer.add_text("settings", settings_text, 0)
            self.writer.add_text("precision", precision_text, step)
        return self.writer

    def sub_writer(self, name: str) -> Any:
        """A TensorBoard writer of its own in ``out_dir/name`` (rank 0; a no-op elsewhere),
        for a stage before the main loop; use it as a context manager. With ``overwrite``,
        the run files of an earlier run there (its events) are deleted first."""
        if not self.is_main:
            return _NullWriter()
        from torch.utils.tensorboard import SummaryWriter

        if self.overwrite and (self.out_dir / name).is_dir():
            self._delete_run_files(self.out_dir / name)
        return SummaryWriter(str(self.out_dir / name))

    def progress_bar(self, total: int, initial: int, desc: str, enabled: bool = True) -> Any:
        """A tqdm bar, shown only on rank 0 and when ``enabled``; :meth:`close` closes it."""
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=initial, disable=not (enabled and self.is_main), desc=desc)
        self._bars.append(bar)
        return bar

    def set_learning_rate(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Give ``optimizer`` the schedule's learning rate of ``step``; return it."""
        if self.schedule is None:
            raise RuntimeError("this run has no learning-rate schedule")
        return self.schedule.apply(optimizer, step)

    def close(self) -> None:
        """Close the progress bars and the TensorBoard writer."""
        for bar in self._bars:
            bar.close()
        self._bars.clear()
        self.writer.close()
        self.writer = _NullWriter()

    # -- stopping on a signal -------------------------------------------------------------
    def _request_stop(self, signum: int, frame: Any) -> None:
        self._stop_signal = signal.Signals(signum).name
        # A second signal stops at once, as it would without this handler.
        self._restore_handlers()

    def _restore_handlers(self) -> None:
        for number, previous in self._previous_handlers.items():
            signal.signal(number, previous)
        self._previous_handlers.clear()

    @property
    def stop_requested(self) -> bool:
        """Whether SIGINT or SIGTERM came while the run was open: the loop then writes a
        checkpoint at the end of its step and calls :meth:`stop_if_requested`."""
        return self._stop_signal is not None

    def stop_if_requested(self, step: int) -> None:
        """An :class:`Interrupted` error (one line, exit status 2) once a stop signal came;
        call it after the checkpoint of ``step`` is written."""
        if self._stop_signal is not None:
            raise Interrupted(f"{self.out_dir}: stopped by {self._stop_signal} after step {step}; its checkpoint is "
                              "written there, and the same command resumes from it")

    def __enter__(self) -> "Run":
        # Only the main thread may set handlers; a signal a background job ignores stays ignored.
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                previous = signal.getsignal(number)
                if previous is not signal.SIG_IGN:
                    self._previous_handlers[number] = previous
                    signal.signal(number, self._request_stop)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._restore_handlers()
        self.close()
