"""The one command: every subcommand (and verb) answers --help; the command table builds
every subcommand from settings dataclasses, their defaults, one bool parser and one meaning
of --device auto."""

import argparse
import dataclasses
import functools
import re
import typing
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import toolchain_restore
from toolchain_restore import cli, config
from toolchain_restore.agents.dqn import DQNSettings
from toolchain_restore.cli import build_parser
from toolchain_restore.config import (Command, DeviceSettings, ToolboxSelection, field_default, field_docs, parse_bool,
                                     run_command)
from toolchain_restore.training import TrainerSettings


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _commands(sub, prefix + (name,))


COMMANDS = list(_commands(build_parser()))


def test_the_command_has_the_subcommands_of_every_module():
    assert {("demo",), ("train-classifier",), ("train-segmenter",), ("pix2pixhd", "sample"),
            ("posewarp", "synthesize")} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_of_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: toolchain-restore" in capsys.readouterr().out


def _leaf_parsers(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _leaf_parsers(sub, prefix + (name,))


NO_NETWORK = {("pix2pixhd", "export"), ("sims", "build-bank"), ("corpus", "build"), ("combine-tools",),
              ("average-agents",)}
"""Subcommands that run no network: they copy or average weights, or cut segments."""
LEAVES = [(command, parser) for command, parser in _leaf_parsers(build_parser()) if command not in NO_NETWORK]


@pytest.mark.parametrize("command, parser", LEAVES, ids=[" ".join(c) for c, _ in LEAVES])
def test_every_subcommand_that_runs_a_network_takes_precision(command, parser):
    option = next((a for a in parser._actions if "--precision" in a.option_strings), None)
    assert option is not None, f"{' '.join(command)} has no --precision"
    # train-agent's flags default to its preset's values, which default to "auto"
    assert option.default in ("auto", argparse.SUPPRESS) and list(option.choices) == ["auto", "fp32", "bf16", "fp16"]
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--precision", "fp64"])


# --- the command table --------------------------------------------------------------------

PARSER = build_parser()
"""One parser for the tests below: parsing never changes it."""
ALL_LEAVES = list(_leaf_parsers(PARSER))


def _table_leaves(commands, prefix=()):
    for command in commands:
        if command.verbs:
            yield from _table_leaves(command.verbs, prefix + (command.name,))
        else:
            yield prefix + (command.name,), command


TABLE = dict(_table_leaves(cli.COMMANDS))


def _command_of(parser: argparse.ArgumentParser) -> Command:
    func = parser.get_default("func")
    assert isinstance(func, functools.partial) and func.func is run_command
    return func.args[0]


def _minimal_argv(command_path, parser):
    """The subcommand with a placeholder for every required argument."""
    argv = list(command_path)
    for action in parser._actions:
        if not action.option_strings and action.nargs != "?" and action.dest != "help":
            argv.append("X")
        elif action.option_strings and action.required:
            argv += [action.option_strings[0], "X"]
    return argv


def _expected(cls: type, command: Command) -> object:
    """``cls`` as the user who passes nothing gets it: the defaults, the command's own applied
    (and X where an argument is required, as _minimal_argv passes)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        default = field_default(f, command.defaults)
        if default is dataclasses.MISSING:
            default = ["X"] if typing.get_origin(hints[f.name]) is list else "X"
        values[f.name] = default
    return cls(**values)


def test_the_table_builds_every_subcommand():
    assert set(TABLE) == {path for path, _ in ALL_LEAVES}
    for path, parser in ALL_LEAVES:
        assert _command_of(parser) is TABLE[path], " ".join(path)


def test_every_option_comes_from_a_settings_field_and_has_help():
    for path, parser in ALL_LEAVES:
        command = _command_of(parser)
        fields = {f.name: cls for cls in command.settings for f in dataclasses.fields(cls)}
        for action in parser._actions:
            if action.dest == "help":
                continue
            assert action.dest in fields, f"{' '.join(path)}: {action.dest} is written by hand"
            doc = field_docs(fields[action.dest]).get(action.dest, "")
            assert doc.strip(), f"{' '.join(path)}: {fields[action.dest].__name__}.{action.dest} has no docstring"


@pytest.mark.parametrize("path", sorted(TABLE), ids=" ".join)
def test_parser_defaults_are_the_settings_defaults(path):
    command = TABLE[path]
    parser = dict(ALL_LEAVES)[path]
    actions = {a.dest: a for a in parser._actions}
    for cls in command.settings:
        preset = command.preset is not None and cls is command.preset.settings
        for f in dataclasses.fields(cls):
            action = actions[f.name]
            default = field_default(f, command.defaults)
            if default is dataclasses.MISSING:
                assert action.required or (not action.option_strings and action.nargs is None), f.name
            elif preset:
                assert action.default is argparse.SUPPRESS, f.name
            else:
                assert action.default == default, f.name
    # The settings the run receives are the dataclasses' defaults, the command's own defaults applied.
    values = command.settings_from(PARSER.parse_args(_minimal_argv(path, parser)))
    for cls, value in zip(command.settings, values):
        if command.preset is not None and cls is command.preset.settings:
            choice = next(v for v in values if hasattr(v, command.preset.choice))
            assert value == command.preset.make(getattr(choice, command.preset.choice))
        else:
            assert value == _expected(cls, command)


def test_a_command_default_changes_the_parser_not_the_dataclass():
    train_tools = TABLE[("train-tools",)]
    parser = dict(ALL_LEAVES)[("train-tools",)]
    assert train_tools.defaults["out_dir"] == "runs/tools" != TrainerSettings().out_dir
    assert parser.get_default("out_dir") == "runs/tools"
    assert TABLE[("joint-tune",)].settings_from(PARSER.parse_args(["joint-tune"]))[1].lr == 1e-4


BOOL_OPTIONS = [(path, action.option_strings[0]) for path, parser in ALL_LEAVES for action in parser._actions
                if action.option_strings and action.type is parse_bool]


def test_bool_options_exist_in_many_subcommands():
    assert len({path for path, _ in BOOL_OPTIONS}) >= 10
    assert (("train-agent",), "--progress") in BOOL_OPTIONS and (("train-sb3",), "--progress") in BOOL_OPTIONS


@pytest.mark.parametrize("path, flag", BOOL_OPTIONS, ids=[f"{' '.join(p)} {f}" for p, f in BOOL_OPTIONS])
def test_a_bool_option_parses_the_same_everywhere(path, flag):
    parser = dict(ALL_LEAVES)[path]
    argv = _minimal_argv(path, parser)
    dest = next(a.dest for a in parser._actions if flag in a.option_strings)
    for text, value in (("true", True), ("False", False), ("1", True), ("0", False), ("yes", True), ("OFF", False)):
        assert getattr(PARSER.parse_args([*argv, flag, text]), dest) is value, text
    with pytest.raises(SystemExit):
        PARSER.parse_args([*argv, flag, "maybe"])


def test_every_bool_field_is_read_by_parse_bool():
    """No second boolean parser: every bool field's option is parse_bool, or a switch without a value."""
    for path, parser in ALL_LEAVES:
        command = _command_of(parser)
        actions = {a.dest: a for a in parser._actions}
        for cls in command.settings:
            hints = typing.get_type_hints(cls)
            for f in dataclasses.fields(cls):
                if hints[f.name] is bool:
                    action = actions[f.name]
                    assert action.type is parse_bool or (action.nargs == 0 and f.metadata["cli"]["switch"]), f.name


DEVICE_LEAVES = [(path, parser) for path, parser in ALL_LEAVES if "--device" in parser._option_string_actions]
RESOLVED_ELSEWHERE = ()
"""Settings whose device the trainer and the DQN loop resolve with runtime.resolve_device (not DeviceSettings yet)."""


def test_most_subcommands_take_a_device():
    paths = {path for path, _ in DEVICE_LEAVES}
    assert len(paths) >= 20
    assert {("pix2pixhd", "sample"), ("sims", "synthesize"), ("posewarp", "test"), ("restore",)} <= paths


@pytest.mark.parametrize("path, parser", DEVICE_LEAVES, ids=[" ".join(p) for p, _ in DEVICE_LEAVES])
def test_device_auto_means_the_same_in_every_subcommand(path, parser, monkeypatch):
    action = parser._option_string_actions["--device"]
    # train-agent's flags default to its preset's values, which the settings check below
    assert action.default in ("auto", argparse.SUPPRESS) and action.choices is None and action.type is str
    values = _command_of(parser).settings_from(PARSER.parse_args(_minimal_argv(path, parser)))
    holder = next(v for v in values if hasattr(v, "device"))
    assert holder.device == "auto"
    if isinstance(holder, RESOLVED_ELSEWHERE):
        return
    assert isinstance(holder, DeviceSettings)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert holder.torch_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert holder.torch_device() == torch.device("cpu")


class _Loaded(Exception):
    """Raised by a stand-in loader once it has seen the device it was asked for."""


def _recording_loader(seen):
    def load(*args, **kwargs):
        seen.append(torch.device(kwargs.get("device", args[-1] if args else "cpu")))
        raise _Loaded

    return load


def test_the_generative_models_load_on_cuda_for_device_auto_when_there_is_one(monkeypatch):
    from toolchain_restore.generative.pix2pixhd import cli as pix2pixhd_cli, sampling as pix2pixhd_sampling
    from toolchain_restore.generative.posewarp import cli as posewarp_cli, sampling as posewarp_sampling
    from toolchain_restore.generative.sims import cli as sims_cli, sampling as sims_sampling

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    seen: list[torch.device] = []
    for module in (pix2pixhd_sampling, posewarp_sampling, sims_sampling):
        monkeypatch.setattr(module, "load_shipped", _recording_loader(seen))
    for load, settings in ((pix2pixhd_cli._pix2pixhd_model, pix2pixhd_cli.Pix2PixHDSampleSettings()),
                           (posewarp_cli._model, posewarp_cli.PoseWarpTestSettings()),
                           (sims_cli._model_and_bank, sims_cli.SimsSynthesizeSettings())):
        with pytest.raises(_Loaded):
            load(settings)
    assert seen == [torch.device("cuda")] * 3


def test_whole_run_precision_uses_the_resolved_device(monkeypatch):
    seen = []

    @contextmanager
    def recording_autocast(precision, device):
        seen.append((precision, torch.device(device)))
        yield

    monkeypatch.setattr(config, "autocast", recording_autocast)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    command = Command("probe", "a command that only reports", lambda s: 0, (DeviceSettings,), autocast=True)
    sub = argparse.ArgumentParser().add_subparsers(dest="command")
    config.add_commands(sub, [command])
    args = sub.choices["probe"].parse_args(["--precision", "bf16"])
    assert args.func(args) == 0
    wrapped = config._under_precision(lambda a: 0)
    assert wrapped(argparse.Namespace(precision="fp32", device="auto")) == 0
    assert wrapped(argparse.Namespace(precision="fp32")) == 0  # a command without --device stays on the CPU
    assert seen == [("bf16", torch.device("cuda")), ("fp32", torch.device("cuda")), ("fp32", torch.device("cpu"))]


def test_only_resolve_device_reads_auto_as_a_device():
    package = Path(toolchain_restore.__file__).parent
    pattern = re.compile(r"""device\w*\)?\s*[!=]=\s*["']auto["']|["']auto["']\s+else\s+["']cpu["']""")
    found = [f"{p.relative_to(package)}:{n}" for p in package.rglob("*.py") if p.name != "runtime.py"
             for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []
    assert pattern.search('device = args.device if args.device != "auto" else "cpu"')


def test_the_table_refuses_what_it_cannot_build():
    with pytest.raises(ValueError, match="no_such_field"):
        Command("x", "h", lambda s: 0, (DeviceSettings,), {"no_such_field": 1})
    with pytest.raises(ValueError, match="autocast"):
        Command("x", "h", lambda s: 0, (ToolboxSelection,), autocast=True)
    with pytest.raises(ValueError, match="either run or verbs"):
        Command("x", "h")
