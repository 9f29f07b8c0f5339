"""Stable-Baselines3 agents on ToolchainRestore-v0, logged beside the project's own agent.

Two off-the-shelf learners, so the recurrent DQN of RL-Restore can be compared with them on
the same environment, the same held-out patches and the same TensorBoard tags:

- ``dqn``: Stable-Baselines3's (feed-forward) DQN. It has no memory, so the observation's
  previous-tool one-hot and step count are all it knows of the chain so far.
- ``recurrent_ppo``: sb3-contrib's RecurrentPPO with ``MultiInputLstmPolicy``: the same
  features, then an LSTM as in RL-Restore (there is no recurrent DQN in SB3 or sb3-contrib).

Both read the observation with :class:`PatchFeaturesExtractor` (RL-Restore's patch CNN, the
previous tool and the step). A run writes to ``out_dir`` (``runs/sb3_<algo>`` by default):
TensorBoard events directly in that folder (no numbered subfolder, the project's layout),
``model.zip`` (SB3's format: ``DQN.load`` / ``RecurrentPPO.load``, or :func:`load_sb3`),
``settings.json`` and ``eval.json`` (the final held-out evaluation). Scalars are SB3's own
(``rollout/``, ``train/``, ``time/``) plus the project's ``charts/episodic_return``,
``charts/episodic_length``, ``charts/stop_rate`` and ``eval/{level}/...`` from
:func:`~toolchain_restore.agents.dqn.evaluate_agent`, the project agent's protocol, which
takes any object with SB3's ``predict`` method.

stable-baselines3 and sb3-contrib are optional (``pip install "toolchain-restore[sb3]"``):
this module imports without them, so the command line can list its options, and says what
to install when a run starts.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from ..config import RunSettings, ToolchainSettings, TrainingPatches, settings_markdown
from ..errors import RunExists
from ..runtime import resolve_device
from .network import SamePadConv2d

__all__ = ["MISSING_SB3", "SB3Settings", "PatchFeaturesExtractor", "require_sb3", "train_sb3", "load_sb3"]

MISSING_SB3 = 'the Stable-Baselines3 agents need stable-baselines3 and sb3-contrib: pip install "toolchain-restore[sb3]"'
"""What to tell a user who lacks the optional dependencies."""

LOG_EVERY = 1000
"""Environment steps between records of the episode statistics (as the project agent)."""

EVAL_LEVELS = ("mild", "moderate", "severe")

try:  # optional: the settings and the CLI must work without SB3
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor as _ExtractorBase
    from stable_baselines3.common.preprocessing import get_flattened_obs_dim
except ImportError:  # pragma: no cover - exercised by the missing-dependency test through require_sb3
    _ExtractorBase = nn.Module  # type: ignore[assignment,misc]
    get_flattened_obs_dim = None  # type: ignore[assignment]


def require_sb3(algo: str = "dqn") -> None:
    """Import what ``algo`` needs, or raise ImportError saying what to install.

    Called at the start of every run so that a missing package fails at once with the
    install command, not deep inside training with a bare ``No module named ...``.
    """
    modules = ["stable_baselines3"] + (["sb3_contrib"] if algo == "recurrent_ppo" else [])
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ImportError(f"{MISSING_SB3} (missing: {name})") from err


def _conv_side(size: int, convs: int = 4) -> int:
    """Side after ``convs`` stride-2 "same" convolutions: 63 -> 32 -> 16 -> 8 -> 4."""
    for _ in range(convs):
        size = -(-size // 2)
    return size


class PatchFeaturesExtractor(_ExtractorBase):
    """Features of a ToolchainRestore-v0 observation for SB3 policies.

    The image goes through the RL-Restore agent's patch CNN (conv 9x9/32, then 3 x conv
    5x5/24, all stride 2 with "same" padding, ReLU; a 63x63 patch becomes 4x4x24) and a
    ReLU fc layer of ``image_features`` units. The previous tool's one-hot (12) and the
    step, which SB3 one-hot encodes because it is a ``Discrete`` space (``max_steps + 1``
    values), are concatenated to it unchanged: they are what a memoryless policy knows of
    the chain so far, so they must not be squeezed through the image layers.

    The image arrives as floats in [0, 1]: SB3 policies divide a uint8 image space by 255
    (``normalize_images=True``, their default).
    """

    def __init__(self, observation_space: spaces.Dict, image_features: int = 32) -> None:
        require_sb3()
        image_space = observation_space["image"]
        channels, height, width = image_space.shape
        extra = get_flattened_obs_dim(observation_space["previous_action"]) + get_flattened_obs_dim(observation_space["step"])
        super().__init__(observation_space, features_dim=image_features + extra)
        self.convs = nn.Sequential(
            SamePadConv2d(channels, 32, 9, stride=2),
            nn.ReLU(),
            SamePadConv2d(32, 24, 5, stride=2),
            nn.ReLU(),
            SamePadConv2d(24, 24, 5, stride=2),
            nn.ReLU(),
            SamePadConv2d(24, 24, 5, stride=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.fc = nn.Sequential(nn.Linear(24 * _conv_side(height) * _conv_side(width), image_features), nn.ReLU())

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        image = self.fc(self.convs(observations["image"]))
        previous = observations["previous_action"].flatten(1)
        step = observations["step"].flatten(1)
        return torch.cat([image, previous, step], dim=1)


@dataclass
class SB3Settings(RunSettings, ToolchainSettings, TrainingPatches):
    """Stable-Baselines3 agent settings; the defaults are a few minutes on a 2-core CPU.

    ``precision`` is the environments' tools' (SB3's own networks stay float32); the seed
    seeds the envs (env i gets seed + i) and the model."""

    out_dir: str | None = None
    """Where the model, settings, evaluation and TensorBoard events go; None = runs/sb3_<algo>."""

    algo: Literal["dqn", "recurrent_ppo"] = "dqn"
    """dqn: SB3's DQN (no memory); recurrent_ppo: sb3-contrib's RecurrentPPO with an LSTM policy."""
    total_timesteps: int = 10_000
    """Environment steps in all (summed over the envs); the project agent's CPU preset takes 60,000."""
    n_envs: int = 8
    """Single envs stepped together in SB3's own VecEnv."""
    vec_env: Literal["dummy", "subproc"] = "dummy"
    """dummy: all envs in this process (best on a small CPU: the tools already use every core); subproc: one process each."""
    training_rules: bool = True
    """The official training-only env rules (skip patches above 50 dB, end when PSNR drops below the input's), as the project agent trains."""
    learning_rate: float = 2.5e-4
    """Adam learning rate (constant), the project agent's CPU preset's."""
    gamma: float = 0.99
    """Discount."""
    batch_size: int = 64
    """DQN: transitions per gradient step. RecurrentPPO: minibatch size."""
    image_features: int = 32
    """Units of the fc layer after the patch CNN (RL-Restore: 32)."""
    buffer_size: int = 10_000
    """DQN: replay memory in transitions (about 24 kB each: observation and next observation are both stored)."""
    learning_starts: int = 1_000
    """DQN: transitions collected before learning starts."""
    train_freq: int = 1
    """DQN: VecEnv steps (n_envs transitions each) between updates."""
    gradient_steps: int = 2
    """DQN: gradient steps per update; 2 per 8 transitions = one per 4 environment steps, the project agent's ratio."""
    target_update_interval: int = 1_000
    """DQN: environment steps between copies into the target network."""
    exploration_fraction: float = 0.5
    """DQN: fraction of total_timesteps over which epsilon falls linearly from 1."""
    exploration_final_eps: float = 0.05
    """DQN: epsilon after the decay."""
    n_steps: int = 64
    """RecurrentPPO: steps per env per rollout (n_steps * n_envs per update)."""
    n_epochs: int = 4
    """RecurrentPPO: passes over each rollout."""
    ent_coef: float = 0.01
    """RecurrentPPO: entropy bonus, keeps it trying tools early on."""
    lstm_hidden_size: int = 50
    """RecurrentPPO: LSTM units (RL-Restore: 50); the action and value heads are linear on top of it."""
    eval_every: int = 5_000
    """Environment steps between held-out evaluations (0 = only at the end)."""
    eval_patches: int = 128
    """Held-out test patches per severity in each evaluation (the project agent's CPU preset's)."""
    torch_threads: int = 0
    """CPU threads of PyTorch; 0 = its default (one per core). On a CPU another job keeps busy, 1 runs several times faster (measured: 130 vs 19 env steps/s on 2 shared cores)."""

    def __post_init__(self) -> None:
        if self.algo not in ("dqn", "recurrent_ppo"):
            raise ValueError(f"algo must be 'dqn' or 'recurrent_ppo', got {self.algo!r}")
        if self.vec_env not in ("dummy", "subproc"):
            raise ValueError(f"vec_env must be 'dummy' or 'subproc', got {self.vec_env!r}")
        if self.total_timesteps < 1 or self.n_envs < 1:
            raise ValueError("total_timesteps and n_envs must be positive")

    @property
    def run_dir(self) -> Path:
        """The run's folder: out_dir, or runs/sb3_<algo>."""
        return Path(self.out_dir) if self.out_dir is not None else Path("runs") / f"sb3_{self.algo}"


def _make_envs(s: SB3Settings, device: torch.device):
    """SB3's VecEnv over ``gym.make`` single envs, each in a ``Monitor`` (episode stats).

    The ``module:id`` form makes ``gym.make`` import the package, which registers the env,
    also in the fresh processes of a SubprocVecEnv.
    """
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    env_kwargs = dict(level=s.level, data=s.data, split="train", toolbox=s.toolbox, max_steps=s.max_steps,
                      training_rules=s.training_rules, device=str(device), precision=s.precision)
    vec_cls = SubprocVecEnv if s.vec_env == "subproc" else DummyVecEnv
    return make_vec_env("toolchain_restore:ToolchainRestore-v0", n_envs=s.n_envs, seed=s.seed,
                        env_kwargs=env_kwargs, vec_env_cls=vec_cls)


def _build_model(s: SB3Settings, envs, device: torch.device):
    """The SB3 model for ``s.algo``, with the patch features extractor."""
    extractor = dict(features_extractor_class=PatchFeaturesExtractor,
                     features_extractor_kwargs=dict(image_features=s.image_features))
    if s.algo == "dqn":
        from stable_baselines3 import DQN

        return DQN("MultiInputPolicy", envs, learning_rate=s.learning_rate, buffer_size=s.buffer_size,
                   learning_starts=s.learning_starts, batch_size=s.batch_size, gamma=s.gamma, train_freq=s.train_freq,
                   gradient_steps=s.gradient_steps, target_update_interval=s.target_update_interval,
                   exploration_fraction=s.exploration_fraction, exploration_initial_eps=1.0,
                   exploration_final_eps=s.exploration_final_eps, policy_kwargs=extractor, seed=s.seed,
                   device=device, verbose=0)
    from sb3_contrib import RecurrentPPO

    # net_arch=[]: linear action and value heads on the LSTM, as RL-Restore's Q-head.
    policy_kwargs = dict(extractor, lstm_hidden_size=s.lstm_hidden_size, n_lstm_layers=1, net_arch=[])
    return RecurrentPPO("MultiInputLstmPolicy", envs, learning_rate=s.learning_rate, n_steps=s.n_steps,
                        batch_size=s.batch_size, n_epochs=s.n_epochs, gamma=s.gamma, ent_coef=s.ent_coef,
                        policy_kwargs=policy_kwargs, seed=s.seed, device=device, verbose=0)


def _evaluate(model, s: SB3Settings, device: torch.device) -> dict[str, dict[str, float]]:
    """The project agent's held-out evaluation (same seed, same patches) at each severity.

    ``evaluate_agent`` calls ``predict(obs, state, deterministic=True)`` on a batch of
    test episodes started together; SB3's DQN ignores the state and RecurrentPPO starts
    from a zero LSTM state when given none, so both follow it unchanged.
    """
    from .dqn import evaluate_agent

    return {level: evaluate_agent(model, level, s.eval_patches, s.data, s.toolbox, max_steps=s.max_steps, device=device,
                                    precision=s.precision)
            for level in EVAL_LEVELS}


def _callback(s: SB3Settings, device: torch.device, results: dict[str, Any]):
    """An SB3 callback writing the project's tags: episode charts every LOG_EVERY steps and
    held-out evaluations every ``eval_every`` steps and at the end."""
    from stable_baselines3.common.callbacks import BaseCallback

    class ProjectLogs(BaseCallback):
        def _on_training_start(self) -> None:
            self.returns: list[float] = []
            self.lengths: list[int] = []
            self.stops: list[bool] = []
            self.start = time.perf_counter()
            self.next_eval = s.eval_every if s.eval_every > 0 else None
            self.last_eval = -1

        def _on_step(self) -> bool:
            before = self.num_timesteps - self.training_env.num_envs
            for done, info in zip(self.locals["dones"], self.locals["infos"]):
                if done and "episode" in info:
                    chain = len(info["toolchain"])
                    self.returns.append(float(info["episode"]["r"]))
                    self.lengths.append(chain)
                    # Every step but the stop adds a tool, so a step more than tools = it stopped.
                    self.stops.append(int(info["episode"]["l"]) > chain)
            if self.returns and self.num_timesteps // LOG_EVERY != before // LOG_EVERY:
                self._charts()
            if self.next_eval is not None and self.num_timesteps >= self.next_eval:
                self.next_eval += s.eval_every
                self._eval()
            return True

        def _on_training_end(self) -> None:
            if self.returns:
                self._charts()
            if self.last_eval != self.num_timesteps:
                self._eval()

        def _charts(self) -> None:
            self.logger.record("charts/episodic_return", float(np.mean(self.returns)))
            self.logger.record("charts/episodic_length", float(np.mean(self.lengths)))
            self.logger.record("charts/stop_rate", float(np.mean(self.stops)))
            self.logger.record("charts/steps_per_second", self.num_timesteps / (time.perf_counter() - self.start))
            if hasattr(self.model, "exploration_rate"):
                self.logger.record("charts/epsilon", float(self.model.exploration_rate))
            self.logger.dump(self.num_timesteps)
            self.returns, self.lengths, self.stops = [], [], []

        def _eval(self) -> None:
            evaluated = _evaluate(self.model, s, device)
            for level, result in evaluated.items():
                for key, value in result.items():
                    self.logger.record(f"eval/{level}/{key}", value)
            self.logger.dump(self.num_timesteps)
            self.last_eval = self.num_timesteps
            results.clear()
            results.update(step=self.num_timesteps, **evaluated)

    return ProjectLogs()


def train_sb3(settings: SB3Settings, progress: bool = False):
    """Train ``settings.algo`` on ToolchainRestore-v0 and return the SB3 model.

    Writes to ``settings.run_dir``: TensorBoard events, ``settings.json``, ``model.zip``
    and ``eval.json`` (the final held-out evaluation at every severity). The logger is
    configured on the run folder itself rather than through ``tensorboard_log``, which would
    add a numbered subfolder (``DQN_1``, ``DQN_2``...) and break ``runs/<name>/`` as the one
    place of a run. A folder that already holds TensorBoard events is refused, so two runs'
    curves never mix.
    """
    require_sb3(settings.algo)
    s = settings
    out_dir = s.run_dir
    if any(out_dir.glob("events.out.tfevents.*")):
        raise RunExists(f"--out-dir {out_dir} already holds a run (TensorBoard events); pass another --out-dir or delete it")
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(s.device)
    (out_dir / "settings.json").write_text(json.dumps(asdict(s), indent=2))
    threads = torch.get_num_threads()
    if s.torch_threads > 0:
        torch.set_num_threads(s.torch_threads)
    try:
        return _run(s, out_dir, device, progress)
    finally:
        torch.set_num_threads(threads)  # a process-wide setting: the caller's comes back


def _run(s: SB3Settings, out_dir: Path, device: torch.device, progress: bool):
    """Build, train, evaluate and save (the body of :func:`train_sb3`)."""
    from stable_baselines3.common.logger import configure

    envs = _make_envs(s, device)
    model = _build_model(s, envs, device)
    logger = configure(str(out_dir), ["tensorboard"] + (["stdout"] if progress else []))
    model.set_logger(logger)
    logger.record("settings", settings_markdown(s), exclude=("stdout", "log", "json", "csv"))
    logger.dump(0)

    results: dict[str, Any] = {}
    # SB3's own table (rollout/, time/): DQN counts log_interval in episodes (2-4 steps each
    # here), RecurrentPPO in rollouts; both come out every few hundred steps.
    log_interval = 100 if s.algo == "dqn" else 1
    try:
        model.learn(total_timesteps=s.total_timesteps, callback=_callback(s, device, results), log_interval=log_interval)
        model.save(out_dir / "model.zip")
        (out_dir / "eval.json").write_text(json.dumps(results, indent=2))
    finally:
        logger.close()
        envs.close()
    return model


def load_sb3(path: str | Path, device: str = "auto"):
    """Load a model written by :func:`train_sb3`: a run folder or its ``model.zip``.

    The algorithm comes from the run's ``settings.json``, so callers need not know it.
    """
    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    algo = json.loads((run_dir / "settings.json").read_text())["algo"]
    require_sb3(algo)
    if algo == "dqn":
        from stable_baselines3 import DQN as cls
    else:
        from sb3_contrib import RecurrentPPO as cls
    return cls.load(run_dir / "model.zip" if path.is_dir() else path, device=device)
