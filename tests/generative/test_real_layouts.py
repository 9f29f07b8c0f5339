"""Cityscapes as downloaded and ADE20K SceneParsing, read on small trees in exactly their
layouts: pairing across city folders, the 35 -> 19 train-id mapping and its ignore label,
ADE20K's 150 classes and "other", resizing to a width and cropping to the size multiple,
and pix2pixHD training on them."""

import json
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from toolchain_restore.generative import (CITYSCAPES_TRAIN_CLASSES, CITYSCAPES_TRAIN_IDS, LayoutFolder,
                                          crop_to_multiple, detect_layout, resize_to_width)
from toolchain_restore.generative.datasets import folder_options, label_count_of, synthesis_set

pytestmark = pytest.mark.usefixtures("one_thread")

CITIES = {"train": ("aachen", "bremen"), "val": ("frankfurt", "lindau")}
HEIGHT, WIDTH = 24, 48
IDS = np.array([0, 7, 8, 11, 21, 23, 24, 26, 33, 4], np.uint8)
"""Label ids used by the fake maps: unlabeled, road, sidewalk, building, vegetation, sky,
person, car, bicycle, static."""


def fake_label_ids(seed):
    """Horizontal bands of label ids (nearest resizing keeps whole bands)."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(IDS, HEIGHT // 4)
    return np.repeat(rows, 4)[:, None].repeat(WIDTH, axis=1).astype(np.uint8)


def write_cityscapes(root, frames=2):
    """gtFine/{train,val}/<city>/*_gtFine_{labelIds,instanceIds,color}.png and polygons
    .json, leftImg8bit/{train,val}/<city>/*_leftImg8bit.png: two cities per split."""
    names = []
    for split, cities in CITIES.items():
        for c, city in enumerate(cities):
            for f in range(frames):
                stem = f"{city}_{c:06d}_{19 + f:06d}"
                gt, photos = root / "gtFine" / split / city, root / "leftImg8bit" / split / city
                gt.mkdir(parents=True, exist_ok=True)
                photos.mkdir(parents=True, exist_ok=True)
                ids = fake_label_ids(zlib.crc32(stem.encode()))
                instance = ids.astype(np.uint16)
                instance[ids == 26] = 26000 + f  # cars get instance ids label * 1000 + k
                Image.fromarray(ids).save(gt / f"{stem}_gtFine_labelIds.png")
                Image.fromarray(instance).save(gt / f"{stem}_gtFine_instanceIds.png")
                Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), np.uint8)).save(gt / f"{stem}_gtFine_color.png")
                (gt / f"{stem}_gtFine_polygons.json").write_text(json.dumps({"objects": []}))
                photo = np.random.default_rng(f).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
                Image.fromarray(photo).save(photos / f"{stem}_leftImg8bit.png")
                names.append((split, stem))
    return names


@pytest.fixture
def cityscapes(tmp_path):
    write_cityscapes(tmp_path)
    return tmp_path


def test_cityscapes_is_found_and_paired_across_its_city_folders(cityscapes):
    assert detect_layout(cityscapes) == "cityscapes"
    train = LayoutFolder(cityscapes, "train")
    assert train.layout == "cityscapes" and train.label_count == 35 and train.ignore_label is None
    assert train.names == ["aachen_000000_000019", "aachen_000000_000020", "bremen_000001_000019",
                           "bremen_000001_000020"]
    sample = train[2]
    stem = "bremen_000001_000019"
    expected = np.asarray(Image.open(cityscapes / f"gtFine/train/bremen/{stem}_gtFine_labelIds.png"))
    assert np.array_equal(sample.label, expected) and sample.image.shape == (HEIGHT, WIDTH, 3)
    assert set(np.unique(sample.instance[sample.label == 26])) <= {26000}
    # The test phase is Cityscapes' val split (its test split has no public labels).
    assert [n.split("_")[0] for n in LayoutFolder(cityscapes, "test").names] == ["frankfurt"] * 2 + ["lindau"] * 2


def test_cityscapes_train_ids_map_the_35_ids_to_19_classes_and_the_ignore_label(cityscapes):
    assert len(CITYSCAPES_TRAIN_CLASSES) == 19 and CITYSCAPES_TRAIN_IDS[26] == 13 and CITYSCAPES_TRAIN_IDS[0] == 255
    assert sorted(set(CITYSCAPES_TRAIN_IDS.tolist()) - {255}) == list(range(19))
    ids = LayoutFolder(cityscapes, "train")[0].label
    train = LayoutFolder(cityscapes, "train", cityscapes_labels="train_ids")
    label = train[0].label
    assert train.label_count == 20 and train.ignore_label == 19
    assert np.array_equal(label[ids == 7], np.zeros((ids == 7).sum())) and (label[ids == 0] == 19).all()
    assert (label[ids == 4] == 19).all() and (label[ids == 33] == 18).all()  # 'static' is ignored, bicycle is 18
    assert label_count_of(str(cityscapes), None, cityscapes_labels="train_ids") == 20
    assert label_count_of(str(cityscapes), None) == 35
    with pytest.raises(ValueError, match="cityscapes train ids make label_count 20, not 35"):
        LayoutFolder(cityscapes, "train", 35, cityscapes_labels="train_ids")


def test_cityscapes_without_its_photos_or_with_a_stray_city_file_says_what_is_missing(cityscapes):
    (cityscapes / "leftImg8bit/train/bremen/bremen_000001_000020_leftImg8bit.png").unlink()
    with pytest.raises(ValueError, match=r"bremen_000001_000020_gtFine_labelIds\.png"):
        LayoutFolder(cityscapes, "train")
    import shutil

    shutil.rmtree(cityscapes / "leftImg8bit" / "train")
    with pytest.raises(FileNotFoundError, match=r"leftImg8bit/train holds no <city>/\*_leftImg8bit\.png"):
        LayoutFolder(cityscapes, "train")
    assert LayoutFolder(cityscapes, "train", require_images=False)[0].image is None
    with pytest.raises(ValueError, match="Cityscapes has the phases train, test, val"):
        LayoutFolder(cityscapes, "extra")


def test_samples_are_resized_to_a_width_and_cropped_to_the_size_multiple(cityscapes):
    plain = LayoutFolder(cityscapes, "train")[1]
    fitted = LayoutFolder(cityscapes, "train", load_width=36, crop_to=8)[1]
    # 24 x 48 scaled to 18 x 36, then cropped to 16 x 32 around its centre.
    assert fitted.label.shape == fitted.instance.shape == (16, 32) and fitted.image.shape == (16, 32, 3)
    assert set(np.unique(fitted.label)) <= set(np.unique(plain.label))  # nearest: no new label values
    scaled = resize_to_width(plain.label, 36, integer=True)
    assert scaled.shape == (18, 36) and np.array_equal(fitted.label, scaled[1:17, 2:34])
    assert crop_to_multiple(np.zeros((20, 30)), 1).shape == (20, 30)
    with pytest.raises(ValueError, match="smaller than the size multiple 32"):
        crop_to_multiple(np.zeros((20, 40)), 32)


def write_ade20k(root, counts=(3, 2)):
    """ADEChallengeData2016: images/{training,validation}/ADE_*.jpg (one greyscale) and
    annotations/{training,validation}/ADE_*.png with values 0..150."""
    for split, count in zip(("training", "validation"), counts):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        prefix = "train" if split == "training" else "val"
        for i in range(count):
            stem = f"ADE_{prefix}_{i + 1:08d}"
            rng = np.random.default_rng(i)
            label = rng.integers(0, 151, (20, 30)).astype(np.uint8)
            label[0, 0], label[0, 1] = 0, 150
            Image.fromarray(label).save(root / "annotations" / split / f"{stem}.png")
            photo = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
            Image.fromarray(photo[..., 0] if i == 1 else photo).save(root / "images" / split / f"{stem}.jpg")


def test_ade20k_scene_parsing_has_150_classes_and_0_for_other(tmp_path):
    write_ade20k(tmp_path)
    assert detect_layout(tmp_path) == "ade20k"
    train = LayoutFolder(tmp_path, "train")
    assert train.layout == "ade20k" and train.label_count == 151 and train.ignore_label == 0
    assert train.names == ["ADE_train_00000001", "ADE_train_00000002", "ADE_train_00000003"]
    assert not train.has_instances and train[1].image.shape == (20, 30, 3)  # greyscale photo as RGB
    assert train[0].label.max() == 150 and len(LayoutFolder(tmp_path, "test")) == 2
    samples = synthesis_set(str(tmp_path), "train", label_count_of(str(tmp_path), None))
    assert np.array_equal(samples[0].instance, samples[0].label)  # no instance maps: a region per label
    bad = np.full((20, 30), 151, np.uint8)
    Image.fromarray(bad).save(tmp_path / "annotations/training/ADE_train_00000002.png")
    with pytest.raises(ValueError, match=r"ADE_train_00000002\.png: label values span 151\.\.151"):
        train[1]


def spoil_pixels(path):
    blob = bytearray(path.read_bytes())
    start = blob.index(b"IDAT") + 4
    blob[start : start + 40] = b"\x00" * 40
    path.write_bytes(bytes(blob))


def test_a_sample_that_fails_to_decode_later_is_skipped_by_name(cityscapes):
    spoil_pixels(cityscapes / "leftImg8bit/train/aachen/aachen_000000_000020_leftImg8bit.png")
    samples = synthesis_set(str(cityscapes), "train", 35)
    with pytest.warns(UserWarning, match=r"skipping sample 'aachen_000000_000020': .*aachen_000000_000020_leftImg8bit"):
        assert samples[1].name == "bremen_000001_000019"
    assert samples[1].name == "bremen_000001_000019" and samples[0].name == "aachen_000000_000019"


def test_pix2pixhd_trains_on_cityscapes_as_downloaded_without_resizing_it_first(cityscapes):
    from toolchain_restore.generative.pix2pixhd import Pix2PixHDTask, preset
    from toolchain_restore.generative.pix2pixhd.model import size_multiple

    settings = preset("cpu", data=str(cityscapes), num_d=1, load_width=88, cityscapes_labels="train_ids")
    assert folder_options(settings, 16)["crop_to"] == 16
    task = Pix2PixHDTask(settings)
    assert task.settings.label_count == 20 and size_multiple(task.settings) == 16
    batch = task.make_batch(0, 0, 1, 0)
    assert batch["label"].shape == (1, 32, 80)  # 24 x 48 -> 44 x 88 -> cropped to 32 x 80
    loss, _ = task.loss(task.model, batch, torch.device("cpu"))
    assert torch.isfinite(loss)
