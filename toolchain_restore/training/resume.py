"""The resume rule: when a training run may continue from the checkpoint in its folder.

Every training loop of the project (the generic trainer and the recurrent DQN) follows it
through its :class:`~toolchain_restore.training.run.Run`:

- a folder without a checkpoint starts afresh; so does any folder with ``overwrite``, whose
  run files (checkpoint, settings, metrics, TensorBoard events) are deleted first;
- a folder with a checkpoint is continued only when every setting that defines the run
  agrees with the checkpoint's. Each settings class lists the fields that may change in
  ``RESUMABLE`` (gathered over its bases by :func:`~toolchain_restore.config.resumable_fields`):
  where and how the networks compute, the folder's name, how often the run evaluates, logs
  and checkpoints, and the like;
- the run's length (its loop settings' ``EXTENT``: ``iterations``, the DQN's
  ``total_steps``) may grow, which extends a finished run (one line says so), but never
  fall below the checkpoint's;
- ``resume`` false where a checkpoint is refuses to start: it would overwrite that run.

Anything else stops before a file is written, with one :class:`ResumeError` that names each
differing setting (saved value -> requested value) and the way out.

The saved settings are the checkpoint's ``run_settings`` (every settings class of the run,
by class name). Checkpoints written before it hold the loop's own class as ``settings``; the
other classes then come from ``settings.json`` where it keeps them by class name (the
trainer's layout). A class the folder has no record of is not compared, and a field missing
from a record (added to the class since) counts as its default: old run folders and
checkpoints resume as before.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import field_default, resumable_fields
from ..errors import UserError

__all__ = ["ResumeError", "Change", "WAY_OUT", "settings_record", "read_checkpoint", "will_resume", "saved_settings",
           "setting_changes", "check_resume"]

WAY_OUT = "use --out-dir elsewhere, or --overwrite to start afresh in that folder"
"""What every refusal to resume advises."""


class ResumeError(UserError, RuntimeError):
    """A run folder this run may not continue from: other settings, fewer steps, a damaged
    or unfitting checkpoint. The command line prints it as one ``error:`` line, status 2."""


@dataclass(frozen=True)
class Change:
    """One setting that differs from the checkpoint's, as the error names it."""

    name: str
    saved: Any
    requested: Any
    note: str = ""

    def __str__(self) -> str:
        text = f"--{self.name.replace('_', '-')}: {self.saved!r} -> {self.requested!r}"
        return f"{text} ({self.note})" if self.note else text


def settings_record(settings: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Each settings dataclass as a dict under its class's name: what ``settings.json`` and
    the checkpoint's ``run_settings`` keep."""
    return {type(x).__name__: asdict(x) for x in settings}


def read_checkpoint(path: Path, map_location: torch.device | str, weights_only: bool = True,
                    mmap: bool = False) -> dict[str, Any]:
    """The checkpoint at ``path``; a :class:`ResumeError` when it cannot be read."""
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only, mmap=mmap)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged file; one advice fits all
        raise ResumeError(f"cannot resume: checkpoint {path} is unreadable ({err}); delete it, or pass --overwrite "
                          f"to start afresh") from err


def will_resume(checkpoint: Path, resume: bool, overwrite: bool) -> bool:
    """Whether a run continues from ``checkpoint``: there is one and ``overwrite`` is off. A
    :class:`ResumeError` when there is one but ``resume`` is off (starting would overwrite it)."""
    if overwrite or not checkpoint.is_file():
        return False
    if not resume:
        raise ResumeError(f"{checkpoint.parent} holds a run ({checkpoint.name}) and --resume is false; {WAY_OUT}")
    return True


def _settings_by_class(path: Path) -> dict[str, Mapping[str, Any]]:
    """The settings classes that the ``settings.json`` at ``path`` keeps by class name; {}
    when it is missing, unreadable or flat (the DQN's)."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(content, dict):
        return {}
    return {k: v for k, v in content.items() if k[:1].isupper() and isinstance(v, dict)}


def saved_settings(state: Mapping[str, Any], settings_file: Path, loop_class: str) -> dict[str, Mapping[str, Any]]:
    """The settings the checkpoint ``state`` was trained with, by class name (see the
    module's docstring for where each comes from); ``loop_class`` names the class of the
    checkpoint's own ``settings`` entry."""
    saved = _settings_by_class(settings_file)
    own = state.get("settings")
    if own is not None:
        saved[loop_class] = json.loads(own) if isinstance(own, str) else own
    if state.get("run_settings"):
        saved.update(json.loads(state["run_settings"]))
    return saved


def _comparable(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists), so saved and requested compare alike."""
    return json.loads(json.dumps(value))


def setting_changes(saved: Mapping[str, Mapping[str, Any]], requested: Sequence[Any]) -> list[Change]:
    """The fields of ``requested`` (settings dataclasses) that define the run and differ
    from ``saved``; a class's ``EXTENT`` is left to :func:`check_resume`."""
    changes = []
    for settings in requested:
        record = saved.get(type(settings).__name__)
        if record is None:
            continue
        free = resumable_fields(type(settings)) | {getattr(type(settings), "EXTENT", None)}
        for f in dataclasses.fields(settings):
            before = record.get(f.name, field_default(f))
            if f.name in free or before is dataclasses.MISSING:
                continue
            now = _comparable(getattr(settings, f.name))
            if _comparable(before) != now:
                changes.append(Change(f.name, before, now))
    return changes


def check_resume(state: Mapping[str, Any], settings_file: Path, requested: Sequence[Any], step: int,
                 run_dir: Path) -> str | None:
    """Apply the resume rule to the checkpoint ``state`` (at ``step``) of ``run_dir`` and
    the ``requested`` settings (one or more, the loop's own first): a :class:`ResumeError`
    naming every difference, or None, or the line that says the run is extended."""
    loop = type(requested[0])
    saved = saved_settings(state, settings_file, loop.__name__)
    changes = setting_changes(saved, requested)
    extent = getattr(loop, "EXTENT", None)
    before = saved.get(loop.__name__, {}).get(extent) if extent else None
    wanted = getattr(requested[0], extent) if extent else None
    floor = step if before is None else int(before)
    if wanted is not None and wanted < floor:
        changes.insert(0, Change(extent, floor, wanted, f"fewer than the run's; {floor} or more extends it"))
    if changes:
        raise ResumeError(f"cannot resume {run_dir} with other settings: {'; '.join(map(str, changes))}; {WAY_OUT}")
    if before is not None and wanted is not None and wanted > before:
        return f"extending run {run_dir} from {before} to {wanted} steps"
    return None
