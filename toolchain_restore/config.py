"""Settings dataclasses, and the command line made from them.

Three pieces:

- the settings bases the jobs share (:class:`DeviceSettings`, :class:`RunSettings`,
  :class:`TrainingRunSettings`, :class:`CleanImages`, :class:`TrainingPatches`,
  :class:`ToolboxSelection`, :class:`ToolchainSettings`, :class:`AgentSelection`): each
  field is declared, with its
  docstring, once; a job inherits the ones that mean the same thing for it and redeclares a
  field only to give it another default or say what is particular to it. A class names,
  in ``RESUMABLE``, its fields that a resumed training run may change
  (:func:`resumable_fields` gathers them over the bases);
- one command-line option per settings field, its docstring as help and its default as
  default (:func:`add_settings_arguments`, :func:`settings_from_args`), booleans read by
  one function (:func:`parse_bool`);
- the command table: a :class:`Command` names a subcommand, the settings dataclasses its
  options come from and the function it runs; :func:`add_commands` builds the parsers of a
  list of them and :func:`run_command` turns parsed options back into settings.

A mistake on the command line (an unknown option, a value of the wrong type or outside its
choices) is one line, ``error: ...``, and exit status 2 (:class:`CommandParser`), like every
other user error (:mod:`errors`). An option renamed for consistency keeps its old spelling
for one release, with a warning (``option(deprecated=...)``).

This is a shared layer: the jobs import it, never the reverse (it imports only ``runtime``
and ``errors``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import typing
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Literal, Mapping, TypeVar

from .errors import EXIT_USER_ERROR, deprecation_warning
from .runtime import PRECISIONS, Precision, autocast, resolve_device

if TYPE_CHECKING:
    import torch

__all__ = [
    "DeviceSettings", "RunSettings", "TrainingRunSettings", "resumable_fields", "CleanImages",
    "TrainingPatches", "ToolboxSelection", "ToolchainSettings",
    "AgentSelection", "option", "parse_bool", "CommandParser", "Command", "Preset", "add_commands", "run_command",
    "add_settings_arguments", "add_precision_argument", "settings_from_args", "given_settings", "with_changes",
    "field_docs", "field_default", "settings_markdown",
]

PRECISION_HELP = ("how the networks compute: auto (bf16 where this machine runs it faster than float32, else fp32), "
                  "fp32, bf16, or fp16 on CUDA (default: auto)")

T = TypeVar("T")


# --- the shared settings --------------------------------------------------------------

@dataclass
class DeviceSettings:
    """Where the networks run and how they compute."""

    device: str = "auto"
    """'auto' (CUDA when this machine has it, else the CPU), 'cpu', 'cuda' or 'cuda:N'."""
    precision: Precision = "auto"
    """How the networks compute: auto (bf16 where this machine runs it faster than float32, else fp32), fp32, bf16, or fp16 on CUDA."""

    RESUMABLE: ClassVar[frozenset[str]] = frozenset({"device", "precision"})
    """Where and how the networks compute does not define a training run: a resumed one may change it."""

    def torch_device(self) -> torch.device:
        """``device`` as :func:`runtime.resolve_device` reads it: the one meaning of 'auto'."""
        return resolve_device(self.device)


@dataclass
class RunSettings(DeviceSettings):
    """A run that writes a folder of results, from a seed."""

    out_dir: str = "runs"
    """Folder the run writes to: its results, the settings it ran with and TensorBoard logs."""
    seed: int = 0
    """Seed of everything the run draws at random: the same seed repeats the run."""

    RESUMABLE: ClassVar[frozenset[str]] = frozenset({"out_dir"})
    """A run folder may be moved or named another way."""


@dataclass
class TrainingRunSettings(RunSettings):
    """A training run that checkpoints into its folder and continues from there.

    The resume rule (:mod:`toolchain_restore.training.resume`): a run continues from its
    folder's checkpoint only when every setting that defines it agrees with the checkpoint's;
    the fields a class lists in ``RESUMABLE`` may change, and ``EXTENT``, the run's length,
    may grow (extending a finished run) but never fall below the checkpoint's."""

    resume: bool = True
    """Continue from out_dir's checkpoint when there is one; false refuses to start where a checkpoint is (see overwrite)."""
    overwrite: bool = False
    """Start the run afresh in out_dir: its checkpoint, settings, metrics and TensorBoard events are deleted first."""

    RESUMABLE: ClassVar[frozenset[str]] = frozenset({"resume", "overwrite"})
    EXTENT: ClassVar[str] = "iterations"
    """The field that counts the run's steps."""


@dataclass
class CleanImages:
    """Which clean photographs the patches are cut from."""

    data: str | None = None
    """Folder of clean images (DIV2K layout or flat: a flat folder puts one image in ten in 'test'); None = the embedded default. Training draws from its train split, held-out sets from its test split."""


@dataclass
class TrainingPatches(CleanImages):
    """Degraded patches of the train split, at one severity."""

    level: Literal["mild", "moderate", "severe", "clean", "mixed"] = "moderate"
    """Severity of the training patches: mild, moderate or severe (the paper's agent trains on moderate), clean (nearly clean patches, where stopping at once is usually right), or mixed (each patch draws mild, moderate or severe with equal chance)."""


@dataclass
class ToolboxSelection:
    """Which toolbox (the 12 restoration tools) a job uses."""

    toolbox: str | None = None
    """Toolbox file; None = the shipped tools: those trained one by one (toolbox.md), except where the shipped agent chains them (jointly fine-tuned for it, toolbox_joint.md)."""


@dataclass
class ToolchainSettings(ToolboxSelection):
    """Chains of the toolbox's tools."""

    max_steps: int = 3
    """Longest toolchain."""


@dataclass
class AgentSelection:
    """Which agent picks the tools."""

    agent: str | None = None
    """Agent file; None = the shipped agent."""


def resumable_fields(cls: type) -> frozenset[str]:
    """The fields of settings class ``cls`` that a resumed training run may change: the
    union of the ``RESUMABLE`` sets that ``cls`` and its bases declare."""
    names: set[str] = set()
    for klass in cls.__mro__:
        names |= vars(klass).get("RESUMABLE", frozenset())
    return frozenset(names)


# --- one option per settings field ----------------------------------------------------

def option(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
           positional: bool = False, metavar: str | None = None, switch: bool = False,
           nargs: str | None = None, append: bool = False, deprecated: str | None = None) -> Any:
    """A settings field whose command-line option is not the plain ``--name VALUE``.

    ``positional``: an argument without a flag (``metavar`` names it; optional when the
    field has a default). ``switch``: a bool flag that takes no value (``--write``).
    ``nargs``: a list field's argparse ``nargs`` instead of ``+``. ``append``: a list field
    whose flag is repeated, one value each time. ``deprecated``: the field's old spelling,
    still read for one release with a warning: an old flag (``"--clusters"``) or, for an
    argument that used to be positional, its old metavar (``"LAYOUT"``). A field without a
    default is a required flag (declare it in a ``kw_only`` dataclass)."""
    cli = {"positional": positional, "metavar": metavar, "switch": switch, "nargs": nargs, "append": append,
           "deprecated": deprecated}
    return field(default=default, default_factory=default_factory, metadata={"cli": cli})


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``error: PROG: MESSAGE``, exit status 2
    (argparse's own print the usage first); the parser of ``toolchain-restore`` and, through
    ``add_subparsers``, of every subcommand."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USER_ERROR, f"error: {self.prog}: {' '.join(message.split())} (see {self.prog} --help)\n")


class _DeprecatedSpelling(argparse.Action):
    """The old spelling of an option: stores into the new one's destination and warns once per use."""

    def __init__(self, *args: Any, new: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        old = option_string or f"the positional {self.metavar}"
        deprecation_warning(old, self.new, parser.prog)
        setattr(namespace, self.dest, values)


def _deprecated_argument(parser: argparse._ActionsContainer, old: str, new: str, kwargs: dict[str, Any]) -> None:
    """Add the old spelling ``old`` (a flag, or an old positional's metavar) of the flag
    ``new`` whose ``add_argument`` keywords are ``kwargs``; it is hidden from --help."""
    keep = {k: kwargs[k] for k in ("type", "choices") if k in kwargs}
    if old.startswith("-"):
        parser.add_argument(old, action=_DeprecatedSpelling, new=new, help=argparse.SUPPRESS, dest=kwargs["dest"],
                            default=kwargs.get("default"), **keep)
    else:
        # SUPPRESS: argparse neither sets a default nor calls the action when the positional is absent.
        parser.add_argument(kwargs["dest"], action=_DeprecatedSpelling, new=new, nargs="?", default=argparse.SUPPRESS,
                            metavar=old, help=argparse.SUPPRESS, **keep)


def parse_bool(text: str) -> bool:
    """How every boolean option reads its value: 1/true/yes/on or 0/false/no/off, any case."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false (1/0, yes/no, on/off), got {text!r}")


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (read from its source, and from its
    base classes' for the fields it inherits)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is not object:
            docs.update(_own_field_docs(klass))
    return docs


@functools.lru_cache(maxsize=None)
def _own_field_docs(klass: type) -> dict[str, str]:
    # Reading and parsing a class's source is most of the time of building the parser; a
    # class's source does not change while the process runs.
    try:
        tree = ast.parse(inspect.getsource(klass))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant):
                docs[node.target.id] = str(nxt.value.value)
    return docs


def field_default(f: dataclasses.Field, defaults: Mapping[str, Any] | None = None) -> Any:
    """The default of settings field ``f``: ``defaults[f.name]`` where a command overrides it,
    else the dataclass's (``dataclasses.MISSING`` for a required field)."""
    if defaults and f.name in defaults:
        return defaults[f.name]
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return f.default


def _literal_choices(tp: Any) -> list[Any] | None:
    """The values of ``Literal[...]`` or ``Literal[...] | None``; None for other types."""
    if typing.get_origin(tp) is Literal:
        return list(typing.get_args(tp))
    inner = [a for a in typing.get_args(tp) if a is not type(None)]
    if _is_optional(tp) and len(inner) == 1 and typing.get_origin(inner[0]) is Literal:
        return list(typing.get_args(inner[0]))
    return None


def _is_optional(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return (origin is typing.Union or str(origin) == "<class 'types.UnionType'>") and type(None) in typing.get_args(tp)


def _parser_for(tp: Any) -> Callable[[str], Any]:
    """The function that turns an option's text into a value of type ``tp``."""
    if _is_optional(tp):
        inner = _parser_for(next(a for a in typing.get_args(tp) if a is not type(None)))
        return lambda v: None if v.lower() in ("none", "") else inner(v)
    if tp is bool:
        return parse_bool
    if tp in (int, float, str):
        return tp
    return str


def _argument(f: dataclasses.Field, tp: Any, doc: str, prefix: str,
              defaults: Mapping[str, Any] | None) -> tuple[list[str], dict[str, Any]]:
    """The ``add_argument`` names and keywords of settings field ``f`` of type ``tp``."""
    cli = f.metadata.get("cli", {})
    default = field_default(f, defaults)
    dest = prefix.replace("-", "_") + f.name
    kwargs: dict[str, Any] = {}
    if cli.get("switch"):
        kwargs["action"] = "store_true"
    elif typing.get_origin(tp) is list:
        kwargs["type"] = _parser_for(typing.get_args(tp)[0])
        if cli.get("append"):
            kwargs["action"] = "append"
        else:
            kwargs["nargs"] = cli.get("nargs") or "+"
    else:
        kwargs["type"] = _parser_for(tp)
        choices = _literal_choices(tp)
        if choices is not None:
            kwargs["choices"] = choices
    if cli.get("metavar"):
        kwargs["metavar"] = cli["metavar"]
    required = default is dataclasses.MISSING
    if not required:
        kwargs["default"] = default
    # A docstring that says what the default means already needs no "(default: None)" after it.
    if not required and "(default" not in doc:
        doc = f"{doc} (default: {default})"
    kwargs["help"] = doc.replace("%", "%%")
    if cli.get("positional"):
        if not required:
            kwargs["nargs"] = "?"
        return [dest], kwargs
    if required:
        kwargs["required"] = True
    return ["--" + prefix + f.name.replace("_", "-")], {"dest": dest, **kwargs}


def add_settings_arguments(parser: argparse.ArgumentParser, cls: type, prefix: str = "", only_given: bool = False,
                           defaults: Mapping[str, Any] | None = None) -> None:
    """Add ``--field-name`` for every field of the settings dataclass ``cls`` (see
    :func:`option` for the other spellings), with ``defaults`` replacing the dataclass's
    defaults of the fields it names.

    With ``only_given``, flags the user did not pass are left out of the parsed namespace
    (so a preset can supply them).
    """
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    summary = (cls.__doc__ or "").strip().splitlines()
    group = parser.add_argument_group(cls.__name__, summary[0] if summary else None)
    for f in dataclasses.fields(cls):
        names, kwargs = _argument(f, hints[f.name], docs.get(f.name, ""), prefix, defaults)
        if only_given and "required" not in kwargs and names[0].startswith("--"):
            kwargs["default"] = argparse.SUPPRESS
        old = f.metadata.get("cli", {}).get("deprecated")
        if old:  # before the new spelling, which --help and the parser's defaults then show
            _deprecated_argument(group, old, names[0], kwargs)
        group.add_argument(*names, **kwargs)


def add_precision_argument(parser: argparse.ArgumentParser, autocast_run: bool = False) -> None:
    """``--precision`` for a subcommand whose options are not a settings dataclass. With
    ``autocast_run`` (after ``set_defaults(func=...)``), the subcommand's whole run computes
    under it: for commands whose networks carry no precision of their own."""
    parser.add_argument("--precision", choices=list(PRECISIONS), default="auto", help=PRECISION_HELP)
    if autocast_run:
        parser.set_defaults(func=_under_precision(parser.get_default("func")))


def _under_precision(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        # A command without --device keeps its networks on the CPU; --device auto is CUDA
        # where there is one, as everywhere else.
        with autocast(args.precision, resolve_device(getattr(args, "device", "cpu"))):
            return run(args)

    return wrapped


def settings_from_args(cls: type[T], args: argparse.Namespace, prefix: str = "", **overrides: Any) -> T:
    """An instance of the settings dataclass ``cls`` from options added by
    :func:`add_settings_arguments` (``overrides`` replace parsed values)."""
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


# --- the command table ----------------------------------------------------------------

@dataclass(frozen=True)
class Preset:
    """Settings whose options change a named preset instead of the dataclass defaults: the
    options the user did not pass stay out of the namespace and ``make(name, **given)``
    builds the settings, ``name`` being the value of the command's option ``choice``."""

    settings: type
    make: Callable[..., Any]
    choice: str = "preset"


@dataclass(frozen=True, eq=False)
class Command:
    """One subcommand of the command line.

    Its options are the fields of ``settings`` (in order; ``defaults`` replaces the
    dataclass defaults of the fields it names, for this command only), and ``run`` receives
    one instance of each and returns the exit status. With ``autocast`` the whole run
    computes under the precision and on the device of its :class:`DeviceSettings`: for
    commands whose networks carry no precision of their own. A command with ``verbs`` is a
    group: its own subcommands, their name in the namespace under ``verbs_dest``.
    """

    name: str
    help: str
    run: Callable[..., int] | None = None
    settings: tuple[type, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    preset: Preset | None = None
    autocast: bool = False
    verbs: tuple[Command, ...] = ()
    verbs_dest: str = "verb"

    def __post_init__(self) -> None:
        if bool(self.verbs) == (self.run is not None):
            raise ValueError(f"command {self.name!r}: give either run or verbs")
        names = {f.name for cls in self.settings for f in dataclasses.fields(cls)}
        unknown = set(self.defaults) - names
        if unknown:
            raise ValueError(f"command {self.name!r}: defaults for fields none of its settings has: {sorted(unknown)}")
        if self.preset is not None and (self.preset.settings not in self.settings or self.preset.choice not in names):
            raise ValueError(f"command {self.name!r}: the preset's settings and its {self.preset.choice!r} option "
                             f"must be among its settings")
        if self.autocast and not any(issubclass(cls, DeviceSettings) for cls in self.settings):
            raise ValueError(f"command {self.name!r}: autocast needs DeviceSettings among its settings")

    def settings_from(self, args: argparse.Namespace) -> list[Any]:
        """The command's settings, one instance per class of ``settings``, from parsed options."""
        values = []
        for cls in self.settings:
            if self.preset is not None and cls is self.preset.settings:
                values.append(self.preset.make(getattr(args, self.preset.choice), **given_settings(cls, args)))
            else:
                values.append(settings_from_args(cls, args))
        return values


def run_command(command: Command, args: argparse.Namespace) -> int:
    """Run ``command`` on the options ``args`` parsed (its parser's ``func``). Every --device
    is resolved first, so a device this machine lacks stops the command before any work."""
    values = command.settings_from(args)
    for value in values:
        if isinstance(getattr(value, "device", None), str):
            resolve_device(value.device)
    assert command.run is not None
    if not command.autocast:
        return command.run(*values)
    device = next(v for v in values if isinstance(v, DeviceSettings))
    with autocast(device.precision, device.torch_device()):
        return command.run(*values)


def add_commands(sub: argparse._SubParsersAction, commands: Iterable[Command]) -> None:
    """A parser for each command of ``commands`` (and each of its verbs) in ``sub``."""
    for command in commands:
        parser = sub.add_parser(command.name, help=command.help)
        if command.verbs:
            add_commands(parser.add_subparsers(dest=command.verbs_dest, required=True), command.verbs)
            continue
        for cls in command.settings:
            only_given = command.preset is not None and cls is command.preset.settings
            add_settings_arguments(parser, cls, only_given=only_given, defaults=command.defaults)
        parser.set_defaults(func=functools.partial(run_command, command))


def settings_markdown(*settings: Any) -> str:
    """A markdown table of one or more settings dataclasses, for TensorBoard's text tab."""
    rows = ["| setting | value |", "|---|---|"]
    for s in settings:
        for k, v in asdict(s).items():
            rows.append(f"| {type(s).__name__}.{k} | {v} |")
    return "\n".join(rows)
