"""The native batched ToolchainRestore-v0: N episodes stepped together, each tool run once
per step on the rows that chose it."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from ..data import Patch
from ..data.tensors import to_tensor, to_uint8
from ..metrics import batch_psnr
from ..tools import NUM_TOOLS, Toolbox
from .episode import (
    NUM_ACTIONS,
    STOP,
    configure,
    draw_patch,
    observation_space,
    render_frame,
)

__all__ = ["ToolchainRestoreVectorEnv"]


class ToolchainRestoreVectorEnv(VectorEnv):
    """``num_envs`` ToolchainRestore-v0 episodes in one batch (Gymnasium ``VectorEnv``).

    Each step groups the rows by chosen tool and runs every tool once on its group, on
    ``device``. Sub-env ``i`` has its own RNG, seeded as Gymnasium's ``SyncVectorEnv``
    seeds its i-th env (``seed + i``), so the same seeds give the same observations and
    rewards as N single envs. The next patch of every sub-env is degraded ahead of time
    in a background thread, so resets cost almost nothing at step time.

    Autoreset follows Gymnasium's default, ``NEXT_STEP``: the step after an episode ends
    resets that row (its action is ignored; reward 0, not terminated).

    Arguments are those of :class:`~toolchain_restore.envs.ToolchainRestoreEnv`, plus
    ``num_envs`` and ``prefetch`` (degrade the next patches in the background).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 8,
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
        prefetch: bool = True,
    ) -> None:
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.num_envs = num_envs
        configure(self, level, data, split, toolbox, max_steps, patch_size, training_rules, render_mode, device,
                  precision, clean_fraction)

        self.single_observation_space = observation_space(patch_size, max_steps)
        self.single_action_space = spaces.Discrete(NUM_ACTIONS)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

        n, p = num_envs, patch_size
        self._rngs: list[np.random.Generator] = [seeding.np_random(None)[0] for _ in range(n)]
        self._pool = ThreadPoolExecutor(max_workers=1) if prefetch else None
        self._next: list[Future | tuple[Patch, float] | None] = [None] * n
        self._patches: list[Patch | None] = [None] * n
        self._state = torch.zeros(n, 3, p, p, device=self.device)
        self._H = torch.zeros(n, 3, p, p, device=self.device)
        self._image = np.zeros((n, 3, p, p), dtype=np.uint8)
        self._psnr = np.zeros(n)
        self._input_psnr = np.zeros(n)
        self._steps = np.zeros(n, dtype=np.int64)
        self._previous = np.full(n, -1, dtype=np.int64)
        self._chains: list[list[int]] = [[] for _ in range(n)]
        self._autoreset = np.zeros(n, dtype=bool)
        self._started = False

    # -- patches -------------------------------------------------------------------------

    def _draw(self, i: int) -> tuple[Patch, float]:
        return draw_patch(self.sampler, self._rngs[i], self.level, self.training_rules, self.clean_fraction)

    def _schedule(self, i: int) -> None:
        self._next[i] = self._pool.submit(self._draw, i) if self._pool else None

    def _take(self, i: int) -> tuple[Patch, float]:
        pending = self._next[i]
        self._next[i] = None
        return pending.result() if isinstance(pending, Future) else self._draw(i)

    def _start_rows(self, rows: Sequence[int]) -> None:
        if not rows:
            return
        drawn = [self._take(i) for i in rows]
        for i in rows:
            self._schedule(i)
        index = torch.as_tensor(list(rows), device=self.device)
        self._state[index] = to_tensor([d[0].L for d in drawn], self.device)
        self._H[index] = to_tensor([d[0].H for d in drawn], self.device)
        start_psnr = batch_psnr(self._state[index], self._H[index]).cpu().numpy()
        self._image[list(rows)] = to_uint8(self._state[index])
        for k, i in enumerate(rows):
            self._patches[i] = drawn[k][0]
            self._psnr[i] = self._input_psnr[i] = float(start_psnr[k])
            self._steps[i] = 0
            self._previous[i] = -1
            self._chains[i] = []

    # -- Gymnasium API -------------------------------------------------------------------

    def _observations(self) -> dict[str, np.ndarray]:
        previous = np.zeros((self.num_envs, NUM_TOOLS), dtype=np.float32)
        has = self._previous >= 0
        previous[np.nonzero(has)[0], self._previous[has]] = 1.0
        return {"image": self._image.copy(), "previous_action": previous, "step": self._steps.copy()}

    def _infos(self) -> dict[str, Any]:
        params = [p.params for p in self._patches]
        return {
            "psnr": self._psnr.copy(),
            "input_psnr": self._input_psnr.copy(),
            "blur_std": np.array([p.blur_std for p in params]),
            "noise_std": np.array([p.noise_std for p in params]),
            "jpeg_quality": np.array([p.jpeg_quality for p in params]),
        }

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None):
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"need {self.num_envs} seeds, got {len(seeds)}")
        for i, s in enumerate(seeds):
            if s is not None or not self._started:
                # A prefetched patch came from the old RNG: finish it and throw it away.
                pending = self._next[i]
                if isinstance(pending, Future):
                    pending.result()
                self._next[i] = None
                self._rngs[i], _ = seeding.np_random(s)
        self._start_rows(list(range(self.num_envs)))
        self._autoreset[:] = False
        self._started = True
        return self._observations(), self._infos()

    @torch.no_grad()
    def step(self, actions):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions must be {self.num_envs} ints, got {actions.dtype} array of shape {actions.shape}")
        if ((actions < 0) | (actions >= NUM_ACTIONS)).any():
            bad = actions[(actions < 0) | (actions >= NUM_ACTIONS)]
            raise ValueError(f"actions must be in 0..{NUM_ACTIONS - 1} (0..11 = tools 1..12, 12 = stop), got {bad.tolist()}")

        resetting = np.nonzero(self._autoreset)[0].tolist()
        acting = ~self._autoreset
        tool_rows = np.nonzero(acting & (actions != STOP))[0]
        rewards = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, dtype=bool)
        terminated[acting & (actions == STOP)] = True

        if len(tool_rows):
            index = torch.as_tensor(tool_rows, device=self.device)
            chosen = torch.as_tensor(actions[tool_rows], device=self.device)
            restored = self.toolbox.apply(self._state[index], chosen).clamp_(0.0, 1.0)
            self._state[index] = restored
            self._image[tool_rows] = to_uint8(restored)
            new_psnr = batch_psnr(restored, self._H[index]).cpu().numpy()
            rewards[tool_rows] = new_psnr - self._psnr[tool_rows]
            self._psnr[tool_rows] = new_psnr
            self._steps[tool_rows] += 1
            self._previous[tool_rows] = actions[tool_rows]
            for i in tool_rows:
                self._chains[i].append(int(actions[i]))
            done = self._steps[tool_rows] >= self.max_steps
            if self.training_rules:
                done |= self._psnr[tool_rows] < self._input_psnr[tool_rows]
            terminated[tool_rows] = done

        self._start_rows(resetting)
        self._autoreset = terminated.copy()
        return self._observations(), rewards, terminated, np.zeros(self.num_envs, dtype=bool), self._infos()

    def toolchains(self) -> list[list[int]]:
        """The tools (0..11) applied so far in each row's current episode."""
        return [list(c) for c in self._chains]

    def render(self):
        if self.render_mode != "rgb_array" or not self._started:
            return None
        return tuple(
            render_frame(p.L, self._image[i].transpose(1, 2, 0), p.H, self._chains[i], (self._input_psnr[i], self._psnr[i]))
            for i, p in enumerate(self._patches)
        )

    def close_extras(self, **kwargs: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
