"""SIMS end to end on tiny procedural scenes through the command line: build-bank, train,
resume, synthesize; the shipped model and bank; bad inputs with clear errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from toolchain_restore.generative.sims import MemoryBank, Sims, load_sims, preset, save_sims, synthesize
from toolchain_restore.generative.sims.cli import main
from toolchain_restore.serialization import WeightsError

TINY = ["--preset", "cpu", "--height", "64", "--width", "128", "--train-scenes", "6", "--test-scenes", "2",
        "--ngf", "4", "--levels", "2", "--progress", "false", "--eval-every", "2", "--checkpoint-every", "2",
        "--log-every", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("sims")
    assert main(["build-bank", "--scenes", "6", "--height", "64", "--width", "128", "--output", str(out / "bank")]) == 0
    args = ["train", *TINY, "--bank", str(out / "bank"), "--out-dir", str(out / "run")]
    assert main([*args, "--iterations", "2"]) == 0
    first = torch.load(out / "run" / "checkpoint.pt", weights_only=True)["step"]
    assert main([*args, "--iterations", "4"]) == 0  # resumes from step 2
    return out, first


@pytest.mark.slow
def test_build_bank_train_resume_synthesize_round_trip(trained, tmp_path):
    out, first = trained
    assert first == 2 and torch.load(out / "run" / "checkpoint.pt", weights_only=True)["step"] == 4
    bank = MemoryBank.open(out / "bank")
    assert len(bank.sources) == 6 and set(np.unique(bank.labels)) == set(range(7))
    model = load_sims(out / "run" / "sims.safetensors")
    assert model.settings.bank == str(out / "bank") and model.settings.ngf == 4
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "run"))
    events.Reload()
    assert {"eval/l1", "eval/psnr", "eval/order_accuracy", "losses/align_mask", "losses/order"} <= set(
        events.Tags()["scalars"])
    assert any("layout_canvas_output_real" in tag for tag in events.Tags()["images"])
    picture = tmp_path / "out.png"
    assert main(["synthesize", "--weights", str(out / "run" / "sims.safetensors"), "--bank", str(out / "bank"),
                 "--output", str(picture)]) == 0
    assert Image.open(picture).size == (4 * 128 + 3 * 4, 64)  # layout | canvas | output | real
    for alignment in ("stn", "box"):
        assert main(["test", "--weights", str(out / "run" / "sims.safetensors"), "--scenes", "2", "--alignment",
                     alignment, "--output", str(tmp_path / alignment)]) == 0  # the bank it was trained with
        assert len(list((tmp_path / alignment).glob("*.png"))) == 2


def test_synthesize_a_layout_file(trained, tmp_path):
    out, _ = trained
    from toolchain_restore.generative.scenes import procedural_split

    scene = procedural_split("test", 1, 64, 128)[0]
    Image.fromarray(scene.label).save(tmp_path / "layout.png")
    Image.fromarray(scene.instance.astype(np.uint16)).save(tmp_path / "instance.png")
    assert main(["synthesize", "--layout", str(tmp_path / "layout.png"), "--instance", str(tmp_path / "instance.png"),
                 "--weights", str(out / "run" / "sims.safetensors"), "--bank", str(out / "bank"),
                 "--output", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").size == (3 * 128 + 2 * 4, 64)  # no real image


def test_the_shipped_model_and_bank_synthesize_out_of_the_box(tmp_path):
    picture = tmp_path / "shipped.png"
    assert main(["synthesize", "--output", str(picture)]) == 0
    image = np.asarray(Image.open(picture))
    assert image.shape == (128, 4 * 256 + 3 * 4, 3) and image[:, 2 * 260:2 * 260 + 256].std() > 10


def test_layouts_with_labels_beyond_the_count_are_refused(trained, tmp_path, capsys):
    out, _ = trained
    model = load_sims(out / "run" / "sims.safetensors")
    bank = MemoryBank.open(out / "bank")
    label = np.full((64, 128), 9)
    with pytest.raises(ValueError, match=r"label values must lie in 0..6"):
        synthesize(model, bank, label)
    Image.fromarray(label.astype(np.uint8)).save(tmp_path / "bad.png")
    assert main(["synthesize", "--layout", str(tmp_path / "bad.png"), "--weights", str(out / "run" / "sims.safetensors"),
                 "--bank", str(out / "bank"), "--output", str(tmp_path / "x.png")]) == 2
    assert "labels 9..9, but this model knows 0..6" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_a_retrieving_model_needs_a_bank_and_the_ablation_does_not():
    label = np.zeros((32, 64), np.int64)
    label[16:] = 2
    with pytest.raises(ValueError, match="give it a memory bank"):
        synthesize(Sims(preset("cpu", label_count=7, ngf=4, levels=2)), None, label)
    image = synthesize(Sims(preset("cpu", label_count=7, ngf=4, levels=2, retrieval=False)), None, label)
    assert image.shape == (32, 64, 3)


def test_weights_of_other_options_name_what_differs(trained, tmp_path):
    out, _ = trained
    path = out / "run" / "sims.safetensors"
    with pytest.raises(WeightsError, match="ngf: file 4, asked 16"):
        load_sims(path, expect=preset("cpu", label_count=7, levels=2))
    other = tmp_path / "other.safetensors"
    save_sims(Sims(preset("cpu", label_count=7, ngf=8, levels=2)), other, half=True)
    assert load_sims(other).settings.ngf == 8  # float16 files load back
    config = json.loads(__import__("safetensors").safe_open(str(other), "pt").metadata()["config"])
    config["settings"]["ngf"] = 4
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(other)), str(tmp_path / "lying.safetensors"),
              metadata={"kind": "toolchain-restore/sims", "config": json.dumps(config)})
    with pytest.raises(WeightsError, match="shape mismatches"):
        load_sims(tmp_path / "lying.safetensors")
    from toolchain_restore.serialization import save_weights

    save_weights(torch.nn.Linear(2, 2), tmp_path / "linear.safetensors", "toolchain-restore/other", {})
    with pytest.raises(WeightsError, match="expected 'toolchain-restore/sims'"):
        load_sims(tmp_path / "linear.safetensors")
