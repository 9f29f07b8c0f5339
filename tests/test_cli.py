"""The one command: every subcommand (and verb) answers --help."""

import argparse

import pytest

from toolchain_restore.cli import build_parser


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
