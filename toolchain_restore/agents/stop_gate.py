"""A stop gate for the recurrent Q-agent: a small CNN, trained apart from the Q-network, that
says when stopping now beats the rest of the agent's own chain.

Why: the Q-network learns its stop value from the same TD targets as its 12 tools' values.
Every DQN variant tried that stopped at once on nearly clean patches also stopped early on
degraded ones (``weights/agent.md``), and the shipped agent's own chains show what is lost
the other way: on validation patches, stopping each episode at its best state would add
+0.64 / +0.28 / +0.15 dB (mild / moderate / severe), most of it a last tool that lowers
PSNR. The agent's episodes on train patches answer the question with the ground truth: at a
state where the agent chose a tool, stopping keeps its PSNR ``p_t``; going on reaches at
best ``max p_t'`` over the later states. The gate is a classifier on the sign of that
difference, each example weighted by the decibels the decision is worth. It overrules the
agent only towards stopping, so the agent's chains before the stop are unchanged and the
gate's effect on recorded episodes can be computed exactly (:func:`gated_psnr`).

``sees_result`` asks whether seeing the chosen tool's result helps: such a gate reads the
patch after the tool too, and stopping then means undoing that tool, which keeps the same
``p_t``, so the labels and the exact offline score are the same. The environment cannot
undo a tool, so such a gate is a measurement, not a file an agent carries.

Read top to bottom: the gate network, the agent's recorded episodes (``AgentEpisodes``), the
exact effect of a gate on them, the task for the generic trainer, and
:func:`train_stop_gate`, which trains, picks the threshold on the validation split and
writes the agent file with its gate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import AgentSelection, CleanImages, ToolboxSelection
from ..data.tensors import to_uint8
from ..degrade import SEVERITY_BANDS
from ..errors import InvalidInput
from ..envs.held_out import EVALUATION_SEED, held_out_set
from ..envs.toolchain import run_policy
from ..metrics import batch_psnr
from ..tools import Toolbox, load_toolbox
from ..training import Trainer, TrainerSettings, is_main_process, step_rng
from .network import StopGate
from .policy import RecurrentQPolicy, load_agent, symmetric_views

__all__ = ["AgentEpisodes", "record_episodes", "concatenate_episodes", "gated_psnr", "StopGateSettings", "StopGateTask",
           "best_threshold", "train_stop_gate", "GATE_LEVELS"]

GATE_LEVELS = ("mild", "moderate", "severe", "clean")
"""The severities the gate learns from and is scored on (clean: nearly clean patches)."""


@dataclass
class AgentEpisodes:
    """The agent's greedy episodes on a set of patches, with every state it chose a tool in."""

    psnr: np.ndarray
    """N x (max_steps + 1): PSNR after 0, 1, ... tools; an episode's last value repeats after it ends."""
    lengths: np.ndarray
    """N: tools each episode applied."""
    images: np.ndarray
    """S x 3 x P x P uint8: the states where the agent chose a tool (where a gate may stop it)."""
    results: np.ndarray
    """S x 3 x P x P uint8: those states after the chosen tool (what a gate that sees the result
    reads); S x 0 x P x P when the episodes were recorded without them."""
    previous: np.ndarray
    """S x 12 float32: the previous tool's one-hot at those states."""
    steps: np.ndarray
    """S: tools applied before each of those states' decision."""
    tools: np.ndarray
    """S: the tool (0..11) the agent chose there."""
    values: np.ndarray
    """S x 13: the agent's action values there."""
    episode: np.ndarray
    """S: the episode (row of ``psnr``) each state belongs to."""

    @property
    def stop_advantage(self) -> np.ndarray:
        """S: PSNR kept by stopping at the state minus the best PSNR the episode reaches later."""
        later = np.array([self.psnr[e, t + 1:self.lengths[e] + 1].max() for e, t in zip(self.episode, self.steps)])
        return self.psnr[self.episode, self.steps] - later


class _Recorder:
    """Passes a policy's decisions through and keeps every observation it was shown."""

    def __init__(self, policy: Any) -> None:
        self.policy, self.seen, self.values = policy, [], []

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        self.seen.append(observation)
        out = self.policy.predict(observation, state, episode_start=episode_start, deterministic=deterministic)
        self.values.append(self.policy.last_values)
        return out


@torch.no_grad()
def record_episodes(policy: RecurrentQPolicy, toolbox: Toolbox, L: torch.Tensor, H: torch.Tensor,
                    max_steps: int = 3, chunk: int = 256, with_results: bool = False) -> AgentEpisodes:
    """The policy's greedy episodes on (L, H), ``chunk`` patches at a time; ``with_results``
    also keeps the patch after each chosen tool (as much memory again as the states)."""
    parts = []
    for start in range(0, len(L), chunk):
        recorder = _Recorder(policy.without_stop_gate())
        trace: list[torch.Tensor] = []
        h = H[start:start + chunk]
        _, chains, _ = run_policy(recorder, toolbox, L[start:start + chunk], max_steps, trace=trace)
        lengths = np.array([len(c) for c in chains])
        psnr = np.stack([batch_psnr(trace[min(k, len(trace) - 1)], h).numpy() for k in range(max_steps + 1)], 1)
        rows, steps = np.nonzero(np.arange(max_steps)[None] < lengths[:, None])
        seen = recorder.seen  # one observation and one set of values per step, every row
        if with_results and len(rows):
            results = np.stack([to_uint8(x) for x in trace[1:]])[steps, rows]
        else:  # not kept (S x 0 x P x P), or no tool applied anywhere
            results = np.zeros((len(rows), 3 * with_results, *L.shape[2:]), dtype=np.uint8)
        parts.append(AgentEpisodes(
            psnr=psnr.astype(np.float64), lengths=lengths,
            images=np.stack([o["image"] for o in seen])[steps, rows], results=results,
            previous=np.stack([o["previous_action"] for o in seen])[steps, rows],
            steps=steps, tools=np.array([chains[r][t] for r, t in zip(rows, steps)], dtype=np.int64),
            values=np.stack(recorder.values)[steps, rows], episode=rows))
    return concatenate_episodes(parts)


def concatenate_episodes(parts: list[AgentEpisodes]) -> AgentEpisodes:
    """One set of episodes from several (each part's episode numbers shifted after the previous parts')."""
    offsets = np.cumsum([0] + [len(p.lengths) for p in parts[:-1]])
    joined = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(AgentEpisodes)}
    return AgentEpisodes(**{**joined, "episode": np.concatenate([p.episode + o for p, o in zip(parts, offsets)])})


def gated_psnr(episodes: AgentEpisodes, stop_probability: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Each episode's final PSNR and tool count when a gate stops it at the first state whose
    ``stop_probability`` exceeds ``threshold``: exact, since the gate changes nothing before."""
    stop_at = episodes.lengths.copy()
    fires = stop_probability > threshold
    np.minimum.at(stop_at, episodes.episode[fires], episodes.steps[fires])
    return episodes.psnr[np.arange(len(stop_at)), stop_at], stop_at


@dataclass
class StopGateSettings(AgentSelection, ToolboxSelection, CleanImages):
    """What the stop gate learns from: the agent's own episodes on train patches."""

    toolbox: str | None = None
    """The tools the agent chains; None = the shipped agent's (jointly tuned, toolbox_joint.md)."""
    patches: int = 2000
    """Train patches per severity (mild, moderate, severe, nearly clean) the agent is run on."""
    patch_seed: int = 500000
    """Patch i of a severity is drawn with seed patch_seed + i (train split)."""
    eval_patches: int = 128
    """Validation patches per severity (the data's test split: pass the corpus' dev view)."""
    eval_seed: int = EVALUATION_SEED
    """Seed of the validation patches."""
    batch_size: int = 64
    """States per step."""
    weight_cap: float = 4.0
    """Largest weight of one state in the loss, in dB: a nearly clean patch's -15 dB would
    otherwise outweigh every degraded one."""
    channels: int = 16
    """Channels of the gate's first convolution (then 2x, 4x, 4x)."""
    init_seed: int = 0
    """Seed of the gate's initial weights."""
    sees_result: bool = False
    """The gate also sees the patch after the chosen tool (the tool runs, and a stop undoes it):
    does the result tell a harmful tool from a useful one? The environment has no undo, so
    such a gate is scored on the validation episodes only: no agent file is written."""
    thresholds: list[float] = field(default_factory=lambda: [round(0.05 * k, 2) for k in range(2, 20)])
    """Stop-probability thresholds tried on the validation split; the one with the highest
    mean gain over mild, moderate and severe is written into the agent file."""

    RESUMABLE: ClassVar[frozenset[str]] = frozenset({"eval_patches", "eval_seed", "thresholds"})

    def __post_init__(self) -> None:
        for name in ("patches", "eval_patches", "batch_size", "channels"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not self.weight_cap > 0:
            raise InvalidInput(f"--weight-cap must be positive, got {self.weight_cap}")
        if not self.thresholds or any(not 0.0 <= t <= 1.0 for t in self.thresholds):
            raise InvalidInput(f"--thresholds must be one or more probabilities in [0, 1], got {self.thresholds}")


def _episodes(policy: RecurrentQPolicy, toolbox: Toolbox, data: str | None, split: str, patches: int,
              seed: int, with_results: bool) -> dict[str, AgentEpisodes]:
    out = {}
    for level in GATE_LEVELS:
        patches_at = held_out_set(level, patches, data, seed=seed, split=split)
        out[level] = record_episodes(policy, toolbox, patches_at.L, patches_at.H, with_results=with_results)
    return out


class StopGateTask:
    """Weighted logistic regression of the gate on the agent's train episodes; evaluated by
    the exact gated PSNR on the validation episodes. The train episodes are recorded on the
    first batch, so that a finished run read again costs only the validation episodes."""

    def __init__(self, settings: StopGateSettings, precision: str = "auto") -> None:
        self.settings = settings
        self.agent = load_agent(settings.agent, precision=precision)
        self.toolbox = load_toolbox(settings.toolbox, "cpu", precision, for_shipped_agent=settings.agent is None)
        with torch.random.fork_rng():
            torch.manual_seed(settings.init_seed)
            self.model = StopGate(settings.channels, settings.sees_result)
        self.validation = _episodes(self.agent, self.toolbox, settings.data, "test", settings.eval_patches,
                                    settings.eval_seed, settings.sees_result)
        self._train: tuple[AgentEpisodes, np.ndarray, np.ndarray] | None = None

    @property
    def train(self) -> tuple[AgentEpisodes, np.ndarray, np.ndarray]:
        """The train episodes' states, their labels (1: stopping is better) and loss weights."""
        if self._train is None:
            s = self.settings
            episodes = concatenate_episodes(list(_episodes(self.agent, self.toolbox, s.data, "train", s.patches,
                                                           s.patch_seed, s.sees_result).values()))
            advantage = episodes.stop_advantage
            self._train = (episodes, (advantage > 0).astype(np.float32),
                           np.minimum(np.abs(advantage), s.weight_cap).astype(np.float32))
        return self._train

    def make_batch(self, step: int, rank: int, world_size: int, seed: int) -> tuple[torch.Tensor, ...]:
        episodes, labels, weights = self.train
        rng = step_rng(seed, step, rank)
        rows = rng.integers(0, len(labels), self.settings.batch_size)
        view = int(rng.integers(8))  # the gate's answer does not depend on the patch's orientation
        # One flip for the state and its result (an empty one without results), so they stay aligned.
        both = torch.from_numpy(np.concatenate([episodes.images[rows], episodes.results[rows]], axis=1))
        flipped = symmetric_views(both, view + 1)[-len(rows):]
        images, results = flipped[:, :3], flipped[:, 3:]
        return (images, results, *(torch.from_numpy(a[rows]) for a in (episodes.previous, episodes.steps,
                                                                        episodes.tools, labels, weights)))

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...], device: torch.device):
        images, results, previous, steps, tools, labels, weights = (x.to(device) for x in batch)
        logits = model(images, previous, steps, tools, results)
        loss = (F.binary_cross_entropy_with_logits(logits, labels, reduction="none") * weights).mean()
        accuracy = ((logits > 0).float() == labels).float().mean()
        return loss, {"weighted_bce": loss.item(), "accuracy": accuracy.item()}

    @torch.no_grad()
    def stop_probabilities(self, model: nn.Module, episodes: AgentEpisodes, device: torch.device) -> np.ndarray:
        """The gate's stop probability at every state of ``episodes``."""
        was_training = model.training
        model.eval()
        inputs = (episodes.images, episodes.previous, episodes.steps, episodes.tools, episodes.results)
        out = [torch.sigmoid(model(*(torch.from_numpy(a[i:i + 256]).to(device) for a in inputs))).cpu()
               for i in range(0, len(episodes.steps), 256)]
        model.train(was_training)
        return torch.cat(out).numpy() if out else np.zeros(0)

    def threshold_sweep(self, model: nn.Module, device: torch.device,
                        thresholds: list[float]) -> list[tuple[float, dict[str, float]]]:
        """For each threshold, the validation gain per severity and the share of first-action stops."""
        probabilities = {level: self.stop_probabilities(model, e, device) for level, e in self.validation.items()}
        sweep = []
        for threshold in thresholds:
            metrics = {}
            for level, episodes in self.validation.items():
                final, stop_at = gated_psnr(episodes, probabilities[level], threshold)
                metrics[f"gain/{level}"] = float((final - episodes.psnr[:, 0]).mean())
                metrics[f"stops_first/{level}"] = float((stop_at == 0).mean())
            sweep.append((threshold, metrics))
        return sweep

    def ungated(self) -> dict[str, float]:
        """The agent's own validation gain per severity and share of first-action stops, and the
        gain were each episode stopped at its best state (a bound no gate can pass: it sees H)."""
        out = {}
        for level, e in self.validation.items():
            out[f"ungated_gain/{level}"] = float((e.psnr[np.arange(len(e.lengths)), e.lengths] - e.psnr[:, 0]).mean())
            out[f"ungated_stops_first/{level}"] = float((e.lengths == 0).mean())
            best = np.array([row[:n + 1].max() for row, n in zip(e.psnr, e.lengths)])
            out[f"best_stop_gain/{level}"] = float((best - e.psnr[:, 0]).mean())
        return out

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        return {**self.threshold_sweep(model, device, [0.5])[0][1], **self.ungated()}

    def sample_images(self, model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
        return {}


def best_threshold(sweep: list[tuple[float, dict[str, float]]]) -> tuple[float, dict[str, float]]:
    """The swept threshold with the highest mean validation gain over the three severities."""
    return max(sweep, key=lambda ts: np.mean([ts[1][f"gain/{level}"] for level in SEVERITY_BANDS]))


def train_stop_gate(settings: StopGateSettings, trainer: TrainerSettings, output: str | Path | None = None,
                    ) -> tuple[float, list[tuple[float, dict[str, float]]], StopGateTask]:
    """Train the gate, choose its threshold on validation, write the agent file with it
    (default out_dir/agent.safetensors; none for a gate that sees the result). Returns the
    threshold, the validation sweep over ``settings.thresholds`` and the task
    (``task.ungated()``: the agent alone)."""
    task = StopGateTask(settings, precision=trainer.precision)
    Trainer(trainer, (settings,)).fit(task)
    device = torch.device("cpu")
    gate = task.model.to(device).eval()
    sweep = task.threshold_sweep(gate, device, settings.thresholds)
    threshold, metrics = best_threshold(sweep)
    if is_main_process() and not settings.sees_result:
        output = Path(output) if output else Path(trainer.out_dir) / "agent.safetensors"
        task.agent.with_stop_gate(gate, threshold).save(
            output, training=task.agent.training_settings,
            stop_gate_training={"settings": asdict(settings), "iterations": trainer.iterations,
                                "validation": {**metrics, **task.ungated()}})
    return threshold, sweep, task
