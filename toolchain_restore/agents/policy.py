"""A recurrent Q-network as a policy with Stable-Baselines3's predictor protocol."""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import torch

from ..errors import InvalidInput
from ..envs.episode import NUM_ACTIONS, STOP
from ..serialization import load_weights, read_metadata, save_weights, shipped_weights
from .network import RecurrentQNetwork, StopGate

__all__ = ["RecurrentQPolicy", "POLICY_KIND", "load_agent", "SHIPPED_AGENT", "MAX_VIEWS", "check_views", "symmetric_views"]

POLICY_KIND = "toolchain_restore.RecurrentQPolicy"
SHIPPED_AGENT = "agent.safetensors"
MAX_VIEWS = 8
"""The eight symmetries of a square patch (flips, transposes)."""


def check_views(views: Any) -> int:
    """``views`` as an int; anything but a whole number in 1..MAX_VIEWS is refused."""
    if not isinstance(views, (int, np.integer)) or not 1 <= views <= MAX_VIEWS:
        raise InvalidInput(f"views must be in 1..{MAX_VIEWS} (--views; restore: --agent-views), got {views!r}")
    return int(views)


def symmetric_views(image: torch.Tensor, views: int) -> torch.Tensor:
    """The first ``views`` of a batch's eight flipped / transposed copies, concatenated view after view."""
    out = []
    for k in range(check_views(views)):
        x = image.transpose(-1, -2) if k >= 4 else image
        if k % 2:
            x = x.flip(-1)
        if (k // 2) % 2:
            x = x.flip(-2)
        out.append(x)
    return torch.cat(out)


class RecurrentQPolicy:
    """Chooses tools with a :class:`RecurrentQNetwork`, one step at a time.

    ``predict(observation, state=None, episode_start=None, deterministic=False)`` returns
    ``(actions, state)`` as Stable-Baselines3's policies do, so
    ``stable_baselines3.common.evaluation.evaluate_policy`` runs it unchanged. The state is
    the LSTM's ``(h, c)``, each a numpy array of shape (views, n_envs, hidden); rows whose
    ``episode_start`` is true start again from zeros. Deterministic prediction takes the
    best action; otherwise a random action is taken with probability ``epsilon``.

    ``views`` > 1 averages the action values of the network run on that many flipped /
    transposed copies of each patch (each copy keeps its own LSTM state): the same network
    and parameters, ``views`` times the multiply-adds per decision (``macs_per_decision``).
    Training always uses one view; the setting is for choosing tools.

    A ``stop_gate`` (``with_stop_gate``; saved in and loaded from the agent file) may turn
    the chosen tool into stop where its probability that stopping beats going on exceeds
    ``stop_threshold``; it reads the observation's ``step``. It never chooses a tool, so the
    chain up to its stop is the Q-values' (``stop_gate.py``).

    ``precision`` (None keeps the network's own) sets how the network computes: 'auto',
    'fp32', 'bf16' or 'fp16' (see ``toolchain_restore.runtime``); ``with_precision``
    gives the same policy at another precision.
    """

    def __init__(
        self,
        network: RecurrentQNetwork | None = None,
        epsilon: float = 0.1,
        device: str | torch.device = "cpu",
        seed: int | np.random.Generator | None = None,
        views: int = 1,
        precision: str | None = None,
    ) -> None:
        """``seed`` may be a Generator, which is then shared (not copied)."""
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.views = check_views(views)
        network = network or RecurrentQNetwork()
        if precision is not None:
            network = network.with_precision(precision)
        self.network = network.to(device)
        self.epsilon = epsilon
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed)
        self.training_settings: dict | None = None
        """The settings the loaded file was trained with (None when it records none)."""
        self.stop_gate: StopGate | None = None
        """A gate that may overrule a chosen tool with stop (``stop_gate.py``); None: the Q-values alone decide."""
        self.stop_threshold = 0.5
        """The gate stops where its stop probability exceeds this."""
        self.last_values: np.ndarray | None = None
        """The action values (N x 13, averaged over the views) of the last ``predict``."""
        self.stop_gate_config: dict = {}
        """What the loaded file records of its gate (its training settings, validation metrics)."""

    def _batched(self, observation: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, bool]:
        if not isinstance(observation, dict) or "image" not in observation or "previous_action" not in observation:
            raise ValueError("observation must be a dict with 'image' and 'previous_action' (ToolchainRestore-v0's)")
        image = np.asarray(observation["image"])
        previous = np.asarray(observation["previous_action"], dtype=np.float32)
        single = image.ndim == 3
        if single:
            image, previous = image[None], previous[None]
        size = self.network.patch_size
        if image.ndim != 4 or image.shape[1:] != (3, size, size):
            raise ValueError(f"observation['image'] must be (N x) 3 x {size} x {size}, got {image.shape}")
        return (
            torch.as_tensor(image, device=self.device),
            torch.as_tensor(previous, device=self.device),
            single,
        )

    @torch.no_grad()
    def predict(
        self,
        observation: dict[str, Any],
        state: tuple[np.ndarray, np.ndarray] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        image, previous, single = self._batched(observation)
        batch, views, hidden = image.shape[0], self.views, self.network.hidden
        if state is None:
            h, c = (s.view(views, batch, hidden) for s in self.network.initial_state(views * batch, self.device))
        else:
            h, c = (torch.as_tensor(np.asarray(s), dtype=torch.float32, device=self.device).clone() for s in state)
            if h.shape != (views, batch, hidden) or c.shape != h.shape:
                raise ValueError(f"state must be two arrays of shape ({views}, {batch}, {hidden}) (views, patches, "
                                 f"hidden), got {tuple(h.shape)} and {tuple(c.shape)}")
        if episode_start is not None:
            fresh = torch.as_tensor(np.asarray(episode_start, dtype=bool).reshape(batch), device=self.device)
            h[:, fresh] = 0.0
            c[:, fresh] = 0.0
        self.network.eval()
        flat = (h.reshape(1, views * batch, hidden), c.reshape(1, views * batch, hidden))
        values, (h, c) = self.network(symmetric_views(image, views), previous.repeat(views, 1), flat)
        values = values.view(views, batch, -1).mean(dim=0)
        self.last_values = values.float().cpu().numpy()
        h, c = h.view(views, batch, hidden), c.view(views, batch, hidden)
        actions = values.argmax(dim=-1).cpu().numpy()
        if self.stop_gate is not None:
            actions[self._gate_stops(observation, image, previous, actions)] = STOP
        if not deterministic and self.epsilon > 0:
            explore = self.rng.random(batch) < self.epsilon
            actions[explore] = self.rng.integers(0, NUM_ACTIONS, int(explore.sum()))
        new_state = (h.cpu().numpy(), c.cpu().numpy())
        return (actions[0] if single else actions), new_state

    def _gate_stops(self, observation: dict[str, Any], image: torch.Tensor, previous: torch.Tensor,
                    actions: np.ndarray) -> np.ndarray:
        if "step" not in observation:
            raise ValueError("observation must hold 'step' (the tools applied so far) for an agent with a stop gate")
        step = torch.as_tensor(np.asarray(observation["step"]).reshape(len(image)), device=self.device)
        with torch.autocast(self.device.type, enabled=False):
            tool = torch.as_tensor(actions, device=self.device)
            probability = torch.sigmoid(self.stop_gate(image, previous, step, tool))
        return (probability > self.stop_threshold).cpu().numpy() & (actions != STOP)

    def with_stop_gate(self, gate: StopGate | None, threshold: float = 0.5) -> "RecurrentQPolicy":
        """This policy with ``gate`` (None: without one) overruling its tools with stop where
        the gate's probability exceeds ``threshold``; the same network, not a copy of it."""
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"the stop threshold must be in [0, 1], got {threshold}")
        if gate is not None and gate.sees_result:
            raise ValueError("a stop gate that sees the tool's result cannot run in an agent: the environment has no "
                             "undo (such gates are scored on recorded episodes, stop_gate.py)")
        other = copy.copy(self)
        other.stop_gate = None if gate is None else gate.to(self.device).eval()
        other.stop_threshold = float(threshold)
        other.stop_gate_config = {} if gate is None else self.stop_gate_config
        return other

    def without_stop_gate(self) -> "RecurrentQPolicy":
        """The Q-values alone deciding (what the stop gate is trained on)."""
        return self if self.stop_gate is None else self.with_stop_gate(None)

    def with_views(self, views: int) -> "RecurrentQPolicy":
        """This policy choosing with ``views`` symmetric views (the same network, not a copy of it)."""
        views = check_views(views)
        if views == self.views:
            return self
        other = copy.copy(self)
        other.views = views
        return other

    @property
    def precision(self) -> str | None:
        return self.network.precision

    def with_precision(self, precision: str | None) -> "RecurrentQPolicy":
        """This policy with its network computing at ``precision`` (the same parameters)."""
        network = self.network.with_precision(precision)
        if network is self.network:
            return self
        other = copy.copy(self)
        other.network = network
        return other

    def macs_per_decision(self) -> int:
        """Multiply-adds of one decision on one patch: the network's, once per view, and the stop gate's."""
        gate = 0 if self.stop_gate is None else self.stop_gate.macs(self.network.patch_size)
        return self.views * self.network.macs_per_step() + gate

    def _file_module(self) -> torch.nn.Module:
        """The module whose tensors the file holds: the network's, and ``stop_gate.*`` with a gate."""
        if self.stop_gate is None:
            return self.network
        module = torch.nn.Module()
        for name, child in self.network.named_children():
            module.add_module(name, child)
        module.add_module("stop_gate", self.stop_gate)
        return module

    def save(self, path: str | os.PathLike, training: dict | None = None,
             stop_gate_training: dict | None = None) -> None:
        """Write the network (and the stop gate) as safetensors; the header holds its shape,
        epsilon, views, the gate's width and threshold and, when given, the settings they
        were trained with (``training``, e.g. ``asdict(DQNSettings)``; ``stop_gate_training``)."""
        net = self.network
        config = {"patch_size": net.patch_size, "hidden": net.hidden, "features": net.fc.out_features,
                  "conv": net.conv, "epsilon": self.epsilon, "views": self.views}
        if training is not None:
            config["training"] = training
        if self.stop_gate is not None:
            gate = {**self.stop_gate_config, **(stop_gate_training or {})}
            config["stop_gate"] = {**gate, "channels": self.stop_gate.channels, "threshold": self.stop_threshold}
        save_weights(self._file_module(), path, POLICY_KIND, config)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu",
             views: int | None = None, precision: str | None = None) -> "RecurrentQPolicy":
        """``views`` None: the number the file records (1 when it records none)."""
        _, config = read_metadata(path)
        network = RecurrentQNetwork(
            patch_size=int(config.get("patch_size", 63)), hidden=int(config.get("hidden", 50)),
            features=int(config.get("features", 32)), conv=str(config.get("conv", "plain")),
        )
        policy = cls(network, epsilon=float(config.get("epsilon", 0.1)), device=device,
                     views=int(config.get("views", 1)) if views is None else views)
        gate_config = config.get("stop_gate")
        if gate_config is not None:
            policy = policy.with_stop_gate(StopGate(int(gate_config.get("channels", 16))),
                                           float(gate_config.get("threshold", 0.5)))
            policy.stop_gate_config = {k: v for k, v in gate_config.items() if k not in ("channels", "threshold")}
        load_weights(policy._file_module(), path, POLICY_KIND)
        policy = policy.with_precision(precision)
        policy.training_settings = config.get("training")
        return policy


def load_agent(path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
               views: int | None = None, precision: str | None = "auto") -> RecurrentQPolicy:
    """The shipped agent (``path=None``, see ``weights/agent.md``) or an agent file; ``views``
    None keeps the file's number of symmetric views per decision; ``precision`` as for
    ``load_toolbox`` ('auto': bf16 where this machine runs it faster, else fp32)."""
    return RecurrentQPolicy.load(shipped_weights(SHIPPED_AGENT) if path is None else path, device=device,
                                 views=views, precision=precision)
