"""Distortion classification data, the switchable classifier, its training on the generic
trainer, the other data sources and the attacks."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from toolchain_restore.classification import (DISTORTION_CLASSES, ClassificationSettings, ClassificationTask,
                                              Classifier, bim, cifar10_batches, distortion_patches, fgsm,
                                              folder_of_classes, load_data, robust_accuracy)
from toolchain_restore.nn import DecoupledConv2d
from toolchain_restore.training import Trainer, TrainerSettings

# Tiny tensors: on 2 busy cores two torch threads mostly wait on each other (one test here
# took 90 CPU seconds with two and 3 with one).
pytestmark = pytest.mark.usefixtures("one_thread")


def test_distortion_patches_are_seeded_labelled_and_degraded():
    a = distortion_patches(24, "test", np.random.default_rng(1), patch_size=20)
    b = distortion_patches(24, "test", np.random.default_rng(1), patch_size=20)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.shape == (24, 3, 20, 20) and a.classes == DISTORTION_CLASSES and len(DISTORTION_CLASSES) == 12
    assert a.labels.min() >= 0 and a.labels.max() < 12 and len(set(a.labels.tolist())) > 4
    assert 0.0 <= a.images.min() and a.images.max() <= 1.0


@pytest.mark.parametrize("conv", ["plain", "tanh_cos", "weighted_seg_linear"])
def test_classifier_switches_its_convolutions(conv):
    model = Classifier(12, conv=conv, width=8)
    decoupled = [m for m in model.modules() if isinstance(m, DecoupledConv2d)]
    assert len(decoupled) == (0 if conv == "plain" else 6)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 12)


@pytest.mark.slow
def test_training_on_the_generic_trainer_beats_chance(tmp_path):
    settings = ClassificationSettings(train_patches=600, test_patches=240, batch_size=32, width=8)
    task = ClassificationTask(settings)
    before = task.evaluate(task.model.eval(), torch.device("cpu"))["accuracy"]
    trainer = TrainerSettings(out_dir=str(tmp_path), iterations=120, lr=3e-3, schedule="constant", eval_every=120,
                              checkpoint_every=120, progress=False, device="cpu")
    after = Trainer(trainer, (settings,)).fit(task)["accuracy"]
    assert after > max(2.0 / 12, before + 0.05), (before, after)  # 12 classes: chance is 1/12


def test_folder_of_classes_and_its_held_out_split(tmp_path):
    rng = np.random.default_rng(0)
    for k, name in enumerate(["cats", "dogs"]):
        (tmp_path / name / "more").mkdir(parents=True)
        for i in range(5):
            colour = np.full((12, 10, 3), 200 * k, np.uint8) + rng.integers(0, 40, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(colour).save(tmp_path / name / ("more" if i == 4 else "") / f"{i}.png")
    data = folder_of_classes(tmp_path, size=16)
    assert data.classes == ("cats", "dogs") and data.images.shape == (10, 3, 16, 16)
    assert data.labels.tolist() == [0] * 5 + [1] * 5
    train, test = load_data(ClassificationSettings(data=str(tmp_path), patch_size=16))
    assert len(train) == 8 and len(test) == 2 and sorted(test.labels.tolist()) == [0, 1]
    (tmp_path / "birds").mkdir()
    with pytest.raises(ValueError, match="no images"):
        folder_of_classes(tmp_path)
    with pytest.raises(NotADirectoryError):
        folder_of_classes(tmp_path / "missing")


def test_cifar10_python_batches(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 9]}
        with open(tmp_path / name, "wb") as f:
            pickle.dump(batch, f)
    train, test = cifar10_batches(tmp_path, "train"), cifar10_batches(tmp_path, "test")
    assert train.images.shape == (20, 3, 32, 32) and len(test) == 4 and test.classes[9] == "truck"
    # Channel-major rows: the first 1024 values are the red plane.
    raw = pickle.load(open(tmp_path / "test_batch", "rb"))[b"data"][0]
    assert torch.allclose(test.images[0, 0].flatten(), torch.tensor(raw[:1024] / 255.0, dtype=torch.float32))
    assert len(load_data(ClassificationSettings(data=str(tmp_path)))[0]) == 20
    (tmp_path / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="data_batch_3"):
        cifar10_batches(tmp_path, "train")
    (tmp_path / "data_batch_5").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_5"):
        cifar10_batches(tmp_path, "train")


@pytest.mark.slow
def test_attacks_stay_in_the_ball_and_hurt_a_trained_model():
    torch.manual_seed(0)
    # A linearly separable toy: the class is whether the image is bright.
    x = torch.rand(64, 3, 8, 8) * 0.4 + torch.randint(0, 2, (64, 1, 1, 1)) * 0.5
    y = (x.mean(dim=(1, 2, 3)) > 0.45).long()
    model = Classifier(2, width=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    clean = robust_accuracy(model, x, y, "none", 0.0)
    assert clean > 0.9
    for attack in (fgsm, bim):
        adv = attack(model.eval(), x, y, 0.1)
        assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert robust_accuracy(model, x, y, "bim", 0.3) < clean
    assert robust_accuracy(model, x, y, "fgsm", 0.0) == clean
    with pytest.raises(ValueError, match="attack"):
        robust_accuracy(model, x, y, "pgd", 0.1)


@pytest.mark.parametrize("conv", ["plain", "ball_sigmoid"])
def test_saved_classifier_loads_with_its_classes_and_convolutions(conv, tmp_path):
    from toolchain_restore.classification import load_classifier, save_classifier

    model = Classifier(3, conv=conv, width=4).eval()
    save_classifier(model, tmp_path / "c.safetensors", ("a", "b", "c"), iterations=7)
    loaded, config = load_classifier(tmp_path / "c.safetensors")
    assert config["classes"] == ["a", "b", "c"] and config["conv"] == conv and config["iterations"] == 7
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(loaded(x), model(x))


def test_loading_a_classifier_from_other_weights_says_so(tmp_path):
    from toolchain_restore.classification import load_classifier
    from toolchain_restore.serialization import WeightsError, save_weights

    save_weights(Classifier(3, width=4), tmp_path / "other.safetensors", "toolchain-restore/toolbox")
    with pytest.raises(WeightsError, match="expected 'toolchain-restore/classifier'"):
        load_classifier(tmp_path / "other.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        load_classifier(tmp_path / "broken.safetensors")


@pytest.mark.slow
def test_train_classifier_command_trains_resumes_and_writes_weights(tmp_path, capsys):
    from toolchain_restore.classification import load_classifier
    from toolchain_restore.cli import main

    args = ["train-classifier", "--conv", "tanh_cos", "--width", "4", "--train-patches", "96", "--test-patches", "48",
            "--batch-size", "16", "--eval-every", "10", "--progress", "false", "--out-dir", str(tmp_path),
            "--attack-eps", "0.01"]
    assert main([*args, "--iterations", "10"]) == 0
    first = capsys.readouterr().out
    assert "test accuracy" in first and "eps 0.01: FGSM accuracy" in first
    assert main([*args, "--iterations", "20"]) == 0
    model, config = load_classifier(tmp_path / "classifier.safetensors")
    assert config["iterations"] == 20 and config["conv"] == "tanh_cos" and len(config["classes"]) == 12
    assert isinstance(model.features[0], DecoupledConv2d)


def write_fake_cifar100(root, per_split=(6, 4), classes=100):
    """A tiny CIFAR-100 in its exact python layout: cifar-100-python/{train,test,meta},
    pickled dicts with bytes keys, channel-major rows, fine and coarse labels."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for name, count in zip(("train", "test"), per_split):
        fine = [int(v) for v in rng.integers(0, classes, count)]
        batch = {b"filenames": [f"img_{i}.png".encode() for i in range(count)], b"batch_label": name.encode(),
                 b"fine_labels": fine, b"coarse_labels": [v // 5 for v in fine],
                 b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8)}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    meta = {b"fine_label_names": [f"class_{k:02d}".encode() for k in range(classes)],
            b"coarse_label_names": [f"super_{k:02d}".encode() for k in range(classes // 5)]}
    with open(folder / "meta", "wb") as f:
        pickle.dump(meta, f)
    return folder


def test_cifar100_python_layout_reads_fine_labels_and_their_names(tmp_path):
    from toolchain_restore.classification import cifar100_batches, cifar_folder

    folder = write_fake_cifar100(tmp_path)
    assert cifar_folder(tmp_path) == ("cifar100", folder) and cifar_folder(folder) == ("cifar100", folder)
    test = cifar100_batches(folder, "test")
    raw = pickle.load(open(folder / "test", "rb"))
    assert test.images.shape == (4, 3, 32, 32) and len(test.classes) == 100 and test.classes[7] == "class_07"
    assert test.labels.tolist() == raw[b"fine_labels"]
    assert torch.allclose(test.images[0, 2].flatten(), torch.tensor(raw[b"data"][0][2048:] / 255.0, dtype=torch.float32))
    # Both the folder as downloaded and the folder above it are accepted as data.
    for data in (tmp_path, folder):
        train, held_out = load_data(ClassificationSettings(data=str(data)))
        assert len(train) == 6 and len(held_out) == 4 and train.classes == test.classes


def test_damaged_cifar100_files_are_named(tmp_path):
    from toolchain_restore.classification import cifar100_batches

    folder = write_fake_cifar100(tmp_path)
    (folder / "train").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"cifar-100-python/train: not a CIFAR-100 python batch"):
        cifar100_batches(folder, "train")
    with open(folder / "test", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, f)  # CIFAR-10's key
    with pytest.raises(ValueError, match=r"test: a CIFAR-100 python batch holds b'data' and b'fine_labels'"):
        cifar100_batches(folder, "test")
    (folder / "meta").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing CIFAR-100 python files \['meta'\]"):
        cifar100_batches(folder, "test")


def test_folder_of_classes_names_and_skips_bad_files(tmp_path):
    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 50 * i, np.uint8)).save(tmp_path / name / f"{i}.png")
    (tmp_path / "cats" / "1.png").write_bytes((tmp_path / "cats" / "1.png").read_bytes()[:-12])  # IEND cut off
    with pytest.warns(UserWarning, match=r"skipping .*cats/1\.png: truncated"):
        data = folder_of_classes(tmp_path, size=8)
    assert data.labels.tolist() == [0, 0, 1, 1, 1]
    for i in range(3):
        (tmp_path / "dogs" / f"{i}.png").write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"dogs: none of its 3 image files is usable"):
        folder_of_classes(tmp_path, size=8)


def test_the_operator_radius_is_a_setting_fixed_or_learned(tmp_path):
    from toolchain_restore.classification import load_classifier, save_classifier

    model = Classifier(3, conv="tanh_cos", width=4, radius=2.5, learnable_radius=True)
    layers = [m for m in model.modules() if isinstance(m, DecoupledConv2d)]
    assert all(m.learnable_radius and m.radius == 2.5 for m in layers)
    assert all(any(p is m.radius_root for p in model.parameters()) for m in layers)
    model(torch.rand(2, 3, 16, 16)).sum().backward()
    assert all(m.radius_root.grad is not None and m.radius_root.grad.abs().sum() > 0 for m in layers)
    model.eval()
    save_classifier(model, tmp_path / "c.safetensors", ("a", "b", "c"))
    loaded, config = load_classifier(tmp_path / "c.safetensors")
    assert config["learnable_radius"] is True and config["radius"] == 2.5
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(ValueError, match="shapes only the decoupled ball, tanh, seg magnitudes; --conv sphere_cos"):
        Classifier(3, conv="sphere_cos", learnable_radius=True)
    with pytest.raises(ValueError, match="--conv plain has no use for it"):
        Classifier(3, conv="plain", radius=2.0)


def test_the_radius_options_reach_the_classifier_from_the_command_line():
    from toolchain_restore.classification import ClassificationTask
    from toolchain_restore.cli import COMMANDS, build_parser

    args = build_parser().parse_args(["train-classifier", "--conv", "ball_cos", "--radius", "0.5",
                                      "--learnable-radius", "true", "--train-patches", "8", "--test-patches", "4"])
    command = next(c for c in COMMANDS if c.name == "train-classifier")
    settings = command.settings_from(args)[0]
    assert settings.radius == 0.5 and settings.learnable_radius is True
    layer = next(m for m in ClassificationTask(settings).model.modules() if isinstance(m, DecoupledConv2d))
    assert layer.radius == 0.5 and layer.learnable_radius
