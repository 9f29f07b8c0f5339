"""The check of every image file's header and size when a folder is opened: good files of
every format pass, each way a file is commonly damaged is named, and nothing is decoded."""

import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from toolchain_restore.data import ImageReadError
from toolchain_restore.data.screening import image_file_problem, usable_images


def picture(height=40, width=56):
    """Noise: it compresses badly, so every file is a few kilobytes."""
    return np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)


def save(path, array=None, **options):
    Image.fromarray(picture() if array is None else array).save(path, **options)
    return path


@pytest.mark.parametrize("name, array, options", [
    ("rgb.png", None, {}),
    ("grey16.png", np.arange(40 * 56, dtype=np.uint16).reshape(40, 56) * 20, {}),
    ("palette.png", None, {"_palette": True}),
    ("photo.jpg", None, {"quality": 90}),
    ("progressive.jpeg", None, {"progressive": True}),
    ("rgb.bmp", None, {}),
    ("rgb.tif", None, {}),
], ids=lambda v: v if isinstance(v, str) else "")
def test_good_files_of_every_format_pass(tmp_path, name, array, options):
    if options.pop("_palette", False):
        Image.fromarray(picture()).convert("P").save(tmp_path / name)
    else:
        save(tmp_path / name, array, **options)
    assert image_file_problem(tmp_path / name) is None


def test_a_jpeg_with_a_few_bytes_after_its_end_marker_passes(tmp_path):
    path = save(tmp_path / "padded.jpg")
    path.write_bytes(path.read_bytes() + b"\x00" * 100)
    assert image_file_problem(path) is None


def cut(path, keep):
    """Keep the first ``keep`` bytes of the file (all but the last -keep when negative)."""
    path.write_bytes(path.read_bytes()[:keep])
    return path


def png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@pytest.mark.parametrize("damage, expected", [
    (lambda p: cut(save(p), -12), r"truncated: the file ends at byte \d+ before its IEND"),  # IEND lost
    (lambda p: cut(save(p), 200), r"truncated: chunk IDAT at byte \d+ needs the file to be \d+ bytes long"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0))
                             + png_chunk(b"IEND", b"")), "no pixels|Pillow recognises"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(b"\x89PNG but nothing else"), "not an image file Pillow recognises"),
    (lambda p: p.write_bytes(b"plain text, not an image"), "not an image file Pillow recognises"),
], ids=["no-iend", "cut-in-idat", "zero-width", "empty", "bad-signature", "text"])
def test_damaged_pngs_are_named_with_what_is_wrong(tmp_path, damage, expected):
    path = tmp_path / "damaged.png"
    damage(path)
    problem = image_file_problem(path)
    assert problem is not None and re.search(expected, problem), problem


def test_a_cut_off_jpeg_has_no_end_marker(tmp_path):
    path = cut(save(tmp_path / "cut.jpg", picture(200, 200)), -300)
    assert "no end-of-image marker" in image_file_problem(path)


def test_a_jpeg_cut_inside_its_headers_is_named(tmp_path):
    path = cut(save(tmp_path / "headers.jpg"), 30)
    assert image_file_problem(path) is not None


def test_a_cut_off_bmp_is_shorter_than_its_rows(tmp_path):
    path = cut(save(tmp_path / "cut.bmp"), -100)
    assert "truncated: its 56 x 40 pixels need" in image_file_problem(path)


def test_the_format_is_read_from_the_file_not_its_name(tmp_path):
    path = save(tmp_path / "really_a_jpeg.png", picture(200, 200), format="JPEG")
    assert image_file_problem(path) is None
    cut(path, -300)
    assert "end-of-image" in image_file_problem(path)


def test_usable_images_warns_once_per_bad_file_and_keeps_the_order(tmp_path):
    paths = [save(tmp_path / f"{i}.png") for i in range(4)]
    cut(paths[1], 100)
    paths[3].write_bytes(b"")
    with pytest.warns(UserWarning) as caught:
        kept = usable_images(paths, "folder")
    assert kept == [paths[0], paths[2]]
    assert [str(w.message).split(":")[0] for w in caught] == [f"skipping {paths[1]}", f"skipping {paths[3]}"]


def test_usable_images_of_only_bad_files_is_one_line_error(tmp_path):
    paths = [tmp_path / "a.png", tmp_path / "b.jpg"]
    for path in paths:
        path.write_bytes(b"junk")
    with pytest.warns(UserWarning), pytest.raises(ImageReadError) as err:
        usable_images(paths, "data/x")
    assert str(err.value).startswith("data/x: none of its 2 image files is usable") and "\n" not in str(err.value)
    assert usable_images([], "empty") == []
