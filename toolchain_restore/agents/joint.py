"""Joint fine-tuning of the tools with the agent frozen (the paper's Algorithm 1).

Each step the frozen agent builds a toolchain for every patch of a batch, one step at a
time on the current tools' outputs; the final image's squared error is back-propagated
through every tool the chain used, and each tool's gradient is divided by the number of
times it was used in the batch, so a popular tool does not take bigger steps than a rare
one. The generic trainer runs it (checkpoints, resume, TensorBoard, torchrun).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ..config import AgentSelection, ToolchainSettings, TrainingPatches
from ..data.tensors import to_tensor
from ..envs.episode import draw_patch, make_sampler
from ..envs.toolchain import ToolchainBatch, run_policy
from ..envs.held_out import held_out_set
from ..metrics import batch_psnr
from ..tools import NUM_TOOLS, TOOL_SPECS, Toolbox, load_toolbox
from ..tools.data import tool_degrade_fn
from ..tools.training import band_test_set
from ..training import Trainer, TrainerSettings, is_main_process, step_rng
from .policy import RecurrentQPolicy, load_agent

__all__ = ["JointTuningSettings", "JointTuningTask", "joint_tune"]


@dataclass
class JointTuningSettings(AgentSelection, ToolchainSettings, TrainingPatches):
    """What the tools are fine-tuned on, and with which agent (held frozen)."""

    toolbox: str | None = None
    """Toolbox to start from; None = the shipped tools as trained one by one (before joint tuning)."""
    batch_size: int = 64
    """Patches (toolchains) per step; the paper's 64."""
    augment: bool = False
    """Put each training pair through one of the 8 flips / transposes at random."""
    eval_patches: int = 128
    """Held-out patches per severity in each evaluation."""
    eval_levels: list[str] = field(default_factory=lambda: ["mild", "moderate", "severe"])
    """Severities evaluated."""
    anchor_weight: float = 0.0
    """Weight of every tool's own objective (its MSE on patches of its own band, as it was
    trained alone) beside the chain loss, so that joint tuning does not spoil the tools for
    single use; 0 = the paper's Algorithm 1 alone."""
    anchor_batch: int = 4
    """Own-band patches per tool and step for the anchor."""
    eval_band_patches: int = 32
    """Held-out patches per tool at the middle of its own band in each evaluation (0 = none):
    each tool's gain there, before and after, shows what joint tuning did to single use."""

    RESUMABLE: ClassVar[frozenset[str]] = frozenset({"eval_patches", "eval_levels", "eval_band_patches"})
    """The held-out evaluations may change on resume; what the tools are tuned on may not."""


class _PerUseGradient(torch.autograd.Function):
    """Identity forward; divides the gradient by ``uses[i]`` on the way back. ``uses`` is
    read when backward runs, after the whole batch's chains are known."""

    @staticmethod
    def forward(ctx, parameter: torch.Tensor, uses: torch.Tensor, i: int) -> torch.Tensor:
        ctx.uses, ctx.i = uses, i
        return parameter.view_as(parameter)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad / max(1.0, float(ctx.uses[ctx.i])), None, None


def chain_forward(toolbox: Toolbox, policy, L: torch.Tensor, max_steps: int) -> tuple[torch.Tensor, list[list[int]]]:
    """The agent's chains on ``L`` with gradients through the tools; each tool's parameter
    gradient is scaled by 1 / (its uses in the batch).

    The agent decides from the uint8 view of the current (detached) images, as in the
    environment, so one forward pass both picks and applies the tools.
    """
    uses = torch.zeros(NUM_TOOLS)
    params = {i: dict(tool.named_parameters()) for i, tool in enumerate(toolbox.tools)}

    def run_tool(i: int, x: torch.Tensor) -> torch.Tensor:
        uses[i] += len(x)  # read by the backward pass, after every use has been counted
        scaled = {k: _PerUseGradient.apply(p, uses, i) for k, p in params[i].items()}
        return functional_call(toolbox.tools[i], scaled, (x.contiguous(memory_format=torch.channels_last),))

    batch = ToolchainBatch(None, L, run_tool=run_tool)
    recurrent = None
    for step in range(max_steps):
        actions, recurrent = policy.predict(batch.observation(), recurrent, episode_start=np.full(len(L), step == 0),
                                            deterministic=True)
        _, applied = batch.step(actions, source="the agent's actions")
        if not applied.any():
            break
    return batch.state, batch.chains


class JointTuningTask:
    """Trainer task: the toolbox is the model; the agent only chooses."""

    def __init__(self, settings: JointTuningSettings, device: torch.device | str = "cpu",
                 precision: str = "auto") -> None:
        """``precision``: the agent's, while it chooses (the trainer's autocast sets the tools')."""
        from ..serialization import shipped_weights
        from ..tools import SEPARATE_TOOLBOX

        self.settings = settings
        start = settings.toolbox if settings.toolbox is not None else shipped_weights(SEPARATE_TOOLBOX)
        self.start = start
        self.model = load_toolbox(start, "cpu", precision=None).train()
        self.agent: RecurrentQPolicy = load_agent(settings.agent, precision=precision)
        self.agent.network.requires_grad_(False)
        self.sampler = make_sampler(settings.data, "train", self.agent.network.patch_size, settings.augment)
        self.own_band = [tool_degrade_fn(spec, robust=True) for spec in TOOL_SPECS]
        self._test_sets: dict | None = None
        self._band_sets: dict | None = None
        self._band_before: dict[int, float] | None = None

    def make_batch(self, step: int, rank: int, world_size: int, seed: int) -> tuple:
        rng = step_rng(seed, step, rank)
        patches = [draw_patch(self.sampler, rng, self.settings.level, training_rules=True)[0]
                   for _ in range(self.settings.batch_size)]
        chains = to_tensor([p.L for p in patches]), to_tensor([p.H for p in patches])
        if self.settings.anchor_weight <= 0:
            return chains
        anchors = []
        for i, fn in enumerate(self.own_band):
            own = step_rng(seed, step, rank, stream=1 + i)  # apart from the chains' stream, which stays as it was
            pairs = [self.sampler.sample(own, fn) for _ in range(self.settings.anchor_batch)]
            anchors.append((to_tensor([p.L for p in pairs]), to_tensor([p.H for p in pairs])))
        return (*chains, anchors)

    def _agent_on(self, device: torch.device) -> RecurrentQPolicy:
        if self.agent.device != device:
            self.agent.network.to(device)
            self.agent.device = device
        return self.agent

    def loss(self, model: nn.Module, batch, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        L, H = (t.to(device, non_blocking=True) for t in batch[:2])
        E, chains = chain_forward(model, self._agent_on(device), L, self.settings.max_steps)
        per_patch = ((E - H) ** 2).flatten(1).mean(1)
        loss = per_patch.sum()  # each tool's share is averaged over its uses by chain_forward
        with torch.no_grad():
            gain = float((batch_psnr(E, H) - batch_psnr(L, H)).mean())
        logs = {"mse": float(per_patch.detach().mean()), "train_gain": gain,
                "chain_length": float(np.mean([len(c) for c in chains]))}
        if len(batch) > 2:
            anchor = sum(torch.mean((model(l.to(device), i) - h.to(device)) ** 2) for i, (l, h) in enumerate(batch[2]))
            loss = loss + self.settings.anchor_weight * anchor
            logs["anchor_mse"] = float(anchor.detach()) / NUM_TOOLS
        return loss, logs

    def test_sets(self):
        if self._test_sets is None:
            s = self.settings
            self._test_sets = {level: held_out_set(level, s.eval_patches, s.data) for level in s.eval_levels}
        return self._test_sets

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        out = {}
        for level, test in self.test_sets().items():
            L, H = test.L.to(device), test.H.to(device)
            E, chains, _ = run_policy(self._agent_on(device), model, L, self.settings.max_steps)
            out[f"{level}/psnr"] = float(batch_psnr(E, H).mean())
            out[f"{level}/gain"] = float((batch_psnr(E, H) - batch_psnr(L, H)).mean())
        out.update(self.own_band_changes(model, device))
        return out

    def own_band_changes(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Each tool's gain on held-out patches at the middle of its own band, and its change
        since the start (``tools/toolNN_change``; ``tools/largest_drop`` the worst)."""
        s = self.settings
        if s.eval_band_patches <= 0:
            return {}
        if self._band_sets is None:
            self._band_sets = {i: band_test_set(spec, s.eval_band_patches, s.data) for i, spec in enumerate(TOOL_SPECS)}
        own = self._own_band_gains(model, device)
        if self._band_before is None:
            # Read again from the start file: right after a resume too.
            self._band_before = self._own_band_gains(load_toolbox(self.start, device, precision=None).eval(), device)
        out = {f"tools/tool{i + 1:02d}_gain": g for i, g in own.items()}
        changes = {i: own[i] - self._band_before[i] for i in own}
        out.update({f"tools/tool{i + 1:02d}_change": c for i, c in changes.items()})
        out["tools/largest_drop"] = max(0.0, -min(changes.values()))
        return out

    @torch.no_grad()
    def _own_band_gains(self, model: nn.Module, device: torch.device) -> dict[int, float]:
        gains = {}
        for i, (L, H) in self._band_sets.items():
            L, H = L.to(device), H.to(device)
            gains[i] = float((batch_psnr(model(L, i).clamp(0, 1), H) - batch_psnr(L, H)).mean())
        return gains

    def sample_images(self, model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
        sets = self.test_sets()
        # A training level outside eval_levels (mixed) has no held-out set of its own.
        test = sets.get(self.settings.level, next(iter(sets.values())))
        L, H = test.L[:1].to(device), test.H[:1].to(device)
        E, _, _ = run_policy(self._agent_on(device), model, L, self.settings.max_steps)
        return {"L_E_H": torch.cat([L[0], E[0], H[0]], dim=2)}


def joint_tune(settings: JointTuningSettings, trainer: TrainerSettings, output: str | Path | None = None) -> dict[str, float]:
    """Fine-tune the toolbox jointly; write it to ``output`` (default out_dir/toolbox.safetensors)."""
    task = JointTuningTask(settings, precision=trainer.precision)
    metrics = Trainer(trainer, (settings,)).fit(task)
    if is_main_process():
        output = Path(output) if output else Path(trainer.out_dir) / "toolbox.safetensors"
        task.model.cpu().save(output, joint_tuning_iterations=trainer.iterations, agent=settings.agent or "shipped")
    return metrics
