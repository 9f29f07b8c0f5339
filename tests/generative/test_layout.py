"""The reader of pix2pixHD's folder layout: the round trip from procedural scenes, pairing by
(Cityscapes) name, and an error naming the file for each way a folder can be wrong."""

import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from toolchain_restore.generative import (SCENE_CLASSES, LayoutFolder, check_divisible, make_scenes,
                                          pad_to_multiple, sample_key, write_layout)

CLASSES = len(SCENE_CLASSES)


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(3, seed=5, height=48, width=80)


@pytest.fixture
def folder(tmp_path, scenes):
    write_layout(tmp_path, "train", scenes)
    return tmp_path


def test_round_trip_gives_back_the_same_arrays(folder, scenes):
    data = LayoutFolder(folder, "train", CLASSES)
    assert len(data) == 3 and data.names == ["scene_00000", "scene_00001", "scene_00002"]
    assert data.has_instances and data.has_images
    for sample, scene in zip((data[i] for i in range(len(data))), scenes):
        assert sample.label.dtype == np.int64 and np.array_equal(sample.label, scene.label)
        assert sample.instance.dtype == np.int64 and np.array_equal(sample.instance, scene.instance)
        assert sample.image.dtype == np.uint8 and np.array_equal(sample.image, scene.image)
        assert sample.original_size is None


def test_instances_and_test_images_are_optional(folder):
    shutil.rmtree(folder / "train_inst")
    sample = LayoutFolder(folder, "train", CLASSES)[0]
    assert sample.instance is None and sample.image is not None
    shutil.rmtree(folder / "train_img")
    with pytest.raises(FileNotFoundError, match="train_img"):
        LayoutFolder(folder, "train", CLASSES)
    sample = LayoutFolder(folder, "train", CLASSES, require_images=False)[1]
    assert sample.image is None and sample.label.shape == (48, 80)


def test_cityscapes_names_are_paired_by_their_common_stem(tmp_path):
    assert sample_key("aachen_000000_000019_gtFine_labelIds.png") == "aachen_000000_000019"
    assert sample_key("x/aachen_000000_000019_leftImg8bit.png") == "aachen_000000_000019"
    assert sample_key("plain_name.png") == "plain_name"
    for sub in ("train_label", "train_inst", "train_img"):
        (tmp_path / sub).mkdir()
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(
        tmp_path / "train_label/aachen_000000_000019_gtFine_labelIds.png")
    Image.fromarray(np.full((8, 8), 26001, np.uint16)).save(
        tmp_path / "train_inst/aachen_000000_000019_gtFine_instanceIds.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "train_img/aachen_000000_000019_leftImg8bit.jpg")
    data = LayoutFolder(tmp_path, "train", 35)
    sample = data[0]
    assert data.names == ["aachen_000000_000019"] and sample.label[0, 0] == 7 and sample.instance[0, 0] == 26001


def test_a_label_beyond_the_label_count_names_the_file_and_the_values(folder):
    label = np.zeros((48, 80), np.uint8)
    label[3, 4] = 40
    Image.fromarray(label).save(folder / "train_label/scene_00001.png")
    data = LayoutFolder(folder, "train", CLASSES)
    data[0]  # a good file reads fine; the bad one fails when it is used
    with pytest.raises(ValueError, match=r"scene_00001\.png: label values span 0..40 \(max 40\).*label_count is 7"
                                         r".*CUDA index error"):
        data[1]


@pytest.mark.parametrize("where", ["train_img", "train_inst"])
def test_unpaired_files_are_listed(folder, where):
    (folder / where / "scene_00002.png").rename(folder / where / "other.png")
    with pytest.raises(ValueError) as err:
        LayoutFolder(folder, "train", CLASSES)
    message = str(err.value)
    assert "scene_00002.png" in message and "other.png" in message and where in message


def test_many_unpaired_files_are_counted_not_all_listed(tmp_path):
    (tmp_path / "train_label").mkdir()
    (tmp_path / "train_img").mkdir()
    for i in range(8):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / f"train_label/l{i}.png")
    with pytest.raises(ValueError, match=r"8 label files .*l0\.png.*and 3 more"):
        LayoutFolder(tmp_path, "train", CLASSES)


def test_sizes_that_differ_name_the_files(folder):
    Image.fromarray(np.zeros((40, 80, 3), np.uint8)).save(folder / "train_img/scene_00000.png")
    with pytest.raises(ValueError, match=r"scene_00000.*differ in size.*48 x 80.*40 x 80"):
        LayoutFolder(folder, "train", CLASSES)[0]


@pytest.mark.parametrize("where", ["train_label", "train_inst", "train_img"])
def test_an_unreadable_file_is_named_when_the_folder_is_opened_and_its_sample_left_out(folder, where):
    (folder / where / "scene_00002.png").write_bytes(b"\x89PNG garbage, not an image")
    with pytest.warns(UserWarning, match=rf"skipping .*{where}/scene_00002\.png: not an image file"):
        data = LayoutFolder(folder, "train", CLASSES)
    assert data.names == ["scene_00000", "scene_00001"]


def test_a_folder_whose_every_sample_has_a_bad_file_is_one_user_error(folder):
    from toolchain_restore.data import ImageReadError

    for name in ("scene_00000", "scene_00001", "scene_00002"):
        path = folder / "train_img" / f"{name}.png"
        path.write_bytes(path.read_bytes()[:-12])  # IEND cut off
    with pytest.warns(UserWarning, match="truncated"), pytest.raises(ImageReadError) as err:
        LayoutFolder(folder, "train", CLASSES)
    assert "no sample has all its files usable" in str(err.value) and "\n" not in str(err.value)


def test_a_colour_label_map_is_refused(folder):
    Image.fromarray(np.zeros((48, 80, 3), np.uint8)).save(folder / "train_label/scene_00000.png")
    with pytest.raises(ValueError, match=r"scene_00000\.png.*single-channel"):
        LayoutFolder(folder, "train", CLASSES)[0]


def test_missing_folders_and_empty_folders(tmp_path, folder):
    with pytest.raises(FileNotFoundError, match="test_label"):
        LayoutFolder(folder, "test", CLASSES)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LayoutFolder(tmp_path / "nowhere", "train", CLASSES)
    empty = tmp_path / "empty"
    (empty / "train_label").mkdir(parents=True)
    with pytest.raises(ValueError, match="no label files"):
        LayoutFolder(empty, "train", CLASSES)
    with pytest.raises(ValueError, match="label_count"):
        LayoutFolder(folder, "train")


def test_padding_warns_once_and_reaches_the_multiple(folder, scenes):
    data = LayoutFolder(folder, "train", CLASSES, pad_to=32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = data[0], data[1]
    assert len(caught) == 1 and "48 x 80 to 64 x 96" in str(caught[0].message)
    for sample, scene in ((first, scenes[0]), (second, scenes[1])):
        assert sample.label.shape == sample.instance.shape == (64, 96) and sample.image.shape == (64, 96, 3)
        assert sample.original_size == (48, 80)
        assert np.array_equal(sample.label[:48, :80], scene.label)
        assert np.array_equal(sample.image[:48, :80], scene.image)
        assert np.array_equal(sample.label[48:, :80], np.repeat(scene.label[-1:], 16, axis=0))  # edge-replicated
        assert np.array_equal(sample.image[48:50, :80], scene.image[[46, 45]])  # reflected


def test_pad_to_multiple_and_check_divisible():
    padded, pads = pad_to_multiple(np.ones((5, 7), np.int64), 4)
    assert padded.shape == (8, 8) and pads == (3, 1) and (padded == 1).all()
    same, pads = pad_to_multiple(np.zeros((8, 8, 3)), 4)
    assert same.shape == (8, 8, 3) and pads == (0, 0)
    check_divisible(64, 128, 16, "ok")
    with pytest.raises(ValueError, match=r"data/x\.png: size 100 x 128 is not divisible by 16 \(= 2\*\*4.*pad_to=16"):
        check_divisible(100, 128, 16, "data/x.png")


def test_palette_and_16_bit_label_maps_read_as_their_integer_values(tmp_path):
    from toolchain_restore.generative import read_integer_map

    values = np.array([[0, 3], [33, 1]], np.uint8)
    palette_image = Image.fromarray(values).convert("P")  # indices equal the values
    palette_image.save(tmp_path / "p.png")
    Image.fromarray(np.array([[0, 26001]], np.uint16)).save(tmp_path / "i.png")
    assert np.array_equal(read_integer_map(tmp_path / "p.png"), values)
    assert read_integer_map(tmp_path / "i.png").tolist() == [[0, 26001]]
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        read_integer_map(tmp_path / "nothing.png")
