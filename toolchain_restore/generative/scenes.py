"""Procedural street scenes: a semantic label map, an instance map and a photo-like image.

The embedded default data of the image-synthesis modules (pix2pixHD, SIMS) and their test
fixture, standing in for Cityscapes: sky above a horizon, grass and a road in perspective
below it, buildings on the horizon, trees, cars on the road and people. Things are painted
from back to front, so near objects occlude far ones, and the painting order is kept as
the true depth order. Every class has its own colour and texture statistics and every
instance its own colours (each car its body colour, each building its facade), so that an
instance-level feature encoder has something to encode.

A scene is a pure function of its seed and size; everything is vectorised numpy, a
128 x 256 scene takes a few milliseconds.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from ..errors import InvalidInput

__all__ = [
    "SCENE_CLASSES",
    "THING_CLASSES",
    "STUFF_CLASSES",
    "SCENE_PALETTE",
    "MIN_SCENE_SIZE",
    "Scene",
    "make_scene",
    "make_scenes",
    "procedural_split",
    "procedural_scene",
    "SPLIT_SIZE",
    "colorize_labels",
    "label_palette",
    "TRAIN_SEED_START",
    "TEST_SEED_START",
]

SCENE_CLASSES: tuple[str, ...] = ("sky", "ground", "road", "building", "tree", "car", "person")
"""The semantic classes; a pixel's label value is the class's index here."""
THING_CLASSES: tuple[str, ...] = ("car", "person", "tree", "building")
"""Classes with several instances per scene; their instance ids are ``label * 1000 + k``."""
STUFF_CLASSES: tuple[str, ...] = tuple(c for c in SCENE_CLASSES if c not in THING_CLASSES)
"""Classes without instances; their instance id is the label itself."""
SCENE_PALETTE = np.array(
    [[70, 130, 180], [152, 251, 152], [128, 64, 128], [70, 70, 70], [107, 142, 35], [0, 0, 142], [220, 20, 60]],
    dtype=np.uint8,
)
"""One display colour per class (Cityscapes' colours for the same classes), for pictures of label maps."""
MIN_SCENE_SIZE = 32
"""Smallest height and width a scene can be made at."""
TRAIN_SEED_START = 0
"""The training split uses seeds TRAIN_SEED_START, TRAIN_SEED_START + 1, ..."""
TEST_SEED_START = 1_000_000
"""The test split uses seeds from here on, so no training scene is ever a test scene."""

SKY, GROUND, ROAD, BUILDING, TREE, CAR, PERSON = range(len(SCENE_CLASSES))
INSTANCE_FACTOR = 1000
"""Cityscapes packs a thing's instance id as ``label * 1000 + k``."""


@dataclass
class Scene:
    """One procedural scene: what is where, which object each pixel belongs to, and its picture."""

    label: np.ndarray
    """H x W uint8 class indices into SCENE_CLASSES."""
    instance: np.ndarray
    """H x W int32: ``label * 1000 + k`` on the k-th instance of a thing class, ``label`` on stuff."""
    image: np.ndarray
    """H x W x 3 uint8 RGB rendering."""
    depth_order: list[int]
    """Instance ids of every visible thing, from back to front (the order they were painted)."""


def label_palette(count: int) -> np.ndarray:
    """count x 3 uint8 colours: SCENE_PALETTE's for the procedural classes, then
    well-separated hues (golden-angle steps) for any further label, e.g. Cityscapes' 35."""
    hues = (np.arange(max(0, count - len(SCENE_PALETTE))) * 0.618034) % 1.0
    extra = np.stack([0.5 + 0.4 * np.cos(2 * np.pi * (hues + shift)) for shift in (0.0, 1 / 3, 2 / 3)], axis=1)
    return np.concatenate([SCENE_PALETTE, (extra * 255).round().astype(np.uint8)])[:count]


def colorize_labels(label: np.ndarray | torch.Tensor) -> np.ndarray:
    """An H x W x 3 uint8 picture of a label map in :func:`label_palette`'s colours."""
    label = np.asarray(label).astype(np.intp)
    count = max(len(SCENE_PALETTE), int(label.max(initial=0)) + 1)
    palette = label_palette(count)
    return palette[np.clip(label, 0, count - 1)]


# ----------------------------------------------------------------------------- textures


def _value_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth random field of unit-ish spread: a coarse random grid, smoothly interpolated."""
    cell = max(float(cell), 1.0)
    gh, gw = int(h / cell) + 3, int(w / cell) + 3
    grid = rng.standard_normal((gh, gw))
    oy, ox = rng.random(2)  # a random phase, so grid lines do not sit at the same place every time
    ys, xs = np.arange(h) / cell + oy, np.arange(w) / cell + ox
    y0, x0 = ys.astype(np.intp), xs.astype(np.intp)
    fy, fx = ys - y0, xs - x0
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)  # smoothstep: no visible creases at cell edges
    fy, fx = fy[:, None], fx[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _fractal(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 3) -> np.ndarray:
    """Several octaves of value noise (each half the cell size and amplitude), scaled to std ~1."""
    total, amplitude = np.zeros((h, w)), 1.0
    for _ in range(octaves):
        total += amplitude * _value_noise(rng, h, w, cell)
        cell, amplitude = cell / 2, amplitude / 2
    return total / max(total.std(), 1e-6)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))) * 255.0


# ----------------------------------------------------------------------------- geometry


@dataclass
class _Road:
    """The road as a trapezoid with its apex at the vanishing point on the horizon."""

    horizon: int
    height: int
    vanish_x: float
    bottom_centre: float
    bottom_half_width: float

    def depth(self, y: np.ndarray | float) -> np.ndarray | float:
        """0 at the horizon, 1 at the bottom row: how near a ground point on row y is."""
        return np.clip((np.asarray(y, dtype=float) - self.horizon) / max(self.height - self.horizon, 1), 0.0, 1.0)

    def centre(self, y: np.ndarray | float) -> np.ndarray | float:
        return self.vanish_x + (self.bottom_centre - self.vanish_x) * self.depth(y)

    def half_width(self, y: np.ndarray | float) -> np.ndarray | float:
        return self.bottom_half_width * self.depth(y)


@dataclass
class _Thing:
    """An object to paint: its class, where it stands (the depth key) and how to draw it."""

    label: int
    depth_key: float
    draw: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    """(ys column, xs row) in frame coordinates -> (mask, RGB colours) over that box."""
    box: tuple[float, float, float, float]
    """y0, y1, x0, x1 of the object's extent in frame coordinates (may leave the frame)."""


def _rounded_rect(ys, xs, cy, cx, half_h, half_w, radius):
    radius = min(radius, half_h, half_w)
    dy = np.maximum(np.abs(ys - cy) - (half_h - radius), 0.0)
    dx = np.maximum(np.abs(xs - cx) - (half_w - radius), 0.0)
    return dy * dy + dx * dx <= radius * radius + 1e-9


def _disc(ys, xs, cy, cx, radius):
    return (ys - cy) ** 2 + (xs - cx) ** 2 <= radius * radius


def _building(rng: np.random.Generator, horizon: int, height: int, width: int) -> _Thing:
    w = width * rng.uniform(0.08, 0.24)
    h = height * rng.uniform(0.14, 0.42)
    cx = rng.uniform(-0.05, 1.05) * width
    bottom = horizon + rng.uniform(0, max(1.0, height / 40))  # stands just on (not above) the horizon line
    top = bottom - h
    gable = rng.random() < 0.5
    roof_h = w * rng.uniform(0.15, 0.35) if gable else max(1.0, h * 0.05)
    facade = _hsv(rng.choice([0.03, 0.08, 0.11, 0.58, 0.0]) + rng.normal(0, 0.02), rng.uniform(0.05, 0.5),
                  rng.uniform(0.45, 0.9))
    roof = _hsv(rng.uniform(0, 0.08), rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.45))
    glass = _hsv(rng.uniform(0.52, 0.64), rng.uniform(0.2, 0.5), rng.uniform(0.15, 0.35))
    lit = _hsv(rng.uniform(0.1, 0.16), 0.5, 0.9)
    pitch_x = max(2.5, w / rng.integers(3, 8))
    pitch_y = max(2.5, pitch_x * rng.uniform(0.8, 1.4))
    grain = rng.uniform(0.03, 0.1)
    seed = int(rng.integers(2**31))

    def draw(ys, xs):
        local = np.random.default_rng(seed)
        body = (ys >= top) & (ys < bottom) & (np.abs(xs - cx) < w / 2)
        if gable:
            rise = (ys - (top - roof_h)) / roof_h
            roof_mask = (ys >= top - roof_h) & (ys < top) & (np.abs(xs - cx) < (w / 2) * rise)
        else:
            roof_mask = (ys >= top - roof_h) & (ys < top) & (np.abs(xs - cx) < w / 2 + 0.5)
        mask = body | roof_mask
        colour = facade * (1 + grain * local.standard_normal(mask.shape))[..., None]
        # A window grid: each window a cell of the facade lattice, some of them lit.
        u, v = (xs - (cx - w / 2)) / pitch_x, (ys - top) / pitch_y
        fu, fv = u - np.floor(u), v - np.floor(v)
        lit_table = local.random((int(h / pitch_y) + 3, int(w / pitch_x) + 3)) < 0.2
        iv = np.clip(np.floor(v).astype(np.intp), 0, lit_table.shape[0] - 1)
        iu = np.clip(np.floor(u).astype(np.intp), 0, lit_table.shape[1] - 1)
        window = body & (fu > 0.25) & (fu < 0.75) & (fv > 0.3) & (fv < 0.8) & (ys < bottom - pitch_y * 0.5)
        window &= (xs - (cx - w / 2) > pitch_x * 0.5) | (w < 4 * pitch_x)
        pane = np.where(lit_table[iv, iu][..., None], lit, glass)
        colour = np.where(window[..., None], pane, colour)
        colour = np.where(roof_mask[..., None], roof, colour)
        return mask, colour

    return _Thing(BUILDING, horizon - 2 + rng.random(), draw, (top - roof_h, bottom, cx - w / 2, cx + w / 2))


def _tree(rng: np.random.Generator, road: _Road, height: int, width: int) -> _Thing:
    t = rng.uniform(0.03, 0.9)
    base = road.horizon + t * (height - road.horizon)
    h = max(5.0, height * rng.uniform(0.35, 0.6) * (0.3 + 0.7 * t))
    side = rng.choice([-1.0, 1.0])
    cx = road.centre(base) + side * (road.half_width(base) + rng.uniform(0.02, 0.3) * width + 0.3 * h)
    trunk_w = max(1.0, h * rng.uniform(0.06, 0.1))
    crown_y, crown_r = base - h * 0.68, h * rng.uniform(0.26, 0.34)
    blobs = [(crown_y + rng.normal(0, 0.15) * crown_r, cx + rng.normal(0, 0.35) * crown_r,
              crown_r * rng.uniform(0.6, 0.9)) for _ in range(int(rng.integers(3, 6)))]
    leaf = _hsv(rng.uniform(0.2, 0.36), rng.uniform(0.45, 0.8), rng.uniform(0.3, 0.6))
    bark = _hsv(rng.uniform(0.05, 0.1), rng.uniform(0.4, 0.7), rng.uniform(0.2, 0.4))
    cell = max(1.5, crown_r / 4)
    seed = int(rng.integers(2**31))

    def draw(ys, xs):
        local = np.random.default_rng(seed)
        hh, ww = np.broadcast_shapes(ys.shape, xs.shape)
        leafy = _fractal(local, hh, ww, cell, 3)
        crown = np.zeros((hh, ww), bool)
        for by, bx, br in blobs:
            # A ragged edge: the noise pushes the blob's boundary in and out.
            crown |= np.sqrt((ys - by) ** 2 + (xs - bx) ** 2) / br + 0.18 * leafy < 1.0
        trunk = (np.abs(xs - cx) < trunk_w / 2) & (ys < base) & (ys > crown_y)
        mask = crown | trunk
        shade = 1 + 0.25 * leafy + 0.12 * local.standard_normal((hh, ww))
        shade = shade - 0.25 * np.clip((ys - crown_y) / crown_r, 0, 1)  # the underside of a crown is darker
        colour = np.where(crown[..., None], leaf * shade[..., None], bark * (1 + 0.1 * leafy)[..., None])
        return mask, colour

    top = min(by - br * 1.3 for by, _, br in blobs)
    left = min(bx - br * 1.3 for _, bx, br in blobs)
    right = max(bx + br * 1.3 for _, bx, br in blobs)
    return _Thing(TREE, base + 0.1 * rng.random(), draw, (top, base, min(left, cx - trunk_w), max(right, cx + trunk_w)))


def _car(rng: np.random.Generator, road: _Road, height: int) -> _Thing:
    t = rng.uniform(0.1, 1.0)
    base = road.horizon + t * (height - road.horizon)
    w = max(4.0, 2 * road.half_width(base) * rng.uniform(0.22, 0.32))
    h = w * rng.uniform(0.5, 0.62)
    cx = road.centre(base) + rng.uniform(-0.65, 0.65) * road.half_width(base)
    body = _hsv(rng.random(), rng.uniform(0.3, 0.95), rng.uniform(0.35, 0.95))
    if rng.random() < 0.25:  # white, silver and black cars are common
        body = np.full(3, rng.choice([30.0, 160.0, 230.0]))
    glass = _hsv(rng.uniform(0.55, 0.65), rng.uniform(0.1, 0.4), rng.uniform(0.12, 0.3))
    cabin_shift = rng.uniform(-0.08, 0.08) * w
    gloss = rng.uniform(0.1, 0.3)
    seed = int(rng.integers(2**31))

    def draw(ys, xs):
        local = np.random.default_rng(seed)
        lower = _rounded_rect(ys, xs, base - 0.4 * h, cx, 0.23 * h, 0.5 * w, 0.12 * h)
        rise = np.clip((ys - (base - h)) / (0.38 * h), 0, 1)  # 0 at the roof, 1 where the cabin meets the body
        cabin_half = (0.28 + 0.14 * rise) * w
        cabin = (ys >= base - h) & (ys < base - 0.6 * h) & (np.abs(xs - cx - cabin_shift) < cabin_half)
        window = cabin & (ys >= base - h + 0.08 * h) & (np.abs(xs - cx - cabin_shift) < cabin_half - 0.06 * w)
        window &= np.abs(xs - cx - cabin_shift) > 0.03 * w  # the pillar between front and back windows
        wheel_r = 0.2 * h
        wheels = _disc(ys, xs, base - wheel_r, cx - 0.3 * w, wheel_r) | _disc(ys, xs, base - wheel_r, cx + 0.3 * w,
                                                                             wheel_r)
        hubs = _disc(ys, xs, base - wheel_r, cx - 0.3 * w, wheel_r * 0.45) | _disc(ys, xs, base - wheel_r,
                                                                                 cx + 0.3 * w, wheel_r * 0.45)
        mask = lower | cabin | wheels
        # Paint shines near the top of the body and darkens towards the sills.
        sheen = 1 + gloss * (0.5 - np.clip((ys - (base - 0.63 * h)) / (0.46 * h), 0, 1))
        colour = body * (sheen + 0.03 * local.standard_normal(np.broadcast_shapes(ys.shape, xs.shape)))[..., None]
        colour = np.where(window[..., None], glass, colour)
        colour = np.where(wheels[..., None], np.where(hubs[..., None], 120.0, 20.0), colour)
        return mask, colour

    return _Thing(CAR, base + 0.1 * rng.random(), draw, (base - h, base, cx - w / 2, cx + w / 2))


def _person(rng: np.random.Generator, road: _Road, height: int) -> _Thing:
    t = rng.uniform(0.08, 1.0)
    base = road.horizon + t * (height - road.horizon)
    h = max(6.0, 2 * road.half_width(base) * rng.uniform(0.13, 0.18))
    side = rng.choice([-1.0, 1.0])
    cx = road.centre(base) + side * road.half_width(base) * rng.uniform(0.8, 1.5)
    skin = _hsv(rng.uniform(0.04, 0.1), rng.uniform(0.25, 0.6), rng.uniform(0.35, 0.95))
    shirt = _hsv(rng.random(), rng.uniform(0.2, 0.9), rng.uniform(0.3, 0.95))
    trousers = _hsv(rng.uniform(0.55, 0.7) if rng.random() < 0.6 else rng.random(), rng.uniform(0.1, 0.6),
                    rng.uniform(0.15, 0.6))
    stride = rng.uniform(0.02, 0.1) * h
    seed = int(rng.integers(2**31))

    def draw(ys, xs):
        local = np.random.default_rng(seed)
        head = _disc(ys, xs, base - 0.89 * h, cx, 0.1 * h + 0.5)
        torso = _rounded_rect(ys, xs, base - 0.6 * h, cx, 0.2 * h, 0.14 * h + 0.5, 0.06 * h)
        legs_band = (ys >= base - 0.42 * h) & (ys < base)
        leg_w = 0.05 * h + 0.5
        legs = legs_band & ((np.abs(xs - (cx - 0.06 * h - stride * (ys - base + 0.42 * h) / h)) < leg_w)
                            | (np.abs(xs - (cx + 0.06 * h + stride * (ys - base + 0.42 * h) / h)) < leg_w))
        mask = head | torso | legs
        colour = np.where(head[..., None], skin, np.where(torso[..., None], shirt, trousers))
        colour = colour * (1 + 0.05 * local.standard_normal(np.broadcast_shapes(ys.shape, xs.shape)))[..., None]
        return mask, colour

    return _Thing(PERSON, base + 0.1 * rng.random(), draw,
                  (base - h, base, cx - 0.2 * h - stride - 1, cx + 0.2 * h + stride + 1))


# ----------------------------------------------------------------------------- stuff


def _paint_stuff(rng: np.random.Generator, road: _Road, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Label map and image of sky, ground and road over the whole frame."""
    ys = np.arange(height, dtype=float)[:, None]
    xs = np.arange(width, dtype=float)[None, :]
    horizon = road.horizon
    label = np.where(ys < horizon, SKY, GROUND) * np.ones((1, width), np.int64)
    on_road = (ys >= horizon) & (np.abs(xs - road.centre(ys)) < road.half_width(ys))
    label[on_road] = ROAD

    # Sky: a vertical gradient from a deep zenith to a pale horizon, with soft clouds.
    zenith = _hsv(rng.uniform(0.55, 0.63), rng.uniform(0.45, 0.75), rng.uniform(0.6, 0.85))
    haze = _hsv(rng.uniform(0.55, 0.6), rng.uniform(0.05, 0.2), rng.uniform(0.85, 0.97))
    a = np.clip(ys / max(horizon, 1), 0, 1)[..., None]
    sky = zenith * (1 - a) + haze * a
    clouds = _fractal(rng, height, width, width / rng.uniform(3, 7), 4)
    cover = np.clip((clouds - rng.uniform(0.2, 1.2)) * 0.8, 0, 0.85) * (1 - 0.7 * a[..., 0])
    sky = sky * (1 - cover[..., None]) + rng.uniform(225, 250) * cover[..., None]

    # Ground: grass (sometimes dry) with blotches and blade-scale grain, finer towards the horizon.
    grass = _hsv(rng.uniform(0.17, 0.3), rng.uniform(0.4, 0.7), rng.uniform(0.35, 0.6))
    blotch = _fractal(rng, height, width, max(2.0, width / 16), 3)
    grain = rng.standard_normal((height, width))
    ground = grass * (1 + 0.15 * blotch + 0.1 * grain)[..., None]
    ground *= (0.85 + 0.2 * road.depth(ys))[..., None]  # a little aerial haze far away

    # Road: grey asphalt grain, a few stains, edge lines and a dashed centre line.
    grey = rng.uniform(70, 120)
    asphalt = grey * (1 + 0.06 * _fractal(rng, height, width, max(2.0, width / 24), 2) + 0.1 * grain)
    asphalt = np.repeat(asphalt[..., None], 3, axis=2) * np.array([1.0, 1.0, rng.uniform(1.0, 1.08)])
    depth = road.depth(ys)
    offset = np.abs(xs - road.centre(ys))
    line_w = np.maximum(0.45, 0.012 * width * depth)
    world_z = 1.0 / np.maximum(depth, 1e-3)  # distance along the road grows like 1 / depth
    period = rng.uniform(0.25, 0.5)
    dashed = (offset < line_w) & ((world_z / period) % 1.0 < 0.5) & (depth > 0.06)
    edges = np.abs(offset - road.half_width(ys) * 0.9) < line_w
    paint = rng.choice([[235.0, 235.0, 230.0], [230.0, 200.0, 60.0]])
    marked = on_road & (dashed | edges)

    image = np.where((ys < horizon)[..., None], sky, ground)
    image = np.where(on_road[..., None], asphalt, image)
    image = np.where(marked[..., None], np.asarray(paint) * (1 + 0.05 * grain)[..., None], image)
    return label, image


# ----------------------------------------------------------------------------- the scene


def make_scene(seed: int, height: int = 128, width: int = 256) -> Scene:
    """The procedural scene of ``seed`` at ``height`` x ``width`` (both at least 32).

    Raises:
        InvalidInput: a size below MIN_SCENE_SIZE.
    """
    if int(height) < MIN_SCENE_SIZE or int(width) < MIN_SCENE_SIZE:
        raise InvalidInput(f"a scene must be at least {MIN_SCENE_SIZE} x {MIN_SCENE_SIZE} pixels (--height, --width), "
                           f"got height={height}, width={width}")
    height, width = int(height), int(width)
    rng = np.random.default_rng(seed)
    horizon = int(round(height * rng.uniform(0.36, 0.55)))
    vanish_x = width * rng.uniform(0.35, 0.65)
    road = _Road(horizon, height, vanish_x, vanish_x + width * rng.uniform(-0.15, 0.15),
                 width * rng.uniform(0.3, 0.48))
    label, image = _paint_stuff(rng, road, height, width)
    instance = label.astype(np.int32)

    things = [_building(rng, horizon, height, width) for _ in range(int(rng.integers(3, 7)))]
    things += [_tree(rng, road, height, width) for _ in range(int(rng.integers(2, 6)))]
    things += [_car(rng, road, height) for _ in range(int(rng.integers(2, 5)))]
    things += [_person(rng, road, height) for _ in range(int(rng.integers(2, 5)))]
    # Back to front: a thing standing lower in the frame is nearer (all stand on the same ground).
    things.sort(key=lambda thing: thing.depth_key)

    painted: list[int] = []
    counts = dict.fromkeys(range(len(SCENE_CLASSES)), 0)
    for thing in things:
        y0, y1, x0, x1 = thing.box
        y0, x0 = max(int(np.floor(y0)) - 1, 0), max(int(np.floor(x0)) - 1, 0)
        y1, x1 = min(int(np.ceil(y1)) + 1, height), min(int(np.ceil(x1)) + 1, width)
        if y0 >= y1 or x0 >= x1:
            continue
        # Pixel centres, in frame coordinates.
        ys = np.arange(y0, y1, dtype=float)[:, None] + 0.5
        xs = np.arange(x0, x1, dtype=float)[None, :] + 0.5
        mask, colour = thing.draw(ys, xs)
        if not mask.any():
            continue
        ident = thing.label * INSTANCE_FACTOR + counts[thing.label]
        counts[thing.label] += 1
        label[y0:y1, x0:x1][mask] = thing.label
        instance[y0:y1, x0:x1][mask] = ident
        image[y0:y1, x0:x1][mask] = colour[mask]
        painted.append(ident)

    # Things hidden entirely behind nearer ones are dropped and the rest renumbered, so that
    # each class's instances are 0, 1, 2, ... and depth_order names only what can be seen.
    visible_ids = set(np.unique(instance[instance >= INSTANCE_FACTOR]).tolist())
    depth_order = [i for i in painted if i in visible_ids]
    if len(depth_order) != len(painted):
        lookup = np.arange(INSTANCE_FACTOR * len(SCENE_CLASSES), dtype=np.int32)
        renumbered: list[int] = []
        seen = dict.fromkeys(range(len(SCENE_CLASSES)), 0)
        for old in depth_order:
            cls = old // INSTANCE_FACTOR
            lookup[old] = cls * INSTANCE_FACTOR + seen[cls]
            seen[cls] += 1
            renumbered.append(int(lookup[old]))
        instance = lookup[instance]
        depth_order = renumbered

    # A camera's touch: slight optical blur and sensor noise.
    image = gaussian_filter(image, sigma=(0.6, 0.6, 0))
    image += rng.normal(0, 2.0, image.shape)
    return Scene(label=label.astype(np.uint8), instance=instance.astype(np.int32),
                 image=np.clip(np.round(image), 0, 255).astype(np.uint8), depth_order=[int(i) for i in depth_order])


def make_scenes(count: int, seed: int, height: int = 128, width: int = 256) -> list[Scene]:
    """``count`` scenes; scene i is ``make_scene(seed + i, height, width)``."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return [make_scene(seed + i, height, width) for i in range(count)]


SPLIT_SIZE = TEST_SEED_START - TRAIN_SEED_START
"""Scenes per split: indices 0..SPLIT_SIZE-1, so that no training scene is ever a test scene."""
_SPLIT_STARTS = {"train": TRAIN_SEED_START, "test": TEST_SEED_START}


def _split_start(split: str) -> int:
    if split not in _SPLIT_STARTS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _SPLIT_STARTS[split]


def procedural_split(split: str, count: int, height: int = 128, width: int = 256) -> list[Scene]:
    """The first ``count`` scenes of the 'train' split (seeds from TRAIN_SEED_START) or the
    'test' split (seeds from TEST_SEED_START); the two never share a seed as long as count
    stays below a million. Scene k is :func:`procedural_scene` ``(split, k)``.

    Raises:
        ValueError: another split name, or a count that would run into the other split's seeds.
    """
    start = _split_start(split)
    if count > SPLIT_SIZE:
        raise ValueError(f"at most {SPLIT_SIZE} scenes per split, got count={count}")
    return make_scenes(count, start, height, width)


def procedural_scene(split: str, index: int, height: int = 128, width: int = 256, what: str = "scene") -> Scene:
    """Scene ``index`` of a split, made directly (as fast for index 99,999 as for 0): the
    same scene as ``procedural_split(split, index + 1)[index]``, since each scene is a pure
    function of its seed.

    Raises:
        InvalidInput: ``index`` outside 0..SPLIT_SIZE-1 (``what`` names it in the message,
            e.g. the option it came from).
        ValueError: another split name.
    """
    start = _split_start(split)
    if not 0 <= index < SPLIT_SIZE:
        raise InvalidInput(f"{what} {index}: the procedural {split} scenes are numbered 0..{SPLIT_SIZE - 1}")
    return make_scene(start + index, height, width)
