"""Reading clean images: one file, a folder (flat or DIV2K layout), the embedded default.

Every image comes out as an H x W x 3 uint8 RGB array: grayscale is repeated over the
channels, an alpha channel is composited onto white, 16-bit and float images are scaled
to 8 bits. A file that cannot be decoded is reported by name and skipped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InvalidInput, MissingInput, NotAFolder
from .cache import ImageCache

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "read_image",
    "ImageSet",
    "embedded_images",
    "EMBEDDED_SPLIT",
    "image_set",
    "split_by_name",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
Split = Literal["train", "test"]


class ImageReadError(InvalidInput):
    """An image file exists but cannot be decoded as an image."""


def _scale_to_uint8(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if array.dtype in (np.uint16, np.int32, np.int64, np.uint32) or np.issubdtype(array.dtype, np.integer):
        # 16-bit images (and Pillow's 32-bit "I" mode holding 16-bit data) span 0..65535.
        peak = 65535.0 if array.max(initial=0) > 255 or array.dtype == np.uint16 else 255.0
        return np.clip(np.round(array.astype(np.float64) * (255.0 / peak)), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageReadError(f"{path}: image holds NaN or infinite values")
        peak = 1.0 if array.max(initial=0) <= 1.0 else 255.0
        return np.clip(np.round(array * (255.0 / peak)), 0, 255).astype(np.uint8)
    raise ImageReadError(f"{path}: unsupported pixel type {array.dtype}")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as H x W x 3 uint8 RGB.

    Raises:
        MissingInput (a FileNotFoundError): no such file.
        ImageReadError: the file is not a readable image (truncated, corrupt, empty).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"no image file at {path}")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(white, rgba).convert("RGB")
            elif im.mode in ("P", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                im = im.convert("RGB")
            array = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{path}: not a readable image ({err})") from err
    array = _scale_to_uint8(array, path)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.ndim == 3 and array.shape[2] >= 3:
        array = array[:, :, :3]
    else:
        raise ImageReadError(f"{path}: unsupported image shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageReadError(f"{path}: image has no pixels")
    return np.ascontiguousarray(array)


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


# DIV2K ships its 800 training and 100 validation images in these two folders.
DIV2K_FOLDERS = {"train": "DIV2K_train_HR", "test": "DIV2K_valid_HR"}
# In a flat folder one image in this many goes to the test split (by a hash of its name).
FLAT_TEST_EVERY = 10


def split_by_name(names: Sequence[str]) -> dict[str, list[str]]:
    """``names`` (file paths, video names, ...) split into 'train' and 'test' by a hash of
    each name, one in :data:`FLAT_TEST_EVERY` to test, so a name's split never depends on
    the others; with two or more names neither split is left empty."""
    def is_test(name: str) -> bool:
        return hashlib.sha1(name.encode()).digest()[0] % FLAT_TEST_EVERY == 0

    test = [n for n in names if is_test(n)]
    train = [n for n in names if not is_test(n)]
    if len(names) >= 2 and not test:
        test, train = train[-1:], train[:-1]
    if len(names) >= 2 and not train:
        train, test = test[:1], test[1:]
    return {"train": train, "test": test}


def _flat_split(paths: list[Path], root: Path) -> dict[str, list[Path]]:
    by_name = {p.relative_to(root).as_posix(): p for p in paths}
    return {split: [by_name[n] for n in names] for split, names in split_by_name(list(by_name)).items()}


class ImageSet:
    """A list of image files read on demand, with a small cache of decoded images.

    Memory stays bounded however many files there are: at most ``cache_bytes`` of
    decoded images are kept. Every file's header and size are checked when the set is
    made (:func:`~toolchain_restore.data.screening.usable_images`): a bad file is named in
    one warning and left out of ``paths`` (it is in ``rejected``). A file that passes but
    cannot be decoded later is named in a warning and skipped from then on.

    Raises:
        ValueError: no paths.
        ImageReadError: no path is a usable image file.
    """

    def __init__(self, paths: Sequence[Path], name: str, cache_bytes: int = 512 * 2**20) -> None:
        from .screening import usable_images  # it reports with this module's ImageReadError

        if not paths:
            raise InvalidInput(f"{name}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
        given = [Path(p) for p in paths]
        self.paths = usable_images(given, name)
        kept = set(self.paths)
        self.rejected = [p for p in given if p not in kept]
        """The files left out when the set was made (each named in a warning)."""
        self.name = name
        self._cache = ImageCache(cache_bytes)
        self.unreadable: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"ImageSet({self.name!r}, {len(self)} images)"

    def get(self, index: int) -> np.ndarray | None:
        """The decoded image, or None (after one warning) if the file is unreadable."""
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        if index in self.unreadable:
            return None
        try:
            image = read_image(self.paths[index])
        except (ImageReadError, FileNotFoundError) as err:
            self.unreadable.add(index)
            if len(self.unreadable) == len(self.paths):
                raise ImageReadError(f"{self.name}: none of its {len(self.paths)} images is readable (the last: "
                                     f"{err})") from err
            warnings.warn(f"{self.name}: skipping unreadable image {err}", stacklevel=2)
            return None
        self._cache.put(index, image)
        return image


def _embedded_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


EMBEDDED_SPLIT: dict[str, tuple[str, ...]] = {
    "train": (
        "astronaut.png",
        "rocket.jpg",
        "motorcycle_left.png",
        "motorcycle_right.png",
        "hubble_deep_field.jpg",
        "brick.png",
        "grass.png",
        "gravel.png",
        "moon.png",
    ),
    "test": ("chelsea.png", "coffee.png", "camera.png", "coins.png"),
}
"""The fixed image-level split of the photographs bundled in scikit-image's wheel."""


def embedded_images(split: Split) -> ImageSet:
    """The natural photographs shipped inside scikit-image, for ``split``."""
    if split not in EMBEDDED_SPLIT:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = _embedded_dir()
    return ImageSet([folder / name for name in EMBEDDED_SPLIT[split]], f"embedded:{split}")


def image_set(data: str | os.PathLike | ImageSet | None, split: Split) -> ImageSet:
    """Images of ``split`` from the embedded default (None) or a folder.

    A folder may follow the DIV2K layout (``DIV2K_train_HR/`` and ``DIV2K_valid_HR/``),
    have ``train/`` and ``test/`` subfolders, or be flat; a flat folder is split by a hash
    of each file name, one image in ten to the test split.
    """
    if isinstance(data, ImageSet):
        return data
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if data is None:
        return embedded_images(split)
    root = Path(data)
    if not root.exists():
        raise MissingInput(f"data folder {root} does not exist")
    if not root.is_dir():
        raise NotAFolder(f"data must be a folder of images, got the file {root}")
    for layout in (DIV2K_FOLDERS, {"train": "train", "test": "test"}):
        train_dir, test_dir = root / layout["train"], root / layout["test"]
        if train_dir.is_dir() or test_dir.is_dir():
            if not (train_dir.is_dir() and test_dir.is_dir()):
                have, missing = (train_dir, test_dir) if train_dir.is_dir() else (test_dir, train_dir)
                raise InvalidInput(
                    f"{root}: found {have.name}/ but not {missing.name}/; give both, or a flat folder "
                    f"(split by file name) so that no image is in both splits"
                )
            sub = root / layout[split]
            return ImageSet(_list_images(sub), str(sub))
    paths = _list_images(root)
    if not paths:
        raise InvalidInput(f"{root}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return ImageSet(_flat_split(paths, root)[split], f"{root}:{split}")
