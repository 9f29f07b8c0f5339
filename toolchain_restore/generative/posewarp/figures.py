"""Procedural "videos" for PoseWarp: an articulated figure with the 14 joints of the
reference, its limbs drawn as shaded, textured shapes in per-figure colours, in poses
sampled from a plausible range of joint angles, over a background cut from a real
photograph (scikit-image's bundled images: train and test photos are disjoint).

A video is one figure and one background in many poses, so two of its frames are a
training pair exactly as two frames of one real video are. Everything is a function of
the video's seed, at any resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .pose import JOINT_COUNT, LIMBS

__all__ = ["FigureStyle", "random_style", "sample_pose", "render_figure", "ProceduralVideo", "TRAIN_VIDEO_SEED",
           "TEST_VIDEO_SEED", "background_crop"]

TRAIN_VIDEO_SEED = 0
"""Training videos use seeds from here."""
TEST_VIDEO_SEED = 1_000_000
"""Held-out videos use seeds from here (and the test split's background photos)."""

# Drawing order, back to front: legs, torso, arms, head (indices into LIMBS).
_DRAW_ORDER = (5, 6, 7, 8, 9, 1, 2, 3, 4, 0)


@dataclass
class FigureStyle:
    """One figure's look and proportions (lengths in units of its height)."""

    shirt: np.ndarray
    """RGB in [0, 1] of the torso and upper arms."""
    skin: np.ndarray
    """RGB of the forearms and head."""
    trousers: np.ndarray
    """RGB of the thighs and shins."""
    stripe_frequency: float
    """Stripes across each limb per limb length."""
    stripe_strength: float
    """Contrast of the stripes."""
    torso: float
    shoulders: float
    hips: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    head: float
    thickness: float
    """Limb radius."""


def random_style(rng: np.random.Generator) -> FigureStyle:
    """A figure with random colours, texture and proportions."""
    colour = lambda: rng.uniform(0.05, 0.95, 3)  # noqa: E731
    skin = np.array([0.95, 0.75, 0.6]) * rng.uniform(0.45, 1.0) + rng.uniform(-0.05, 0.05, 3)
    return FigureStyle(shirt=colour(), skin=np.clip(skin, 0, 1), trousers=colour(),
                       stripe_frequency=float(rng.uniform(1.5, 5.0)), stripe_strength=float(rng.uniform(0.1, 0.35)),
                       torso=float(rng.uniform(0.28, 0.33)), shoulders=float(rng.uniform(0.2, 0.26)),
                       hips=float(rng.uniform(0.13, 0.18)), upper_arm=float(rng.uniform(0.15, 0.18)),
                       forearm=float(rng.uniform(0.14, 0.17)), thigh=float(rng.uniform(0.22, 0.25)),
                       shin=float(rng.uniform(0.21, 0.24)), head=float(rng.uniform(0.11, 0.13)),
                       thickness=float(rng.uniform(0.028, 0.04)))


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def sample_pose(style: FigureStyle, rng: np.random.Generator, centre: np.ndarray, height: float) -> np.ndarray:
    """14 x 2 joints (pixels) of a random plausible pose: torso lean +-15 degrees, head tilt
    +-20, shoulder abduction -20..160 and elbow bend 0..130, hip abduction -15..50 and knee
    bend 0..90; the figure's hip centre at ``centre``, its height ``height`` pixels."""
    up = _rotate(np.array([0.0, -1.0]), rng.uniform(-0.26, 0.26))
    right_of_image = np.array([-up[1], up[0]])  # the image's right, for an upright figure facing us
    hip_mid = np.asarray(centre, np.float64)
    neck = hip_mid + height * style.torso * up
    j = np.zeros((JOINT_COUNT, 2))
    j[1] = neck
    j[0] = neck + height * style.head * _rotate(up, rng.uniform(-0.35, 0.35))
    shoulder_mid = neck - 0.03 * height * up
    # The figure faces the viewer: its right side is on the image's left.
    for side, (shoulder, elbow, wrist, hip, knee, ankle) in ((-1, (2, 3, 4, 8, 9, 10)), (1, (5, 6, 7, 11, 12, 13))):
        j[shoulder] = shoulder_mid + side * height * style.shoulders / 2 * right_of_image
        upper = _rotate(-up, -side * rng.uniform(-0.35, 2.8))
        j[elbow] = j[shoulder] + height * style.upper_arm * upper
        j[wrist] = j[elbow] + height * style.forearm * _rotate(upper, -side * rng.uniform(-0.3, 2.3))
        j[hip] = hip_mid + side * height * style.hips / 2 * right_of_image
        thigh = _rotate(-up, -side * rng.uniform(-0.26, 0.87))
        j[knee] = j[hip] + height * style.thigh * thigh
        j[ankle] = j[knee] + height * style.shin * _rotate(thigh, side * rng.uniform(0.0, 1.57) * rng.choice([-1, 1]))
    return j


def _capsule(xs: np.ndarray, ys: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float):
    """Soft coverage of a capsule from a to b, and each pixel's (along, across) coordinates."""
    axis = b - a
    length = max(float(np.hypot(*axis)), 1e-6)
    u = axis / length
    dx, dy = xs - a[0], ys - a[1]
    along = dx * u[0] + dy * u[1]
    across = -dx * u[1] + dy * u[0]
    t = np.clip(along, 0, length)
    dist = np.hypot(along - t, across)
    return np.clip(radius - dist + 0.5, 0, 1), along / length, across / max(radius, 1e-6)


def _quad(xs: np.ndarray, ys: np.ndarray, corners: np.ndarray, pad: float):
    """Soft coverage of a convex quadrilateral grown by ``pad`` pixels."""
    area = sum(corners[k, 0] * corners[(k + 1) % 4, 1] - corners[(k + 1) % 4, 0] * corners[k, 1] for k in range(4))
    inside = np.full(xs.shape, np.inf)
    for k in range(4):
        p, q = corners[k], corners[(k + 1) % 4]
        edge = q - p
        n = np.array([edge[1], -edge[0]]) / max(float(np.hypot(*edge)), 1e-6)
        if area > 0:
            n = -n
        inside = np.minimum(inside, (xs - p[0]) * n[0] + (ys - p[1]) * n[1])
    return np.clip(inside + pad + 0.5, 0, 1)


def render_figure(style: FigureStyle, joints: np.ndarray, background: np.ndarray,
                  figure_height: float) -> tuple[np.ndarray, np.ndarray]:
    """The figure drawn over ``background`` (H x W x 3 uint8): the image (H x W x 3 uint8) and
    the part labels (H x W uint8: 0 background, k + 1 for ``LIMBS[k]``)."""
    h, w = background.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    image = background.astype(np.float64) / 255
    labels = np.zeros((h, w), np.uint8)
    radius = style.thickness * figure_height
    colours = {0: style.skin, 1: style.shirt, 2: style.skin, 3: style.shirt, 4: style.skin, 5: style.trousers,
               6: style.trousers, 7: style.trousers, 8: style.trousers, 9: style.shirt}
    for k in _DRAW_ORDER:
        limb = LIMBS[k]
        if len(limb) == 2:
            a, b = joints[limb[0]], joints[limb[1]]
            r = radius * (2.6 if k == 0 else 1.15 if k in (5, 7) else 1.0)
            if k == 0:  # the head: a disc around the middle of head and neck
                mid = (a + b) / 2
                a, b = mid + 0.15 * (a - mid), mid - 0.15 * (a - mid)
            cover, along, across = _capsule(xs, ys, a, b, r)
        else:
            corners = joints[[2, 5, 11, 8]]
            cover = _quad(xs, ys, corners, radius * 0.8)
            top, bottom = (corners[0] + corners[1]) / 2, (corners[2] + corners[3]) / 2
            axis = bottom - top
            length = max(float(np.hypot(*axis)), 1e-6)
            along = ((xs - top[0]) * axis[0] + (ys - top[1]) * axis[1]) / length**2
            mid = (top + bottom) / 2
            across = (-(xs - mid[0]) * axis[1] + (ys - mid[1]) * axis[0]) / length / (0.6 * length)
        # Stripes fixed to the part (so they move with it), shading across it for volume.
        stripes = 1 + style.stripe_strength * np.sin(2 * np.pi * style.stripe_frequency * along + k)
        shade = 1 - 0.35 * np.clip(across, -1, 1) ** 2
        colour = colours[k][None, None] * (stripes * shade)[..., None]
        image = image * (1 - cover[..., None]) + np.clip(colour, 0, 1) * cover[..., None]
        labels[cover > 0.5] = k + 1
    return (image * 255).round().clip(0, 255).astype(np.uint8), labels


@lru_cache(maxsize=8)
def _photos(split: str) -> tuple[np.ndarray, ...]:
    from ...data.images import embedded_images

    photos = embedded_images(split)
    out = []
    for k in range(len(photos)):
        image = photos.get(k)
        if image is None:
            continue
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        out.append(np.ascontiguousarray(image[..., :3]))
    return tuple(out)


def background_crop(split: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop of one of ``split``'s bundled photographs, resized to ``size``."""
    from PIL import Image

    photos = _photos(split)
    photo = photos[int(rng.integers(len(photos)))]
    h, w = photo.shape[:2]
    side = int(rng.uniform(0.35, 0.9) * min(h, w))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
    return np.asarray(crop)


class ProceduralVideo:
    """One figure over one background in many poses: ``frame(k)`` is deterministic in
    (seed, k). Seeds at or above TEST_VIDEO_SEED take backgrounds from the held-out photos.

    Arguments:
        seed: the video.
        size: frames are size x size.
    """

    def __init__(self, seed: int, size: int) -> None:
        self.seed, self.size = seed, size
        rng = np.random.default_rng([seed, 7])
        self.style = random_style(rng)
        self.split = "test" if seed >= TEST_VIDEO_SEED else "train"
        self.background = background_crop(self.split, rng, size)
        self.figure_height = float(rng.uniform(0.62, 0.75)) * size
        self.centre = np.array([rng.uniform(0.42, 0.58), rng.uniform(0.55, 0.6)]) * size

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``index``: the image (size x size x 3 uint8) and its 14 x 2 joints."""
        image, joints, _ = self.frame_with_labels(index)
        return image, joints

    def frame_with_labels(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame ``index`` with its part labels (0 background, k + 1 for LIMBS[k])."""
        rng = np.random.default_rng([self.seed, 11, index])
        centre = self.centre + rng.uniform(-0.04, 0.04, 2) * self.size
        joints = sample_pose(self.style, rng, centre, self.figure_height)
        image, labels = render_figure(self.style, joints, self.background, self.figure_height)
        return image, joints, labels
