"""Command-line options generated from settings dataclasses (one flag per field, its docstring as help)."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import typing
from typing import Any, TypeVar

__all__ = ["add_settings_arguments", "add_precision_argument", "settings_from_args", "field_docs"]

PRECISION_HELP = ("how the networks compute: auto (bf16 where this machine runs it faster than float32, else fp32), "
                  "fp32, bf16, or fp16 on CUDA (default: auto)")

T = TypeVar("T")


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (read from its source, and from its
    base classes' for the fields it inherits)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        try:
            tree = ast.parse(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant):
                    docs[node.target.id] = str(nxt.value.value)
    return docs


def _parser_for(tp: Any):
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        inner = _parser_for(args[0])
        return lambda v: None if v.lower() in ("none", "") else inner(v)
    if origin is typing.Literal:
        return str
    if tp is bool:
        return lambda v: v.lower() in ("1", "true", "yes", "on")
    if tp in (int, float, str):
        return tp
    return str


def add_settings_arguments(parser: argparse.ArgumentParser, cls: type, prefix: str = "", only_given: bool = False) -> None:
    """Add ``--field-name`` for every field of the settings dataclass ``cls``.

    With ``only_given``, flags the user did not pass are left out of the parsed namespace
    (so a preset can supply them).
    """
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    group = parser.add_argument_group(cls.__name__, (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else None)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        flag = "--" + prefix + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {
            "dest": prefix.replace("-", "_") + f.name,
            "default": argparse.SUPPRESS if only_given else default,
        }
        help_text = docs.get(f.name, "")
        if typing.get_origin(tp) is list:
            kwargs.update(nargs="+", type=_parser_for(typing.get_args(tp)[0]))
        else:
            kwargs["type"] = _parser_for(tp)
            if typing.get_origin(tp) is typing.Literal:
                kwargs["choices"] = list(typing.get_args(tp))
        group.add_argument(flag, help=f"{help_text} (default: {default})".replace("%", "%%"), **kwargs)


def add_precision_argument(parser: argparse.ArgumentParser, autocast_run: bool = False) -> None:
    """``--precision`` for a subcommand whose options are not a settings dataclass. With
    ``autocast_run`` (after ``set_defaults(func=...)``), the subcommand's whole run computes
    under it: for commands whose networks carry no precision of their own."""
    from .runtime import PRECISIONS

    parser.add_argument("--precision", choices=list(PRECISIONS), default="auto", help=PRECISION_HELP)
    if autocast_run:
        parser.set_defaults(func=_under_precision(parser.get_default("func")))


def _under_precision(run):
    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        from .runtime import autocast, resolve_device

        # These commands put their networks on the CPU for --device auto (or have no --device).
        device = getattr(args, "device", "cpu")
        with autocast(args.precision, resolve_device("cpu" if device == "auto" else device)):
            return run(args)

    return wrapped


def settings_from_args(cls: type[T], args: argparse.Namespace, prefix: str = "", **overrides: Any) -> T:
    values = {f.name: getattr(args, prefix.replace("-", "_") + f.name) for f in dataclasses.fields(cls)}
    values.update(overrides)
    return cls(**values)


def given_settings(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of ``cls`` the user passed, from arguments added with ``only_given``
    (what a preset should override)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}


def with_changes(base: T, changes: dict[str, Any], what: str) -> T:
    """A copy of the settings dataclass ``base`` with ``changes``; a ValueError naming any
    field the ``what`` settings do not have (a preset's overrides)."""
    unknown = set(changes) - {f.name for f in dataclasses.fields(base)}
    if unknown:
        raise ValueError(f"unknown {what} settings {sorted(unknown)}")
    return dataclasses.replace(base, **changes)
