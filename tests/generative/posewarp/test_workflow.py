"""PoseWarp end to end on tiny procedural videos through the command-line module: train,
resume, test and synthesize; the U-Net baseline on the same task; the GAN stage; the
VGG-19 feature loss only from a user's file."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from toolchain_restore.config import CommandParser
from toolchain_restore.errors import run_reporting
from toolchain_restore.generative.losses import VGG19Features
from toolchain_restore.generative.posewarp import PoseWarpTask, load_posewarp, preset
from toolchain_restore.generative.posewarp.cli import add_posewarp_parser
from toolchain_restore.generative.posewarp.figures import ProceduralVideo
from toolchain_restore.generative.posewarp.losses import RandomFeatures

TINY = ["--preset", "cpu", "--size", "32", "--depth", "3", "--ngf", "4", "--ndf", "4", "--batch-size", "2",
        "--train-videos", "4", "--test-videos", "2", "--frames-per-video", "4", "--test-pairs", "2",
        "--feature-std-images", "2", "--progress", "false", "--eval-every", "2", "--checkpoint-every", "2",
        "--log-every", "1"]


def run(argv):
    """The posewarp command as ``toolchain-restore`` runs it: a user error is one line and status 2."""
    parser = CommandParser(prog="toolchain-restore")
    add_posewarp_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run_reporting(args.func, args)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("posewarp")
    args = ["posewarp", "train", *TINY, "--out-dir", str(out)]
    assert run([*args, "--iterations", "2"]) == 0
    first = torch.load(out / "main" / "checkpoint.pt", weights_only=True)["step"]
    assert run([*args, "--iterations", "3"]) == 0  # resumes
    return out, first


def test_train_resume_writes_the_model(trained):
    out, first = trained
    assert first == 2 and torch.load(out / "main" / "checkpoint.pt", weights_only=True)["step"] == 3
    model = load_posewarp(out / "posewarp.safetensors")
    assert model.settings.size == 32 and model.settings.architecture == "modular" and model.discriminator is None
    metrics = json.loads((out / "main" / "metrics.json").read_text())
    assert set(metrics) == {"ssim", "l1"}


def test_synthesize_and_test_commands(trained, tmp_path):
    out, _ = trained
    image, source = ProceduralVideo(1_000_000, 64).frame(0)
    _, target = ProceduralVideo(1_000_000, 64).frame(1)
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "source.png")
    np.save(tmp_path / "source.npy", source)
    (tmp_path / "target.json").write_text(json.dumps(target.tolist()))
    picture = tmp_path / "out.png"
    assert run(["posewarp", "synthesize", "--weights", str(out / "posewarp.safetensors"), "--source",
                str(tmp_path / "source.png"), "--source-pose", str(tmp_path / "source.npy"), "--target-pose",
                str(tmp_path / "target.json"), "--output", str(picture)]) == 0
    assert np.asarray(Image.open(picture)).shape == (32, 3 * 32 + 8, 3)
    np.save(tmp_path / "bad.npy", np.zeros((13, 2)))
    assert run(["posewarp", "synthesize", "--weights", str(out / "posewarp.safetensors"), "--source",
                str(tmp_path / "source.png"), "--source-pose", str(tmp_path / "bad.npy"), "--target-pose",
                str(tmp_path / "target.json"), "--output", str(picture)]) == 2
    assert run(["posewarp", "test", "--weights", str(out / "posewarp.safetensors"), "--pairs", "2",
                "--output", str(tmp_path / "test")]) == 0
    assert (tmp_path / "test" / "posewarp_test.png").is_file()


def test_synthesize_from_the_official_mat_on_a_real_frame(trained, tmp_path):
    out, _ = trained
    root = str(Path(__file__).resolve().parents[3].parent / "shared" / "data" / "posewarp-samples")
    mat = f"{root}/info/Flavia Pennetta in 4k.mat"
    assert run(["posewarp", "synthesize", "--weights", str(out / "posewarp.safetensors"), "--source",
                f"{root}/frames/Flavia Pennetta in 4k/1.jpg", "--source-pose", mat, "--frame", "1",
                "--target-pose", mat, "--target-frame", "5", "--output", str(tmp_path / "real.png"),
                "--full-frame", str(tmp_path / "whole.png")]) == 0
    from PIL import Image

    frame = np.asarray(Image.open(f"{root}/frames/Flavia Pennetta in 4k/1.jpg").convert("RGB"))
    whole = np.asarray(Image.open(tmp_path / "whole.png"))
    assert whole.shape == frame.shape  # the output pasted into the full frame, which is kept elsewhere
    assert np.abs(whole[:40].astype(int) - frame[:40]).max() == 0 and not np.array_equal(whole, frame)
    assert run(["posewarp", "synthesize", "--weights", str(out / "posewarp.safetensors"), "--source",
                f"{root}/frames/Flavia Pennetta in 4k/1.jpg", "--source-pose", mat, "--target-pose", mat,
                "--output", str(tmp_path / "real.png")]) == 2  # a .mat needs --frame


def test_baseline_and_gan_stage_train_on_the_same_task(tmp_path):
    out = tmp_path / "unet"
    assert run(["posewarp", "train", *TINY, "--architecture", "unet", "--loss", "l1", "--out-dir", str(out),
                "--iterations", "1"]) == 0
    assert load_posewarp(out / "posewarp.safetensors").settings.architecture == "unet"
    out = tmp_path / "gan"
    assert run(["posewarp", "train", *TINY, "--gan-iterations", "1", "--out-dir", str(out), "--iterations", "1"]) == 0
    assert torch.load(out / "gan" / "checkpoint.pt", weights_only=True)["step"] == 1
    assert load_posewarp(out / "posewarp.safetensors").discriminator is None


def test_feature_loss_needs_no_download_and_vgg_only_from_a_user_file(tmp_path):
    small = dict(size=32, depth=3, ngf=4, train_videos=2, test_videos=1, frames_per_video=3, test_pairs=1,
                 feature_std_images=2)
    task = PoseWarpTask(preset("cpu", **small))
    assert isinstance(task.criterion.extractor, RandomFeatures) and len(task.criterion.layer_stds) == 4
    with pytest.raises(FileNotFoundError, match="VGG-19"):
        PoseWarpTask(preset("cpu", vgg_weights=str(tmp_path / "missing.pth"), **small))
    state = {f"features.{k}": v for k, v in VGG19Features().features.state_dict().items()}
    torch.save(state, tmp_path / "vgg19.pth")
    task = PoseWarpTask(preset("cpu", vgg_weights=str(tmp_path / "vgg19.pth"), **small))
    assert isinstance(task.criterion.extractor, VGG19Features) and len(task.criterion.layer_stds) == 5
    loss, logs = task.loss(task.model, task.make_batch(0, 0, 1, 0), torch.device("cpu"))
    loss.backward()
    assert torch.isfinite(loss) and "feature" in logs
    assert all(not p.requires_grad for p in task.criterion.extractor.parameters())
