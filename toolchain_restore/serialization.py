"""Saving and loading weights as safetensors, with errors that say what does not fit."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import InvalidInput

__all__ = ["WeightsError", "save_weights", "load_weights", "load_model", "read_settings", "read_metadata",
           "atomic_write", "shipped_weights"]


class WeightsError(InvalidInput):
    """A weights file is missing, corrupt, of another kind, or does not fit the model."""


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def shipped_weights(name: str) -> Path:
    """The path of a weights file shipped inside the package, or a clear error if the install lacks it."""
    from importlib import resources

    path = Path(str(resources.files("toolchain_restore") / "weights" / name))
    if not path.is_file():
        raise WeightsError(f"the shipped weights {name} are missing from the install ({path})")
    return path


def save_weights(module: nn.Module, path: str | os.PathLike, kind: str, config: dict | None = None,
                 half: bool = False) -> None:
    """Write a module's state as safetensors, tagged with its ``kind`` and a JSON ``config``;
    ``half`` stores floating-point tensors as float16 (half the file; loading casts them back)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    metadata = {"kind": kind, "config": json.dumps(config or {}, sort_keys=True)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def read_metadata(path: str | os.PathLike) -> tuple[str, dict]:
    """The (kind, config) stored in a weights file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no weights file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{path}: not a readable safetensors file ({err})") from err
    try:
        config = json.loads(metadata.get("config", "{}"))
    except json.JSONDecodeError as err:
        raise WeightsError(f"{path}: corrupt config metadata ({err})") from err
    return metadata.get("kind", ""), config


def load_weights(module: nn.Module, path: str | os.PathLike, kind: str) -> dict:
    """Load a safetensors file of ``kind`` into ``module``; return its config.

    Raises:
        WeightsError: the file is missing, corrupt, of another kind, or its tensors do
            not match the module's (missing, unexpected or differently shaped entries).
    """
    path = Path(path)
    file_kind, config = read_metadata(path)
    if file_kind != kind:
        raise WeightsError(f"{path}: holds weights of kind {file_kind or 'unknown'!r}, expected {kind!r}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{path}: not a readable safetensors file ({err})") from err
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong_shape = [
        f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(tensors))
        if tensors[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} shape mismatches ({'; '.join(wrong_shape[:3])})")
    if problems:
        raise WeightsError(f"{path} does not fit this {kind}: " + "; ".join(problems))
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise WeightsError(f"{path}: non-finite values in {', '.join(bad[:3])}")
    module.load_state_dict(tensors)
    return config


M = TypeVar("M", bound=nn.Module)


def load_model(path: str | os.PathLike, kind: str, build: Callable[[dict], M], what: str) -> tuple[M, dict]:
    """Build the model a file's config describes (``build(config)``) and load its weights;
    return it with the config.

    Raises:
        WeightsError: missing or corrupt file, weights of another kind, a config that does not
            describe a ``what``, or tensors that do not fit.
    """
    file_kind, config = read_metadata(path)
    if file_kind != kind:
        raise WeightsError(f"{path}: holds weights of kind {file_kind or 'unknown'!r}, expected {kind!r}")
    try:
        model = build(config)
    except (KeyError, TypeError, ValueError) as err:
        raise WeightsError(f"{path}: the config does not describe a {what} ({err!r})") from err
    load_weights(model, path, kind)
    return model, config


S = TypeVar("S")


def read_settings(path: str | os.PathLike, kind: str, settings_class: type[S], architecture: tuple[str, ...],
                  expect: S | None = None, what: str = "model") -> tuple[S, dict]:
    """The settings dataclass a model file was saved with (its config's ``settings``) and the
    config; with ``expect``, every ``architecture`` field whose value differs from the file's
    is named in one error (loading weights trained with other options).

    Raises:
        WeightsError: missing or corrupt file, another kind, no settings of ``settings_class``,
            or architecture fields unlike ``expect``'s.
    """
    file_kind, config = read_metadata(path)
    if file_kind != kind:
        raise WeightsError(f"{path}: holds weights of kind {file_kind or 'unknown'!r}, expected {kind!r}")
    try:
        settings = settings_class(**config["settings"])
    except (KeyError, TypeError) as err:
        raise WeightsError(f"{path}: the config does not describe a {what} ({err})") from err
    if expect is not None:
        differ = [f"{k}: file {getattr(settings, k)!r}, asked {getattr(expect, k)!r}" for k in architecture
                  if getattr(expect, k) is not None and getattr(settings, k) != getattr(expect, k)]
        if differ:
            raise WeightsError(f"{path}: the weights were trained with other options: " + "; ".join(differ))
    return settings, config
