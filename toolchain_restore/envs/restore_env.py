"""ToolchainRestore-v0: restore a degraded patch by choosing tools one at a time."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from ..data import Patch
from ..data.tensors import to_tensor, to_uint8
from ..degrade import DegradationParams
from ..metrics import batch_psnr
from ..tools import NUM_TOOLS, Toolbox
from .episode import (
    NUM_ACTIONS,
    STOP,
    configure,
    draw_patch,
    observation_space,
    params_info,
    render_frame,
)

__all__ = ["ToolchainRestoreEnv", "check_action"]


def check_action(action: Any) -> int:
    """The action as a Python int in 0..12, or a clear error."""
    if isinstance(action, np.ndarray) and action.shape == ():
        action = action.item()
    if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
        raise ValueError(f"action must be an int in 0..{NUM_ACTIONS - 1}, got {action!r}")
    if not 0 <= int(action) < NUM_ACTIONS:
        raise ValueError(f"action must be in 0..{NUM_ACTIONS - 1} (0..11 = tools 1..12, 12 = stop), got {action}")
    return int(action)


class ToolchainRestoreEnv(gym.Env):
    """Restore a degraded image patch with a short chain of small CNN tools (RL-Restore).

    ## Description
    A clean patch is cut from a natural image at one of three scales and degraded by
    Gaussian blur, Gaussian noise and JPEG, with a mix drawn from a severity band
    (Yu et al., "Crafting a Toolchain for Image Restoration by Deep Reinforcement
    Learning", CVPR 2018). At each step the agent applies one of 12 restoration tools
    (4 for blur, 4 for noise, 4 for JPEG, each for one band of strength) or stops.

    ## Action Space
    `Discrete(13)`: actions 0..11 apply tools 1..12 (blur 1-4, noise 5-8, JPEG 9-12,
    lighter to heavier); action 12 stops.

    ## Observation Space
    A `Dict`:
    - `image`: uint8 `Box(0, 255, (3, patch_size, patch_size))`, the current patch, the
      uint8 view of the float state.
    - `previous_action`: float32 `Box(0, 1, (12,))`, one-hot of the previous tool, all
      zeros at the first step.
    - `step`: `Discrete(max_steps + 1)`, the number of tools applied so far.

    ## Rewards
    PSNR (dB, on [0, 1] images) after the step minus PSNR before it, computed on the
    float state against the clean patch. Stopping gives 0.

    ## Starting State
    A fresh patch: image, scale, position and degradation drawn from the env's RNG.
    `reset(options={"L": uint8 HxWx3, "H": uint8 HxWx3})` starts from a given pair.

    ## Episode End
    Terminated by the stop action or after `max_steps` tools (the step count is part of
    the observation). With `training_rules`, also when PSNR falls below the input's.
    Never truncated.

    ## Arguments
    - `level`: "mild", "moderate" (default) or "severe".
    - `data`: None for the embedded default images, or a folder of images.
    - `split`: "train" (default) or "test": which images patches come from.
    - `toolbox`: None for the shipped toolbox, a toolbox file, or a `Toolbox`.
    - `max_steps`: most tools per episode (3).
    - `patch_size`: side of the patch (63).
    - `training_rules`: the official training-only rules (skip patches above 50 dB, end
      when PSNR falls below the input's); off by default because they use the ground truth.
    - `render_mode`: None or "rgb_array" (input, current and clean side by side, chain below).
    - `device`: where the tools run: "cpu" (default), "cuda" or "auto".
    - `precision`: how the tools compute: "auto" (default: bf16 where this machine runs it
      faster than float32, else float32), "fp32", "bf16", or "fp16" on CUDA. States,
      rewards and PSNR stay float32 (see `toolchain_restore.runtime`).
    - `clean_fraction`: share of episodes on a nearly clean patch instead of `level` (0 by
      default): where stopping at once is usually right, so that an agent learns it.
      `level="clean"` makes every episode one; the training rules never skip them.

    ## Version History
    - v0: first version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(
        self,
        level: str = "moderate",
        data: str | None = None,
        split: str = "train",
        toolbox: Toolbox | str | None = None,
        max_steps: int = 3,
        patch_size: int = 63,
        training_rules: bool = False,
        render_mode: str | None = None,
        device: str = "cpu",
        precision: str = "auto",
        clean_fraction: float = 0.0,
    ) -> None:
        configure(self, level, data, split, toolbox, max_steps, patch_size, training_rules, render_mode, device,
                  precision, clean_fraction)
        self.observation_space = observation_space(patch_size, max_steps)
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self._patch: Patch | None = None
        self._done = True

    def _observation(self) -> dict[str, Any]:
        previous = np.zeros(NUM_TOOLS, dtype=np.float32)
        if self._toolchain:
            previous[self._toolchain[-1]] = 1.0
        # A copy: a stop leaves the image as it was, and callers may keep or edit what they get.
        return {"image": self._image.copy(), "previous_action": previous, "step": len(self._toolchain)}

    def _info(self) -> dict[str, Any]:
        return {
            "psnr": self._psnr,
            "input_psnr": self._input_psnr,
            "toolchain": list(self._toolchain),
            "source": self._patch.source,
            **params_info(self._patch),
        }

    def _start(self, patch: Patch) -> None:
        self._patch = patch
        self._H = to_tensor([patch.H], self.device)
        self._state = to_tensor([patch.L], self.device)
        self._image = to_uint8(self._state)[0]
        self._input_psnr = float(batch_psnr(self._state, self._H)[0])
        self._psnr = self._input_psnr
        self._toolchain: list[int] = []
        self._done = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options and ("L" in options or "H" in options):
            self._start(self._given_patch(options))
        else:
            patch, _ = draw_patch(self.sampler, self.np_random, self.level, self.training_rules, self.clean_fraction)
            self._start(patch)
        return self._observation(), self._info()

    def _given_patch(self, options: dict[str, Any]) -> Patch:
        L, H = options.get("L"), options.get("H")
        expected = (self.patch_size, self.patch_size, 3)
        for name, x in (("L", L), ("H", H)):
            if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.shape != expected:
                got = f"{type(x).__name__} {getattr(x, 'shape', '')} {getattr(x, 'dtype', '')}"
                raise ValueError(f"options[{name!r}] must be a uint8 array of shape {expected}, got {got}")
        params = options.get("params") or DegradationParams(float("nan"), float("nan"), 0)
        return Patch(L, H, params, "given")

    @torch.no_grad()
    def step(self, action):
        if self._patch is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("the episode has ended; call reset() before stepping again")
        action = check_action(action)
        reward = 0.0
        terminated = False
        if action == STOP:
            terminated = True
        else:
            self._state = self.toolbox(self._state, action).clamp_(0.0, 1.0)
            self._image = to_uint8(self._state)[0]
            new_psnr = float(batch_psnr(self._state, self._H)[0])
            reward = new_psnr - self._psnr
            self._psnr = new_psnr
            self._toolchain.append(action)
            terminated = len(self._toolchain) >= self.max_steps
            if self.training_rules and self._psnr < self._input_psnr:
                terminated = True
        self._done = terminated
        return self._observation(), float(reward), bool(terminated), False, self._info()

    def render(self):
        if self.render_mode != "rgb_array" or self._patch is None:
            return None
        return render_frame(self._patch.L, self._image.transpose(1, 2, 0), self._patch.H, self._toolchain, (self._input_psnr, self._psnr))
