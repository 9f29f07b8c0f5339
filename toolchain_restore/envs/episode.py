"""What the single and the batched environment share: drawing an episode's patch, spaces,
observations and pictures. Both call these, so given the same seed they draw the same."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from PIL import Image, ImageDraw

from ..data import Patch, PatchSampler, image_set
from ..errors import InvalidInput
from ..degrade import SEVERITY_BANDS, DegradationParams, degrade
from ..metrics import psnr
from ..runtime import resolve_device, resolve_precision
from ..tools import NUM_TOOLS, TOOL_SPECS, Toolbox, load_toolbox
from ..tools.data import NO_JPEG
from .toolchain import NUM_ACTIONS, STOP

__all__ = [
    "STOP",
    "NUM_ACTIONS",
    "MAX_INPUT_PSNR",
    "NEAR_CLEAN",
    "LEVELS",
    "MIXED",
    "near_clean_params",
    "observation_space",
    "check_arguments",
    "configure",
    "make_sampler",
    "draw_patch",
    "shared_toolbox",
    "action_name",
    "render_frame",
    "episode_info",
    "given_patch",
    "wants_given_patch",
]

MAX_INPUT_PSNR = 50.0
"""Training rules: patches already above this PSNR are not worth an episode."""
NEAR_CLEAN = "clean"
"""A level beside the protocol's three severities: nearly clean patches, on which the right
first action is usually to stop. Each of blur (std up to ``NEAR_CLEAN_BLUR``), noise (std up
to ``NEAR_CLEAN_NOISE``) and JPEG (quality from ``NEAR_CLEAN_JPEG``) is present with
probability 1/2; with none of them the patch is its own clean image."""
MIXED = "mixed"
"""A training level: each episode draws one of the protocol's three severities, with equal
chance, so that an agent or a chain meets every severity it is scored on (the paper trains on
moderate only)."""
LEVELS: tuple[str, ...] = (*SEVERITY_BANDS, NEAR_CLEAN, MIXED)
NEAR_CLEAN_BLUR, NEAR_CLEAN_NOISE, NEAR_CLEAN_JPEG = 0.5, 2.0, 90


def observation_space(patch_size: int, max_steps: int) -> spaces.Dict:
    return spaces.Dict(
        {
            "image": spaces.Box(0, 255, (3, patch_size, patch_size), np.uint8),
            "previous_action": spaces.Box(0.0, 1.0, (NUM_TOOLS,), np.float32),
            "step": spaces.Discrete(max_steps + 1),
        }
    )


def configure(
    env,
    level: str,
    data,
    split: str,
    toolbox,
    max_steps: int,
    patch_size: int,
    training_rules: bool,
    render_mode: str | None,
    device: str,
    precision: str = "auto",
    clean_fraction: float = 0.0,
) -> None:
    """Check the arguments shared by the single and the vector env and set them on ``env``."""
    check_arguments(level, split, max_steps, patch_size, render_mode, env.metadata["render_modes"], clean_fraction)
    env.clean_fraction = float(clean_fraction)

    env.level = level
    env.split = split
    env.max_steps = max_steps
    env.patch_size = patch_size
    env.training_rules = training_rules
    env.render_mode = render_mode
    env.device = resolve_device(device)
    resolved = resolve_precision(precision, env.device)  # a bad precision fails before any loading
    env.sampler = make_sampler(data, split, patch_size)
    env.toolbox = shared_toolbox(toolbox, env.device).with_precision(precision)
    env.precision = resolved.precision
    """The precision the tools compute at (what 'auto' resolved to on this device)."""


def check_arguments(level: str, split: str, max_steps: int, patch_size: int, render_mode: str | None, render_modes,
                    clean_fraction: float = 0.0) -> None:
    """Refuse environment arguments out of range (InvalidInput, a ValueError: from the
    command line they are the user's options)."""
    if level not in LEVELS:
        raise InvalidInput(f"level must be one of {sorted(SEVERITY_BANDS)}, {NEAR_CLEAN!r} or {MIXED!r}, got {level!r}")
    if not isinstance(clean_fraction, (int, float)) or not 0.0 <= clean_fraction <= 1.0:
        raise InvalidInput(f"clean_fraction must be a number in [0, 1], got {clean_fraction!r}")
    if split not in ("train", "test"):
        raise InvalidInput(f"split must be 'train' or 'test', got {split!r}")
    if not isinstance(max_steps, int) or max_steps < 1:
        raise InvalidInput(f"max_steps must be a positive int, got {max_steps!r}")
    if not isinstance(patch_size, int) or patch_size < 8:
        raise InvalidInput(f"patch_size must be an int of at least 8, got {patch_size!r}")
    if render_mode is not None and render_mode not in render_modes:
        raise InvalidInput(f"render_mode must be one of {render_modes} or None, got {render_mode!r}")


@lru_cache(maxsize=8)
def _cached_sampler(data: str | None, split: str, patch_size: int, augment: bool) -> PatchSampler:
    return PatchSampler(image_set(data, split), patch_size, augment=augment)


def make_sampler(data, split: str, patch_size: int, augment: bool = False) -> PatchSampler:
    """Environments of one process share the decoded-image cache of the same data."""
    if data is None or isinstance(data, str):
        return _cached_sampler(data, split, patch_size, augment)
    images = image_set(str(data), split) if not hasattr(data, "get") else data
    return PatchSampler(images, patch_size, augment=augment)


@lru_cache(maxsize=4)
def _cached_toolbox(path: str | None, device: str) -> Toolbox:
    return load_toolbox(path, device, precision=None)


def shared_toolbox(toolbox: Toolbox | str | None, device: torch.device) -> Toolbox:
    """The shipped or a named toolbox, loaded once per process and device (its precision
    is the caller's to set, with ``with_precision``)."""
    if isinstance(toolbox, Toolbox):
        return toolbox.to(device).eval()
    return _cached_toolbox(None if toolbox is None else str(toolbox), str(device))


def near_clean_params(rng: np.random.Generator) -> DegradationParams:
    """The distortions of one :data:`NEAR_CLEAN` patch, drawn with ``rng``."""
    blur = float(rng.uniform(0.0, NEAR_CLEAN_BLUR)) if rng.random() < 0.5 else 0.0
    noise = float(rng.uniform(0.0, NEAR_CLEAN_NOISE)) if rng.random() < 0.5 else 0.0
    quality = int(rng.integers(NEAR_CLEAN_JPEG, 101)) if rng.random() < 0.5 else NO_JPEG
    return DegradationParams(blur, noise, quality)


def _degrade_at(level: str):
    def fn(image, r, crop):
        if level != NEAR_CLEAN:
            return degrade(image, level, r, crop=crop)
        p = near_clean_params(r)
        return degrade(image, rng=r, blur_std=p.blur_std, noise_std=p.noise_std, jpeg_quality=p.jpeg_quality,
                       crop=crop)[0], p

    return fn


def draw_patch(sampler: PatchSampler, rng: np.random.Generator, level: str, training_rules: bool,
               clean_fraction: float = 0.0) -> tuple[Patch, float]:
    """An episode's patch and its input PSNR, drawn with ``rng`` only. With ``clean_fraction``
    > 0, that share of episodes is :data:`NEAR_CLEAN` instead of ``level``; :data:`MIXED`
    draws a severity per episode. The training rules never skip nearly clean patches (they
    are where an agent learns to stop)."""
    if clean_fraction > 0 and rng.random() < clean_fraction:
        level = NEAR_CLEAN
    elif level == MIXED:
        level = tuple(SEVERITY_BANDS)[int(rng.integers(len(SEVERITY_BANDS)))]
    fn = _degrade_at(level)
    for _ in range(1000):
        patch = sampler.sample(rng, fn)
        input_psnr = psnr(patch.L, patch.H)
        if level == NEAR_CLEAN or not training_rules or input_psnr <= MAX_INPUT_PSNR:
            return patch, input_psnr
    raise RuntimeError(f"no patch under {MAX_INPUT_PSNR} dB input PSNR in 1000 draws")


def action_name(action: int) -> str:
    return "stop" if action == STOP else TOOL_SPECS[action].name


def _tile(image: np.ndarray, scale: int) -> Image.Image:
    im = Image.fromarray(image)
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST)


def render_frame(
    L: np.ndarray, E: np.ndarray, H: np.ndarray, toolchain: list[int], psnrs: tuple[float, float], scale: int = 3
) -> np.ndarray:
    """Input, current and clean patch side by side (H x W x 3 uint8), with the chain below."""
    tiles = [_tile(x, scale) for x in (L, E, H)]
    w, h = tiles[0].size
    gap, text_h = 4, 30
    canvas = Image.new("RGB", (3 * w + 2 * gap, h + text_h), (255, 255, 255))
    for k, t in enumerate(tiles):
        canvas.paste(t, (k * (w + gap), 0))
    chain = " > ".join(action_name(a) for a in toolchain) or "(no tool yet)"
    draw = ImageDraw.Draw(canvas)
    draw.text((2, h + 2), f"input | current | clean    chain: {chain}", fill=(0, 0, 0))
    draw.text((2, h + 15), f"PSNR {psnrs[0]:.2f} -> {psnrs[1]:.2f} dB", fill=(0, 0, 0))
    return np.asarray(canvas, dtype=np.uint8)


def episode_info(patch: Patch, psnr: float, input_psnr: float, toolchain: list[int]) -> dict[str, Any]:
    """The ``info`` of one episode's step or reset (the vector env batches the same dicts)."""
    p = patch.params
    return {"psnr": float(psnr), "input_psnr": float(input_psnr), "toolchain": list(toolchain), "source": patch.source,
            "blur_std": p.blur_std, "noise_std": p.noise_std, "jpeg_quality": p.jpeg_quality, "levels": p.levels}


def given_patch(options: dict[str, Any], patch_size: int) -> Patch:
    """The patch of ``reset(options={"L": ..., "H": ..., "params": ...})``: uint8 arrays of
    ``patch_size x patch_size x 3``, checked."""
    L, H = options.get("L"), options.get("H")
    expected = (patch_size, patch_size, 3)
    for name, x in (("L", L), ("H", H)):
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.shape != expected:
            got = f"{type(x).__name__} {getattr(x, 'shape', '')} {getattr(x, 'dtype', '')}"
            raise ValueError(f"options[{name!r}] must be a uint8 array of shape {expected}, got {got}")
    params = options.get("params") or DegradationParams(float("nan"), float("nan"), 0)
    return Patch(L, H, params, "given")


def wants_given_patch(options: dict[str, Any] | None) -> bool:
    return bool(options) and ("L" in options or "H" in options)
