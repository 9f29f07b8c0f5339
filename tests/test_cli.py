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


def _leaf_parsers(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _leaf_parsers(sub, prefix + (name,))


NO_NETWORK = {("pix2pixhd", "export"), ("sims", "build-bank"), ("corpus", "build"), ("combine-tools",)}
"""Subcommands that run no network: they copy weights or cut segments."""
LEAVES = [(command, parser) for command, parser in _leaf_parsers(build_parser()) if command not in NO_NETWORK]


@pytest.mark.parametrize("command, parser", LEAVES, ids=[" ".join(c) for c, _ in LEAVES])
def test_every_subcommand_that_runs_a_network_takes_precision(command, parser):
    option = next((a for a in parser._actions if "--precision" in a.option_strings), None)
    assert option is not None, f"{' '.join(command)} has no --precision"
    # train-agent's flags default to its preset's values, which default to "auto"
    assert option.default in ("auto", argparse.SUPPRESS) and list(option.choices) == ["auto", "fp32", "bf16", "fp16"]
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--precision", "fp64"])
