"""pix2pixHD on a folder in the official layout, its bad inputs, and the VGG-19 loss from
a user's weights file."""

import numpy as np
import pytest
import torch
from PIL import Image

from toolchain_restore.generative.layout import write_layout
from toolchain_restore.generative.losses import VGG19Features, VGGLoss, load_vgg19
from toolchain_restore.generative.pix2pixhd import Pix2PixHDTask, preset, train_pix2pixhd, trainer_defaults
from toolchain_restore.generative.scenes import procedural_split


@pytest.fixture
def folder(tmp_path):
    write_layout(tmp_path, "train", procedural_split("train", 3, 64, 64))
    write_layout(tmp_path, "test", procedural_split("test", 2, 64, 64))
    return tmp_path


def tiny(data, **changes):
    return preset("cpu", data=str(data), label_count=7, num_d=2, **changes)


@pytest.mark.slow
def test_trains_on_a_folder_in_the_official_layout(folder, tmp_path):
    out = tmp_path / "run"
    metrics = train_pix2pixhd(tiny(folder), trainer_defaults(out_dir=str(out), iterations=2, eval_every=2,
                                                             checkpoint_every=2, progress=False), global_iterations=1)
    assert set(metrics) == {"l1", "psnr"} and (out / "pix2pixhd.safetensors").is_file()


def test_label_values_beyond_the_label_count_are_named(folder):
    label = np.asarray(Image.open(folder / "train_label" / "scene_00001.png")).copy()
    label[0, 0] = 9
    Image.fromarray(label).save(folder / "train_label" / "scene_00001.png")
    task = Pix2PixHDTask(tiny(folder))
    with pytest.raises(ValueError, match="scene_00001"):
        for step in range(12):
            task.make_batch(step, 0, 1, 0)


def test_sizes_that_do_not_divide_are_refused_or_padded(tmp_path):
    write_layout(tmp_path, "train", procedural_split("train", 2, 72, 72))
    write_layout(tmp_path, "test", procedural_split("test", 1, 72, 72))
    task = Pix2PixHDTask(tiny(tmp_path))
    batch = task.make_batch(0, 0, 1, 0)
    with pytest.raises(ValueError, match="multiples of 16"):
        task.loss(task.model, batch, torch.device("cpu"))
    with pytest.warns(UserWarning, match="pad"):
        padded = Pix2PixHDTask(tiny(tmp_path, pad=True))
        batch = padded.make_batch(0, 0, 1, 0)
    assert batch["label"].shape[-2:] == (80, 80)  # 72 padded to the next multiple of 16
    loss, _ = padded.loss(padded.model, batch, torch.device("cpu"))
    assert torch.isfinite(loss)


def _fake_vgg19_file(path, drop=None, reshape=None):
    """Random weights in torchvision's vgg19 layout (a real file would be ImageNet's)."""
    state = {f"features.{k}": v for k, v in VGG19Features().features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)  # the classifier is ignored
    if drop:
        del state[drop]
    if reshape:
        state[reshape] = torch.zeros(1)
    torch.save(state, path)
    return path


def test_vgg_loss_from_a_user_file(tmp_path):
    vgg = load_vgg19(_fake_vgg19_file(tmp_path / "vgg19.pth"))
    assert all(not p.requires_grad for p in vgg.parameters())
    loss = VGGLoss(vgg)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(x, x).item() == 0
    estimate = x.clone().requires_grad_(True)
    value = loss(estimate, torch.zeros_like(x))
    value.backward()
    assert value.item() > 0 and estimate.grad.abs().sum() > 0


@pytest.mark.parametrize("problem, match", [
    ("missing", "no VGG-19 weights"),
    ("garbage", "not a readable weights file"),
    ("dropped", r"missing \['features.28.weight'\]"),
    ("misshaped", "misshaped"),
])
def test_bad_vgg_files_are_clear_errors(tmp_path, problem, match):
    path = tmp_path / "vgg19.pth"
    if problem == "garbage":
        path.write_bytes(b"no weights here")
    elif problem == "dropped":
        _fake_vgg19_file(path, drop="features.28.weight")
    elif problem == "misshaped":
        _fake_vgg19_file(path, reshape="features.0.weight")
    with pytest.raises((FileNotFoundError, ValueError), match=match):
        load_vgg19(path)


def test_the_vgg_loss_joins_the_generator_loss(tmp_path):
    settings = preset("cpu", height=64, width=64, train_scenes=2, test_scenes=1, num_d=1,
                      vgg_weights=str(_fake_vgg19_file(tmp_path / "vgg19.pth")))
    task = Pix2PixHDTask(settings, "global")
    _, logs = task.loss(task.model, task.make_batch(0, 0, 1, 0), torch.device("cpu"))
    assert logs["g_vgg"] > 0


def test_mixed_precision_step(tmp_path):
    settings = preset("cpu", height=64, width=64, train_scenes=2, test_scenes=1, num_d=1, n_local_enhancers=0)
    metrics = train_pix2pixhd(settings, trainer_defaults(out_dir=str(tmp_path), iterations=2, eval_every=2,
                                                         checkpoint_every=2, progress=False, precision="bf16"))
    assert np.isfinite(metrics["psnr"])
