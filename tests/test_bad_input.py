"""The catalogue of bad input: every subcommand, given a user's mistake (a missing or
unreadable file, a wrong shape or size, labels beyond the classes, corrupt or mismatched
weights, --device cuda on a machine without CUDA, an invalid option value), prints exactly
one line ``error: ...`` naming the file or option, exits with status 2, and writes or
overwrites nothing. README's "Bad input" and docs/errors.md list these rows.

Each row is (the command line, a fragment of the one-line error). ``{name}`` in a row is
one of the files :func:`bad_files` makes; ``{out}`` is a folder holding ``existing.png``,
which no row may touch. Rows run in-process through ``cli.main``, with CUDA hidden.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from toolchain_restore import cli
from toolchain_restore.errors import InvalidInput, run_reporting
from toolchain_restore.serialization import shipped_weights

ALL_TOOLS = ",".join(str(t) for t in range(1, 13))


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def _make_files(folder: Path) -> dict[str, Path]:
    """The tiny inputs of the rows, by name."""
    from toolchain_restore.generative.pix2pixhd.clusters import FeatureClusters

    rng = np.random.default_rng(0)
    photo = _png((rng.random((64, 64, 3)) * 255).astype(np.uint8))
    layout = np.zeros((64, 128), np.uint8)
    layout[32:] = 2
    contents = {
        "text_png": b"this is text, not an image",
        "truncated_png": photo[: len(photo) // 2],
        "photo_png": photo,
        "layout_png": _png(layout),
        "small_png": _png(np.zeros((32, 32), np.uint8)),
        "beyond_png": _png(np.full((64, 128), 9, np.uint8)),
        "corrupt_safetensors": shipped_weights("segmenter.safetensors").read_bytes()[:300],
    }
    folder.mkdir()
    paths = {name: folder / ".".join(name.rsplit("_", 1)) for name in contents}  # text_png: text.png
    for name, data in contents.items():
        paths[name].write_bytes(data)
    for name, shape in (("joints_npy", (14, 2)), ("bad_joints_npy", (3, 2))):
        paths[name] = folder / ".".join(name.rsplit("_", 1))
        np.save(paths[name], np.full(shape, 20.0))
    paths["other_clusters_safetensors"] = folder / "other_clusters.safetensors"
    FeatureClusters({2: np.zeros((2, 5))}, 5).save(paths["other_clusters_safetensors"])
    for name in ("segmenter", "pix2pixhd", "sims", "agent"):
        paths[f"{name}_weights"] = shipped_weights(f"{name}.safetensors")
    paths["missing"] = folder / "missing.png"
    paths["bad_folder"] = folder / "bad_folder"  # a data folder whose only images are broken
    paths["bad_folder"].mkdir()
    (paths["bad_folder"] / "half.png").write_bytes(contents["truncated_png"])
    (paths["bad_folder"] / "notes.png").write_bytes(contents["text_png"])
    paths["p2p_folder"] = folder / "p2p_folder"  # pix2pixHD's layout, whose label count only the user knows
    for sub in ("train_label", "train_img"):
        (paths["p2p_folder"] / sub).mkdir(parents=True)
    return paths


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    return _make_files(tmp_path / "in")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        status = cli.main(argv)
    except SystemExit as exit_:  # the parser's own errors
        status = exit_.code
    return status, capsys.readouterr().err


def check_row(row: tuple[str, str], bad_files: dict[str, Path], tmp_path: Path, capsys, monkeypatch) -> None:
    """Run one row: status 2, one line ``error: ...`` with the fragment, nothing written."""
    command, fragment = row
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "existing.png").write_bytes(_png(np.zeros((4, 4, 3), np.uint8)))
    before = _snapshot(out)
    names = {**{k: str(v) for k, v in bad_files.items()}, "out": str(out), "all_tools": ALL_TOOLS}
    status, err = _run([part.format(**names) for part in command.split()], capsys)
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment.format(**names) in lines[0], err
    assert _snapshot(out) == before, "a refused command wrote into its output folder"


RESTORATION = [
    ("restore {text_png} {out}/existing.png", "not a readable image"),
    ("restore {truncated_png} {out}/existing.png", "image file is truncated"),
    ("restore {missing} {out}/existing.png", "no image file or folder"),
    ("restore {photo_png} {out}/existing.png --agent {corrupt_safetensors}", "not a readable safetensors file"),
    ("restore {photo_png} {out}/existing.png --toolbox {segmenter_weights}", "holds weights of kind"),
    ("restore {photo_png} {out}/existing.png --device cuda", "--device cuda: this machine has no CUDA device"),
    ("restore {photo_png} {out}/existing.png --precision fp16", "--precision fp16 needs a CUDA device"),
    ("restore {photo_png} {out}/existing.png --stride 0", "--stride (stride) must be an int in 1..63, got 0"),
    ("restore {photo_png} {out}/existing.png --agent-views 9", "views must be in 1..8"),
    ("restore {photo_png} {out}/existing.png --mode bogus", "argument --mode: invalid choice"),
    ("restore {photo_png} {out}/restored.xyz", "unknown image format .xyz"),
    ("evaluate --agent {segmenter_weights} --out-dir {out}", "holds weights of kind"),
    ("evaluate --methods bogus --out-dir {out}", "--methods: unknown methods"),
    ("evaluate --device cuda --out-dir {out}", "has no CUDA device"),
    ("evaluate-tools --toolbox {missing}", "no weights file at {missing}"),
    ("evaluate-tools --patches 0", "--patches must be at least 1"),
    ("fixed-chain --level bogus", "argument --level: invalid choice"),
    ("fixed-chain --write", "--write needs --toolbox"),
    ("demonstrate --toolbox {corrupt_safetensors} --output {out}/existing.png", "not a readable safetensors file"),
    ("train-tools --tools 13 --out-dir {out}", "--tools must be numbers in 1..12"),
    ("train-tools --device cuda --out-dir {out}", "has no CUDA device"),
    ("train-agent --demonstrations {missing} --out-dir {out}", "--demonstrations {missing}: no such file"),
    ("train-agent --demonstrations {text_png} --out-dir {out}", "not an .npz file"),
    ("train-agent --views 0 --out-dir {out}", "views must be in 1..8"),
    ("train-agent --average-from -1 --out-dir {out}", "--average-from (average_from) must be >= 0"),
    ("train-agent --total-steps many --out-dir {out}", "argument --total-steps: invalid int value"),
    ("train-sb3 --device cuda --out-dir {out}", "has no CUDA device"),
    ("joint-tune --agent {corrupt_safetensors} --out-dir {out}", "not a readable safetensors file"),
    ("combine-tools --part nonsense --output {out}/existing.png", "--part takes FILE:TOOLS"),
    ("combine-tools --part {corrupt_safetensors}:{all_tools} --output {out}/existing.png",
     "not a readable safetensors file"),
    ("average-agents {corrupt_safetensors} {corrupt_safetensors} --output {out}/mean.safetensors",
     "not a readable safetensors file"),
    ("average-agents {corrupt_safetensors} --output {out}/mean.safetensors", "needs at least two agent files"),
    ("average-agents {corrupt_safetensors} {corrupt_safetensors} --output {out}/mean.png",
     "--output: an agent file ends in .safetensors"),
    ("demo --device cuda --out-dir {out}", "has no CUDA device"),
]

BASELINES = [
    ("train-baseline --device cuda --out-dir {out}", "has no CUDA device"),
    ("train-baseline --arch unet --out-dir {out}", "argument --arch: invalid choice"),
    ("train-baseline --init {corrupt_safetensors} --out-dir {out}", "not a readable safetensors file"),
    ("train-baseline --init {segmenter_weights} --out-dir {out}", "holds weights of kind"),
    ("train-baseline --conv bogus --out-dir {out}", "--conv: unknown convolution 'bogus'"),
    ("train-baseline --patch-size 0 --out-dir {out}", "patch_size must be an int of at least 8"),
    ("evaluate --baselines {text_png} --out-dir {out}", "not a readable safetensors file"),
    ("evaluate --baselines {agent_weights} --out-dir {out}", "holds weights of kind"),
]

CLASSIFICATION = [
    ("train-classifier --device cuda --out-dir {out}", "has no CUDA device"),
    ("train-classifier --conv bogus --out-dir {out}", "--conv: unknown convolution 'bogus'"),
    ("train-classifier --attack-eps big --out-dir {out}", "argument --attack-eps: invalid float value"),
    ("train-classifier --precision fp64 --out-dir {out}", "argument --precision: invalid choice"),
    ("train-classifier --width 0 --out-dir {out}", "--width must be at least 1, got 0"),
    ("train-classifier --train-patches 0 --out-dir {out}", "--train-patches must be at least 1, got 0"),
]

PIX2PIXHD = [
    ("pix2pixhd sample --layout {text_png} --output {out}/existing.png", "{text_png}: not a readable image"),
    ("pix2pixhd sample --layout {truncated_png} --output {out}/existing.png", "image file is truncated"),
    ("pix2pixhd sample --layout {missing} --output {out}/existing.png", "--layout {missing}: no such file"),
    ("pix2pixhd sample --layout {layout_png} --instance {small_png} --output {out}/existing.png",
     "--instance {small_png}: 32x32 pixels, but the layout {layout_png} is 64x128"),
    ("pix2pixhd sample --layout {beyond_png} --output {out}/existing.png",
     "--layout {beyond_png}: labels 9..9, but this model knows 0..6"),
    ("pix2pixhd sample --weights {corrupt_safetensors} --output {out}/existing.png", "not a readable safetensors file"),
    ("pix2pixhd sample --weights {sims_weights} --output {out}/existing.png", "holds weights of kind"),
    ("pix2pixhd sample --clusters {text_png} --output {out}/existing.png", "{text_png}: not a readable"),
    ("pix2pixhd sample --clusters {other_clusters_safetensors} --output {out}/existing.png",
     "features of 5 channels, but this model's encoder makes 3"),
    ("pix2pixhd sample --device cuda --output {out}/existing.png", "has no CUDA device"),
    ("pix2pixhd sample --scene -1 --output {out}/existing.png", "--scene -1: the procedural test scenes are numbered"),
    ("pix2pixhd sample --scene 1000000 --output {out}/existing.png", "numbered 0..999999"),
    ("pix2pixhd sample --outputs 0 --output {out}/existing.png", "--outputs must be at least 1"),
    ("pix2pixhd sample --choose 5001 --output {out}/existing.png", "--choose takes INSTANCE=CLUSTER pairs"),
    ("pix2pixhd sample --choose 424242=0 --output {out}/existing.png", "--choose: no instance [424242]"),
    ("pix2pixhd sample --output {out}/sheet.xyz", "unknown image format .xyz"),
    ("pix2pixhd test --segmenter {corrupt_safetensors} --output {out}", "not a readable safetensors file"),
    ("pix2pixhd test --segmenter {sims_weights} --output {out}", "holds weights of kind"),
    ("pix2pixhd encode-features --weights {pix2pixhd_weights} --num-clusters 0 --output {out}/existing.png",
     "--num-clusters must be at least 1"),
    ("pix2pixhd encode-features --weights {segmenter_weights} --output {out}/existing.png", "holds weights of kind"),
    ("pix2pixhd export --weights {corrupt_safetensors} --output {out}/existing.png", "not a readable safetensors file"),
    ("pix2pixhd train --device cuda --out-dir {out}", "has no CUDA device"),
    ("train-segmenter --width 16 --out-dir {out}", "a scene must be at least 32 x 32 pixels (--height, --width)"),
]

SIMS = [
    ("sims synthesize --layout {text_png} --output {out}/existing.png", "{text_png}: not a readable image"),
    ("sims synthesize --layout {missing} --output {out}/existing.png", "--layout {missing}: no such file"),
    ("sims synthesize --layout {layout_png} --instance {small_png} --output {out}/existing.png",
     "--instance {small_png}: 32x32 pixels"),
    ("sims synthesize --layout {beyond_png} --output {out}/existing.png", "labels 9..9, but this model knows 0..6"),
    ("sims synthesize --weights {corrupt_safetensors} --output {out}/existing.png", "not a readable safetensors file"),
    ("sims synthesize --weights {pix2pixhd_weights} --output {out}/existing.png", "holds weights of kind"),
    ("sims synthesize --bank {missing} --output {out}/existing.png", "no memory bank at {missing}"),
    ("sims synthesize --bank {out} --output {out}/existing.png", "not a memory bank"),
    ("sims synthesize --device cuda --output {out}/existing.png", "has no CUDA device"),
    ("sims synthesize --scene -1 --output {out}/existing.png", "--scene -1"),
    ("sims synthesize --output {out}/sheet.xyz", "unknown image format .xyz"),
    ("sims test --segmenter {corrupt_safetensors} --output {out}", "not a readable safetensors file"),
    ("sims test --scenes 0 --output {out}", "--scenes must be at least 1"),
    ("sims test --alignment warp --output {out}", "argument --alignment: invalid choice"),
    ("sims build-bank --scenes 0 --output {out}", "--scenes must be at least 1"),
    ("sims train --device cuda --out-dir {out}", "has no CUDA device"),
]

POSE = "--source-pose {joints_npy} --target-pose {joints_npy}"
POSEWARP = [
    (f"posewarp synthesize --source {{text_png}} {POSE} --output {{out}}/existing.png", "not a readable image"),
    (f"posewarp synthesize --source {{truncated_png}} {POSE} --output {{out}}/existing.png", "image file is truncated"),
    (f"posewarp synthesize --source {{missing}} {POSE} --output {{out}}/existing.png", "no image file at {missing}"),
    ("posewarp synthesize --source {photo_png} --source-pose {missing} --target-pose {joints_npy} "
     "--output {out}/existing.png", "no joints file at {missing}"),
    ("posewarp synthesize --source {photo_png} --source-pose {bad_joints_npy} --target-pose {joints_npy} "
     "--output {out}/existing.png", "expected a 14 x 2 array"),
    (f"posewarp synthesize --source {{photo_png}} {POSE} --weights {{corrupt_safetensors}} --output {{out}}/existing.png",
     "not a readable safetensors file"),
    (f"posewarp synthesize --source {{photo_png}} {POSE} --weights {{sims_weights}} --output {{out}}/existing.png",
     "holds weights of kind"),
    (f"posewarp synthesize --source {{photo_png}} {POSE} --device cuda --output {{out}}/existing.png",
     "has no CUDA device"),
    (f"posewarp synthesize --source {{photo_png}} {POSE} --output {{out}}/sheet.xyz", "unknown image format .xyz"),
    ("posewarp test --pairs 0 --output {out}", "--pairs must be at least 1"),
    ("posewarp test --weights {segmenter_weights} --output {out}", "holds weights of kind"),
    ("posewarp train --device cuda --out-dir {out}", "has no CUDA device"),
]

CORPUS = [
    ("corpus build {out} --offline --manifest {text_png}", "{text_png}: not valid JSON"),
    ("corpus build {out} --offline --manifest {missing}", "no corpus manifest at {missing}"),
    ("corpus build", "the following arguments are required: DIR"),
]

DATA_FOLDERS = [
    ("train-tools --data {bad_folder} --out-dir {out}", "none of its 1 image files is usable"),
    ("train-tools --data {missing} --out-dir {out}", "data folder {missing} does not exist"),
    ("train-agent --data {bad_folder} --out-dir {out}", "none of its 1 image files is usable"),
    ("train-baseline --data {bad_folder} --out-dir {out}", "none of its 1 image files is usable"),
    ("evaluate --data {bad_folder} --out-dir {out}", "image files is usable"),
    ("train-classifier --data {missing} --out-dir {out}", "{missing} is not a folder of class subfolders"),
    ("pix2pixhd train --data {bad_folder} --layout cityscapes --out-dir {out}", "gtFine/train is missing"),
    ("pix2pixhd train --data {bad_folder} --layout ade20k --out-dir {out}", "annotations/training is missing"),
    ("pix2pixhd train --data {p2p_folder} --out-dir {out}", "--label-count: give it for the folder"),
    ("sims build-bank --data {bad_folder} --layout cityscapes --output {out}/bank", "gtFine/train is missing"),
    ("posewarp train --data {bad_folder} --out-dir {out}", "no frames/ folder"),
]
"""Data folders: each bad file is named in a warning when the folder opens, and a folder left
with nothing usable is one error (a resume with other settings: tests/training/test_resume_rules.py)."""

CATALOGUE = {"restoration": RESTORATION, "data folders": DATA_FOLDERS, "baselines": BASELINES, "classification": CLASSIFICATION,
             "pix2pixhd": PIX2PIXHD, "sims": SIMS, "posewarp": POSEWARP, "corpus": CORPUS}
"""Every row, by subcommand family (docs/errors.md lists them)."""


def _ids(rows):
    return [command.split("{out}")[0].replace("{", "").replace("}", "").strip() for command, _ in rows]


@pytest.mark.parametrize("row", RESTORATION, ids=_ids(RESTORATION))
def test_restoration_commands_refuse_bad_input(row, bad_files, tmp_path, capsys, monkeypatch):
    check_row(row, bad_files, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("row", DATA_FOLDERS, ids=_ids(DATA_FOLDERS))
def test_data_folders_that_cannot_be_used_are_refused(row, bad_files, tmp_path, capsys, monkeypatch):
    check_row(row, bad_files, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("row", BASELINES, ids=_ids(BASELINES))
def test_baseline_commands_refuse_bad_input(row, bad_files, tmp_path, capsys, monkeypatch):
    check_row(row, bad_files, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("row", CLASSIFICATION, ids=_ids(CLASSIFICATION))
def test_classification_commands_refuse_bad_input(row, bad_files, tmp_path, capsys, monkeypatch):
    check_row(row, bad_files, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("row", PIX2PIXHD, ids=_ids(PIX2PIXHD))
def test_pix2pixhd_commands_refuse_bad_input(row, bad_files, tmp_path, capsys, monkeypatch):
    check_row(row, bad_files, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("row", SIMS, ids=_ids(SIMS))
def test_sims_commands_refuse_bad_input(row, bad_files, tmp_path, capsys, monkeypatch):
    check_row(row, bad_files, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("row", POSEWARP, ids=_ids(POSEWARP))
def test_posewarp_commands_refuse_bad_input(row, bad_files, tmp_path, capsys, monkeypatch):
    check_row(row, bad_files, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("row", CORPUS, ids=_ids(CORPUS))
def test_corpus_commands_refuse_bad_input(row, bad_files, tmp_path, capsys, monkeypatch):
    check_row(row, bad_files, tmp_path, capsys, monkeypatch)


SHOWN_AS = {"out": "out", "bad_folder": "bad_folder", "p2p_folder": "p2p_folder", "all_tools": "1,...,12", "missing": "missing.png", "segmenter_weights": "segmenter.safetensors",
            "pix2pixhd_weights": "pix2pixhd.safetensors", "sims_weights": "sims.safetensors",
            "agent_weights": "agent.safetensors"}
"""How docs/errors.md writes the files of the rows (the shipped weights by their file name)."""


def shown(text: str) -> str:
    """A row's command or fragment as docs/errors.md shows it: ``{text_png}`` as text.png."""
    names = {name: ".".join(name.rsplit("_", 1)) for name in re.findall(r"{(\w+)}", text)}
    return text.format(**{**names, **SHOWN_AS})


def test_the_docs_list_every_row():
    page = (Path(__file__).parents[1] / "docs" / "errors.md").read_text()
    for family, rows in CATALOGUE.items():
        for command, fragment in rows:
            assert f"`{shown(command)}`" in page, f"docs/errors.md lacks the {family} row {shown(command)}"


# --- the conventions around the catalogue ---------------------------------------------------

def test_a_bug_of_ours_keeps_its_traceback(capsys):
    def buggy() -> int:
        raise ValueError("an internal mistake")

    with pytest.raises(ValueError, match="an internal mistake"):
        run_reporting(buggy)

    def refused() -> int:
        raise InvalidInput("--thing: expected\nsomething else")

    assert run_reporting(refused) == 2
    assert capsys.readouterr().err == "error: --thing: expected something else\n"


def test_the_old_spellings_still_work_with_a_warning(capsys):
    parser = cli.build_parser()
    args = parser.parse_args(["pix2pixhd", "encode-features", "--weights", "w", "--clusters", "4"])
    assert args.num_clusters == 4
    warning = capsys.readouterr().err
    assert "--clusters is deprecated" in warning and "use --num-clusters" in warning
    args = parser.parse_args(["sims", "synthesize", "layout.png"])
    assert args.layout == "layout.png"
    assert "the positional LAYOUT is deprecated" in capsys.readouterr().err
    args = parser.parse_args(["sims", "synthesize", "--layout", "layout.png"])
    assert args.layout == "layout.png" and capsys.readouterr().err == ""
    assert parser.parse_args(["sims", "synthesize"]).layout is None


def test_the_layout_and_cluster_count_are_spelled_one_way_everywhere():
    from tests.test_cli import ALL_LEAVES

    for path, parser in ALL_LEAVES:
        shown = {a.dest: a for a in parser._actions if a.help != "==SUPPRESS=="}
        if "layout" in shown:
            assert shown["layout"].option_strings == ["--layout"], " ".join(path)
        if "clusters" in shown:
            assert shown["clusters"].type is not int, f"{' '.join(path)}: --clusters is a file, not a count"
