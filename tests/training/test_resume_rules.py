"""The resume rule through the command line, the same for every family of trainers: a run
folder is continued only with the settings that define its run; a longer run extends it;
fewer steps or another defining setting stop with one ``error:`` line (status 2) and leave
every file as it was; ``--overwrite`` starts afresh."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from toolchain_restore.cli import main

TRAINER = ("--device", "cpu", "--progress", "false", "--eval-every", "100", "--checkpoint-every", "100")
"""What every generic-trainer family shares: no progress bar, one evaluation and one checkpoint at the end."""


@dataclass(frozen=True)
class Family:
    """One kind of training command and the tiniest run of it."""

    name: str
    args: tuple[str, ...]
    """The command and its tiny settings, without --out-dir and the length."""
    change: tuple[str, str]
    """A defining option and another value for it."""
    expected: str
    """How the error names that change (saved -> requested)."""
    weights: str
    """The file the command writes in its folder."""
    length: str = "--iterations"
    steps: int = 2
    stages: tuple[str, ...] = ("",)
    """The run folders (one per stage) under the output folder."""

    def checkpoint_step(self, folder: Path) -> int:
        """The step of the checkpoint in ``folder`` (the DQN's counts environment steps)."""
        state = torch.load(folder / "checkpoint.pt", weights_only=False)
        return int(state["counters"]["global_step"] if "counters" in state else state["step"])


POSEWARP = ("posewarp", "train", "--preset", "cpu", "--size", "32", "--depth", "3", "--ngf", "4", "--ndf", "4",
            "--batch-size", "2", "--train-videos", "4", "--test-videos", "2", "--frames-per-video", "4",
            "--test-pairs", "2", "--feature-std-images", "2", "--gan-iterations", "2", *TRAINER)

FAMILIES = [
    Family("tools", ("train-tools", "--tools", "6", "--batch-size", "2", "--patch-size", "24", "--eval-patches", "2",
                     *TRAINER), ("--conv", "tanh_cos"), "--conv: 'plain' -> 'tanh_cos'", "toolbox.safetensors"),
    Family("baseline", ("train-baseline", "--arch", "vdsr", "--depth", "4", "--channels", "8", "--patch-size", "16",
                        "--batch-size", "1", "--eval-patches", "1", "--eval-patch-size", "16", *TRAINER),
           ("--channels", "4"), "--channels: 8 -> 4", "vdsr.safetensors"),
    Family("classifier", ("train-classifier", "--conv", "tanh_cos", "--width", "4", "--train-patches", "48",
                          "--test-patches", "16", "--batch-size", "8", "--attack-eps", *TRAINER),
           ("--conv", "plain"), "--conv: 'tanh_cos' -> 'plain'", "classifier.safetensors"),
    Family("agent", ("train-agent", "--preset", "cpu", "--num-envs", "4", "--replay-steps", "200", "--learning-starts",
                     "4", "--train-every", "2", "--batch-episodes", "2", "--eval-every", "1000", "--eval-patches", "2",
                     "--checkpoint-every", "1000", "--device", "cpu", "--progress", "false"),
           ("--gamma", "0.5"), "--gamma: 0.99 -> 0.5", "agent.safetensors", length="--total-steps", steps=8),
    Family("segmenter", ("train-segmenter", "--height", "32", "--width", "64", "--train-scenes", "4", "--test-scenes",
                         "2", "--batch-size", "2", "--net-width", "4", *TRAINER),
           ("--net-width", "8"), "--net-width: 4 -> 8", "segmenter.safetensors"),
    Family("posewarp", POSEWARP, ("--ngf", "8"), "--ngf: 4 -> 8", "posewarp.safetensors", stages=("main", "gan")),
    Family("joint", ("joint-tune", "--batch-size", "2", "--eval-patches", "2", "--eval-levels", "moderate",
                     "--eval-band-patches", "0", *TRAINER), ("--lr", "0.001"), "--lr: 0.0001 -> 0.001",
           "toolbox.safetensors"),
    Family("pix2pixhd", ("pix2pixhd", "train", "--preset", "cpu", "--height", "32", "--width", "32", "--train-scenes", "2",
                         "--test-scenes", "1", "--num-d", "1", "--n-local-enhancers", "0", "--ngf", "4", "--ndf", "4",
                         "--n-blocks-global", "1", "--n-downsample-global", "2", *TRAINER),
           ("--ngf", "8"), "--ngf: 4 -> 8", "pix2pixhd.safetensors", stages=("global",)),
    Family("sims", ("sims", "train", "--preset", "cpu", "--height", "64", "--width", "128", "--train-scenes", "2",
                    "--test-scenes", "1", "--ngf", "4", "--levels", "2", *TRAINER),
           ("--ngf", "8"), "--ngf: 4 -> 8", "sims.safetensors"),
]


def command(family: Family, out: Path, steps: int, *extra: str) -> list[str]:
    """The family's command line for a run of ``steps`` in ``out``."""
    return [*family.args, "--out-dir", str(out), family.length, str(steps), *extra]


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def first_runs(tmp_path_factory) -> Callable[[Family], Path]:
    """A copy of each family's tiny first run (trained once per module), in a fresh folder."""
    done: dict[str, Path] = {}

    def copy(family: Family) -> Path:
        if family.name not in done:
            done[family.name] = tmp_path_factory.mktemp(family.name) / "run"
            assert main(command(family, done[family.name], family.steps)) == 0
        target = tmp_path_factory.mktemp(f"{family.name}_copy") / "run"
        shutil.copytree(done[family.name], target)
        return target

    return copy


def refused(family: Family, out: Path, argv: list[str], capsys) -> str:
    """Run ``argv``; check it stops with status 2 and one ``error:`` line, all files as they
    were; return that line."""
    before = files(out)
    capsys.readouterr()
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    assert files(out) == before
    assert "--overwrite" in errors[0]
    return errors[0]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_another_defining_setting_is_refused(family, first_runs, capsys):
    out = first_runs(family)
    option, value = family.change
    error = refused(family, out, command(family, out, family.steps, option, value), capsys)
    assert family.expected in error
    assert error.endswith("use --out-dir elsewhere, or --overwrite to start afresh in that folder")


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_fewer_steps_are_refused(family, first_runs, capsys):
    out = first_runs(family)
    error = refused(family, out, command(family, out, family.steps - 1), capsys)
    assert f"{family.length}: {family.steps} -> {family.steps - 1} (fewer than the run's" in error
    assert family.expected not in error  # nothing else differs


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_more_steps_extend_the_run(family, first_runs, capsys):
    out = first_runs(family)
    first = out / family.stages[0]
    capsys.readouterr()
    assert main(command(family, out, family.steps + 4)) == 0
    printed = capsys.readouterr().out
    assert printed.count("extending run") == 1
    assert f"extending run {first} from {family.steps} to {family.steps + 4} steps\n" in printed
    assert family.checkpoint_step(first) >= family.steps + 4
    assert (out / family.weights).is_file()


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_overwrite_starts_afresh(family, first_runs):
    out = first_runs(family)
    option, value = family.change
    assert main(command(family, out, family.steps, option, value, "--overwrite", "true")) == 0
    for stage in family.stages:
        folder = out / stage
        state = torch.load(folder / "checkpoint.pt", weights_only=False)
        saved = {k: v for record in json.loads(state["run_settings"]).values() for k, v in record.items()}
        assert str(saved[option[2:].replace("-", "_")]) == value
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1  # the first run's events are gone
    assert family.checkpoint_step(out / family.stages[0]) < family.steps + 4


def test_a_damaged_checkpoint_is_one_error_line(first_runs, capsys):
    tools = FAMILIES[0]
    out = first_runs(tools)
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    error = refused(tools, out, command(tools, out, tools.steps), capsys)
    assert f"checkpoint {out / 'checkpoint.pt'} is unreadable" in error and "delete it" in error


def test_a_later_stage_that_refuses_leaves_the_earlier_ones_as_they_were(first_runs, capsys):
    posewarp = next(f for f in FAMILIES if f.name == "posewarp")
    out = first_runs(posewarp)
    # The main stage agrees; the GAN stage, asked for fewer steps, refuses before the main one starts.
    error = refused(posewarp, out, command(posewarp, out, posewarp.steps, "--gan-iterations", "1"), capsys)
    assert f"cannot resume {out / 'gan'} with other settings: --iterations: 2 -> 1" in error
