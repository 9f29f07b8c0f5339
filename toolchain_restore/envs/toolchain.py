"""The toolchain core: a batch of float states that tools are applied to, one step at a time.

Every loop of the project that applies tools drives :class:`ToolchainBatch`: the single
environment (one row), the native vector environment (N rows), policy roll-outs
(:func:`run_policy`, which evaluation and whole-image restoration use), the vote mode of
whole-image restoration (one row: the image) and joint fine-tuning (gradients through the
tools). So "apply the chosen tool, clamp, PSNR before / after, previous action, stop" and
the check of an action are written once, here.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..data.tensors import to_uint8
from ..metrics import batch_psnr
from ..tools import NUM_TOOLS, Toolbox

__all__ = ["STOP", "NUM_ACTIONS", "ToolRunner", "check_action", "check_actions", "ToolchainBatch", "run_policy"]

STOP = NUM_TOOLS
"""Action 12 stops the episode; actions 0..11 apply tools 1..12."""
NUM_ACTIONS = NUM_TOOLS + 1
_ACTION_RANGE = f"0..{NUM_ACTIONS - 1} (0..11 = tools 1..12, 12 = stop)"

ToolRunner = Callable[[int, torch.Tensor], torch.Tensor]
"""``run(tool, x)``: tool ``tool`` (0..11) on the rows ``x`` (K x 3 x h x w), unclamped."""


def check_action(action: Any) -> int:
    """One action as a Python int in 0..12, or a clear error."""
    if isinstance(action, np.ndarray) and action.shape == ():
        action = action.item()
    if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
        raise ValueError(f"action must be an int in 0..{NUM_ACTIONS - 1}, got {action!r}")
    if not 0 <= int(action) < NUM_ACTIONS:
        raise ValueError(f"action must be in {_ACTION_RANGE}, got {action}")
    return int(action)


def check_actions(actions: Any, n: int, source: str = "actions") -> np.ndarray:
    """``n`` actions as an int64 array, or one error naming ``source`` and what was expected."""
    array = np.asarray(actions)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array.reshape(-1)  # SB3-style predictions come as N x 1
    if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{source} must be {n} ints in {_ACTION_RANGE}, got {array.dtype} array of shape {array.shape}")
    bad = (array < 0) | (array >= NUM_ACTIONS)
    if bad.any():
        raise ValueError(f"{source} must be {n} actions in {_ACTION_RANGE}, got {array[bad].tolist()}")
    return array.astype(np.int64)


class ToolchainBatch:
    """N float states (N x 3 x h x w in [0, 1]) with their toolchains, stepped together.

    ``step(actions)`` runs each chosen tool once, on the rows that chose it, clamps the
    result to [0, 1], and records the chain; action 12 stops a row, and a stopped row is
    never stepped again until :meth:`restart`. With ground truths ``H`` it also keeps each
    row's PSNR and returns the rewards (PSNR after minus before, 0 for a stop).

    ``run_tool`` replaces how a tool runs (default: ``toolbox(x, tool)``): joint
    fine-tuning passes one that keeps gradients, whole-image restoration one that tiles.
    With gradients enabled the states are updated out of place, so autograd sees the chain.
    """

    def __init__(self, toolbox: Toolbox | None, L: torch.Tensor, H: torch.Tensor | None = None,
                 run_tool: ToolRunner | None = None) -> None:
        if run_tool is None and toolbox is None:
            raise ValueError("ToolchainBatch needs a toolbox or a run_tool")
        self.run_tool: ToolRunner = run_tool or (lambda tool, x: toolbox(x, tool))
        n = len(L)
        self.state = L.clone()
        self.H = H
        self.chains: list[list[int]] = [[] for _ in range(n)]
        self.previous = np.full(n, -1, dtype=np.int64)
        """The last tool of each row, -1 before the first."""
        self.active = np.ones(n, dtype=bool)
        """Rows that have not stopped."""
        self.decisions = np.zeros(n, dtype=np.int64)
        """Actions each row has taken, its stop included."""
        self.image = to_uint8(self.state.detach())
        """The uint8 view of the states (what a policy observes)."""
        self.psnr = self._psnr(slice(None)) if H is not None else None
        self.input_psnr = None if self.psnr is None else self.psnr.copy()

    def __len__(self) -> int:
        return len(self.chains)

    @property
    def steps(self) -> np.ndarray:
        """Tools applied so far in each row."""
        return np.array([len(c) for c in self.chains], dtype=np.int64)

    def _psnr(self, rows) -> np.ndarray:
        return batch_psnr(self.state[rows].detach(), self.H[rows]).cpu().numpy().astype(np.float64)

    def previous_one_hot(self) -> np.ndarray:
        one_hot = np.zeros((len(self), NUM_TOOLS), dtype=np.float32)
        has = self.previous >= 0
        one_hot[np.nonzero(has)[0], self.previous[has]] = 1.0
        return one_hot

    def observation(self) -> dict[str, np.ndarray]:
        """Every row's observation, as ToolchainRestore-v0 defines it (copies)."""
        return {"image": self.image.copy(), "previous_action": self.previous_one_hot(), "step": self.steps}

    def step(self, actions: Any, source: str = "actions") -> tuple[np.ndarray, np.ndarray]:
        """Apply ``actions`` (one per row; ignored on stopped rows). Returns the rewards (zeros
        without ``H``) and the mask of the rows a tool was applied to."""
        actions = check_actions(actions, len(self), source)
        self.decisions[self.active] += 1
        self.active &= actions != STOP
        applied = self.active.copy()
        rewards = np.zeros(len(self))
        rows = np.nonzero(applied)[0]
        if len(rows) == 0:
            return rewards, applied
        for tool in np.unique(actions[rows]).tolist():
            group = rows[actions[rows] == tool]
            self._set_rows(group, self.run_tool(tool, self.state[self._index(group)]).clamp(0.0, 1.0))
            for r in group:
                self.chains[r].append(tool)
        self.previous[rows] = actions[rows]
        self.image[rows] = to_uint8(self.state[self._index(rows)].detach())
        if self.psnr is not None:
            new = self._psnr(self._index(rows))
            rewards[rows] = new - self.psnr[rows]
            self.psnr[rows] = new
        return rewards, applied

    def _index(self, rows: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(rows, device=self.state.device)

    def _set_rows(self, rows: np.ndarray, values: torch.Tensor) -> None:
        index = self._index(rows)
        if torch.is_grad_enabled() and (values.requires_grad or self.state.requires_grad):
            self.state = self.state.index_put((index,), values.to(self.state.dtype))
        else:
            self.state[index] = values.to(self.state.dtype)

    def finished(self, max_steps: int, training_rules: bool = False) -> np.ndarray:
        """Rows whose episode is over: stopped, ``max_steps`` tools applied, or, under the
        training rules, PSNR below the input's."""
        done = ~self.active | (self.steps >= max_steps)
        if training_rules:
            done |= self.psnr < self.input_psnr
        return done

    def restart(self, rows: Sequence[int], L: torch.Tensor, H: torch.Tensor | None = None) -> None:
        """Start new episodes on ``rows`` from ``L`` (and ``H``)."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return
        index = self._index(rows)
        self.state[index] = L.to(self.state.device, self.state.dtype)
        if self.H is not None:
            self.H[index] = H.to(self.H.device, self.H.dtype)
        self.image[rows] = to_uint8(self.state[index].detach())
        for r in rows:
            self.chains[r] = []
        self.previous[rows] = -1
        self.active[rows] = True
        self.decisions[rows] = 0
        if self.psnr is not None:
            self.psnr[rows] = self.input_psnr[rows] = self._psnr(index)


@torch.no_grad()
def run_policy(policy: Any, toolbox: Toolbox, L: torch.Tensor, max_steps: int = 3,
               deterministic: bool = True, trace: list[torch.Tensor] | None = None,
               ) -> tuple[torch.Tensor, list[tuple[int, ...]], np.ndarray]:
    """Episodes of ``policy`` (SB3's ``predict`` on ToolchainRestore-v0 observations) on every
    row of ``L`` at once, as the environment runs them. Returns the final images, the chains
    and the number of decisions each row took. A ``trace`` list receives the state of all
    rows before the first step and after every step that applied a tool."""
    batch = ToolchainBatch(toolbox, L)
    if trace is not None:
        trace.append(batch.state.clone())
    recurrent = None
    for step in range(max_steps):
        n = len(batch)
        actions, recurrent = policy.predict(batch.observation(), recurrent, episode_start=np.full(n, step == 0),
                                            deterministic=deterministic)
        _, applied = batch.step(actions, source="the policy's actions")
        if not applied.any():
            break
        if trace is not None:
            trace.append(batch.state.clone())
    return batch.state, [tuple(c) for c in batch.chains], batch.decisions
