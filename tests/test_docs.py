"""The README and every page of docs/ show only what works: their shell commands parse with
the parsers that would run them, their Python runs, and their links lead somewhere.

Nothing is trained or evaluated here: a command is parsed and stopped before it would start
work, so the whole file takes seconds. docs/README.md tells writers the fence strings."""

from __future__ import annotations

import argparse
import functools
import importlib
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(\s*)```(.*)$")
KINDS = {"bash", "python", "python fragment", "text"}
"""Fence info strings the tests know; any other fails, so that no block goes unchecked unnoticed."""
INLINE_PREFIXES = ("toolchain-restore ", "torchrun ", "make ", "pip install ", "python -m benchmarks", "python -m tests.")
"""Inline code that is a command of a kind the tests can check; other inline code (paths,
``python3 -m venv``, ``tensorboard --logdir runs``) is prose."""
PYTHON_MODULES = ("benchmarks", "tests.independent_degradation")
"""``python -m`` modules whose ``main()`` parses its arguments before any work, so stopping at
the parse runs nothing; another module could start a benchmark, so it fails until added."""


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the block's first line of content
    info: str
    text: str


@dataclass(frozen=True)
class Command:
    page: str
    line: int
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.page}:{self.line} {shlex.join(self.argv)}"


def _blocks(page: Path) -> list[Block]:
    blocks, lines = [], page.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, info, start = opening.group(1), opening.group(2).strip(), i + 1
        i = start
        while i < len(lines) and lines[i].strip() != "```":
            i += 1
        assert i < len(lines), f"{_name(page)}: the block opened at line {start} is never closed"
        # A block inside a list item is indented with it; the commands start after that indent.
        text = "\n".join(line.removeprefix(indent) for line in lines[start:i])
        blocks.append(Block(_name(page), start + 1, info, text + "\n"))
        i += 1
    return blocks


def _prose(page: Path) -> str:
    """The page with every fenced block blanked, keeping its line numbers."""
    lines, inside = page.read_text().splitlines(), False
    for i, line in enumerate(lines):
        fence = FENCE.match(line)
        if fence or inside:
            lines[i] = ""
        if fence:
            inside = not inside
    return "\n".join(lines)


def _argv(line: str) -> tuple[str, ...]:
    argv = shlex.split(line, comments=True)
    while argv and re.match(r"^[A-Za-z_]\w*=", argv[0]):
        argv.pop(0)  # VAR=value before a command sets its environment; the command follows
    return tuple(argv)


def _shell_commands(block: Block) -> list[Command]:
    commands, pending, first = [], "", 0
    for offset, line in enumerate(block.text.splitlines()):
        if not pending:
            first = block.line + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        argv, pending = _argv(pending + line), ""
        if argv:
            commands.append(Command(block.page, first, argv))
    return commands


def _inline_commands(page: Path) -> list[Command]:
    prose, commands = _prose(page), []
    # Inline code may wrap onto the next line of its paragraph, hence the search over the whole text.
    for span in re.finditer(r"`([^`\n]+(?:\n[^`\n]+)*)`", prose):
        text = " ".join(span.group(1).split())
        if text.startswith(INLINE_PREFIXES):
            commands.append(Command(_name(page), prose.count("\n", 0, span.start()) + 1, _argv(text)))
    return commands


def _all_commands() -> list[Command]:
    commands = []
    for page in PAGES:
        for block in _blocks(page):
            if block.info == "bash":
                commands += _shell_commands(block)
        commands += _inline_commands(page)
    return commands


COMMANDS = _all_commands()


class _Parsed(Exception):
    """Raised in place of returning from ``parse_args``, so that nothing after it runs."""


def _must_parse(call, capsys) -> None:
    try:
        call()
    except _Parsed:
        pass
    except SystemExit as exit_:  # argparse exits 2 on a bad command line, 0 after --help
        assert exit_.code == 0, f"does not parse:\n{capsys.readouterr().err}"


@functools.cache
def _cli_parser() -> argparse.ArgumentParser:
    from toolchain_restore.cli import build_parser

    return build_parser()


def _check_toolchain_restore(args: list[str], monkeypatch, capsys) -> None:
    _must_parse(lambda: _cli_parser().parse_args(args), capsys)


def _check_torchrun(args: list[str], monkeypatch, capsys) -> None:
    assert "-m" in args, "torchrun starts a module here, with -m"
    module = args[args.index("-m") + 1]
    assert module == "toolchain_restore.cli", f"torchrun starts {module}, not the project's command"
    _check_toolchain_restore(args[args.index("-m") + 2:], monkeypatch, capsys)


def _check_python(args: list[str], monkeypatch, capsys) -> None:
    assert args[:1] == ["-m"] and len(args) > 1, "python runs a module here, with -m"
    module, argv = args[1], args[2:]
    assert module.split(".")[0] == "benchmarks" or module in PYTHON_MODULES, f"no check for python -m {module}"
    main = importlib.import_module(module + ".__main__" if module == "benchmarks" else module).main
    parse_args = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise _Parsed(parse_args(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", [module, *argv])  # some mains read sys.argv, others take argv=None
    _must_parse(main, capsys)


@functools.cache
def _make_targets() -> frozenset[str]:
    makefile = (ROOT / "Makefile").read_text()
    # "name: ..." declares targets; "name := ..." assigns a variable.
    rules = re.findall(r"^([A-Za-z0-9][\w.-]*(?:[ \t]+[A-Za-z0-9][\w.-]*)*)[ \t]*:(?!=)", makefile, re.M)
    return frozenset(name for rule in rules for name in rule.split())


def _check_make(args: list[str], monkeypatch, capsys) -> None:
    targets = [a for a in args if not a.startswith("-") and "=" not in a]
    assert targets, "make with no target runs the Makefile's first; name it"
    missing = [t for t in targets if t not in _make_targets()]
    assert not missing, f"no such Makefile target: {missing}"


def _check_pip(args: list[str], monkeypatch, capsys) -> None:
    assert args[:1] == ["install"], "only pip install is shown"
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for flag, value in zip(args, args[1:]):
        if flag in ("-c", "-r"):
            assert (ROOT / value).is_file(), f"{value} is not in the repository"
    for arg in args:
        wanted = re.fullmatch(r"\.\[(.+)\]", arg)
        if wanted:
            assert set(wanted.group(1).split(",")) <= extras, f"{arg} names an extra pyproject.toml lacks"


CHECKS = {"toolchain-restore": _check_toolchain_restore, "torchrun": _check_torchrun, "python": _check_python,
          "python3": _check_python, "make": _check_make, "pip": _check_pip}


def test_the_docs_show_commands_of_every_kind():
    # A broken reader of the pages would find nothing and pass every test below.
    assert {c.argv[0] for c in COMMANDS} >= {"toolchain-restore", "torchrun", "python", "make", "pip"}
    assert {c.page for c in COMMANDS} >= {"README.md", "docs/agent.md", "docs/benchmarks.md", "docs/distributed.md"}


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_every_command_shown_parses(command, monkeypatch, capsys):
    check = CHECKS.get(command.argv[0])
    assert check is not None, f"{command}: no check for {command.argv[0]!r}; add one to tests/test_docs.py"
    check(list(command.argv[1:]), monkeypatch, capsys)


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_fenced_block_is_of_a_kind_the_tests_know(page):
    unknown = [f"line {b.line}: {b.info!r}" for b in _blocks(page) if b.info not in KINDS]
    assert not unknown, f"fences the tests do not check (known: {sorted(KINDS)}): {unknown}"


def _python_blocks(page: Path, info: str) -> list[Block]:
    return [b for b in _blocks(page) if b.info == info]


def _compiled(block: Block):
    # Leading newlines put the block's lines at their line numbers in the page, for tracebacks.
    return compile("\n" * (block.line - 1) + block.text, block.page, "exec")


def _close_environments(namespace: dict) -> None:
    import gymnasium as gym

    for value in namespace.values():
        if isinstance(value, (gym.Env, gym.vector.VectorEnv)):
            value.close()  # the native vector env degrades ahead in a thread


@pytest.mark.parametrize("page", [p for p in PAGES if _python_blocks(p, "python")], ids=_name)
def test_the_python_of_every_page_runs(page, capsys):
    namespace = {"__name__": "__main__"}
    try:
        for block in _python_blocks(page, "python"):
            exec(_compiled(block), namespace)
    finally:
        _close_environments(namespace)


FRAGMENTS = [b for p in PAGES for b in _python_blocks(p, "python fragment")]


@pytest.mark.parametrize("block", FRAGMENTS, ids=lambda b: f"{b.page}:{b.line}")
def test_every_python_fragment_compiles(block):
    _compiled(block)


def _anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", _prose(page), re.M)
    # GitHub's anchors: lower case, punctuation dropped, spaces as hyphens.
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def _broken_links(page: Path) -> list[str]:
    prose = re.sub(r"`[^`\n]*`", "", _prose(page))  # a link written as code is not a link
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"^[a-z]+:", target):
            continue  # https: and mailto: leave the repository
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_relative_link_and_image_resolves(page):
    assert not _broken_links(page), f"links that lead nowhere: {_broken_links(page)}"
