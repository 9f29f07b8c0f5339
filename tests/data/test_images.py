"""Reading clean images, splitting folders into train/test, and sampling patches."""

import hashlib
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toolchain_restore.data.images import (
    EMBEDDED_SPLIT,
    ImageReadError,
    ImageSet,
    embedded_images,
    image_set,
    read_image,
)
from toolchain_restore.data.patches import SCALES, PatchSampler, rescale
from toolchain_restore.degrade import degrade


def gradient_rgb(height=24, width=32, seed=0):
    """A smooth RGB test image with distinct channels."""
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // max(1, width - 1)).astype(np.uint8)
    g = (y * 255 // max(1, height - 1)).astype(np.uint8)
    b = ((x + y + seed * 7) % 256).astype(np.uint8)
    return np.stack([r, g, b], axis=2)


def write_rgb(path, height=24, width=32, seed=0):
    Image.fromarray(gradient_rgb(height, width, seed), mode="RGB").save(path)
    return path


def assert_rgb_uint8(array, shape):
    assert isinstance(array, np.ndarray)
    assert array.dtype == np.uint8
    assert array.shape == (*shape, 3)
    assert array.flags["C_CONTIGUOUS"]


# ---------------------------------------------------------------- read_image formats


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".tiff"])
def test_lossless_rgb_files_roundtrip(tmp_path, suffix):
    expected = gradient_rgb()
    path = tmp_path / f"image{suffix}"
    Image.fromarray(expected, mode="RGB").save(path)
    out = read_image(path)
    assert_rgb_uint8(out, expected.shape[:2])
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg"])
def test_jpeg_files_read_close_to_the_original(tmp_path, suffix):
    expected = gradient_rgb(40, 48)
    path = tmp_path / f"image{suffix}"
    Image.fromarray(expected, mode="RGB").save(path, quality=95)
    out = read_image(str(path))  # a str path works too
    assert_rgb_uint8(out, (40, 48))
    assert np.abs(out.astype(int) - expected.astype(int)).mean() < 6


def test_grayscale_is_repeated_over_the_channels(tmp_path):
    grey = gradient_rgb()[:, :, 0]
    path = tmp_path / "grey.png"
    Image.fromarray(grey, mode="L").save(path)
    out = read_image(path)
    assert_rgb_uint8(out, grey.shape)
    for c in range(3):
        assert np.array_equal(out[:, :, c], grey)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[0, 0, 3] = 0  # fully transparent -> white
    rgba[0, 1, 3] = 255  # opaque -> its own colour
    rgba[0, 2, 3] = 128  # half transparent -> half way to white
    rgba[1:, :, 3] = 255
    rgba[0, 3, 3] = 255
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    out = read_image(path)
    assert_rgb_uint8(out, (4, 4))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [10, 20, 30]
    half = out[0, 2].astype(int)
    expected_half = np.array([10, 20, 30]) * 128 / 255 + 255 * (127 / 255)
    assert np.all(np.abs(half - expected_half) <= 1.5)
    assert np.all(out[1:] == [10, 20, 30])


def test_grey_with_alpha_is_composited_on_white(tmp_path):
    la = np.zeros((2, 2, 2), dtype=np.uint8)
    la[..., 0] = 50
    la[..., 1] = 255
    la[1, 1, 1] = 0
    path = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(path)
    out = read_image(path)
    assert_rgb_uint8(out, (2, 2))
    assert out[1, 1].tolist() == [255, 255, 255]
    assert out[0, 0].tolist() == [50, 50, 50]


def test_16_bit_grayscale_is_scaled_to_8_bits(tmp_path):
    values = np.array([[65535, 32768, 0], [257, 65535, 1000]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    path = tmp_path / "deep.png"
    image.save(path)
    out = read_image(path)
    assert_rgb_uint8(out, (2, 3))
    assert out[0, 0, 0] == 255
    assert abs(int(out[0, 1, 0]) - 128) <= 1
    assert out[0, 2, 0] == 0
    assert out[1, 0, 0] == 1  # 257 / 65535 * 255 = 1
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])


def test_palette_image_is_expanded(tmp_path):
    palette_image = Image.new("P", (5, 3))
    palette = [0] * 768
    palette[0:3] = (200, 10, 10)
    palette[3:6] = (5, 150, 250)
    palette_image.putpalette(palette)
    indices = np.zeros((3, 5), dtype=np.uint8)
    indices[1, :] = 1
    palette_image.putdata(indices.ravel().tolist())
    path = tmp_path / "palette.png"
    palette_image.save(path)
    out = read_image(path)
    assert_rgb_uint8(out, (3, 5))
    assert np.all(out[0] == [200, 10, 10])
    assert np.all(out[1] == [5, 150, 250])


def test_palette_images_in_bmp_and_tif(tmp_path):
    # Palette images in other containers still come back as RGB.
    rgb = gradient_rgb(16, 16)
    quantised = Image.fromarray(rgb).quantize(colors=16)
    for suffix in (".bmp", ".tif"):
        path = tmp_path / f"palette{suffix}"
        quantised.save(path)
        assert_rgb_uint8(read_image(path), (16, 16))


# ---------------------------------------------------------------- read_image errors


def test_truncated_png_raises_image_read_error_naming_the_file(tmp_path):
    good = write_rgb(tmp_path / "good.png", 64, 64)
    data = good.read_bytes()
    bad = tmp_path / "truncated_one.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated_one.png"):
        read_image(bad)


@pytest.mark.parametrize("content", [b"this is not an image at all" * 4, b""], ids=["garbage", "empty"])
def test_garbage_png_raises_image_read_error_naming_the_file(tmp_path, content):
    bad = tmp_path / "garbage_file.png"
    bad.write_bytes(content)
    with pytest.raises(ImageReadError, match="garbage_file.png"):
        read_image(bad)


def test_image_read_error_is_a_value_error():
    assert issubclass(ImageReadError, ValueError)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(tmp_path / "nope.png")


def test_a_folder_is_not_an_image(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path)


# ---------------------------------------------------------------- image_set on folders


def make_flat_folder(root, count):
    root.mkdir(parents=True, exist_ok=True)
    return [write_rgb(root / f"img_{i:03d}.png", 20, 20, seed=i) for i in range(count)]


@pytest.mark.parametrize("count", [2, 3, 12, 40])
def test_flat_folder_split_is_a_partition(tmp_path, count):
    files = make_flat_folder(tmp_path / "flat", count)
    train = image_set(tmp_path / "flat", "train")
    test = image_set(tmp_path / "flat", "test")
    assert isinstance(train, ImageSet) and isinstance(test, ImageSet)
    assert not set(train.paths) & set(test.paths)
    assert set(train.paths) | set(test.paths) == set(files)
    assert len(train) >= 1 and len(test) >= 1
    if count >= 12:
        assert len(train) > len(test)


def test_flat_folder_split_is_stable(tmp_path):
    make_flat_folder(tmp_path / "flat", 15)
    first = image_set(tmp_path / "flat", "test").paths
    second = image_set(str(tmp_path / "flat"), "test").paths
    assert first == second


def test_flat_folder_finds_nested_images_and_ignores_other_files(tmp_path):
    root = tmp_path / "flat"
    files = make_flat_folder(root, 5)
    (root / "nested").mkdir()
    files.append(write_rgb(root / "nested" / "deep.PNG"))
    (root / "notes.txt").write_text("not an image")
    train = image_set(root, "train")
    test = image_set(root, "test")
    assert set(train.paths) | set(test.paths) == set(files)


def split_holding(root, name):
    for split in ("train", "test"):
        images = image_set(root, split)
        names = [p.name for p in images.paths]
        if name in names:
            return images, names.index(name)
    raise AssertionError(f"{name} is in no split")


def test_a_bad_file_is_named_once_when_the_folder_is_opened_and_left_out(tmp_path):
    root = tmp_path / "flat"
    make_flat_folder(root, 30)
    (root / "broken_image.png").write_bytes(b"\x89PNG broken")
    with pytest.warns(UserWarning, match="skipping .*broken_image.png") as caught:
        sets = [image_set(root, split) for split in ("train", "test")]
    assert sum("broken_image.png" in str(w.message) for w in caught) == 1
    assert all("broken_image.png" not in [p.name for p in s.paths] for s in sets)
    assert [p.name for s in sets for p in s.rejected] == ["broken_image.png"]
    with warnings.catch_warnings():  # the rest decode without a word
        warnings.simplefilter("error")
        for s in sets:
            for i in range(len(s)):
                assert_rgb_uint8(s.get(i), (20, 20))


def corrupt_pixel_data(path):
    """Spoil the compressed pixels of a PNG while keeping its chunk structure (header
    checks pass, decoding fails)."""
    blob = bytearray(path.read_bytes())
    start = blob.index(b"IDAT") + 4
    blob[start : start + 40] = b"\x00" * 40
    path.write_bytes(bytes(blob))
    return path


def test_a_file_that_passes_the_check_but_fails_to_decode_is_skipped_by_name(tmp_path):
    paths = [write_rgb(tmp_path / f"{i}.png", 20, 20, seed=i) for i in range(3)]
    corrupt_pixel_data(paths[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images = ImageSet(paths, "lazy")
    assert len(images) == 3
    with pytest.warns(UserWarning, match=r"lazy: skipping unreadable image .*1\.png"):
        assert images.get(1) is None
    with warnings.catch_warnings():  # from then on it is skipped silently
        warnings.simplefilter("error")
        assert images.get(1) is None
        assert_rgb_uint8(images.get(2), (20, 20))


def test_image_set_of_only_unreadable_files_is_one_user_error(tmp_path):
    paths = []
    for i in range(2):
        path = tmp_path / f"bad{i}.png"
        path.write_bytes(b"junk")
        paths.append(path)
    with pytest.warns(UserWarning) as caught, pytest.raises(ImageReadError) as err:
        ImageSet(paths, "junk")
    assert [w for w in caught if "bad0.png" in str(w.message)] and [w for w in caught if "bad1.png" in str(w.message)]
    message = str(err.value)
    assert "\n" not in message and "junk: none of its 2 image files is usable" in message


def test_image_set_whose_files_all_fail_to_decode_later_is_one_user_error(tmp_path):
    paths = [corrupt_pixel_data(write_rgb(tmp_path / f"{i}.png", 20, 20, seed=i)) for i in range(2)]
    images = ImageSet(paths, "spoilt")
    with pytest.warns(UserWarning, match="0.png"):
        assert images.get(0) is None
    with pytest.raises(ImageReadError, match="spoilt: none of its 2 images is readable"):
        images.get(1)


def test_image_set_cache_is_bounded(tmp_path):
    paths = [write_rgb(tmp_path / f"{i}.png", 30, 30, seed=i) for i in range(10)]
    one = 30 * 30 * 3
    images = ImageSet(paths, "bounded", cache_bytes=3 * one)
    for i in list(range(10)) * 2:
        assert_rgb_uint8(images.get(i), (30, 30))
        assert images._cache.nbytes <= 3 * one
        assert images._cache.nbytes == sum(a.nbytes for a in images._cache._items.values())


def test_empty_folder_raises_value_error(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(ValueError, match="no images found"):
        image_set(root, "train")


def test_folder_without_images_raises_value_error(tmp_path):
    root = tmp_path / "texts"
    root.mkdir()
    (root / "readme.txt").write_text("hello")
    with pytest.raises(ValueError, match="no images found"):
        image_set(root, "test")


def test_empty_image_list_raises_value_error():
    with pytest.raises(ValueError, match="no images found"):
        ImageSet([], "nothing")


def test_missing_folder_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        image_set(tmp_path / "does_not_exist", "train")


def test_a_file_is_not_a_data_folder(tmp_path):
    path = write_rgb(tmp_path / "single.png")
    with pytest.raises(NotADirectoryError):
        image_set(path, "train")


@pytest.mark.parametrize("split", ["valid", "", None])
def test_bad_split_raises(tmp_path, split):
    make_flat_folder(tmp_path / "flat", 3)
    with pytest.raises(ValueError, match="split"):
        image_set(tmp_path / "flat", split)


@pytest.mark.parametrize(
    "train_dir, test_dir", [("DIV2K_train_HR", "DIV2K_valid_HR"), ("train", "test")]
)
def test_layout_with_split_folders(tmp_path, train_dir, test_dir):
    train_files = make_flat_folder(tmp_path / train_dir, 4)
    (tmp_path / test_dir).mkdir()
    test_files = [write_rgb(tmp_path / test_dir / f"val_{i}.png", 20, 20, seed=50 + i) for i in range(2)]
    write_rgb(tmp_path / "stray.png")  # a file at the top is not part of either split
    train = image_set(tmp_path, "train")
    test = image_set(tmp_path, "test")
    assert sorted(train.paths) == sorted(train_files)
    assert sorted(test.paths) == sorted(test_files)


def test_image_set_passes_an_image_set_through(tmp_path):
    images = ImageSet(make_flat_folder(tmp_path / "flat", 2), "given")
    assert image_set(images, "train") is images


@pytest.mark.parametrize("train_dir", ["DIV2K_train_HR", "train"])
def test_train_folder_alone_does_not_leak_into_test(tmp_path, train_dir):
    make_flat_folder(tmp_path / train_dir, 20)
    for split in ("train", "test"):
        with pytest.raises(ValueError, match="but not"):
            image_set(tmp_path, split)


# ---------------------------------------------------------------- embedded images


def test_embedded_split_is_disjoint_and_present():
    train, test = EMBEDDED_SPLIT["train"], EMBEDDED_SPLIT["test"]
    assert len(test) > 0 and len(train) > 0
    assert not set(train) & set(test)
    train_set, test_set = embedded_images("train"), embedded_images("test")
    assert len(train_set) == len(train) and len(test_set) == len(test)
    digests = {}
    for split, images in (("train", train_set), ("test", test_set)):
        for path in images.paths:
            assert Path(path).is_file(), path
            digests.setdefault(hashlib.sha1(Path(path).read_bytes()).hexdigest(), set()).add(split)
    # No file content appears in both splits (nor twice within one).
    assert all(len(s) == 1 for s in digests.values())
    assert len(digests) == len(train) + len(test)


def test_embedded_is_the_default_data():
    assert image_set(None, "test").paths == embedded_images("test").paths
    with pytest.raises(ValueError):
        embedded_images("validation")


def test_embedded_test_images_read_as_rgb():
    images = embedded_images("test")
    for i in range(len(images)):
        image = images.get(i)
        assert image is not None and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


# ---------------------------------------------------------------- PatchSampler


SOURCE = re.compile(r"^(?P<name>.+)@(?P<scale>[0-9.]+)\+(?P<top>\d+),(?P<left>\d+)$")


def no_noise_degrade(image, rng, crop):
    return degrade(image, rng=rng, blur_std=1.5, noise_std=0, jpeg_quality=40, crop=crop)


def moderate_degrade(image, rng, crop):
    return degrade(image, "moderate", rng, crop=crop)


@pytest.fixture
def patch_folder(tmp_path):
    root = tmp_path / "patches"
    root.mkdir()
    sizes = [(100, 130), (200, 150), (70, 90), (64, 300)]
    paths = [write_rgb(root / f"src_{i}.png", h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    return paths


def test_patches_are_exact_crops_of_the_rescaled_source(patch_folder):
    images = ImageSet(patch_folder, "patches")
    sampler = PatchSampler(images, patch_size=63)
    rng = np.random.default_rng(0)
    by_name = {p.name: p for p in patch_folder}
    seen_scales = set()
    for _ in range(25):
        patch = sampler.sample(rng, no_noise_degrade)
        assert patch.L.shape == patch.H.shape == (63, 63, 3)
        assert patch.L.dtype == patch.H.dtype == np.uint8
        match = SOURCE.match(patch.source)
        assert match, patch.source
        scale = min(SCALES, key=lambda s: abs(s - float(match["scale"])))
        assert abs(scale - float(match["scale"])) < 1e-3
        seen_scales.add(scale)
        top, left = int(match["top"]), int(match["left"])
        scaled = rescale(read_image(by_name[match["name"]]), scale)
        assert np.array_equal(patch.H, scaled[top : top + 63, left : left + 63])
        # Without noise, L is the same region of the degraded rescaled image.
        whole, _ = degrade(scaled, rng=0, blur_std=1.5, noise_std=0, jpeg_quality=40)
        assert np.array_equal(patch.L, whole[top : top + 63, left : left + 63])
    assert 1.0 in seen_scales


def test_patches_with_drawn_severity(patch_folder):
    sampler = PatchSampler(ImageSet(patch_folder, "patches"), patch_size=32)
    rng = np.random.default_rng(3)
    for _ in range(10):
        patch = sampler.sample(rng, moderate_degrade)
        assert patch.L.shape == patch.H.shape == (32, 32, 3)
        assert patch.params.levels is not None
        k, m, n = patch.params.levels
        assert 12 <= k + m + n - 2 <= 17


def test_rescale_sizes():
    image = gradient_rgb(90, 120)
    assert rescale(image, 1.0) is image
    assert rescale(image, 2.0 / 3.0).shape == (60, 80, 3)
    assert rescale(image, 1.0 / 3.0).shape == (30, 40, 3)


def test_image_too_small_at_every_scale_raises(tmp_path):
    path = write_rgb(tmp_path / "tiny.png", 40, 50)
    sampler = PatchSampler(ImageSet([path], "tiny"), patch_size=63)
    with pytest.raises(ValueError, match="63x63"):
        sampler.sample(np.random.default_rng(0), no_noise_degrade, max_tries=200)


def test_small_images_are_skipped_when_others_fit(tmp_path):
    small = write_rgb(tmp_path / "small.png", 30, 30)
    big = write_rgb(tmp_path / "big.png", 80, 80)
    sampler = PatchSampler(ImageSet([small, big], "mixed"), patch_size=63)
    rng = np.random.default_rng(1)
    for _ in range(10):
        patch = sampler.sample(rng, no_noise_degrade)
        assert patch.source.startswith("big.png@1.000+")


def test_unreadable_images_are_skipped_by_the_sampler(tmp_path):
    bad = corrupt_pixel_data(write_rgb(tmp_path / "bad.png", 70, 70))  # found only when decoded
    good = write_rgb(tmp_path / "good.png", 70, 70)
    sampler = PatchSampler(ImageSet([bad, good], "with-bad"), patch_size=63)
    rng = np.random.default_rng(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(5):
            assert sampler.sample(rng, no_noise_degrade).source.startswith("good.png@")


def test_bad_patch_size_raises(patch_folder):
    with pytest.raises(ValueError):
        PatchSampler(ImageSet(patch_folder, "p"), patch_size=0)


def test_sampler_memory_stays_bounded(tmp_path):
    rng = np.random.default_rng(5)
    paths = []
    for i in range(20):
        h, w = (int(v) for v in rng.integers(70, 160, size=2))
        paths.append(write_rgb(tmp_path / f"m{i:02d}.png", h, w, seed=i))
    biggest = 160 * 160 * 3
    cache_bytes = 100_000
    images = ImageSet(paths, "memory", cache_bytes=cache_bytes)
    sampler = PatchSampler(images, patch_size=32, cache_bytes=cache_bytes)
    names = set()
    for _ in range(120):
        names.add(sampler.sample(rng, no_noise_degrade).source.split("@")[0])
        held = sum(a.nbytes for a in sampler._scaled._items.values())
        assert held == sampler._scaled.nbytes
        assert held <= cache_bytes + biggest
        held_images = sum(a.nbytes for a in images._cache._items.values())
        assert held_images == images._cache.nbytes
        assert held_images <= cache_bytes + biggest
    # It did cycle through many images, so the bound was actually exercised.
    assert len(names) > 10
    assert len(sampler._scaled) < len(names)
