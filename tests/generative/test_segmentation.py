"""The evaluation segmenter: exact scores, the U-Net at any size, a short run on the generic
trainer, the weights round trip and segmentation agreement."""

import math

import pytest
import torch

from toolchain_restore.generative import (SCENE_CLASSES, SegmentationNet, SegmentationSettings, SegmentationTask,
                                          load_segmenter, save_segmenter, segmentation_agreement, segmentation_scores,
                                          train_segmenter)
from toolchain_restore.serialization import WeightsError, save_weights
from toolchain_restore.training import TrainerSettings


def test_scores_are_exact_on_a_hand_made_example():
    target = torch.tensor([[0, 0, 1], [1, 2, 2]])
    predicted = torch.tensor([[0, 1, 1], [1, 2, 0]])
    scores = segmentation_scores(predicted, target, classes=4)
    assert scores["pixel_accuracy"] == pytest.approx(4 / 6)
    # class 0: TP 1, FP 1, FN 1 -> 1/3; class 1: TP 2, FP 1 -> 2/3; class 2: TP 1, FN 1 -> 1/2; class 3 absent.
    assert scores["iou"][:3] == pytest.approx([1 / 3, 2 / 3, 1 / 2]) and math.isnan(scores["iou"][3])
    assert scores["mean_iou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_scores_take_logits_and_ignore_a_value():
    target = torch.tensor([[[0, 1, 255]]])
    logits = torch.zeros(1, 2, 1, 3)
    logits[0, 1, 0, 1:] = 1.0  # predicts 0, 1, 1
    scores = segmentation_scores(logits, target, 2, ignore_index=255)
    assert scores["pixel_accuracy"] == 1.0 and scores["mean_iou"] == 1.0
    with pytest.raises(ValueError, match="outside 0..1"):
        segmentation_scores(torch.full((1, 1, 3), 5), target, 2, ignore_index=255)
    with pytest.raises(ValueError, match="does not match"):
        segmentation_scores(torch.zeros(2, 1, 3, dtype=torch.long), target, 2)


@pytest.mark.parametrize("size", [(32, 64), (40, 56), (37, 50)])
def test_the_net_gives_logits_at_the_input_size(one_thread, size):
    net = SegmentationNet(7, width=4)
    assert net(torch.rand(2, 3, *size) * 2 - 1).shape == (2, 7, *size)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("segmenter")
    settings = SegmentationSettings(height=32, width=64, train_scenes=12, test_scenes=4, batch_size=4, net_width=4)
    trainer = TrainerSettings(out_dir=str(out), iterations=6, lr=3e-3, eval_every=6, checkpoint_every=6,
                              progress=False, device="cpu")
    metrics = train_segmenter(settings, trainer)
    return out, settings, metrics


def test_a_short_run_on_the_generic_trainer_writes_loadable_weights(tiny_run):
    out, settings, metrics = tiny_run
    assert set(metrics) == {"pixel_accuracy", "mean_iou"} and 0 <= metrics["pixel_accuracy"] <= 1
    net = load_segmenter(out / "segmenter.safetensors")
    assert not net.training and net.width == 4 and net.classes == len(SCENE_CLASSES)
    # The file's weights are the trained model's: the same scores on the test scenes.
    task = SegmentationTask(settings)
    assert task.evaluate(net, torch.device("cpu")) == pytest.approx(metrics)


def test_batches_are_a_pure_function_of_step_and_seed(one_thread):
    task = SegmentationTask(SegmentationSettings(height=32, width=64, train_scenes=6, test_scenes=2, batch_size=3))
    (x1, y1), (x2, y2), (x3, _) = task.make_batch(4, 0, 1, 0), task.make_batch(4, 0, 1, 0), task.make_batch(5, 0, 1, 0)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    assert x1.shape == (3, 3, 32, 64) and y1.dtype == torch.long and -1 <= x1.min() and x1.max() <= 1
    assert task.sample_images(task.model.eval(), torch.device("cpu"))["segmentation"].shape == (3, 96, 64)
    # Class weights: rarer classes weigh more, and a training pixel weighs 1 on average.
    frequency = torch.bincount(task.train_labels.reshape(-1).long(), minlength=len(SCENE_CLASSES)).double()
    frequency /= frequency.sum()
    assert float((task.class_weights.double() * frequency).sum()) == pytest.approx(1.0, rel=1e-5)
    assert task.class_weights.argmax() == frequency.argmin()


def test_weights_round_trip_and_a_wrong_kind_is_refused(tmp_path, one_thread):
    net = SegmentationNet(5, width=4, levels=2)
    save_segmenter(net, tmp_path / "seg.safetensors", ("a", "b", "c", "d", "e"), note="test")
    loaded = load_segmenter(tmp_path / "seg.safetensors")
    assert (loaded.classes, loaded.width, loaded.levels) == (5, 4, 2)
    for key, value in net.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    save_weights(net, tmp_path / "other.safetensors", "toolchain-restore/classifier", {})
    with pytest.raises(WeightsError, match="other.safetensors.*toolchain-restore/segmenter"):
        load_segmenter(tmp_path / "other.safetensors")
    with pytest.raises(WeightsError, match="no weights file"):
        load_segmenter(tmp_path / "missing.safetensors")


def test_segmentation_agreement_scores_the_segmenters_prediction(one_thread):
    net = SegmentationNet(3, width=4).eval()
    images = torch.rand(2, 3, 16, 24) * 2 - 1
    labels = torch.randint(0, 3, (2, 16, 24))
    with torch.no_grad():
        expected = segmentation_scores(net(images), labels, 3)
    scores = segmentation_agreement(net, images, labels, batch_size=1)
    assert scores["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"])
    assert scores["mean_iou"] == pytest.approx(expected["mean_iou"])
    assert scores["iou"] == pytest.approx(expected["iou"], nan_ok=True)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        segmentation_agreement(net, images * 255, labels)
    with pytest.raises(ValueError, match="N x H x W labels"):
        segmentation_agreement(net, images, labels[:1])
