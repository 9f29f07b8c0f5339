"""Reading and writing image files in their own format: gray stays gray, alpha stays, 16 bits
stay 16 bits, float stays float.

:func:`~toolchain_restore.data.images.read_image` turns every file into 8-bit RGB, which is
right for training data but wrong for a user's photo that must come back as it went in.
These two functions keep the pixel format instead:

- PNG, JPEG, BMP, ...: Pillow, in the file's mode (``L``, ``LA``, ``RGB``, ``RGBA``, ``I;16``).
- 16-bit colour PNG (gray + alpha, RGB, RGBA): Pillow would cut these to 8 bits, so they are
  decoded and encoded here (zlib and the five PNG row filters; interlaced files refused).
- TIFF: ``tifffile`` (a dependency of scikit-image), for 16-bit colour and float images.

Arrays are H x W (gray) or H x W x C with C = 2 (gray + alpha), 3 (RGB) or 4 (RGBA), of
dtype uint8, uint16 or float32/float64.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InvalidInput, MissingInput
from ..serialization import atomic_write
from .images import ImageReadError

__all__ = ["read_native", "write_native", "check_writable", "NATIVE_EXTENSIONS"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIFF_EXTENSIONS = (".tif", ".tiff")
PILLOW_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP"}
NATIVE_EXTENSIONS = tuple(PILLOW_FORMATS) + TIFF_EXTENSIONS
"""File name endings :func:`write_native` can write (and :func:`read_native` reads)."""
JPEG_QUALITY = 95
"""Quality of JPEG outputs: a restored image should not lose much to its own encoding."""

# PNG colour type -> channels, for 16-bit files.
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
_CHANNELS_TO_PNG_TYPE = {v: k for k, v in _PNG_CHANNELS.items()}


# -- reading ------------------------------------------------------------------------------


def _png_header(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) of a PNG file, or None if it is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(len(PNG_SIGNATURE) + 8 + 13)
    if not head.startswith(PNG_SIGNATURE) or len(head) < 26 or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _paeth_row(line: bytearray, up: bytes, bpp: int) -> None:
    for i in range(len(line)):
        a = line[i - bpp] if i >= bpp else 0
        b = up[i]
        c = up[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF


def _average_row(line: bytearray, up: bytes, bpp: int) -> None:
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        line[i] = (line[i] + ((left + up[i]) >> 1)) & 0xFF


def _unfilter(data: bytes, height: int, row_bytes: int, bpp: int) -> np.ndarray:
    """Undo the PNG row filters; Sub and Up are vectorised, Average and Paeth (which depend
    on the pixel just decoded) run byte by byte."""
    raw = np.frombuffer(data, np.uint8)
    if raw.size < height * (row_bytes + 1):
        raise ValueError("image data is truncated")
    raw = raw[: height * (row_bytes + 1)].reshape(height, row_bytes + 1)
    out = np.empty((height, row_bytes), np.uint8)
    up = np.zeros(row_bytes, np.uint8)
    for y in range(height):
        kind, line = int(raw[y, 0]), raw[y, 1:]
        if kind == 0:
            out[y] = line
        elif kind == 1:
            out[y] = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:
            out[y] = line + up
        elif kind in (3, 4):
            row = bytearray(line.tobytes())
            (_average_row if kind == 3 else _paeth_row)(row, up.tobytes(), bpp)
            out[y] = np.frombuffer(bytes(row), np.uint8)
        else:
            raise ValueError(f"row {y} has the unknown filter type {kind}")
        up = out[y]
    return out


def _read_png16(path: Path) -> np.ndarray:
    """A 16-bit PNG (any colour type without palette), non-interlaced, as uint16."""
    blob = path.read_bytes()
    pos, header, idat = len(PNG_SIGNATURE), None, []
    while pos + 8 <= len(blob):
        (length,), kind = struct.unpack(">I", blob[pos : pos + 4]), blob[pos + 4 : pos + 8]
        body = blob[pos + 8 : pos + 8 + length]
        crc = blob[pos + 8 + length : pos + 12 + length]
        if len(body) != length or len(crc) != 4 or struct.unpack(">I", crc)[0] != zlib.crc32(kind + body) & 0xFFFFFFFF:
            raise ValueError(f"chunk {kind!r} is truncated or corrupt")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None or not idat:
        raise ValueError("no image header or no image data")
    width, height, depth, colour, _, _, interlace = header
    if depth != 16 or colour not in _PNG_CHANNELS:
        raise ValueError(f"not a 16-bit gray/RGB(A) PNG (bit depth {depth}, colour type {colour})")
    if interlace:
        raise ValueError("interlaced 16-bit PNGs are not supported; save it without interlacing")
    if width == 0 or height == 0:
        raise ValueError("image has no pixels")
    channels = _PNG_CHANNELS[colour]
    rows = _unfilter(zlib.decompress(b"".join(idat)), height, width * channels * 2, channels * 2)
    image = rows.view(">u2").reshape(height, width, channels).astype(np.uint16)
    return image[:, :, 0] if channels == 1 else image


def _from_pillow(im: Image.Image) -> np.ndarray:
    if im.mode in ("1", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "La", "RGBa", "RGBX"):
        transparent = im.mode in ("PA", "La", "RGBa") or "transparency" in im.info
        if im.mode in ("1",):
            im = im.convert("L")
        else:
            im = im.convert("RGBA" if transparent else "RGB")
    array = np.asarray(im)
    if im.mode.startswith("I;16"):
        return array.astype(np.uint16)  # native byte order whatever the file's
    if im.mode == "I":
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ValueError("32-bit integer pixels outside 0..65535 are not supported")
        return array.astype(np.uint16)
    if im.mode == "F":
        return array.astype(np.float32)
    if array.dtype != np.uint8:
        raise ValueError(f"unsupported Pillow mode {im.mode}")
    return array


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        array = page.asarray()
        planar = getattr(page, "planarconfig", None) == tifffile.PLANARCONFIG.SEPARATE
    if planar and array.ndim == 3:
        array = np.moveaxis(array, 0, -1)
    if array.dtype == np.float16 or array.dtype == np.float64:
        return array
    if array.dtype not in (np.uint8, np.uint16, np.float32):
        raise ValueError(f"unsupported TIFF sample type {array.dtype}")
    return array


def read_native(path: str | os.PathLike) -> np.ndarray:
    """Read an image file keeping its pixel format (see the module docstring).

    Raises:
        MissingInput (a FileNotFoundError): no such file.
        ImageReadError: the file is not a readable image, or its format is not one of
            gray, gray + alpha, RGB, RGBA at 8 or 16 bits or float.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"no image file at {path}")
    try:
        if path.suffix.lower() in TIFF_EXTENSIONS:
            array = _read_tiff(path)
        else:
            header = _png_header(path)
            if header is not None and header[0] == 16 and header[1] in (2, 4, 6):
                array = _read_png16(path)
            else:
                with Image.open(path) as im:
                    im.load()
                    array = _from_pillow(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, zlib.error, struct.error) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ImageReadError(f"{path}: not a readable image ({err})") from err
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (2, 3, 4)):
        raise ImageReadError(f"{path}: unsupported image shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageReadError(f"{path}: image has no pixels")
    return np.ascontiguousarray(array)


# -- writing ------------------------------------------------------------------------------


def _filter_rows(rows: np.ndarray, bpp: int, kind: int) -> np.ndarray:
    """PNG-filter every row of ``rows`` (H x row bytes, uint8) with filter ``kind``;
    encoding reads only original bytes, so all five filters vectorise."""
    up = np.zeros_like(rows)
    up[1:] = rows[:-1]
    left = np.zeros_like(rows)
    left[:, bpp:] = rows[:, :-bpp]
    upleft = np.zeros_like(rows)
    upleft[1:, bpp:] = rows[:-1, :-bpp]
    if kind == 0:
        return rows
    if kind == 1:
        return rows - left
    if kind == 2:
        return rows - up
    if kind == 3:
        return rows - ((left.astype(np.uint16) + up) >> 1).astype(np.uint8)
    if kind == 4:
        a, b, c = (v.astype(np.int16) for v in (left, up, upleft))
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        predictor = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c)).astype(np.uint8)
        return rows - predictor
    raise ValueError(f"PNG filter type must be 0..4, got {kind}")


def _encode_png16(image: np.ndarray, filter_type: int = 1) -> bytes:
    """A 16-bit PNG of ``image`` (uint16, H x W or H x W x 1..4). Sub (1) compresses photos
    well; every row uses ``filter_type``."""
    array = image[:, :, None] if image.ndim == 2 else image
    height, width, channels = array.shape
    rows = np.ascontiguousarray(array.astype(">u2")).view(np.uint8).reshape(height, width * channels * 2)
    filtered = _filter_rows(rows, channels * 2, filter_type)
    data = np.concatenate([np.full((height, 1), filter_type, np.uint8), filtered], axis=1).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, _CHANNELS_TO_PNG_TYPE[channels], 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(data, 6)) + chunk(b"IEND", b"")


def check_writable(path: str | os.PathLike, image: np.ndarray | None = None) -> None:
    """Raise InvalidInput (a ValueError) if ``path``'s format cannot hold ``image`` (or is not known at all),
    so that a caller can refuse before doing any work."""
    suffix = Path(path).suffix.lower()
    if suffix not in NATIVE_EXTENSIONS:
        raise InvalidInput(f"{path}: unknown image format {suffix or '(no extension)'}; use one of {', '.join(NATIVE_EXTENSIONS)}")
    if image is None or suffix in TIFF_EXTENSIONS:
        return
    channels = 1 if image.ndim == 2 else image.shape[2]
    if image.dtype != np.uint8 and not (suffix == ".png" and image.dtype == np.uint16):
        raise InvalidInput(f"{path}: {suffix} cannot hold {image.dtype} pixels; write a .tif (or a .png for 16 bits)")
    if suffix in (".jpg", ".jpeg", ".bmp") and channels in (2, 4):
        raise InvalidInput(f"{path}: {suffix} has no alpha channel; write a .png or .tif")


def write_native(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write ``image`` in the format named by ``path``'s extension, without converting its
    pixels (16-bit stays 16-bit). The file appears whole or not at all."""
    image = np.asarray(image)
    check_writable(path, image)
    suffix = Path(path).suffix.lower()
    array = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image

    if suffix in TIFF_EXTENSIONS:
        import tifffile

        photometric = "minisblack" if array.ndim == 2 or array.shape[2] == 2 else "rgb"
        extra = ["unassalpha"] if array.ndim == 3 and array.shape[2] in (2, 4) else None
        atomic_write(path, lambda tmp: tifffile.imwrite(tmp, array, photometric=photometric, extrasamples=extra))
    elif array.dtype == np.uint16 and not (array.ndim == 2):
        encoded = _encode_png16(array)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(encoded))
    else:
        im = Image.fromarray(np.ascontiguousarray(array))
        options = {"quality": JPEG_QUALITY} if PILLOW_FORMATS[suffix] == "JPEG" else {}
        atomic_write(path, lambda tmp: im.save(tmp, format=PILLOW_FORMATS[suffix], **options))
