"""The user's mistakes, told apart from ours.

A :class:`UserError` is raised where an input is checked: a file or folder the user named
that is missing or unreadable, a value of the wrong shape, size or range, weights that do
not fit, a device this machine lacks, an option value that cannot be used. The command line
(:func:`run_reporting`) prints it as one line, ``error: ...``, and exits with status 2. Any
other exception is a bug of ours and keeps its traceback.

The concrete classes are also the built-in exception a library caller would expect, so that
code catching ``ValueError`` or ``FileNotFoundError`` keeps working:

- :class:`InvalidInput` (a ``ValueError``): a value, a file's contents or an option that a
  command cannot use;
- :class:`MissingInput` (a ``FileNotFoundError``): a file or folder the user named is not there;
- :class:`NotAFolder` (a ``NotADirectoryError``): a path named as a folder is not one;
- :class:`RunExists` (a ``FileExistsError``): an output folder already holds a run;
- :class:`Unavailable` (a ``RuntimeError``): this machine lacks what was asked for (a CUDA device);
- :class:`Interrupted`: the user stopped a training run (Ctrl-C, SIGTERM) and its checkpoint was written.

The domain errors (``WeightsError``, ``ImageReadError``, ``BankError``, ``MatFileError``,
``CorpusError``) are user errors too. This module imports nothing of the package.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, Callable

__all__ = ["UserError", "InvalidInput", "MissingInput", "NotAFolder", "RunExists", "Unavailable", "Interrupted", "positive", "one_line", "run_reporting",
           "deprecation_warning", "EXIT_USER_ERROR"]

EXIT_USER_ERROR = 2
"""The exit status of a command stopped by a user error (argparse's, for a bad option)."""


class UserError(Exception):
    """A mistake in what the user gave a command: the command line prints it as one line and exits with status 2."""


class InvalidInput(UserError, ValueError):
    """A value, a file's contents or an option value that the command cannot use."""


class MissingInput(UserError, FileNotFoundError):
    """A file or folder the user named that is not there."""


class RunExists(UserError, FileExistsError):
    """An output folder that already holds a run the command will not continue or replace."""


class NotAFolder(UserError, NotADirectoryError):
    """A path the user named as a folder that is a file (or not there at all)."""


class Unavailable(UserError, RuntimeError):
    """Something asked for that this machine does not have (a CUDA device)."""


class Interrupted(UserError):
    """A training run the user stopped with a signal, after it wrote a checkpoint to resume from."""


def positive(value: int, option: str) -> int:
    """``value`` if it is at least 1, else an :class:`InvalidInput` naming ``option``."""
    if value < 1:
        raise InvalidInput(f"{option} must be at least 1, got {value}")
    return value


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (runs of whitespace, newlines among them, become one space)."""
    return " ".join(str(err).split()) or type(err).__name__


def _show_warning_on_one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                              file: Any = None, line: str | None = None) -> None:
    print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)


def run_reporting(run: Callable[..., int], *args: Any) -> int:
    """``run(*args)``'s exit status; a :class:`UserError` is printed as ``error: ...`` on
    stderr and gives :data:`EXIT_USER_ERROR`. Other exceptions propagate with their traceback.
    Warnings meanwhile are one line each, ``warning: ...`` (a bad file skipped, say), without
    the source line Python shows by default."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning_on_one_line
        try:
            return run(*args)
        except UserError as err:
            print(f"error: {one_line(err)}", file=sys.stderr)
            return EXIT_USER_ERROR


def deprecation_warning(old: str, new: str, where: str) -> None:
    """One line on stderr: the spelling ``old`` of ``where`` is deprecated, ``new`` replaces it."""
    print(f"warning: {where}: {old} is deprecated and goes in the next release; use {new}", file=sys.stderr)
