"""pix2pixHD end to end on tiny procedural scenes: the staged training through the
command line, resume, feature clusters, sampling, and the appearance switch."""

import json

import numpy as np
import pytest
import torch

from toolchain_restore.cli import main
from toolchain_restore.generative.pix2pixhd import Pix2PixHD, load_pix2pixhd, preset
from toolchain_restore.generative.pix2pixhd.clusters import (FeatureClusters, cluster_features, instance_feature_map,
                                                             kmeans)
from toolchain_restore.generative.pix2pixhd.sampling import synthesize
from toolchain_restore.generative.scenes import procedural_split
from toolchain_restore.serialization import WeightsError

TINY = ["--preset", "cpu", "--height", "64", "--width", "64", "--train-scenes", "6", "--test-scenes", "2",
        "--num-d", "2", "--progress", "false", "--eval-every", "2", "--checkpoint-every", "2", "--log-every", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pix2pixhd")
    args = ["pix2pixhd", "train", *TINY, "--features", "true", "--out-dir", str(out)]
    assert main([*args, "--iterations", "2", "--global-iterations", "2"]) == 0
    first = torch.load(out / "enhancer" / "checkpoint.pt", weights_only=True)["step"]
    assert main([*args, "--iterations", "4", "--global-iterations", "2"]) == 0  # resumes the enhancer stage
    return out, first


@pytest.mark.slow
def test_staged_training_writes_both_stages_and_resumes(trained):
    out, first = trained
    assert first == 2
    assert torch.load(out / "enhancer" / "checkpoint.pt", weights_only=True)["step"] == 4
    assert torch.load(out / "global" / "checkpoint.pt", weights_only=True)["step"] == 2
    model = load_pix2pixhd(out / "pix2pixhd.safetensors")
    assert model.stage == "enhancer" and model.generator.n_local_enhancers == 1 and model.encoder is not None
    assert load_pix2pixhd(out / "global" / "pix2pixhd.safetensors").generator.n_local_enhancers == 0
    settings = json.loads((out / "enhancer" / "settings.json").read_text())
    assert settings["TrainerSettings"]["beta1"] == 0.5 and settings["TrainerSettings"]["hold"] == 2
    assert {"eval/l1", "eval/psnr"} <= set(_scalar_tags(out / "enhancer"))


def _scalar_tags(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    return events.Tags()["scalars"]


@pytest.mark.slow
def test_encode_features_then_sample_several_outputs(trained, tmp_path):
    out, _ = trained
    clusters = tmp_path / "clusters.safetensors"
    assert main(["pix2pixhd", "encode-features", "--weights", str(out / "pix2pixhd.safetensors"), "--num-clusters", "3",
                 "--output", str(clusters)]) == 0
    small = tmp_path / "small.safetensors"
    assert main(["pix2pixhd", "export", "--weights", str(out / "pix2pixhd.safetensors"), "--output", str(small)]) == 0
    assert small.stat().st_size < 0.6 * (out / "pix2pixhd.safetensors").stat().st_size
    picture = tmp_path / "sheet.png"
    assert main(["pix2pixhd", "sample", "--weights", str(small), "--clusters", str(clusters),
                 "--outputs", "2", "--output", str(picture)]) == 0
    from PIL import Image

    sheet = np.asarray(Image.open(picture))
    assert sheet.shape == (64, 4 * 64 + 3 * 4, 3)
    assert main(["pix2pixhd", "test", "--weights", str(out / "pix2pixhd.safetensors"), "--clusters", str(clusters),
                 "--scenes", "2", "--output", str(tmp_path / "test")]) == 0
    assert len(list((tmp_path / "test").glob("*.png"))) == 2


def test_choosing_a_cluster_changes_only_that_instance(trained):
    out, _ = trained
    model = load_pix2pixhd(out / "pix2pixhd.safetensors")
    scene = procedural_split("test", 1, 64, 64)[0]
    label, instance = scene.label.astype(np.int64), scene.instance.astype(np.int64)
    things = [int(i) for i in np.unique(instance) if i >= 1000]
    target = things[0]
    cls = target // 1000
    clusters = FeatureClusters({c: np.stack([np.full(3, -0.5), np.full(3, 0.5)]) for c in range(7)}, 3)
    pinned = {i: 0 for i in np.unique(instance).tolist()}
    a = instance_feature_map(label, instance, clusters, np.random.default_rng(0), pinned)
    b = instance_feature_map(label, instance, clusters, np.random.default_rng(0), {**pinned, target: 1})
    changed = (a != b).any(0).numpy()
    assert changed.any() and np.array_equal(changed, instance == target)
    assert cls == int(np.bincount(label[instance == target]).argmax())
    first = synthesize(model, label, instance, clusters, choice=pinned)[0].astype(int)
    second = synthesize(model, label, instance, clusters, choice={**pinned, target: 1})[0].astype(int)
    assert np.abs(first - second).sum() > 0


def test_bad_choices_are_clear_errors():
    scene = procedural_split("test", 1, 64, 64)[0]
    clusters = FeatureClusters({c: np.zeros((2, 3)) for c in range(7)}, 3)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="no instance"):
        instance_feature_map(scene.label, scene.instance, clusters, rng, {424242: 0})
    with pytest.raises(ValueError, match="clusters 0..1, not 5"):
        instance_feature_map(scene.label, scene.instance, clusters, rng, {int(scene.instance[0, 0]): 5})


def test_kmeans_finds_separated_groups():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 0.05, (20, 3)), rng.normal(3, 0.05, (20, 3))])
    centres = kmeans(points, 2, rng)
    assert sorted(np.round(centres[:, 0]).tolist()) == [0.0, 3.0]
    assert len(cluster_features({1: points[:1]}, 10).centres[1]) == 1


def test_weights_of_other_options_name_what_differs(trained, tmp_path):
    out, _ = trained
    path = out / "pix2pixhd.safetensors"
    with pytest.raises(WeightsError, match="n_blocks_global: file 4, asked 9"):
        load_pix2pixhd(path, expect=preset("paper", label_count=7, features=True))
    other = Pix2PixHD(preset("cpu", label_count=7))
    from toolchain_restore.serialization import save_weights

    save_weights(other, tmp_path / "other.safetensors", "toolchain-restore/toolbox")
    with pytest.raises(WeightsError, match="expected 'toolchain-restore/pix2pixhd'"):
        load_pix2pixhd(tmp_path / "other.safetensors")


def test_half_precision_files_load_back(tmp_path):
    from toolchain_restore.generative.pix2pixhd import save_pix2pixhd

    model = Pix2PixHD(preset("cpu", label_count=7)).eval()
    save_pix2pixhd(model, tmp_path / "small.safetensors", discriminator=False, half=True)
    loaded = load_pix2pixhd(tmp_path / "small.safetensors")
    for (name, a), b in zip(model.generator.state_dict().items(), loaded.generator.state_dict().values()):
        torch.testing.assert_close(a.half().float(), b, msg=name)


def test_shipped_model_samples_out_of_the_box(tmp_path, capsys):
    from PIL import Image

    assert main(["pix2pixhd", "sample", "--outputs", "2", "--output", str(tmp_path / "sample.png")]) == 0
    assert "instances you can --choose" in capsys.readouterr().out
    assert np.asarray(Image.open(tmp_path / "sample.png")).shape == (128, 4 * 256 + 3 * 4, 3)  # layout, 2 outputs, real


@pytest.mark.slow
def test_shipped_model_draws_layouts_the_segmenter_recognises():
    from toolchain_restore.generative.datasets import synthesis_set
    from toolchain_restore.generative.pix2pixhd.sampling import evaluate_synthesis, load_shipped
    from toolchain_restore.generative.segmentation import load_segmenter
    from toolchain_restore.serialization import shipped_weights

    model, clusters = load_shipped()
    test = synthesis_set("procedural", "test", 7, 4)
    samples = [test[k] for k in range(4)]
    images = [synthesize(model, s.label, s.instance, clusters, seed=k)[0] for k, s in enumerate(samples)]
    scores = evaluate_synthesis(images, samples, load_segmenter(shipped_weights("segmenter.safetensors")))
    # The card: pixel accuracy 0.961 and PSNR 16.1 dB on 48 scenes; an untrained generator scores ~0.3 and ~11 dB.
    assert scores["pixel_accuracy"] > 0.9 and scores["psnr"] > 14.5, scores


def test_sample_honours_clusters_and_device_with_or_without_weights(tmp_path, monkeypatch):
    import toolchain_restore.generative.pix2pixhd as package
    from toolchain_restore.generative.pix2pixhd.cli import Pix2PixHDSampleSettings, _pix2pixhd_model
    from toolchain_restore.serialization import shipped_weights

    mine = FeatureClusters({c: np.full((2, 3), 0.25) for c in range(7)}, 3)
    mine.save(tmp_path / "mine.safetensors")
    for weights in (None, str(shipped_weights("pix2pixhd.safetensors"))):
        _, clusters = _pix2pixhd_model(Pix2PixHDSampleSettings(weights=weights, clusters=str(tmp_path / "mine.safetensors")))
        assert np.array_equal(clusters.centres[3], mine.centres[3]), weights
    (tmp_path / "corrupt.safetensors").write_bytes(b"not weights")
    with pytest.raises(WeightsError, match="corrupt.safetensors"):
        _pix2pixhd_model(Pix2PixHDSampleSettings(clusters=str(tmp_path / "corrupt.safetensors")))
    seen = []
    monkeypatch.setattr(package, "load_pix2pixhd", lambda path, device: seen.append(device) or load_pix2pixhd(path))
    _pix2pixhd_model(Pix2PixHDSampleSettings(weights=str(shipped_weights("pix2pixhd.safetensors")), device="cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    _pix2pixhd_model(Pix2PixHDSampleSettings(weights=str(shipped_weights("pix2pixhd.safetensors")), device="auto"))
    assert seen == [torch.device("cpu"), torch.device("cuda")]
