"""Imports run one way: data -> degrade -> tools -> envs -> agents / baselines -> evaluation ->
restore -> demo -> cli, on shared layers (errors, runtime, serialization, metrics, config, nn, training);
generative and classification stand beside, on the shared layers and the data."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import toolchain_restore

PACKAGE = Path(toolchain_restore.__file__).parent
SHARED = {"errors", "runtime", "serialization", "metrics", "config", "nn", "training"}
PIPELINE = ["data", "degrade", "tools", "envs", "agents", "evaluation", "restore", "demo", "cli"]
RANK = {**{name: 0 for name in SHARED}, **{name: k + 1 for k, name in enumerate(PIPELINE)}, "baselines": 5}
BESIDE = {"generative": {"data", "degrade"}, "classification": {"data", "degrade", "tools"}}
"""What the sibling families may import beyond the shared layers."""


def _layer(module: Path) -> str:
    parts = module.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imported_layers(path: Path) -> set[str]:
    """Top-level subpackages of toolchain_restore that ``path`` imports (anywhere in it)."""
    depth = len(path.relative_to(PACKAGE).parts) - 1  # folders below the package
    found = set()
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                name = node.module or ""
                if name.startswith("toolchain_restore."):
                    found.add(name.split(".")[1])
            elif node.level - 1 == depth:  # relative to the package root
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.level - 1 < depth:
                found.add(path.relative_to(PACKAGE).parts[0])  # inside its own subpackage
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("toolchain_restore."))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.name != "__init__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way(path):
    own = _layer(path)
    imported = _imported_layers(path) - {own}
    if own == "cli":
        return  # the command line is the top: it may reach every family
    if own in BESIDE:
        allowed = SHARED | BESIDE[own]
        assert imported <= allowed, f"{own} may import only {sorted(allowed)}, imports {sorted(imported - allowed)}"
        return
    assert own in RANK, f"{own} has no place in the layer table of {__file__}"
    for name in imported:
        assert name in RANK, f"{path.name} imports {name}, which has no place in the layer table"
        if own in SHARED:
            assert name in SHARED, f"shared layer {own} imports {name}"
        else:
            assert RANK[name] <= RANK[own], f"{own} imports {name}, a layer above it"
        assert not (own == "agents" and name == "baselines") and not (own == "baselines" and name == "agents")


def test_the_table_can_fail():
    assert "envs" in _imported_layers(PACKAGE / "agents" / "dqn.py")
    assert "evaluation" not in _imported_layers(PACKAGE / "agents" / "dqn.py")
