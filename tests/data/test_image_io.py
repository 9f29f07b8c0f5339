"""Reading and writing images in their own pixel format (toolchain_restore.data.image_io)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from toolchain_restore.data.image_io import _encode_png16, check_writable, read_native, write_native
from toolchain_restore.data.images import ImageReadError

rng = np.random.default_rng(0)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("filter_type", [0, 1, 2, 3, 4])
def test_16_bit_png_decodes_every_row_filter(tmp_path, channels, filter_type):
    shape = (7, 9) if channels == 1 else (7, 9, channels)
    image = rng.integers(0, 65536, shape, dtype=np.uint16)
    path = tmp_path / "a.png"
    path.write_bytes(_encode_png16(image, filter_type))
    decoded = read_native(path)
    assert decoded.dtype == np.uint16 and np.array_equal(decoded, image)


@pytest.mark.parametrize(
    "image",
    [
        rng.integers(0, 256, (6, 5), dtype=np.uint8),
        rng.integers(0, 256, (6, 5, 2), dtype=np.uint8),
        rng.integers(0, 256, (6, 5, 3), dtype=np.uint8),
        rng.integers(0, 256, (6, 5, 4), dtype=np.uint8),
        rng.integers(0, 65536, (6, 5), dtype=np.uint16),
        rng.integers(0, 65536, (6, 5, 3), dtype=np.uint16),
        rng.integers(0, 65536, (6, 5, 4), dtype=np.uint16),
    ],
    ids=["L", "LA", "RGB", "RGBA", "gray16", "rgb16", "rgba16"],
)
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_lossless_formats_round_trip_exactly(tmp_path, image, suffix):
    path = tmp_path / f"x{suffix}"
    write_native(path, image)
    back = read_native(path)
    assert back.dtype == image.dtype and np.array_equal(back, image)


def test_float_tiff_round_trips_and_pillow_modes_are_kept(tmp_path):
    image = rng.random((4, 6, 3)).astype(np.float32)
    write_native(tmp_path / "f.tif", image)
    assert np.array_equal(read_native(tmp_path / "f.tif"), image)
    palette = Image.fromarray(rng.integers(0, 256, (4, 6), dtype=np.uint8)).convert("P")
    palette.save(tmp_path / "p.png")
    assert read_native(tmp_path / "p.png").shape == (4, 6, 3)
    Image.fromarray(np.ones((4, 6), np.uint16) * 40000).save(tmp_path / "g.png")  # Pillow's I;16
    assert read_native(tmp_path / "g.png").dtype == np.uint16


def test_unreadable_and_unwritable_are_reported(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(ImageReadError, match="bad.png"):
        read_native(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError):
        read_native(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="unknown image format"):
        check_writable(tmp_path / "x.gifx")
    with pytest.raises(ValueError, match="alpha"):
        write_native(tmp_path / "x.jpg", np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="uint16"):
        write_native(tmp_path / "x.jpg", np.zeros((4, 4, 3), np.uint16))
    assert not list(tmp_path.glob("x*"))
