"""Checking a folder's image files when it is opened, before any is decoded.

Training reads its images lazily, so a damaged file used to surface only when the run first
drew it, maybe hours in. :func:`usable_images` looks at every file's header and size instead
(no pixel is decoded, so a large folder is checked in about a second): Pillow must recognise
the header and find a non-empty size, a PNG must hold its IHDR, an IDAT and its IEND chunk
within the file's length, a JPEG must have a frame header (SOF) before its scan and its
end-of-image marker at the end, an uncompressed BMP must be as long as its rows. Each bad
file is reported once by name (a warning) and left out; a folder left with no usable image
is a user error (:class:`~toolchain_restore.data.images.ImageReadError`) in one line.

A file that passes and still fails to decode later is skipped by its reader, which names it
(see :meth:`~toolchain_restore.data.images.ImageSet.get`).
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import BinaryIO, Sequence

from PIL import Image, UnidentifiedImageError

from .images import ImageReadError

__all__ = ["image_file_problem", "usable_images", "PNG_SIGNATURE"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_TAIL = 4096
"""The end-of-image marker of a JPEG must lie within this many bytes of the file's end
(cameras may append a little padding or metadata after it)."""
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
"""JPEG markers without a length field (TEM, RST0..7)."""
_JPEG_FRAMES = {m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC)}
"""Start-of-frame markers (baseline, progressive, lossless, ...), which carry the size."""


def _png_problem(f: BinaryIO, size: int) -> str | None:
    """What is wrong with a PNG's chunk structure (IHDR first, an IDAT, IEND within the file)."""
    if f.read(8) != PNG_SIGNATURE:
        return "not a PNG (bad signature)"
    position, seen_data = 8, False
    while True:
        f.seek(position)
        head = f.read(8)
        if len(head) < 8:
            return f"truncated: the file ends at byte {size} before its IEND chunk"
        length, kind = struct.unpack(">I4s", head)
        if position == 8:
            if kind != b"IHDR" or length != 13:
                return "no IHDR header chunk at the start"
            width, height = struct.unpack(">II", f.read(8))
            if width == 0 or height == 0:
                return "the header gives no pixels (a width or height of 0)"
        end = position + 12 + length
        if end > size:
            return (f"truncated: chunk {kind.decode('latin-1')} at byte {position} needs the file to be {end} bytes "
                    f"long, it is {size}")
        if kind == b"IEND":
            return None if seen_data else "no image data (IDAT chunk)"
        seen_data = seen_data or kind == b"IDAT"
        position = end


def _jpeg_problem(f: BinaryIO, size: int) -> str | None:
    """What is wrong with a JPEG's markers (SOI, a frame header before the scan, EOI at the end)."""
    if f.read(2) != b"\xff\xd8":
        return "not a JPEG (no start-of-image marker)"
    position, frame = 2, False
    while True:
        f.seek(position)
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return f"truncated or corrupt: no marker at byte {position} (file of {size} bytes)"
        code = marker[1]
        if code == 0xFF:  # fill byte
            position += 1
            continue
        if code in _JPEG_STANDALONE:
            position += 2
            continue
        if code == 0xD9:
            return "the end-of-image marker comes before any image data"
        field = f.read(2)
        if len(field) < 2:
            return f"truncated inside the marker at byte {position}"
        length = struct.unpack(">H", field)[0]
        if code in _JPEG_FRAMES:
            frame_header = f.read(5)
            if len(frame_header) < 5 or struct.unpack(">H", frame_header[3:5])[0] == 0:
                return "the frame header gives no pixels (a width of 0)"
            frame = True
        if code == 0xDA:
            return None if frame else "no frame header (SOF) before the image data"
        position += 2 + length
        if position > size:
            return f"truncated: a segment at byte {position - 2 - length} runs past the file's end ({size} bytes)"


def _jpeg_ending_problem(f: BinaryIO, size: int) -> str | None:
    """A missing end-of-image marker near the end: the usual sign of a cut-off download."""
    f.seek(max(0, size - JPEG_TAIL))
    if b"\xff\xd9" not in f.read():
        return "truncated: no end-of-image marker (FFD9) at the end of the file"
    return None


def _bmp_problem(f: BinaryIO, size: int) -> str | None:
    """An uncompressed BMP shorter than its rows."""
    header = f.read(34)
    if len(header) < 34:
        return "truncated header"
    offset = struct.unpack("<I", header[10:14])[0]
    width, height = struct.unpack("<ii", header[18:26])
    bits, compression = struct.unpack("<HI", header[28:34])
    if compression not in (0, 3) or bits == 0:  # run-length and embedded formats: Pillow's header check only
        return None
    needed = offset + (abs(width) * bits + 31) // 32 * 4 * abs(height)
    if size < needed:
        return f"truncated: its {abs(width)} x {abs(height)} pixels need {needed} bytes, the file has {size}"
    return None


_STRUCTURE_CHECKS = {"PNG": (_png_problem,), "JPEG": (_jpeg_problem, _jpeg_ending_problem), "BMP": (_bmp_problem,)}
"""Per Pillow format, the checks of the file's structure beyond its header."""


def image_file_problem(path: str | os.PathLike) -> str | None:
    """Why the image file at ``path`` is unusable (empty, unrecognised, truncated, ...), or
    None if its header and size look right. Reads the header and a few markers, never the
    pixels; a file that passes can still hold corrupt compressed data."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as im:
            image_format, (width, height) = im.format, im.size
        if width < 1 or height < 1:
            return f"the header gives no pixels ({width} x {height})"
        with open(path, "rb") as f:
            for check in _STRUCTURE_CHECKS.get(image_format or "", ()):
                f.seek(0)
                problem = check(f, size)
                if problem is not None:
                    return problem
    except UnidentifiedImageError:
        return "not an image file Pillow recognises"
    except Image.DecompressionBombError as err:
        return f"too many pixels to decode safely ({err})"
    except (OSError, SyntaxError, ValueError, struct.error) as err:
        return f"not a readable image header ({err})"
    return None


def usable_images(paths: Sequence[Path], where: str) -> list[Path]:
    """The files of ``paths`` whose header and size look right (:func:`image_file_problem`),
    in their order; each other one is named in one warning.

    Raises:
        ImageReadError: ``paths`` is not empty and none of its files is usable.
    """
    usable = []
    for path in paths:
        problem = image_file_problem(path)
        if problem is None:
            usable.append(path)
        else:
            warnings.warn(f"skipping {path}: {problem}", stacklevel=2)
    if paths and not usable:
        raise ImageReadError(f"{where}: none of its {len(paths)} image files is usable (each is named in a warning "
                             f"above; the first: {paths[0]})")
    return usable
