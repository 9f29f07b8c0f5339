"""ToolchainRestore-v0: restore a degraded patch by choosing tools one at a time."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from ..data import Patch
from ..data.tensors import to_tensor
from ..tools import Toolbox
from .episode import (
    NUM_ACTIONS,
    configure,
    draw_patch,
    episode_info,
    given_patch,
    observation_space,
    render_frame,
    wants_given_patch,
)
from .toolchain import ToolchainBatch, check_action

__all__ = ["ToolchainRestoreEnv", "check_action"]


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
    - `level`: "mild", "moderate" (default) or "severe"; "mixed" draws one of the three per
      episode.
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
        self._batch: ToolchainBatch | None = None
        self._done = True

    def _observation(self) -> dict[str, Any]:
        batch = self._batch.observation()
        return {"image": batch["image"][0], "previous_action": batch["previous_action"][0], "step": int(batch["step"][0])}

    def _info(self) -> dict[str, Any]:
        b = self._batch
        return episode_info(self._patch, b.psnr[0], b.input_psnr[0], b.chains[0])

    def _start(self, patch: Patch) -> None:
        self._patch = patch
        self._batch = ToolchainBatch(self.toolbox, to_tensor([patch.L], self.device), to_tensor([patch.H], self.device))
        self._done = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if wants_given_patch(options):
            self._start(given_patch(options, self.patch_size))
        else:
            patch, _ = draw_patch(self.sampler, self.np_random, self.level, self.training_rules, self.clean_fraction)
            self._start(patch)
        return self._observation(), self._info()

    @torch.no_grad()
    def step(self, action):
        if self._patch is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("the episode has ended; call reset() before stepping again")
        rewards, _ = self._batch.step(np.array([check_action(action)]))
        self._done = bool(self._batch.finished(self.max_steps, self.training_rules)[0])
        return self._observation(), float(rewards[0]), self._done, False, self._info()

    def render(self):
        if self.render_mode != "rgb_array" or self._patch is None:
            return None
        b = self._batch
        return render_frame(self._patch.L, b.image[0].transpose(1, 2, 0), self._patch.H, b.chains[0],
                            (b.input_psnr[0], b.psnr[0]))
