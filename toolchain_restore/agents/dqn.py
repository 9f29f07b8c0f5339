"""Recurrent deep Q-learning of RL-Restore, on the native batched environment.

Read top to bottom: settings, the held-out evaluation (a callback), the pieces of the loop
(episode collection, the TD loss, checkpoints), then ``train`` holds the whole algorithm.
Experience is collected from ``ToolchainRestoreVectorEnv`` (each tool runs once per step
on all envs that chose it); whole episodes go to the replay memory because the LSTM needs
the full chain; a batch of episodes is replayed from a zero LSTM state.

The run directory, settings file and its check on resume, checkpoints with the random
state, TensorBoard, the learning-rate schedule and the progress bar are the shared
:class:`~toolchain_restore.training.Run`'s, as for every other model of the project.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ToolchainSettings, TrainingPatches, TrainingRunSettings
from ..envs import ToolchainRestoreVectorEnv
from ..envs.episode import STOP, shared_toolbox
from ..envs.figures import toolchain_figure, trace_policy
from ..envs.toolchain import run_policy
from ..envs.held_out import EVALUATION_SEED, held_out_set
from ..metrics import batch_psnr
from ..tools import NUM_TOOLS
from ..runtime import Precision, precision_summary, resolve_device, resolve_precision
from ..training import Callback, CallbackList, LearningRateSchedule, Run, TrainingState
from ..config import settings_markdown
from .network import RecurrentQNetwork
from .demonstrations import check_demonstrations, load_demonstrations, pretrain
from .policy import RecurrentQPolicy, check_views
from .replay import Episode, EpisodeReplay
from .weight_average import WeightAverage, check_average_from

__all__ = ["DQNSettings", "CPU_PRESET", "HeldOutEvaluation", "evaluate_agent", "train", "preset"]

LOG_EVERY = 1000
"""Environment steps between TensorBoard records of the episode statistics."""


@dataclass
class DQNSettings(TrainingRunSettings, ToolchainSettings, TrainingPatches):
    """Recurrent DQN settings; the defaults are the official code's (DIV2K, on a GPU).
    ``precision`` sets how the Q-network and the tools compute. A resumed run may change
    where and how it computes, its evaluations (``eval_every``, ``eval_patches``, ``views``)
    and ``checkpoint_every``; ``total_steps`` may grow (:mod:`~toolchain_restore.training.resume`)."""

    toolbox: str | None = None
    """Toolbox file; None = the shipped tools as trained one by one (weights/toolbox.safetensors), where the shipped agent began."""
    num_envs: int = 32
    """Episodes collected in parallel by the native vector env."""
    total_steps: int = 2_000_000
    """Environment steps in all (summed over the envs)."""
    replay_steps: int = 500_000
    """Replay memory size, in steps."""
    batch_episodes: int = 32
    """Episodes per gradient step."""
    learning_starts: int = 5_000
    """Steps of experience before learning starts."""
    train_every: int = 4
    """Environment steps per gradient step."""
    target_sync_every: int = 10_000
    """Environment steps between copies of the network into the target network."""
    gamma: float = 0.99
    """Discount."""
    lr: float = 1e-4
    """Adam learning rate at the start."""
    lr_halve_every: int = 1_000_000
    """Environment steps between halvings of the learning rate."""
    lr_min: float = 2.5e-5
    """Floor of the learning rate."""
    epsilon_start: float = 1.0
    """Exploration at the start."""
    epsilon_end: float = 0.1
    """Exploration after the decay (also the policy's epsilon when not deterministic)."""
    epsilon_decay_steps: int = 1_000_000
    """Environment steps of linear epsilon decay."""
    double_dqn: bool = False
    """Choose the next action with the online network, value it with the target (Double DQN)."""
    huber_delta: float = 1.0
    """Huber loss threshold."""
    training_rules: bool = True
    """The official training-only env rules (skip patches above 50 dB, end when PSNR drops below the input's)."""
    clean_fraction: float = 0.0
    """Share of training episodes on nearly clean patches (the envs' clean_fraction), where stopping at once is usually right; 0 = the paper's stream. Above 0, evaluations also score the 'clean' level."""
    conv: str = "plain"
    """The feature extractor's convolutions: 'plain' (the paper's) or DCNet decoupled, e.g. 'tanh_cos'."""
    views: int = 1
    """Symmetric views (flips, transposes; 1..8) whose action values the held-out evaluations and the written agent average per decision. Acting and learning use one."""
    eval_every: int = 100_000
    """Environment steps between held-out evaluations."""
    eval_patches: int = 256
    """Held-out test patches per severity in each evaluation."""
    checkpoint_every: int = 50_000
    """Environment steps between checkpoints (networks, optimiser, replay, counters, RNG)."""
    average_from: int = 0
    """From this environment step on, the agent evaluated and written is the running mean of the online network's weights (stochastic weight averaging, :mod:`~toolchain_restore.agents.weight_average`); 0 = the online network itself."""
    init_agent: str | None = None
    """Start from this agent file's weights instead of a fresh network (a second training stage)."""
    demonstrations: list[str] = field(default_factory=list)
    """Files of greedy-oracle demonstrations (`toolchain-restore demonstrate`) to pretrain the network on before DQN (DQfD-style); none = no pretraining."""
    demo_updates: int = 5_000
    """Gradient steps of supervised pretraining on the demonstrations (batch_episodes each)."""
    demo_lr: float = 2.5e-4
    """Adam learning rate at the start of the pretraining (it falls linearly to 0)."""
    demo_margin: float = 0.8
    """Margin (dB) by which the large-margin loss wants the oracle's action to beat every other."""
    demo_margin_weight: float = 1.0
    """Weight of the large-margin loss beside the regression of all 13 Q-values."""
    out_dir: str = "runs/agent"
    """Where the agent, TensorBoard logs and settings go."""

    RESUMABLE: ClassVar[frozenset[str]] = frozenset({"eval_every", "eval_patches", "views", "checkpoint_every"})
    EXTENT: ClassVar[str] = "total_steps"


CPU_PRESET = dict(
    num_envs=32,
    total_steps=60_000,
    replay_steps=30_000,
    learning_starts=1_000,
    target_sync_every=2_000,
    lr=2.5e-4,
    lr_halve_every=30_000,
    epsilon_decay_steps=30_000,
    eval_every=10_000,
    eval_patches=128,
    checkpoint_every=5_000,
)
"""A budget for the embedded default on a 2-core CPU (an hour or so), not the paper's."""


@torch.no_grad()
def evaluate_agent(
    policy: RecurrentQPolicy, level: str, patches: int, data: str | None = None, toolbox=None,
    seed: int = EVALUATION_SEED, max_steps: int = 3, device: str | torch.device = "cpu",
    precision: str | None = "auto",
) -> dict[str, float]:
    """Greedy toolchains on a fixed set of held-out test patches (``held_out_set``): mean
    input and final PSNR, mean chain length and tool usage. The same seed gives the same patches.
    ``precision``: the tools' (None: the caller's context); the policy keeps its own."""
    device = torch.device(device)
    test = held_out_set(level, patches, data, seed)
    L, H = test.L.to(device), test.H.to(device)
    E, chains, _ = run_policy(policy, shared_toolbox(toolbox, device).with_precision(precision), L, max_steps)
    input_psnr, final = batch_psnr(L, H).cpu().numpy(), batch_psnr(E, H).cpu().numpy()
    usage = np.bincount([i for c in chains for i in c], minlength=NUM_TOOLS)
    return {
        "input_psnr": float(np.mean(input_psnr)),
        "psnr": float(np.mean(final)),
        "gain": float(np.mean(final - input_psnr)),
        "chain_length": float(np.mean([len(c) for c in chains])),
        "stop_first": float(np.mean([len(c) == 0 for c in chains])),
        **{f"tool_usage/tool{k + 1:02d}": float(usage[k] / max(1, usage.sum())) for k in range(NUM_TOOLS)},
    }


TOOLCHAIN_PICTURE_PATCHES = 4
"""Held-out moderate patches whose toolchains are drawn in TensorBoard at each evaluation."""


def toolchain_picture(policy: RecurrentQPolicy, s: DQNSettings, device: torch.device):
    """The agent's greedy toolchains on the first held-out moderate patches, step by step."""
    test = held_out_set("moderate", TOOLCHAIN_PICTURE_PATCHES, s.data)
    toolbox = shared_toolbox(s.toolbox, device).with_precision(s.precision)
    traces = trace_policy(policy, toolbox, test.L.to(device), test.H.to(device), s.max_steps)
    return toolchain_figure(traces, s.max_steps, tile=126)


class HeldOutEvaluation(Callback):
    """The DQN's held-out evaluation as a callback: the greedy toolchains of ``policy`` on
    the fixed test patches of every severity (:func:`evaluate_agent`) under
    ``eval/<level>/``, and a few drawn ones under ``images/toolchains``.

    The training loop reaches the evaluation package (test sets, run_policy, figures) only
    through here, so that coupling sits in one place."""

    def __init__(self, policy: RecurrentQPolicy, settings: DQNSettings) -> None:
        self.policy, self.settings = policy, settings

    @property
    def levels(self) -> tuple[str, ...]:
        """The severities scored: the clean level too when training sees nearly clean patches."""
        return ("mild", "moderate", "severe") + (("clean",) if self.settings.clean_fraction > 0 else ())

    def on_evaluate(self, state: TrainingState) -> None:
        s, writer = self.settings, state.run.writer
        for level in self.levels:
            result = evaluate_agent(self.policy, level, s.eval_patches, s.data, s.toolbox, max_steps=s.max_steps,
                                    device=state.device, precision=s.precision)
            for key, value in result.items():
                writer.add_scalar(f"eval/{level}/{key}", value, state.step)
                state.metrics[f"{level}/{key}"] = value
        picture = np.asarray(toolchain_picture(self.policy, s, state.device))
        writer.add_image("images/toolchains", picture, state.step, dataformats="HWC")


class EpisodeCollector:
    """The episodes in flight on the rows of the vector env, and the statistics of those
    that ended since the last record. An episode goes to the replay memory only whole: the
    LSTM replays the full chain."""

    def __init__(self, obs: dict[str, np.ndarray], num_envs: int) -> None:
        self.fresh = np.zeros(num_envs, dtype=bool)  # rows whose LSTM state starts again at the next step
        self.resetting = np.zeros(num_envs, dtype=bool)  # rows whose next step is an autoreset
        self.images = [[obs["image"][i]] for i in range(num_envs)]
        self.actions: list[list[int]] = [[] for _ in range(num_envs)]
        self.rewards: list[list[float]] = [[] for _ in range(num_envs)]
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.stops: list[bool] = []
        self.actions_taken: list[int] = []

    def add_step(self, obs: dict[str, np.ndarray], actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
                 replay: EpisodeReplay) -> int:
        """Record one step of the vector env; finished episodes go to ``replay``. Returns the
        environment steps taken: rows that only autoreset took none."""
        acting = ~self.resetting
        for i in np.nonzero(acting)[0]:
            self.actions[i].append(int(actions[i]))
            self.rewards[i].append(float(rewards[i]))
            self.images[i].append(obs["image"][i])
            if terminated[i]:
                replay.add(Episode(np.stack(self.images[i]), np.array(self.actions[i]),
                                   np.array(self.rewards[i], np.float32)))
                self.returns.append(sum(self.rewards[i]))
                self.lengths.append(sum(a < NUM_TOOLS for a in self.actions[i]))
                self.stops.append(self.actions[i][-1] == STOP)
                self.actions_taken += self.actions[i]
        for i in np.nonzero(self.resetting)[0]:  # the env reset this row: a new episode starts here
            self.images[i], self.actions[i], self.rewards[i] = [obs["image"][i]], [], []
        self.fresh = self.resetting | terminated
        self.resetting = terminated.copy()
        return int(acting.sum())

    def log(self, writer: Any, step: int) -> None:
        """The ended episodes' mean return, length, stop rate and tool usage; then forget them."""
        writer.add_scalar("charts/episodic_return", float(np.mean(self.returns)), step)
        writer.add_scalar("charts/episodic_length", float(np.mean(self.lengths)), step)
        writer.add_scalar("charts/stop_rate", float(np.mean(self.stops)), step)
        usage = np.bincount(self.actions_taken, minlength=NUM_TOOLS + 1)[:NUM_TOOLS]
        for k in range(NUM_TOOLS):
            writer.add_scalar(f"charts/tool_usage/tool{k + 1:02d}", usage[k] / max(1, usage.sum()), step)
        self.returns, self.lengths, self.stops, self.actions_taken = [], [], [], []


class PhaseClock:
    """Wall time of the three phases of a step (acting, environment, learning), logged as
    shares of the run's time (perf/...) to show where time goes, with the step rate."""

    def __init__(self, step: int) -> None:
        self.start, self.start_step = time.perf_counter(), step
        self.seconds = {"acting": 0.0, "environment": 0.0, "learning": 0.0}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        tick = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - tick

    def log(self, writer: Any, step: int) -> None:
        elapsed = time.perf_counter() - self.start
        writer.add_scalar("charts/steps_per_second", (step - self.start_step) / elapsed, step)
        for phase, spent in self.seconds.items():
            writer.add_scalar(f"perf/{phase}_share", spent / elapsed, step)


def epsilon_at(s: DQNSettings, step: int) -> float:
    """Exploration at environment step ``step``: linear from epsilon_start to epsilon_end."""
    return s.epsilon_end + (s.epsilon_start - s.epsilon_end) * max(0.0, 1.0 - step / s.epsilon_decay_steps)


def lr_schedule(s: DQNSettings) -> LearningRateSchedule:
    """The learning rate halves every lr_halve_every environment steps, down to lr_min."""
    return LearningRateSchedule(lr=s.lr, kind="step", iterations=s.total_steps, lr_min=s.lr_min,
                                step_every=s.lr_halve_every, gamma=0.5)


def td_loss(q: RecurrentQNetwork, target: RecurrentQNetwork, batch: Any,
            s: DQNSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """The Huber TD loss over the real steps of a replayed batch of episodes, and the
    Q-values of the actions taken (time x batch)."""
    q_all, _ = q(batch.images, batch.previous)
    q_taken = q_all[:-1].gather(-1, batch.actions[..., None]).squeeze(-1)
    with torch.no_grad():
        target_all, _ = target(batch.images, batch.previous)
        if s.double_dqn:
            best = q_all[1:].argmax(-1, keepdim=True)
            next_value = target_all[1:].gather(-1, best).squeeze(-1)
        else:
            next_value = target_all[1:].max(-1).values
        td_target = batch.rewards + s.gamma * (1.0 - batch.done) * next_value
    losses = F.huber_loss(q_taken, td_target, reduction="none", delta=s.huber_delta)
    return (losses * batch.mask).sum() / batch.mask.sum(), q_taken


def initial_network(s: DQNSettings, device: torch.device, run: Run) -> RecurrentQNetwork:
    """A fresh network or init_agent's weights; on a fresh run with demonstrations, then
    pretrained on the greedy oracle's demonstrations (DQfD-style), DQN going on from there."""
    q = RecurrentQNetwork(conv=s.conv, precision=s.precision).to(device)
    if s.init_agent is not None:
        start_from = RecurrentQPolicy.load(s.init_agent, device=device).network
        if start_from.conv != s.conv:
            raise ValueError(f"init_agent {s.init_agent} has {start_from.conv!r} convolutions, the settings ask for "
                             f"{s.conv!r}")
        q.load_state_dict(start_from.state_dict())
    if s.demonstrations and not run.has_checkpoint:
        with run.sub_writer("pretrain") as pretrain_writer:
            demos = [d for path in s.demonstrations for d in load_demonstrations(path)]
            pretrain(q, demos, s.demo_updates, s.batch_episodes, s.demo_lr,
                     s.demo_margin, s.demo_margin_weight, s.gamma, s.huber_delta, s.seed, pretrain_writer)
        if run.is_main:
            RecurrentQPolicy(q, epsilon=s.epsilon_end, device=device).save(run.out_dir / "pretrained.safetensors",
                                                                             training=asdict(s))
    return q


def checkpoint_state(s: DQNSettings, q: RecurrentQNetwork, target: RecurrentQNetwork, average: WeightAverage,
                     optimizer: torch.optim.Optimizer, replay: EpisodeReplay, rng: np.random.Generator,
                     counters: dict[str, int]) -> dict[str, Any]:
    """What a DQN checkpoint holds beside the random state the run adds."""
    return {"settings": asdict(s), "q": q.state_dict(), "target": target.state_dict(), "average": average.state_dict(),
            "optimizer": optimizer.state_dict(), "replay": [(e.images, e.actions, e.rewards) for e in replay.episodes],
            "rng": rng.bit_generator.state, "counters": counters}


def checkpoint_step(state: dict[str, Any]) -> int:
    """The environment steps a DQN checkpoint holds."""
    return int(state["counters"]["global_step"])


def resume(run: Run, s: DQNSettings, q: RecurrentQNetwork, target: RecurrentQNetwork, average: WeightAverage,
           optimizer: torch.optim.Optimizer, replay: EpisodeReplay, rng: np.random.Generator,
           device: torch.device) -> dict[str, int]:
    """Networks, weight average, optimiser, replay memory, random state and counters from
    the run's checkpoint, once the resume rule accepted ``s`` (the run's settings)."""
    # The replay holds numpy arrays: not loadable with weights_only.
    state = run.load_checkpoint(device, step_of=checkpoint_step, weights_only=False)
    run.restore(state, {"q": q, "target": target, "optimizer": optimizer})
    average.load_state_dict(state.get("average", {}))
    for images, actions, rewards in state["replay"]:
        replay.add(Episode(images, actions, rewards))
    rng.bit_generator.state = state["rng"]
    return state["counters"]


COUNTERS = ("global_step", "updates", "next_eval", "next_sync")
"""The loop's counters a checkpoint keeps, in the order the loop unpacks them."""


def make_envs(s: DQNSettings, device: torch.device) -> ToolchainRestoreVectorEnv:
    """The native vector env of training patches (each tool runs once per step on all envs that chose it)."""
    return ToolchainRestoreVectorEnv(s.num_envs, level=s.level, data=s.data, split="train", toolbox=s.toolbox,
                                     max_steps=s.max_steps, training_rules=s.training_rules, device=str(device),
                                     precision=s.precision, clean_fraction=s.clean_fraction)


def write_agent(run: Run, policy: RecurrentQPolicy, average: WeightAverage, s: DQNSettings) -> None:
    """``agent.safetensors`` (the weight average where there is one) and, when averaging,
    ``online.safetensors``: the online network it was taken from, to compare with."""
    policy.save(run.out_dir / "agent.safetensors", training=asdict(s))
    if average.averaging:
        RecurrentQPolicy(average.online, epsilon=s.epsilon_end, device=policy.device, views=s.views).save(
            run.out_dir / "online.safetensors", training=asdict(s))


def log_charts(run: Run, step: int, episodes: EpisodeCollector, clock: PhaseClock, epsilon: float,
               lr: float) -> None:
    """The charts/ and perf/ records of every LOG_EVERY environment steps."""
    writer = run.writer
    writer.add_scalar("charts/cpu_minutes", run.cpu_seconds / 60, step)
    episodes.log(writer, step)
    writer.add_scalar("charts/epsilon", epsilon, step)
    writer.add_scalar("charts/learning_rate", lr, step)
    clock.log(writer, step)


def setup(s: DQNSettings, run: Run, device: torch.device, rng: np.random.Generator) -> tuple[
        RecurrentQNetwork, RecurrentQNetwork, WeightAverage, torch.optim.Optimizer, torch.amp.GradScaler,
        EpisodeReplay, dict[str, int]]:
    """The online and target networks, the weight average, Adam, the loss scaler, the
    replay memory and the counters: fresh, or from the run's checkpoint."""
    q = initial_network(s, device, run)
    target, average = copy.deepcopy(q), WeightAverage(q, s.average_from)
    optimizer = torch.optim.Adam(q.parameters(), lr=s.lr)
    # float16 gradients underflow without loss scaling; bf16 and fp32 need none.
    scaler = torch.amp.GradScaler(device.type, enabled=resolve_precision(s.precision, device).precision == "fp16")
    replay = EpisodeReplay(s.replay_steps)
    counters = {"global_step": 0, "updates": 0, "next_eval": s.eval_every, "next_sync": s.target_sync_every}
    if run.has_checkpoint:
        counters = resume(run, s, q, target, average, optimizer, replay, rng, device)
    return q, target, average, optimizer, scaler, replay, counters


def gradient_step(q: RecurrentQNetwork, target: RecurrentQNetwork, optimizer: torch.optim.Optimizer,
                  scaler: torch.amp.GradScaler, batch: Any, s: DQNSettings, hooks: Callback,
                  loop: TrainingState) -> tuple[torch.Tensor, torch.Tensor]:
    """One Adam step on the TD loss of a replayed batch (plus any terms the callbacks add);
    returns the TD loss and the Q-values of the actions taken."""
    loss, q_taken = td_loss(q, target, batch, s)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(hooks.on_loss(loop, loss)).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss, q_taken


def check_inputs(s: DQNSettings) -> None:
    """Refuse bad views, averaging start or demonstration files before the run writes anything."""
    check_views(s.views)
    check_average_from(s.average_from)
    for path in s.demonstrations:
        check_demonstrations(path)


def train(settings: DQNSettings, progress: bool = True, callbacks: Sequence[Callback] = ()) -> RecurrentQPolicy:
    """Train the agent; write ``agent.safetensors``, ``settings.json``, ``checkpoint.pt`` and
    TensorBoard logs to out_dir. ``callbacks`` hook into the loop after the held-out evaluation.

    A run that finds a checkpoint in out_dir continues from it (``resume``): networks, weight
    average, optimiser, replay memory, counters and random state come back. Episodes that were
    half-way through when the checkpoint was written are dropped; the environments start
    fresh episodes seeded from the step, so resuming the same checkpoint twice gives the
    same result.
    """
    s = settings
    check_inputs(s)
    device = resolve_device(s.device)
    run = Run(s.out_dir, settings=(s,), resume=s.resume, overwrite=s.overwrite, schedule=lr_schedule(s))
    envs = make_envs(s, device)  # opens the data folder: a folder of bad images stops the run before it writes
    rng = np.random.default_rng(s.seed)
    torch.manual_seed(s.seed)
    q, target, average, optimizer, scaler, replay, counters = setup(s, run, device, rng)
    global_step, updates, next_eval, next_sync = (counters[k] for k in COUNTERS)
    next_checkpoint = (global_step // s.checkpoint_every + 1) * s.checkpoint_every
    run.write_settings(asdict(s))
    with run, contextlib.closing(envs):
        run.open_writer(global_step, settings_markdown(s), precision_summary(s.precision, device), purge=True)
        policy = RecurrentQPolicy(average.network, epsilon=s.epsilon_end, device=device, seed=s.seed, views=s.views)
        # Acts during training with the scheduled epsilon; shares the network and the run's rng.
        explorer = RecurrentQPolicy(q, epsilon=s.epsilon_start, device=device, seed=rng)
        hooks, loop = CallbackList([HeldOutEvaluation(policy, s), *callbacks]), TrainingState(run, q, device, global_step)
        obs, _ = envs.reset(seed=s.seed + global_step)
        episodes, lstm_state, clock = EpisodeCollector(obs, s.num_envs), None, PhaseClock(global_step)
        bar = run.progress_bar(s.total_steps, global_step, "agent", progress)
        hooks.on_train_start(loop)
        while global_step < s.total_steps:
            # -- act: epsilon-greedy on the batch, then remember whole episodes --------------
            explorer.epsilon = epsilon = epsilon_at(s, global_step)
            with clock.phase("acting"):
                actions, lstm_state = explorer.predict(obs, lstm_state, episode_start=episodes.fresh)
            with clock.phase("environment"):
                obs, rewards, terminated, _, _ = envs.step(actions)
            acted = episodes.add_step(obs, actions, rewards, terminated, replay)
            global_step = loop.step = global_step + acted
            bar.update(acted)

            # -- learn: one gradient step per train_every environment steps ------------------
            with clock.phase("learning"):
                if global_step >= s.learning_starts and len(replay):
                    run.set_learning_rate(optimizer, global_step)
                    while updates < (global_step - s.learning_starts) // s.train_every:
                        batch = replay.sample(s.batch_episodes, rng, device)
                        loss, q_taken = gradient_step(q, target, optimizer, scaler, batch, s, hooks, loop)
                        updates += 1
                        if updates % 100 == 0:
                            run.writer.add_scalar("losses/td_loss", loss.item(), global_step)
                            run.writer.add_scalar("losses/q_values", (q_taken * batch.mask).sum().item()
                                                  / batch.mask.sum().item(), global_step)
                    average.update(global_step)
                    if global_step >= next_sync:
                        target.load_state_dict(q.state_dict())
                        next_sync += s.target_sync_every
            hooks.on_step_end(loop)

            # -- record, evaluate, checkpoint ------------------------------------------------
            finished = global_step >= s.total_steps
            if episodes.returns and (global_step // LOG_EVERY != (global_step - acted) // LOG_EVERY or finished):
                log_charts(run, global_step, episodes, clock, epsilon, optimizer.param_groups[0]["lr"])
            if global_step >= next_eval or finished:
                next_eval += s.eval_every
                if run.is_main:
                    hooks.on_evaluate(loop)
                    write_agent(run, policy, average, s)
            if global_step >= next_checkpoint or finished or run.stop_requested:
                next_checkpoint = (global_step // s.checkpoint_every + 1) * s.checkpoint_every
                counters = dict(zip(COUNTERS, (global_step, updates, next_eval, next_sync)))
                run.save_checkpoint(checkpoint_state(s, q, target, average, optimizer, replay, rng, counters))
                run.stop_if_requested(global_step)
        hooks.on_train_end(loop)
    if run.is_main:
        write_agent(run, policy, average, s)
    return policy


def preset(name: str, **overrides) -> DQNSettings:
    """'official' (the defaults) or 'cpu' (CPU_PRESET), with overrides."""
    if name not in ("official", "cpu"):
        raise ValueError(f"preset must be 'official' or 'cpu', got {name!r}")
    base = DQNSettings() if name == "official" else replace(DQNSettings(), **CPU_PRESET)
    return replace(base, **overrides)
