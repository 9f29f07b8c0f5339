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
from ..data.tensors import to_tensor
from ..tools import Toolbox
from .episode import (
    NUM_ACTIONS,
    STOP,
    configure,
    draw_patch,
    episode_info,
    given_patch,
    observation_space,
    render_frame,
    wants_given_patch,
)
from .toolchain import ToolchainBatch, check_actions

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

    ``infos`` follow Gymnasium's vector convention: each key of the single env's info as
    an array over the rows, with a ``_key`` mask of the rows that have it. ``reset`` takes
    the single env's options (``L``, ``H``, ``params``: one patch for every reset row, or
    arrays with a leading axis of ``num_envs``, one per row) and Gymnasium's ``reset_mask``
    (reset only those rows).

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
        zeros = torch.zeros(n, 3, p, p, device=self.device)
        self._batch = ToolchainBatch(self.toolbox, zeros, zeros.clone())
        self._autoreset = np.zeros(n, dtype=bool)
        self._started = False

    # -- patches -------------------------------------------------------------------------

    def _draw(self, i: int) -> tuple[Patch, float]:
        return draw_patch(self.sampler, self._rngs[i], self.level, self.training_rules, self.clean_fraction)

    def _schedule(self, i: int) -> None:
        self._next[i] = self._pool.submit(self._draw, i) if self._pool else None

    def _take(self, i: int) -> Patch:
        pending = self._next[i]
        self._next[i] = None
        return (pending.result() if isinstance(pending, Future) else self._draw(i))[0]

    def _start_rows(self, rows: Sequence[int], given: list[Patch] | None = None) -> None:
        if not rows:
            return
        patches = given if given is not None else [self._take(i) for i in rows]
        if given is None:
            for i in rows:
                self._schedule(i)
        for i, patch in zip(rows, patches):
            self._patches[i] = patch
        self._batch.restart(rows, to_tensor([p.L for p in patches], self.device),
                            to_tensor([p.H for p in patches], self.device))

    # -- Gymnasium API -------------------------------------------------------------------

    def _observations(self) -> dict[str, np.ndarray]:
        return self._batch.observation()

    def _infos(self, rows: Sequence[int] | None = None) -> dict[str, Any]:
        b, infos = self._batch, {}
        for i in range(self.num_envs) if rows is None else rows:
            infos = self._add_info(infos, episode_info(self._patches[i], b.psnr[i], b.input_psnr[i], b.chains[i]), i)
        return infos

    def _reset_rows(self, options: dict[str, Any]) -> list[int]:
        mask = options.pop("reset_mask", None)
        if mask is None:
            return list(range(self.num_envs))
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (self.num_envs,) or not mask.any():
            raise ValueError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},) with a True, "
                             f"got {mask!r}")
        if not self._started:
            raise RuntimeError("the first reset() resets every row; reset_mask needs an earlier reset()")
        return np.nonzero(mask)[0].tolist()

    def _given_patches(self, options: dict[str, Any], rows: list[int]) -> list[Patch] | None:
        """One patch per reset row from the single env's options, or None to draw them."""
        if not wants_given_patch(options):
            return None
        per_row = all(isinstance(options.get(k), np.ndarray) and options[k].ndim == 4 for k in ("L", "H"))
        if not per_row:
            return [given_patch(options, self.patch_size)] * len(rows)
        for k in ("L", "H"):
            if len(options[k]) != self.num_envs:
                raise ValueError(f"options[{k!r}] must hold one patch per row ({self.num_envs}), got {len(options[k])}")
        params = options.get("params")
        return [given_patch({"L": options["L"][i], "H": options["H"][i],
                             "params": params[i] if isinstance(params, (list, tuple)) else params}, self.patch_size)
                for i in rows]

    def _seeds(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)):
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"need {self.num_envs} seeds, got {len(seeds)}")
        return seeds

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None):
        options = dict(options or {})
        seeds = self._seeds(seed)
        rows = self._reset_rows(options)
        given = self._given_patches(options, rows)
        for i in rows:
            if seeds[i] is not None or not self._started:
                # A prefetched patch came from the old RNG: finish it and throw it away.
                pending = self._next[i]
                if isinstance(pending, Future):
                    pending.result()
                self._next[i] = None
                self._rngs[i], _ = seeding.np_random(seeds[i])
        self._start_rows(rows, given)
        self._autoreset[rows] = False
        self._started = True
        return self._observations(), self._infos(rows)

    @torch.no_grad()
    def step(self, actions):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = check_actions(actions, self.num_envs)
        resetting = np.nonzero(self._autoreset)[0].tolist()
        actions[resetting] = STOP  # ignored: the row restarts below
        rewards, applied = self._batch.step(actions)
        terminated = self._batch.finished(self.max_steps, self.training_rules) & ~self._autoreset
        self._start_rows(resetting)
        self._autoreset = terminated.copy()
        return self._observations(), rewards, terminated, np.zeros(self.num_envs, dtype=bool), self._infos()

    def toolchains(self) -> list[list[int]]:
        """The tools (0..11) applied so far in each row's current episode."""
        return [list(c) for c in self._batch.chains]

    def render(self):
        if self.render_mode != "rgb_array" or not self._started:
            return None
        b = self._batch
        return tuple(
            render_frame(p.L, b.image[i].transpose(1, 2, 0), p.H, b.chains[i], (b.input_psnr[i], b.psnr[i]))
            for i, p in enumerate(self._patches)
        )

    def close_extras(self, **kwargs: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
