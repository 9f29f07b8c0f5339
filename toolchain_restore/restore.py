"""Whole-image restoration: the agent and the toolbox on an image of any size, returned in
the input's own pixel format.

The agent was trained on 63x63 patches, so a whole image is restored through patches, in
one of two ways:

- ``"vote"``, the official RL-Restore method for arbitrary sizes: cut the image into
  63x63 patches (non-overlapping, except that the last row and column end on the
  image's border), let the agent choose an action on every patch, and apply
  the majority's tool to the whole image; repeat until a majority stops or ``max_steps``
  tools ran. One chain for the whole image, no seams, and the tools see the whole image
  (they are fully convolutional).
- ``"blend"``, as in the successor Path-Restore: overlapping 63x63 patches, each restored
  by its own toolchain exactly as in an environment episode, then blended with tapered
  weights, so that each region gets the tools that suit it without visible seams.

Pixel formats: H x W gray, H x W x 1 gray, H x W x 2 gray + alpha, H x W x 3 RGB,
H x W x 4 RGBA; uint8, uint16 or float in [0, 1]. The work is done in float32 whatever
the input, so a 16-bit image keeps its 16-bit precision (the agent alone looks at 8-bit
views of the patches, as it did in training). Gray is restored as gray repeated over RGB
(the tools were trained on colour) and the mean of the three restored channels is
returned. Alpha is passed through untouched.

Note: ``toolchain_restore.restore`` is this module's main function (the package exports
it); import the rest by name, ``from toolchain_restore.restore import RestoreResult``.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from .agents.policy import RecurrentQPolicy, check_views, load_agent
from .data.tensors import to_uint8
from .envs.episode import NUM_ACTIONS, STOP, action_name
from .envs.toolchain import ToolchainBatch, check_actions, run_policy
from .errors import InvalidInput
from .runtime import resolve_device
from .tools import NUM_TOOLS, Toolbox, load_toolbox

__all__ = [
    "MODES",
    "PATCH_SIZE",
    "DEFAULT_STRIDE",
    "RestoreResult",
    "restore",
    "check_restore_options",
    "blend_weights",
    "apply_tool_tiled",
    "receptive_radius",
]

MODES = ("vote", "blend")
PATCH_SIZE = 63
"""The agent's patch side (its training patches)."""
DEFAULT_STRIDE = 47
"""Blend mode: patches overlap by 63 - 47 = 16 pixels, two tool receptive radii (8 each),
so the zero-padding border of one patch is cross-faded with its neighbour's interior."""
DEFAULT_BATCH_SIZE = 256
"""Patches given to the agent (and, in blend mode, restored) at once: bounds memory."""
PROGRESS_AUTO_PATCHES = 400
"""``progress=None`` shows a progress bar above this many patches (about a 1-megapixel image)."""
TOOL_TILE = 256
"""Vote mode applies a tool to the whole image in tiles of this side (plus a margin), so a
large image never needs the tool's 64-channel activations at full size. Tiles of 256 run
the large tools about 1.3-1.5x faster on a 512 or 1024 image than tiles of 512 or none (a
tile's activations stay in the CPU's caches; measured on one thread of a 2-core AMD EPYC);
DnCNN-style gains nothing from tiling, its 64-channel convolutions being compute-bound."""
SUPPORTED_DTYPES = ("uint8", "uint16", "float16", "float32", "float64")


class Policy(Protocol):
    """Anything with Stable-Baselines3's ``predict`` on ToolchainRestore-v0 observations."""

    def predict(self, observation: dict[str, np.ndarray], state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]: ...


@dataclass
class RestoreResult:
    """A restored image and how it was restored.

    Tool indices are 0..11 (tool 1..12 in printed text), as the agent's actions.
    """

    image: np.ndarray
    """The restored image, same shape and dtype as the input."""
    mode: str
    chain: list[int]
    """Vote: the tools applied to the whole image. Blend: the most common patch chain."""
    chains: list[list[int]]
    """The chain of every patch (vote: all equal to ``chain`` by construction)."""
    patch_origins: list[tuple[int, int]]
    """Top-left corner of every patch in image coordinates (negative or past the image
    where a patch lies partly on the reflected border)."""
    votes: list[dict[int, int]] = field(default_factory=list)
    """Vote mode: per step, action (0..11 tools, 12 stop) -> number of patches choosing it."""
    tool_macs: int = 0
    """Multiply-adds of the tools, on the padded canvas / patches they actually ran on."""
    agent_macs: int = 0
    """Multiply-adds of the agent's decisions (``RecurrentQPolicy.macs_per_decision`` each)."""
    seconds: float = 0.0
    """Time spent restoring (weights already loaded)."""
    steps: list[np.ndarray] = field(default_factory=list)
    """Vote mode with ``keep_steps``: the input, then the image after each tool of ``chain``,
    in the input's format."""

    @property
    def macs(self) -> int:
        """All multiply-adds spent: tools plus agent."""
        return self.tool_macs + self.agent_macs

    def summary(self) -> str:
        """One human-readable paragraph: the chain(s), the votes, the cost."""
        cost = f"{self.macs / 1e9:.2f} G multiply-adds ({self.agent_macs / 1e9:.2f} G agent), {self.seconds:.2f} s"
        n = len(self.chains)
        if self.mode == "vote":
            steps = []
            for counts in self.votes:
                winner = max(counts, key=lambda a: (counts[a], -a))
                steps.append(f"{_action_label(winner)} ({counts[winner]}/{n})")
            return f"vote over {n} patches: {' -> '.join(steps) or 'no steps'}; chain {_chain_label(self.chain)}; {cost}"
        common = Counter(tuple(c) for c in self.chains).most_common(3)
        listed = ", ".join(f"{_chain_label(list(c))} x{k}" for c, k in common)
        mean = float(np.mean([len(c) for c in self.chains])) if self.chains else 0.0
        return f"blend of {n} patches: mean chain length {mean:.2f}; most common chains {listed}; {cost}"


def _action_label(action: int) -> str:
    return "stop" if action == STOP else f"tool {action + 1} ({action_name(action)})"


def _chain_label(chain: list[int]) -> str:
    return ",".join(str(t + 1) for t in chain) if chain else "(none)"


# -- pixel formats ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Format:
    """What is needed to give the restored RGB back in the input's format."""

    shape: tuple[int, ...]
    dtype: np.dtype
    gray: bool
    alpha: np.ndarray | None


def _to_float_rgb(image: np.ndarray) -> tuple[np.ndarray, _Format]:
    """Validate ``image`` and return it as float32 H x W x 3 in [0, 1] with its format."""
    if isinstance(image, torch.Tensor):
        raise TypeError("image must be a numpy array (H x W or H x W x C), not a torch tensor")
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise InvalidInput(f"image must be H x W or H x W x C, got an array of shape {image.shape}")
    if image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4):
        raise InvalidInput(
            f"image must have 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA) channels, got shape {image.shape} "
            f"(channels go last)"
        )
    if image.size == 0:
        raise InvalidInput(f"image is empty (shape {image.shape})")
    if image.dtype.name not in SUPPORTED_DTYPES:
        raise InvalidInput(f"unsupported pixel type {image.dtype}; use one of {', '.join(SUPPORTED_DTYPES)}")
    if image.dtype.kind == "f":
        if np.isnan(image).any():
            raise InvalidInput("image holds NaN values")
        low, high = float(image.min()), float(image.max())
        if low < 0.0 or high > 1.0:
            raise InvalidInput(f"float images must be in [0, 1], got values in [{low:g}, {high:g}]")
    channels = 1 if image.ndim == 2 else image.shape[2]
    gray = channels in (1, 2)
    colour = image[:, :, None] if image.ndim == 2 else image[:, :, : 1 if gray else 3]
    alpha = image[:, :, -1].copy() if channels in (2, 4) else None
    scale = {"uint8": 255.0, "uint16": 65535.0}.get(image.dtype.name, 1.0)
    rgb = colour.astype(np.float32) / np.float32(scale)
    if gray:
        rgb = np.repeat(rgb, 3, axis=2)
    return np.ascontiguousarray(rgb), _Format(image.shape, image.dtype, gray, alpha)


def _from_float_rgb(rgb: np.ndarray, fmt: _Format) -> np.ndarray:
    """Float H x W x 3 in [0, 1] back to the input's shape and dtype (rounded for integers)."""
    colour = rgb.mean(axis=2, keepdims=True) if fmt.gray else rgb
    colour = np.clip(colour, 0.0, 1.0)
    if fmt.dtype.kind == "u":
        peak = np.iinfo(fmt.dtype).max
        colour = np.round(colour.astype(np.float64) * peak).astype(fmt.dtype)
    else:
        colour = colour.astype(fmt.dtype)
    if fmt.alpha is not None:
        colour = np.concatenate([colour, fmt.alpha[:, :, None]], axis=2)
    return colour.reshape(fmt.shape)


# -- building blocks ----------------------------------------------------------------------


def _pad(rgb: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """Reflect-pad (numpy reflects again and again when the pad is wider than the image,
    and repeats a 1-pixel side), so that padding looks like more of the same image."""
    return np.pad(rgb, ((top, bottom), (left, right), (0, 0)), mode="reflect")


def receptive_radius(module: nn.Module) -> int:
    """How far (pixels) an output of a stack of same-padded convolutions can see: the sum of
    every convolution's half kernel. Exact for the tools, which chain their convolutions
    (a residual skip adds no reach)."""
    radius = 0
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            radius += max((k - 1) // 2 * d for k, d in zip(m.kernel_size, m.dilation))
    return radius


@torch.no_grad()
def apply_tool_tiled(toolbox: Toolbox, x: torch.Tensor, tool: int, tile: int = TOOL_TILE) -> torch.Tensor:
    """``toolbox(x, tool)`` computed in tiles, for bounded memory on large images.

    Each tile is run with a margin of the tool's receptive radius of real neighbours, so
    the result equals the whole-image application (the image's own border still sees the
    tool's zero padding, as it would whole).
    """
    height, width = x.shape[-2:]
    if height <= tile and width <= tile:
        return toolbox(x, tool)
    halo = receptive_radius(toolbox.tools[tool])
    out = torch.empty_like(x)
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            ya, xa = max(0, y0 - halo), max(0, x0 - halo)
            yb, xb = min(height, y1 + halo), min(width, x1 + halo)
            restored = toolbox(x[..., ya:yb, xa:xb], tool)
            out[..., y0:y1, x0:x1] = restored[..., y0 - ya : y1 - ya, x0 - xa : x1 - xa]
    return out


def blend_weights(size: int = PATCH_SIZE, overlap: int = PATCH_SIZE - DEFAULT_STRIDE) -> np.ndarray:
    """Separable linear taper of a ``size`` x ``size`` patch (float32).

    Over ``overlap`` pixels on every side the weight rises linearly from 1 / (overlap + 1)
    to 1, so two neighbours overlapping by ``overlap`` cross-fade (their weights add up to
    a constant) and a patch edge, where the tools saw zero padding, counts little. The
    weight is never zero, so pixels only one patch covers (the image's border) are still
    defined after normalising by the summed weights.
    """
    distance = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(np.float32)
    ramp = np.ones(size, np.float32) if overlap <= 0 else np.minimum(1.0, (distance + 1.0) / (overlap + 1.0))
    return np.outer(ramp, ramp).astype(np.float32)


def _starts(length: int, stride: int) -> list[int]:
    """Patch starts covering ``length`` (>= PATCH_SIZE) with the given stride; the last
    patch is moved back to end on the border instead of hanging over it."""
    starts = list(range(0, length - PATCH_SIZE + 1, stride))
    if starts[-1] != length - PATCH_SIZE:
        starts.append(length - PATCH_SIZE)
    return starts


def _one_hot(actions: np.ndarray) -> np.ndarray:
    previous = np.zeros((len(actions), NUM_TOOLS), np.float32)
    tools = actions < NUM_TOOLS
    previous[np.nonzero(tools)[0], actions[tools]] = 1.0
    return previous


def _state_rows(state: Any, rows: np.ndarray | slice) -> Any:
    """The rows of a recurrent state (tuple of arrays, batch on axis 1), or None."""
    return None if state is None else tuple(np.asarray(s)[:, rows] for s in state)


def _set_state_rows(state: Any, rows: np.ndarray | slice, new: Any, total: int) -> Any:
    if new is None:
        return state
    if state is None:
        state = tuple(np.zeros((s.shape[0], total, *s.shape[2:]), np.asarray(s).dtype) for s in new)
    for whole, part in zip(state, new):
        whole[:, rows] = part
    return state


def _decide(policy: Policy, images: np.ndarray, previous: np.ndarray, step: int, state: Any,
            batch_size: int) -> tuple[np.ndarray, Any]:
    """The policy's deterministic actions on N patches (uint8 N x 3 x 63 x 63), asked in
    batches of ``batch_size``; ``state`` holds every patch's recurrent state (batch axis 1)."""
    total = len(images)
    actions = np.empty(total, np.int64)
    new_state = None if step == 0 else state
    for lo in range(0, total, batch_size):
        rows = slice(lo, min(lo + batch_size, total))
        n = rows.stop - rows.start
        observation = {"image": images[rows], "previous_action": previous[rows],
                       "step": np.full(n, step, np.int64)}
        chosen, part = policy.predict(observation, None if step == 0 else _state_rows(state, rows),
                                      episode_start=np.full(n, step == 0), deterministic=True)
        actions[rows] = check_actions(np.asarray(chosen).reshape(-1), n, "the policy's actions")
        new_state = _set_state_rows(new_state, rows, part, total)
    return actions, new_state


def _agent_macs_per_decision(policy: Policy) -> int:
    count = getattr(policy, "macs_per_decision", None)
    return int(count()) if callable(count) else 0


def _bar(total: int, progress: bool | None, patches: int, desc: str):
    from tqdm.auto import tqdm

    show = patches > PROGRESS_AUTO_PATCHES if progress is None else progress
    return tqdm(total=total, desc=desc, disable=not show, leave=False)


# -- the two modes ------------------------------------------------------------------------


def _vote(rgb: np.ndarray, policy: Policy, toolbox: Toolbox, max_steps: int, device: torch.device,
          batch_size: int, progress: bool | None, keep_steps: bool = False) -> RestoreResult:
    height, width = rgb.shape[:2]
    # The tools run on the image itself, not on a canvas padded to whole patches (up to 1.5x
    # the pixels at 256x256); only a side shorter than a patch is padded, so one patch fits.
    canvas = _pad(rgb, 0, max(0, PATCH_SIZE - height), 0, max(0, PATCH_SIZE - width))
    # One row, the whole image: the chosen tool runs on all of it, in tiles.
    image = ToolchainBatch(None, torch.from_numpy(canvas).to(device).permute(2, 0, 1)[None].contiguous(),
                           run_tool=lambda tool, x: apply_tool_tiled(toolbox, x, tool))
    # Patches tile the image; the last row and column end on the border, overlapping their
    # neighbours a little, so every voter sees real pixels only.
    origins = [(t, l) for t in _starts(image.state.shape[-2], PATCH_SIZE) for l in _starts(image.state.shape[-1], PATCH_SIZE)]
    n = len(origins)
    per_decision = _agent_macs_per_decision(policy)
    state, previous = None, np.zeros((n, NUM_TOOLS), np.float32)
    votes: list[dict[int, int]] = []
    tool_macs = agent_macs = 0
    steps = [rgb] if keep_steps else []
    with _bar(max_steps, progress, n, "vote") as bar:
        for step in range(max_steps):
            x = image.state
            patches = torch.stack([x[0, :, t : t + PATCH_SIZE, l : l + PATCH_SIZE] for t, l in origins])
            actions, state = _decide(policy, to_uint8(patches), previous, step, state, batch_size)
            agent_macs += n * per_decision
            counts = np.bincount(actions, minlength=NUM_ACTIONS)
            votes.append({int(a): int(k) for a, k in enumerate(counts) if k})
            winner = int(np.argmax(counts))  # a tie goes to the lower action number
            bar.update(1)
            image.step([winner])
            if winner == STOP:
                break
            tool_macs += toolbox.macs(winner, x.shape[-2], x.shape[-1])
            previous = _one_hot(np.full(n, winner))
            if keep_steps:
                # A copy: the core updates its state in place at the next step.
                steps.append(image.state[0, :, :height, :width].permute(1, 2, 0).cpu().numpy().copy())
    chain = image.chains[0]
    restored = image.state[0, :, :height, :width].permute(1, 2, 0).cpu().numpy()
    return RestoreResult(restored, "vote", chain, [list(chain) for _ in range(n)], origins, votes, tool_macs, agent_macs,
                         steps=steps)


def _blend(rgb: np.ndarray, policy: Policy, toolbox: Toolbox, max_steps: int, device: torch.device,
           batch_size: int, progress: bool | None, stride: int) -> RestoreResult:
    height, width = rgb.shape[:2]
    overlap = PATCH_SIZE - stride
    # A margin of reflected image around the image puts its border inside patches too,
    # away from the tools' zero padding at patch edges.
    margin = overlap // 2
    extra_h, extra_w = max(0, PATCH_SIZE - height - 2 * margin), max(0, PATCH_SIZE - width - 2 * margin)
    canvas = _pad(rgb, margin, margin + extra_h, margin, margin + extra_w)
    x = torch.from_numpy(canvas).to(device).permute(2, 0, 1).contiguous()
    origins = [(t, l) for t in _starts(x.shape[1], stride) for l in _starts(x.shape[2], stride)]
    weights = torch.from_numpy(blend_weights(PATCH_SIZE, overlap)).to(device)
    total = torch.zeros_like(x)
    norm = torch.zeros(x.shape[1:], device=device)
    chains: list[list[int]] = []
    tool_macs = agent_macs = 0
    with _bar(len(origins), progress, len(origins), "blend") as bar:
        for lo in range(0, len(origins), batch_size):
            batch = origins[lo : lo + batch_size]
            patches = torch.stack([x[:, t : t + PATCH_SIZE, l : l + PATCH_SIZE] for t, l in batch])
            # Each patch restored by its own chain, exactly as an environment episode.
            restored_patches, batch_chains, decisions = run_policy(policy, toolbox, patches, max_steps)
            chains += [list(c) for c in batch_chains]
            tool_macs += sum(toolbox.macs(t, PATCH_SIZE, PATCH_SIZE) for c in batch_chains for t in c)
            agent_macs += int(decisions.sum()) * _agent_macs_per_decision(policy)
            for (t, l), patch in zip(batch, restored_patches):
                total[:, t : t + PATCH_SIZE, l : l + PATCH_SIZE] += patch * weights
                norm[t : t + PATCH_SIZE, l : l + PATCH_SIZE] += weights
            bar.update(len(batch))
    restored = (total / norm)[:, margin : margin + height, margin : margin + width]
    common = Counter(tuple(c) for c in chains).most_common(1)[0][0]
    image_origins = [(t - margin, l - margin) for t, l in origins]
    return RestoreResult(restored.permute(1, 2, 0).cpu().numpy(), "blend", list(common), chains, image_origins,
                         [], tool_macs, agent_macs)


# -- the entry point ----------------------------------------------------------------------


def check_restore_options(mode: str, max_steps: int, stride: int, batch_size: int, views: int | None) -> None:
    """Refuse options of :func:`restore` it cannot use, before any work (the restore
    command checks them before reading its first image).

    Raises:
        InvalidInput: an unknown mode, or ``max_steps`` / ``stride`` / ``batch_size`` /
            ``views`` out of range (each named with its option).
    """
    if mode not in MODES:
        raise InvalidInput(f"--mode: unknown mode {mode!r}; the modes are {', '.join(repr(m) for m in MODES)}")
    if not isinstance(max_steps, (int, np.integer)) or max_steps < 0:
        raise InvalidInput(f"--max-steps (max_steps) must be an int >= 0, got {max_steps!r}")
    if not isinstance(stride, (int, np.integer)) or not 1 <= stride <= PATCH_SIZE:
        raise InvalidInput(f"--stride (stride) must be an int in 1..{PATCH_SIZE}, got {stride!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InvalidInput(f"--batch-size (batch_size) must be a positive int, got {batch_size!r}")
    if views is not None:
        check_views(views)


def restore(
    image: np.ndarray,
    mode: str = "vote",
    agent: Policy | str | os.PathLike | None = None,
    toolbox: Toolbox | str | os.PathLike | None = None,
    max_steps: int = 3,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
    *,
    stride: int = DEFAULT_STRIDE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    keep_steps: bool = False,
    views: int | None = None,
    precision: str | None = "auto",
) -> RestoreResult:
    """Restore a whole image of any size with the agent's toolchains.

    Args:
        image: H x W, or H x W x C with C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA);
            uint8, uint16 or float in [0, 1].
        mode: ``"vote"`` (one chain for the whole image by majority vote over
            patches tiling the image, the official method) or ``"blend"`` (a chain per
            overlapping patch, blended). See the module docstring.
        agent: a policy with SB3's ``predict`` (e.g. ``RecurrentQPolicy``), an agent file,
            or None for the shipped agent.
        toolbox: a Toolbox, a toolbox file, or None for the shipped tools: with the shipped
            agent (``agent=None``) the ones jointly fine-tuned for its chains, else the
            separately trained ones. It is moved to ``device`` and put in eval mode.
        max_steps: longest chain (the agent was trained with 3).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``; where the tools (and a loaded agent) run.
        progress: show a tqdm bar; None shows one only for large images.
        stride: blend mode, the step between patches (1..63; 63 = no overlap).
        batch_size: patches handled at once, to bound memory.
        keep_steps: vote mode only, keep the image after every step in ``result.steps``.
        views: symmetric views per decision of a ``RecurrentQPolicy`` (1..8). None: one in
            vote mode, where the vote already pools the decisions of every patch and more
            views cost time for no measured gain (README), and the agent's own in blend mode.
        precision: how the agent and the tools compute: 'auto' (bf16 where this machine runs
            it faster, else fp32), 'fp32', 'bf16', 'fp16' (CUDA); it applies to a given
            Toolbox or RecurrentQPolicy too (the same weights); None keeps their own.
            Images, states and the blend stay float32.

    Returns:
        A :class:`RestoreResult`; its ``image`` has the input's shape and dtype.

    Raises:
        ValueError: unknown mode, a bad shape, channel count or dtype, an empty image, NaN,
            a float image outside [0, 1], or bad ``max_steps`` / ``stride`` / ``batch_size``.
    """
    check_restore_options(mode, max_steps, stride, batch_size, views)
    if keep_steps and mode != "vote":
        raise ValueError("keep_steps needs mode='vote': in blend mode every patch has its own chain")
    rgb, fmt = _to_float_rgb(image)
    device = resolve_device(device)
    # None keeps a given Toolbox's own precision (a file loaded with None computes in the caller's context).
    tools = load_toolbox(toolbox, device, precision if precision is not None else getattr(toolbox, "precision", None),
                         for_shipped_agent=agent is None)
    policy: Policy = agent if hasattr(agent, "predict") else load_agent(agent, device, precision=precision)
    if isinstance(policy, RecurrentQPolicy):
        policy = policy.with_precision(precision) if precision is not None else policy
        if policy.network.patch_size != PATCH_SIZE:
            raise ValueError(f"the agent sees {policy.network.patch_size}-pixel patches; whole-image restoration "
                             f"cuts {PATCH_SIZE}-pixel ones")
        policy = policy.with_views((1 if mode == "vote" else policy.views) if views is None else views)
    start = time.perf_counter()  # restoration alone, not loading the weights
    with torch.no_grad():
        if mode == "vote":
            result = _vote(rgb, policy, tools, int(max_steps), device, int(batch_size), progress, keep_steps)
        else:
            result = _blend(rgb, policy, tools, int(max_steps), device, int(batch_size), progress, int(stride))
    result.image = _from_float_rgb(result.image, fmt)
    result.steps = [_from_float_rgb(step, fmt) for step in result.steps]
    result.seconds = time.perf_counter() - start
    return result
