"""Greedy-oracle demonstrations and supervised pretraining of the Q-network on them (DQfD-style).

Why: on a CPU budget recurrent DQN sees each patch's reward of one action per state, and the
agent it gives adapts little per patch. The greedy oracle already runs all 12 tools at every
state it visits, so a demonstration records, besides the oracle's chain, the reward every
tool would have earned there: 12 labels per state instead of one. Pretraining regresses the
Q-values on them and adds DQfD's large-margin loss so that the oracle's action ranks first.

Read top to bottom: the data (``Demonstration``, ``greedy_demonstrations``, saving and
loading), batching, the loss, then ``pretrain`` holds the whole supervised loop.
Demonstrations come from the train split only, drawn as the environment draws its patches.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.utils import seeding

from ..data.tensors import to_tensor, to_uint8
from ..errors import InvalidInput, MissingInput
from ..envs.episode import STOP, draw_patch, make_sampler
from ..metrics import batch_psnr
from ..serialization import atomic_write
from ..tools import NUM_TOOLS, Toolbox
from .network import RecurrentQNetwork
from .oracle import try_every_tool

__all__ = ["Demonstration", "DemonstrationBatch", "greedy_demonstrations", "save_demonstrations",
           "load_demonstrations", "sample_demonstrations", "demonstration_loss", "pretrain"]


@dataclass
class Demonstration:
    """The greedy oracle's episode on one train patch, with every tool's reward at each state."""

    images: np.ndarray
    """(T + 1) x 3 x P x P uint8: the states the oracle visited (as the agent sees them)."""
    actions: np.ndarray
    """T int64: the oracle's tools (0..11), then stop (12) unless the chain reached max_steps."""
    rewards: np.ndarray
    """T float32: PSNR gain of each action taken (0 for stop)."""
    tool_rewards: np.ndarray
    """T x 12 float32: PSNR gain each tool would have given at each visited state."""

    @property
    def length(self) -> int:
        return len(self.actions)


@torch.no_grad()
def greedy_demonstrations(toolbox: Toolbox, patches: int, level: str = "moderate", data: str | None = None,
                          seed: int = 0, max_steps: int = 3, training_rules: bool = True, patch_size: int = 63,
                          batch_size: int = 64) -> list[Demonstration]:
    """The greedy oracle (``oracle.greedy_toolchain``'s rule: the tool that raises PSNR most,
    stop when none helps) on ``patches`` train-split patches; patch ``i`` is drawn as
    ``ToolchainRestoreVectorEnv.reset(seed=seed)`` draws its row ``i``'s first patch.

    Why record every tool: it costs nothing more (the oracle runs them all to choose) and
    gives the network a value for every action, not only for the oracle's. Of the
    training-only rules only the 50 dB skip matters here: the oracle never goes below the
    input's PSNR, so its episodes never end early.
    """
    if patches < 1:
        raise ValueError(f"patches must be positive, got {patches}")
    sampler = make_sampler(data, "train", patch_size)
    device = next(toolbox.parameters()).device
    demos: list[Demonstration] = []
    for first in range(0, patches, batch_size):
        drawn = [draw_patch(sampler, seeding.np_random(seed + i)[0], level, training_rules)[0]
                 for i in range(first, min(patches, first + batch_size))]
        current = to_tensor([p.L for p in drawn], device)
        H = to_tensor([p.H for p in drawn], device)
        psnr = batch_psnr(current, H)
        n = len(drawn)
        images = [[im] for im in to_uint8(current)]
        actions: list[list[int]] = [[] for _ in range(n)]
        rewards: list[list[float]] = [[] for _ in range(n)]
        tool_rewards: list[list[np.ndarray]] = [[] for _ in range(n)]
        active = torch.ones(n, dtype=torch.bool, device=device)
        for step in range(max_steps):
            rows = active.nonzero(as_tuple=True)[0]
            if len(rows) == 0:
                break
            candidates, scores = try_every_tool(toolbox, current[rows], H[rows])
            scores = scores.T  # rows x tools
            gains = (scores - psnr[rows, None]).float()
            best, choice = gains.max(dim=1)
            for k, r in enumerate(rows.tolist()):
                tool_rewards[r].append(gains[k].cpu().numpy())
                if best[k] > 0:
                    current[r] = candidates[choice[k], k]
                    psnr[r] = scores[k, choice[k]]
                    actions[r].append(int(choice[k]))
                    rewards[r].append(float(best[k]))
                    images[r].append(to_uint8(current[r:r + 1])[0])
                    active[r] = step + 1 < max_steps
                else:
                    actions[r].append(STOP)
                    rewards[r].append(0.0)
                    images[r].append(images[r][-1])
                    active[r] = False
        demos += [Demonstration(np.stack(images[r]), np.array(actions[r], np.int64), np.array(rewards[r], np.float32),
                                np.stack(tool_rewards[r]).astype(np.float32))
                  for r in range(n)]
    return demos


DEMONSTRATION_FIELDS = ("images", "actions", "rewards", "tool_rewards")


def save_demonstrations(path: str | os.PathLike, demos: list[Demonstration]) -> None:
    """One .npz: each field of all demonstrations concatenated, with each one's length."""
    arrays = {name: np.concatenate([getattr(d, name) for d in demos]) for name in DEMONSTRATION_FIELDS}
    arrays["lengths"] = np.array([d.length for d in demos], np.int64)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(Path(path), lambda tmp: np.savez_compressed(open(tmp, "wb"), **arrays))


def check_demonstrations(path: str | os.PathLike) -> None:
    """Refuse, before any work, a demonstrations file that is missing, unreadable or not one
    :func:`save_demonstrations` wrote.

    Raises:
        MissingInput: no file at ``path``.
        InvalidInput: not an .npz of demonstrations.
    """
    if not Path(path).is_file():
        raise MissingInput(f"--demonstrations {path}: no such file (make one with toolchain-restore demonstrate)")
    if not zipfile.is_zipfile(path):
        raise InvalidInput(f"--demonstrations {path}: not an .npz file (make one with toolchain-restore demonstrate)")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = sorted({*DEMONSTRATION_FIELDS, "lengths"} - set(f.files))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise InvalidInput(f"--demonstrations {path}: not a readable .npz file ({err})") from err
    if missing:
        raise InvalidInput(f"--demonstrations {path}: not a demonstrations file (no {', '.join(missing)}); make one "
                           f"with toolchain-restore demonstrate")


def load_demonstrations(path: str | os.PathLike) -> list[Demonstration]:
    """The demonstrations of a file :func:`save_demonstrations` wrote (checked by :func:`check_demonstrations`)."""
    check_demonstrations(path)
    with np.load(path) as f:
        arrays = {name: f[name] for name in (*DEMONSTRATION_FIELDS, "lengths")}
    demos, step = [], 0
    for k, t in enumerate(arrays["lengths"].tolist()):
        image_at = step + k  # every episode has one image more than it has actions
        demos.append(Demonstration(arrays["images"][image_at:image_at + t + 1], arrays["actions"][step:step + t],
                                   arrays["rewards"][step:step + t], arrays["tool_rewards"][step:step + t]))
        step += t
    return demos


@dataclass
class DemonstrationBatch:
    """Demonstrations padded to the longest, time first (as ``replay.EpisodeBatch``)."""

    images: torch.Tensor
    """(T + 1) x B x 3 x P x P uint8."""
    previous: torch.Tensor
    """(T + 1) x B x 12 one-hot of the previous tool."""
    actions: torch.Tensor
    """T x B int64: the oracle's actions."""
    targets: torch.Tensor
    """T x B x 13: the value each action is regressed to (see ``demonstration_targets``)."""
    mask: torch.Tensor
    """T x B float32: 1 where a real step is."""


def demonstration_targets(demo: Demonstration, gamma: float) -> np.ndarray:
    """T x 13 values to regress the Q-values to.

    The oracle's action: its discounted return along the rest of the demonstration. Any
    other tool: its own reward, i.e. the value of applying it and stopping, a lower bound
    of its value that is exact where it ends the episode. Stop: 0, exactly.
    Why not a bootstrapped target for the other tools: their next images were not kept.
    """
    returns = np.zeros(demo.length, np.float32)
    running = 0.0
    for t in reversed(range(demo.length)):
        running = float(demo.rewards[t]) + gamma * running
        returns[t] = running
    targets = np.concatenate([demo.tool_rewards, np.zeros((demo.length, 1), np.float32)], axis=1)
    targets[np.arange(demo.length), demo.actions] = returns
    return targets


def sample_demonstrations(demos: list[Demonstration], count: int, rng: np.random.Generator, gamma: float,
                          device: torch.device | str = "cpu") -> DemonstrationBatch:
    chosen = [demos[i] for i in rng.integers(len(demos), size=count)]
    steps = max(d.length for d in chosen)
    size = chosen[0].images.shape[1:]
    images = np.zeros((steps + 1, count, *size), dtype=np.uint8)
    previous = np.zeros((steps + 1, count, NUM_TOOLS), dtype=np.float32)
    actions = np.zeros((steps, count), dtype=np.int64)
    targets = np.zeros((steps, count, NUM_TOOLS + 1), dtype=np.float32)
    mask = np.zeros((steps, count), dtype=np.float32)
    for b, d in enumerate(chosen):
        t = d.length
        images[: t + 1, b] = d.images
        actions[:t, b] = d.actions
        targets[:t, b] = demonstration_targets(d, gamma)
        mask[:t, b] = 1.0
        tools = np.nonzero(d.actions < NUM_TOOLS)[0]
        previous[tools + 1, b, d.actions[tools]] = 1.0
    as_tensor = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
    return DemonstrationBatch(*(as_tensor(a) for a in (images, previous, actions, targets, mask)))


def demonstration_loss(q: RecurrentQNetwork, batch: DemonstrationBatch, margin: float, margin_weight: float,
                       huber_delta: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Huber regression of all 13 Q-values to their targets, plus ``margin_weight`` times
    DQfD's large-margin loss max_a [Q(s, a) + margin * (a != a_E)] - Q(s, a_E).

    Why both: the regression gives every action a value on the scale DQN then trains on
    (and ranks the other tools by what they would earn); the margin makes the oracle's
    action win by ``margin`` dB where the network would otherwise blur close values.
    """
    q_all, _ = q(batch.images, batch.previous)
    q_all = q_all[:-1]  # the last image has no decision
    steps = batch.mask.sum()
    regression = F.huber_loss(q_all, batch.targets, reduction="none", delta=huber_delta).mean(-1)
    regression = (regression * batch.mask).sum() / steps
    q_expert = q_all.gather(-1, batch.actions[..., None]).squeeze(-1)
    margins = torch.full_like(q_all, margin).scatter_(-1, batch.actions[..., None], 0.0)
    large_margin = (((q_all + margins).max(-1).values - q_expert) * batch.mask).sum() / steps
    agreement = ((q_all.argmax(-1) == batch.actions).float() * batch.mask).sum() / steps
    loss = regression + margin_weight * large_margin
    return loss, {"regression": regression.item(), "margin": large_margin.item(), "agreement": agreement.item()}


def pretrain(q: RecurrentQNetwork, demos: list[Demonstration], updates: int, batch_episodes: int = 32,
             lr: float = 2.5e-4, margin: float = 0.8, margin_weight: float = 1.0, gamma: float = 0.99,
             huber_delta: float = 1.0, seed: int = 0, writer=None, log_every: int = 100) -> list[float]:
    """``updates`` Adam steps of ``demonstration_loss`` on random batches of whole
    demonstrations (each replayed from a zero LSTM state, as DQN replays episodes), the
    learning rate falling linearly from ``lr`` to 0. Returns the loss of every step;
    TensorBoard scalars go to ``writer`` when given.

    Why the decay: close tools get close Q-values, so at a constant rate the greedy policy
    flips between checkpoints (held-out moderate gain moved by 0.2 dB from one thousand
    updates to the next); annealing lets it settle.
    """
    if not demos:
        raise ValueError("no demonstrations to pretrain on")
    device = next(q.parameters()).device
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(q.parameters(), lr=lr)
    q.train()
    losses = []
    for update in range(1, updates + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr * (1.0 - (update - 1) / updates)
        batch = sample_demonstrations(demos, batch_episodes, rng, gamma, device)
        loss, parts = demonstration_loss(q, batch, margin, margin_weight, huber_delta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if writer is not None and update % log_every == 0:
            writer.add_scalar("pretrain/loss", loss.item(), update)
            writer.add_scalar("pretrain/learning_rate", optimizer.param_groups[0]["lr"], update)
            for key, value in parts.items():
                writer.add_scalar(f"pretrain/{key}", value, update)
    return losses
