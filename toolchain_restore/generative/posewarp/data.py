"""Training pairs for PoseWarp: two frames of one video (same person, same background,
two poses), from the official per-video layout or from procedural figure videos,
cropped and scaled by the person's bounding box, with the reference's augmentations.

The official layout::

    root/frames/<video>/<n>.jpg|png     frames numbered from 1
    root/info/<video>.mat               struct ``data``: X (14 x 2 x frames), bbox (frames x 4: x, y, w, h)

Held-out pairs come from held-out videos, never from other frames of a training video: a
folder with ``train/`` and ``test/`` subfolders (each in the official layout) is split by
them, any other folder by a hash of each video's name (one video in ten to test, at least
one each way). Every frame's header and size are checked when a folder is opened: a bad
frame is named in a warning and left out.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.images import ImageReadError, split_by_name
from ...data.screening import usable_images
from ...errors import InvalidInput, MissingInput
from .figures import TEST_VIDEO_SEED, TRAIN_VIDEO_SEED, ProceduralVideo
from .pose import FLIP_ORDER, JOINT_COUNT, check_joints

__all__ = ["PosePair", "read_video_info", "VideoFolder", "ProceduralPairs", "FolderPairs", "pair_source",
           "crop_matrix", "augmentation_matrix", "apply_affine", "paste_back", "transform_joints", "MatFileError"]

_FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")


class MatFileError(InvalidInput):
    """An info .mat file is unreadable or not in the official format."""


@dataclass
class PosePair:
    """Two frames of one video at the model's size: uint8 H x W x 3 images, 14 x 2 joints."""

    source: np.ndarray
    source_joints: np.ndarray
    target: np.ndarray
    target_joints: np.ndarray
    crop: np.ndarray | None = None
    """The 2 x 3 map from the full frames' pixels to the pair's (None: not cut from larger frames)."""


def read_video_info(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The joints (frames x 14 x 2, x/y pixels) and boxes (frames x 4: x, y, w, h) of one
    official info file.

    Raises:
        FileNotFoundError: no file at ``path``.
        MatFileError: not a readable .mat, no struct ``data`` with fields X and bbox, or
            arrays of the wrong shape.
    """
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"no info file at {path} (expected info/<video>.mat beside frames/<video>/)")
    try:
        content = loadmat(str(path), squeeze_me=False, struct_as_record=True)
    except Exception as err:  # scipy raises several types for a damaged file
        raise MatFileError(f"{path}: not a readable .mat file ({err})") from err
    data = content.get("data")
    if data is None or data.dtype.names is None or not {"X", "bbox"} <= set(data.dtype.names):
        raise MatFileError(f"{path}: expected a struct 'data' with fields X (14 x 2 x frames) and bbox (frames x 4); "
                           f"found variables {sorted(k for k in content if not k.startswith('__'))}")
    try:
        x = np.asarray(data["X"].flat[0], dtype=np.float64)
        bbox = np.asarray(data["bbox"].flat[0], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise MatFileError(f"{path}: data.X and data.bbox must be numeric arrays ({err})") from err
    if x.ndim == 2:  # a one-frame video loses its last axis in some writers
        x = x[..., None]
    if x.ndim != 3 or x.shape[:2] != (JOINT_COUNT, 2):
        raise MatFileError(f"{path}: data.X must be {JOINT_COUNT} x 2 x frames (joint x/y per frame), got shape "
                           f"{x.shape}")
    frames = x.shape[2]
    if bbox.ndim == 1 and bbox.size == 4:
        bbox = bbox[None]
    if bbox.shape != (frames, 4):
        raise MatFileError(f"{path}: data.bbox must be frames x 4 ({frames} x 4 for its {frames} frames of joints), "
                           f"got shape {bbox.shape}")
    return np.ascontiguousarray(x.transpose(2, 0, 1)), bbox


def _frame_number(path: Path) -> int | None:
    return int(path.stem) if re.fullmatch(r"\d+", path.stem) and path.suffix.lower() in _FRAME_EXTENSIONS else None


def _check_frames(numbered: dict[int, Path], joints: np.ndarray, info: Path) -> None:
    """Every frame has joints in the video's info file."""
    for n in sorted(numbered):
        if n < 1 or n > len(joints):
            raise InvalidInput(f"{numbered[n]}: frame {n} has no joints ({info} holds {len(joints)} frames)")
        if not np.isfinite(joints[n - 1]).any():
            raise InvalidInput(f"{numbered[n]}: frame {n} has no joints (all unknown in the info file)")


def _split_videos(root: Path, split: str | None) -> tuple[Path, set[str] | None]:
    """The folder whose videos ``split`` reads and the videos it keeps (None: all of them).

    Raises:
        ValueError: an unknown split, or a folder of one video asked for a split.
    """
    if split is None:
        return root, None
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
    if (root / "train" / "frames").is_dir() and (root / "test" / "frames").is_dir():
        return root / split, None
    frames_dir = root / "frames"
    videos = sorted(p.name for p in frames_dir.iterdir() if p.is_dir()) if frames_dir.is_dir() else []
    if len(videos) == 1:
        raise InvalidInput(f"{root}: one video ({videos[0]!r}); held-out pairs come from held-out videos, never from "
                         f"other frames of a training video, so a split needs two or more videos (or train/ and "
                         f"test/ folders in the official layout)")
    return root, set(split_by_name(videos)[split])


def _usable_frames(folder: Path) -> dict[int, Path]:
    """The numbered frames of one video folder whose header and size look right (each bad one named)."""
    numbered = {n: p for p in folder.iterdir() if (n := _frame_number(p)) is not None}
    if not numbered:
        return {}
    try:
        kept = set(usable_images([numbered[n] for n in sorted(numbered)], str(folder)))
    except ImageReadError:  # a video without one usable frame is left out, like an empty one
        return {}
    return {n: p for n, p in numbered.items() if p in kept}


class VideoFolder:
    """The videos of a folder in the official layout, checked when opened; with ``split``
    ('train' or 'test') only that split's videos (see the module docstring).

    Raises:
        FileNotFoundError: no frames/ or info/ folder, no videos, or a video's info file is missing.
        MatFileError: a malformed info file.
        ValueError: a frame without joints (numbered beyond the info file's frames, or all joints
            unknown), or a split of a folder of one video.
    """

    def __init__(self, root: str | os.PathLike, split: str | None = None) -> None:
        self.split = split
        folder_root, keep = _split_videos(Path(root), split)
        self.root = folder_root
        frames_dir, info_dir = self.root / "frames", self.root / "info"
        if not frames_dir.is_dir():
            raise MissingInput(f"{self.root}: no frames/ folder (expected frames/<video>/<n>.jpg and "
                                    f"info/<video>.mat)")
        self.videos: list[str] = []
        self.frames: dict[str, dict[int, Path]] = {}
        self.joints: dict[str, np.ndarray] = {}
        self.boxes: dict[str, np.ndarray] = {}
        for folder in sorted(p for p in frames_dir.iterdir() if p.is_dir() and (keep is None or p.name in keep)):
            numbered = _usable_frames(folder)
            if not numbered:
                continue
            joints, boxes = read_video_info(info_dir / f"{folder.name}.mat")
            _check_frames(numbered, joints, info_dir / f"{folder.name}.mat")
            self.videos.append(folder.name)
            self.frames[folder.name], self.joints[folder.name], self.boxes[folder.name] = numbered, joints, boxes
        if not self.videos:
            raise MissingInput(f"{frames_dir}: no video folders with usable numbered frames "
                                    f"({', '.join(_FRAME_EXTENSIONS)})" + (f" in the {split} split" if split else ""))

    def __len__(self) -> int:
        return len(self.videos)

    def frame_numbers(self, video: str) -> list[int]:
        return sorted(self.frames[video])

    def frame(self, video: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame ``n`` (1-based) of ``video``: image (H x W x 3 uint8), joints (14 x 2), box (x, y, w, h)."""
        from ...data.images import read_image

        image = read_image(self.frames[video][n])
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        return image[..., :3], self.joints[video][n - 1], self.boxes[video][n - 1]


def crop_matrix(boxes: np.ndarray, size: int, margin: float = 1.2) -> np.ndarray:
    """2 x 3 map from frame pixels to a size x size crop: a square around the union of the
    boxes (x, y, w, h), its side ``margin`` times their larger extent."""
    boxes = np.atleast_2d(np.asarray(boxes, np.float64))
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = (boxes[:, 0] + boxes[:, 2]).max(), (boxes[:, 1] + boxes[:, 3]).max()
    side = max(x1 - x0, y1 - y0, 1.0) * margin
    scale = size / side
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([[scale, 0, size / 2 - 0.5 - scale * (cx - 0.5)], [0, scale, size / 2 - 0.5 - scale * (cy - 0.5)]])


def augmentation_matrix(rng: np.random.Generator, size: int) -> tuple[np.ndarray, bool]:
    """The reference's geometric augmentation about the image centre: scale 0.90-1.05,
    rotation +-5 degrees, shift +-10 pixels at 256 (scaled with the size), and a left-right
    flip half the time; returns the 2 x 3 matrix and whether it flips."""
    scale, angle = rng.uniform(0.90, 1.05), np.deg2rad(rng.uniform(-5, 5))
    shift = rng.uniform(-10, 10, 2) * size / 256
    flip = bool(rng.random() < 0.5)
    c = (size - 1) / 2
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    if flip:
        linear = linear @ np.diag([-1.0, 1.0])
    offset = np.array([c, c]) + shift - linear @ np.array([c, c])
    return np.hstack([linear, offset[:, None]]), flip


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    full = lambda m: np.vstack([m, [0, 0, 1]])  # noqa: E731
    return (full(outer) @ full(inner))[:2]


def apply_affine(image: np.ndarray, matrix: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resample ``image`` so output pixel p shows input pixel M^-1 p (bilinear; black outside);
    the output is size x size, or height x width for a (height, width) ``size``."""
    from PIL import Image

    height, width = (size, size) if isinstance(size, int) else size
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    # PIL maps corner-based coordinates (a pixel's centre at +0.5); ours put centres on integers.
    a, b, c = inverse[0]
    d, e, f = inverse[1]
    coefficients = (a, b, a * -0.5 + b * -0.5 + c + 0.5, d, e, d * -0.5 + e * -0.5 + f + 0.5)
    out = Image.fromarray(image).transform((width, height), Image.AFFINE, coefficients, resample=Image.BILINEAR)
    return np.asarray(out)


def paste_back(frame: np.ndarray, crop: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``frame`` (H x W x 3 uint8) with ``crop`` (S x S x 3, the model's input or output for
    ``apply_affine(frame, matrix, S)``) put back where it was cut from: the inverse of the
    crop's scale and shift, bilinear, its footprint's edge blended over one frame pixel.
    Pasting the crop of the frame itself gives the frame back inside the person's box, up to
    the resampling's blur."""
    size = crop.shape[0]
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]  # crop pixels -> frame pixels
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]])
    spots = corners @ inverse[:, :2].T + inverse[:, 2]
    x0, y0 = np.maximum(np.floor(spots.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(spots.max(0)).astype(int) + 1, [frame.shape[1], frame.shape[0]])
    if x0 >= x1 or y0 >= y1:
        return frame.copy()
    to_region = _compose(np.array([[1.0, 0, -x0], [0, 1.0, -y0]]), inverse)  # crop pixels -> region pixels
    region = apply_affine(crop, to_region, (y1 - y0, x1 - x0)).astype(np.float64)
    footprint = apply_affine(np.full((size, size), 255, np.uint8), to_region, (y1 - y0, x1 - x0)) / 255.0
    out = frame.copy()
    alpha = footprint[..., None]
    out[y0:y1, x0:x1] = np.round(alpha * region + (1 - alpha) * frame[y0:y1, x0:x1]).astype(np.uint8)
    return out


def transform_joints(joints: np.ndarray, matrix: np.ndarray, flip: bool = False) -> np.ndarray:
    """Joints mapped by ``matrix`` (unknown joints stay NaN); a flip also swaps left and right."""
    out = joints @ matrix[:, :2].T + matrix[:, 2]
    return out[list(FLIP_ORDER)] if flip else out


def _saturate(image: np.ndarray, factor: float) -> np.ndarray:
    grey = image.astype(np.float32).mean(-1, keepdims=True)
    return np.clip(grey + (image - grey) * factor, 0, 255).round().astype(np.uint8)


def _augment(rng: np.random.Generator, pair: PosePair, size: int) -> PosePair:
    """The same geometric and colour change on both frames of a pair (saturation +-5%)."""
    matrix, flip = augmentation_matrix(rng, size)
    factor = rng.uniform(0.95, 1.05)
    return PosePair(_saturate(apply_affine(pair.source, matrix, size), factor),
                    transform_joints(pair.source_joints, matrix, flip),
                    _saturate(apply_affine(pair.target, matrix, size), factor),
                    transform_joints(pair.target_joints, matrix, flip))


class ProceduralPairs:
    """Pairs from procedural videos of ``split``: ``videos`` figures, each in
    ``frames_per_video`` poses; held-out videos have their own seeds and background photos."""

    def __init__(self, split: str, videos: int, frames_per_video: int, size: int, augment: bool = False) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.start = TRAIN_VIDEO_SEED if split == "train" else TEST_VIDEO_SEED
        self.videos, self.frames_per_video, self.size, self.augment = videos, frames_per_video, size, augment
        self._cache: dict[int, ProceduralVideo] = {}

    def video(self, index: int) -> ProceduralVideo:
        if index not in self._cache:
            self._cache[index] = ProceduralVideo(self.start + index, self.size)
        return self._cache[index]

    def pair(self, video: int, source: int, target: int) -> PosePair:
        v = self.video(video)
        (a, ja), (b, jb) = v.frame(source), v.frame(target)
        return PosePair(a, ja, b, jb)

    def sample(self, rng: np.random.Generator) -> PosePair:
        video = int(rng.integers(self.videos))
        source, target = rng.choice(self.frames_per_video, 2, replace=False)
        pair = self.pair(video, int(source), int(target))
        return _augment(rng, pair, self.size) if self.augment else pair

    def fixed(self, count: int) -> list[PosePair]:
        """``count`` pairs for evaluation: video k % videos, frames chosen by a fixed seed."""
        rng = np.random.default_rng([self.start, 99])
        out = []
        for k in range(count):
            source, target = rng.choice(self.frames_per_video, 2, replace=False)
            out.append(self.pair(k % self.videos, int(source), int(target)))
        return out


class FolderPairs:
    """Pairs from the videos of an official-layout folder, cropped to ``size`` by the
    union of both frames' boxes (so the background lines up as in the video)."""

    def __init__(self, root: str | os.PathLike | VideoFolder, size: int, augment: bool = False,
                 margin: float = 1.2, split: str | None = None) -> None:
        self.folder = root if isinstance(root, VideoFolder) else VideoFolder(root, split)
        self.size, self.augment, self.margin = size, augment, margin

    def pair(self, video: str, source: int, target: int) -> PosePair:
        a, ja, ba = self.folder.frame(video, source)
        b, jb, bb = self.folder.frame(video, target)
        matrix = crop_matrix(np.stack([ba, bb]), self.size, self.margin)
        return PosePair(apply_affine(a, matrix, self.size), transform_joints(ja, matrix),
                        apply_affine(b, matrix, self.size), transform_joints(jb, matrix), matrix)

    def sample(self, rng: np.random.Generator, max_tries: int = 100) -> PosePair:
        """A random pair of frames of a random video; a frame that fails to decode is named in
        a warning, dropped from its video, and another pair drawn."""
        for _ in range(max_tries):
            video = self.folder.videos[int(rng.integers(len(self.folder)))]
            numbers = self.folder.frame_numbers(video)
            if len(numbers) < 2:
                if len(self.folder) == 1:
                    raise InvalidInput(f"video {video!r} has {len(numbers)} usable frame(s); a pair needs two")
                continue
            source, target = (int(n) for n in rng.choice(numbers, 2, replace=False))
            try:
                pair = self.pair(video, source, target)
            except ImageReadError as err:
                warnings.warn(f"skipping unreadable frame {err}", stacklevel=2)
                self._drop_unreadable(video, (source, target))
                continue
            return _augment(rng, pair, self.size) if self.augment else pair
        raise InvalidInput(f"{self.folder.root}: no video yields a pair of readable frames")

    def _drop_unreadable(self, video: str, numbers: tuple[int, ...]) -> None:
        """Forget those of the frames ``numbers`` of ``video`` that do not decode."""
        from ...data.images import read_image

        for n in numbers:
            try:
                read_image(self.folder.frames[video][n])
            except ImageReadError:
                del self.folder.frames[video][n]

    def fixed(self, count: int) -> list[PosePair]:
        rng = np.random.default_rng(99)
        return [self.sample(rng) if not self.augment else self.pair(*self._draw(rng)) for _ in range(count)]

    def _draw(self, rng: np.random.Generator) -> tuple[str, int, int]:
        video = self.folder.videos[int(rng.integers(len(self.folder)))]
        source, target = rng.choice(self.folder.frame_numbers(video), 2, replace=False)
        return video, int(source), int(target)


def pair_source(data: str, split: str, size: int, videos: int, frames_per_video: int, augment: bool):
    """Procedural pairs of ``split``, or the folder's videos of ``split`` (split by video,
    never by frame: see the module docstring)."""
    if data == "procedural":
        return ProceduralPairs(split, videos, frames_per_video, size, augment and split == "train")
    return FolderPairs(data, size, augment and split == "train", split=split)


def check_pair_joints(pair: PosePair) -> PosePair:
    check_joints(pair.source_joints, "source joints")
    check_joints(pair.target_joints, "target joints")
    return pair
