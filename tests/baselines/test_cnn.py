"""The DnCNN and VDSR baselines: sizes against the paper, weights files, training with the
generic trainer on the agent's data stream, and resuming."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from toolchain_restore.baselines import (
    BASELINE_ARCHITECTURES,
    BASELINE_KIND,
    VDSR,
    DnCNN,
    conv_macs_per_pixel,
    load_baseline,
    save_baseline,
)
from toolchain_restore.baselines.training import CNNBaselineSettings, CNNBaselineTask, train_baseline
from toolchain_restore.serialization import WeightsError, save_weights
from toolchain_restore.training import Trainer, TrainerSettings

ARCHS = sorted(BASELINE_ARCHITECTURES)

# Measured once from the layers (see the class docstrings), and the paper's table.
EXPECTED = {
    "dncnn": dict(conv=17, batchnorm=15, parameters=558_403, macs_per_pixel=556_416, paper_macs=2.2e9),
    "vdsr": dict(conv=20, batchnorm=0, parameters=668_227, macs_per_pixel=667_008, paper_macs=2.65e9),
}

TINY = dict(patch_size=16, batch_size=2, eval_patches=2, eval_patch_size=16)


pytestmark = pytest.mark.usefixtures("one_thread")


def trainer_settings(out_dir, **kw):
    base = dict(out_dir=str(out_dir), iterations=4, lr=1e-3, checkpoint_every=2, eval_every=4, log_every=1, progress=False)
    base.update(kw)
    return TrainerSettings(**base)


@pytest.mark.parametrize("arch", ARCHS)
def test_layers_parameters_and_macs_match_the_paper(arch):
    model = BASELINE_ARCHITECTURES[arch]()
    expected = EXPECTED[arch]
    assert model.arch == arch
    assert model.num_conv_layers == expected["conv"]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == expected["batchnorm"]
    hidden = [m for m in model.modules() if isinstance(m, nn.Conv2d)][:-1]
    assert all(m.out_channels == 64 and m.kernel_size == (3, 3) for m in hidden)
    assert model.num_parameters == expected["parameters"] == sum(p.numel() for p in model.parameters())
    assert model.macs_per_pixel == expected["macs_per_pixel"] == conv_macs_per_pixel(model)
    assert model.macs(63, 63) == expected["macs_per_pixel"] * 63 * 63
    assert model.macs(63, 63) == pytest.approx(expected["paper_macs"], rel=0.02)
    assert model.macs(10, 7) == model.macs_per_pixel * 70


def test_multiply_adds_are_only_counted_where_they_are_per_pixel():
    with pytest.raises(ValueError, match="stride"):
        conv_macs_per_pixel(nn.Conv2d(3, 8, 3, stride=2))
    assert conv_macs_per_pixel(nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.ReLU())) == 2 * 8 * 9


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", [(1, 3, 17, 23), (2, 3, 9, 31)])
def test_any_size_in_the_same_size_out(arch, shape):
    torch.manual_seed(0)
    model = BASELINE_ARCHITECTURES[arch]().eval()
    x = torch.rand(shape)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    # Started near the identity: a small residual, not an arbitrary image.
    assert 0 < (y - x).abs().mean() < 0.2


@pytest.mark.parametrize("arch", ARCHS)
def test_residual_convention(arch):
    model = BASELINE_ARCHITECTURES[arch]().eval()
    last = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(0.1)
        x = torch.rand(1, 3, 8, 8)
        # DnCNN subtracts the predicted distortion; VDSR adds the predicted residual.
        expected = x - 0.1 if arch == "dncnn" else x + 0.1
        assert torch.allclose(model(x), expected, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_bad_inputs_are_refused(arch):
    model = BASELINE_ARCHITECTURES[arch]()
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        model(torch.rand(1, 1, 8, 8))
    with pytest.raises(TypeError, match="float"):
        model(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="depth"):
        BASELINE_ARCHITECTURES[arch](depth=2)


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_round_trip(arch, tmp_path):
    torch.manual_seed(1)
    model = BASELINE_ARCHITECTURES[arch]()
    model.train()
    with torch.no_grad():  # move BatchNorm's running statistics away from their defaults
        model(torch.rand(4, 3, 12, 12))
    model.eval()
    path = tmp_path / f"{arch}.safetensors"
    save_baseline(model, path, iterations=7)
    loaded = load_baseline(path)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.config["arch"] == arch and loaded.config["iterations"] == 7
    assert loaded.display_name == {"dncnn": "DnCNN", "vdsr": "VDSR"}[arch]
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    x = torch.rand(1, 3, 11, 13)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_a_smaller_variant_round_trips(tmp_path):
    small = VDSR(depth=6, channels=16)
    assert small.num_conv_layers == 6 and small.display_name == "VDSR-6x16"
    save_baseline(small, tmp_path / "vdsr_s.safetensors")
    loaded = load_baseline(tmp_path / "vdsr_s.safetensors")
    assert (loaded.depth, loaded.channels) == (6, 16)


def test_weights_errors(tmp_path):
    model = DnCNN()
    with pytest.raises(WeightsError, match="no weights file"):
        load_baseline(tmp_path / "missing.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00garbage, not safetensors")
    with pytest.raises(WeightsError, match="not a readable"):
        load_baseline(corrupt)
    other = tmp_path / "toolbox.safetensors"
    save_weights(model, other, "toolchain_restore.Toolbox")
    with pytest.raises(WeightsError, match="kind 'toolchain_restore.Toolbox'"):
        load_baseline(other)
    unknown = tmp_path / "unknown.safetensors"
    save_weights(model, unknown, BASELINE_KIND, {"arch": "unet"})
    with pytest.raises(WeightsError, match="unknown baseline architecture 'unet'"):
        load_baseline(unknown)
    mismatched = tmp_path / "mismatched.safetensors"  # DnCNN tensors labelled as a VDSR
    save_weights(model, mismatched, BASELINE_KIND, {"arch": "vdsr"})
    with pytest.raises(WeightsError, match="does not fit"):
        load_baseline(mismatched)
    with pytest.raises(TypeError):
        save_baseline(nn.Conv2d(3, 3, 1), tmp_path / "x.safetensors")


@pytest.mark.parametrize("arch", ARCHS)
def test_batches_are_a_pure_function_of_the_step(arch):
    task = CNNBaselineTask(CNNBaselineSettings(arch=arch, **TINY))
    later = task.make_batch(5, 0, 1, seed=3)
    first = task.make_batch(2, 0, 1, seed=3)
    again = CNNBaselineTask(CNNBaselineSettings(arch=arch, **TINY)).make_batch(2, 0, 1, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], later[0])
    assert not torch.equal(first[0], task.make_batch(2, 1, 2, seed=3)[0])  # another rank
    assert not torch.equal(first[0], task.make_batch(2, 0, 1, seed=4)[0])  # another seed
    L, H = first
    assert L.shape == H.shape == (2, 3, 16, 16) and L.dtype == torch.float32
    assert not torch.equal(L, H)


def test_baselines_are_scored_on_the_agent_evaluations_patches():
    from toolchain_restore.evaluation import held_out_set

    task = CNNBaselineTask(CNNBaselineSettings(eval_patches=3))
    for level, test in task.test_sets().items():
        assert torch.equal(test.L, held_out_set(level, 3).L) and torch.equal(test.H, held_out_set(level, 3).H)


class CrashAt:
    """Wraps a task so that its loss raises at a given call, like a killed process."""

    def __init__(self, task, call):
        self.task, self.crash_call, self.calls = task, call, 0
        self.model = task.model

    def __getattr__(self, name):
        return getattr(self.task, name)

    def loss(self, model, batch, device):
        if self.calls == self.crash_call:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        return self.task.loss(model, batch, device)


@pytest.mark.parametrize("arch", ARCHS)
def test_training_writes_the_network_and_resumes_exactly(arch, tmp_path):
    settings = CNNBaselineSettings(arch=arch, **TINY)
    metrics = train_baseline(settings, trainer_settings(tmp_path / "straight"))
    assert set(metrics) == {f"{k}/{level}" for k in ("input_psnr", "psnr", "gain") for level in ("mild", "moderate", "severe")}
    assert json.loads((tmp_path / "straight" / "metrics.json").read_text()) == metrics
    straight = load_baseline(tmp_path / "straight" / f"{arch}.safetensors")
    assert straight.config["iterations"] == 4 and straight.config["patch_size"] == 16

    with pytest.raises(KeyboardInterrupt):
        Trainer(trainer_settings(tmp_path / "killed")).fit(CrashAt(CNNBaselineTask(settings), 3))
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["step"] == 2
    train_baseline(settings, trainer_settings(tmp_path / "killed"))
    resumed = load_baseline(tmp_path / "killed" / f"{arch}.safetensors")
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k


def test_cli_defaults_to_one_folder_per_architecture(tmp_path, monkeypatch):
    from toolchain_restore.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["train-baseline", "--arch", "vdsr", "--depth", "4", "--channels", "8", "--iterations", "1",
            "--patch-size", "16", "--batch-size", "1", "--eval-patches", "1", "--eval-patch-size", "16",
            "--progress", "false"]
    assert main(args) == 0
    model = load_baseline(tmp_path / "runs" / "baseline_vdsr" / "vdsr.safetensors")
    assert (model.depth, model.channels) == (4, 8)
