"""Recurrent deep Q-learning of RL-Restore, on the native batched environment.

Read top to bottom: settings, evaluation, then ``train`` holds the whole algorithm.
Experience is collected from ``ToolchainRestoreVectorEnv`` (each tool runs once per step
on all envs that chose it); whole episodes go to the replay memory because the LSTM needs
the full chain; a batch of episodes is replayed from a zero LSTM state.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..envs import ToolchainRestoreVectorEnv
from ..envs.episode import STOP, shared_toolbox
from ..envs.figures import toolchain_figure, trace_policy
from ..envs.toolchain import run_policy
from ..envs.held_out import EVALUATION_SEED, held_out_set
from ..metrics import batch_psnr
from ..tools import NUM_TOOLS
from ..serialization import atomic_write
from ..runtime import Precision, precision_summary, resolve_device, resolve_precision
from ..training import settings_markdown
from .network import RecurrentQNetwork
from .demonstrations import load_demonstrations, pretrain
from .policy import RecurrentQPolicy, check_views
from .replay import Episode, EpisodeReplay

__all__ = ["DQNSettings", "CPU_PRESET", "evaluate_agent", "train", "preset"]

LOG_EVERY = 1000
"""Environment steps between TensorBoard records of the episode statistics."""


@dataclass
class DQNSettings:
    """Recurrent DQN settings; the defaults are the official code's (DIV2K, on a GPU)."""

    level: str = "moderate"
    """Severity of the training patches."""
    data: str | None = None
    """Folder of clean images (DIV2K layout or flat); None = the embedded default."""
    toolbox: str | None = None
    """Toolbox file; None = the shipped (jointly fine-tuned) one. The shipped agent began on the separately trained weights/toolbox.safetensors."""
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
    max_steps: int = 3
    """Longest toolchain."""
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
    resume: bool = True
    """Continue from out_dir's checkpoint when there is one."""
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
    seed: int = 0
    """Seed of the environments, exploration and the network."""
    device: str = "auto"
    """auto, cpu or cuda."""
    precision: Precision = "auto"
    """How the Q-network and the tools compute: auto (bf16 where this machine runs it faster, else fp32), fp32, bf16, fp16 (CUDA). A resumed run may change it."""
    out_dir: str = "runs/agent"
    """Where the agent, TensorBoard logs and settings go."""


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


RESUMABLE_CHANGES = {"total_steps", "eval_every", "eval_patches", "checkpoint_every", "resume", "device", "out_dir",
                     "views", "precision"}
"""Settings a resumed run may change; any other difference makes the checkpoint refuse to load."""


def _save_checkpoint(path: Path, s: DQNSettings, q, target, optimizer, replay: EpisodeReplay,
                     rng: np.random.Generator, counters: dict[str, int]) -> None:
    state = {
        "settings": asdict(s),
        "q": q.state_dict(),
        "target": target.state_dict(),
        "optimizer": optimizer.state_dict(),
        "replay": [(e.images, e.actions, e.rewards) for e in replay.episodes],
        "rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "counters": counters,
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _load_checkpoint(path: Path, s: DQNSettings, q, target, optimizer, replay: EpisodeReplay,
                     rng: np.random.Generator, device: torch.device) -> dict[str, int]:
    try:
        state = torch.load(path, map_location=device, weights_only=False)
        saved = state["settings"]
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise RuntimeError(f"cannot resume: checkpoint {path} is unreadable ({err}); delete it or pass --resume false") from err
    changed = sorted(k for k, v in asdict(s).items() if k not in RESUMABLE_CHANGES and saved.get(k) != v)
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {getattr(s, k)!r}" for k in changed)
        raise RuntimeError(f"cannot resume from {path}: it was trained with other settings ({detail}); "
                           f"use another out_dir or --resume false")
    q.load_state_dict(state["q"])
    target.load_state_dict(state["target"])
    optimizer.load_state_dict(state["optimizer"])
    for images, actions, rewards in state["replay"]:
        replay.add(Episode(images, actions, rewards))
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    return state["counters"]


def train(settings: DQNSettings, progress: bool = True) -> RecurrentQPolicy:
    """Train the agent; write ``agent.safetensors``, ``settings.json``, ``checkpoint.pt`` and
    TensorBoard logs to out_dir.

    A run that finds a checkpoint in out_dir continues from it (``resume``): networks,
    optimiser, replay memory, counters and random state come back. Episodes that were
    half-way through when the checkpoint was written are dropped; the environments start
    fresh episodes seeded from the step, so resuming the same checkpoint twice gives the
    same result.
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    s = settings
    check_views(s.views)
    device = resolve_device(s.device)
    out_dir = Path(s.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out_dir / "checkpoint.pt"
    rng = np.random.default_rng(s.seed)
    torch.manual_seed(s.seed)

    q = RecurrentQNetwork(conv=s.conv, precision=s.precision).to(device)
    if s.init_agent is not None:
        start_from = RecurrentQPolicy.load(s.init_agent, device=device).network
        if start_from.conv != s.conv:
            raise ValueError(f"init_agent {s.init_agent} has {start_from.conv!r} convolutions, the settings ask for "
                             f"{s.conv!r}")
        q.load_state_dict(start_from.state_dict())
    resumed = s.resume and checkpoint_path.is_file()
    if s.demonstrations and not resumed:
        # -- pretrain on the greedy oracle's demonstrations (DQfD-style); DQN goes on from there
        with SummaryWriter(str(out_dir / "pretrain")) as pretrain_writer:
            demos = [d for path in s.demonstrations for d in load_demonstrations(path)]
            pretrain(q, demos, s.demo_updates, s.batch_episodes, s.demo_lr,
                     s.demo_margin, s.demo_margin_weight, s.gamma, s.huber_delta, s.seed, pretrain_writer)
        RecurrentQPolicy(q, epsilon=s.epsilon_end, device=device).save(out_dir / "pretrained.safetensors",
                                                                         training=asdict(s))
    target = copy.deepcopy(q)
    optimizer = torch.optim.Adam(q.parameters(), lr=s.lr)
    # float16 gradients underflow without loss scaling; bf16 and fp32 need none.
    scaler = torch.amp.GradScaler(device.type, enabled=resolve_precision(s.precision, device).precision == "fp16")
    replay = EpisodeReplay(s.replay_steps)
    counters = {"global_step": 0, "updates": 0, "next_eval": s.eval_every, "next_sync": s.target_sync_every}
    if resumed:
        counters = _load_checkpoint(checkpoint_path, s, q, target, optimizer, replay, rng, device)
    (out_dir / "settings.json").write_text(json.dumps(asdict(s), indent=2))
    writer = SummaryWriter(str(out_dir), purge_step=counters["global_step"] if resumed else None)
    if not resumed:
        writer.add_text("settings", settings_markdown(s), 0)
    writer.add_text("precision", precision_summary(s.precision, device), counters["global_step"])
    policy = RecurrentQPolicy(q, epsilon=s.epsilon_end, device=device, seed=s.seed, views=s.views)
    # Acts during training with the scheduled epsilon; shares the network and the run's rng.
    explorer = RecurrentQPolicy(q, epsilon=s.epsilon_start, device=device, seed=rng)

    envs = ToolchainRestoreVectorEnv(s.num_envs, level=s.level, data=s.data, split="train", toolbox=s.toolbox,
                                     max_steps=s.max_steps, training_rules=s.training_rules, device=str(device),
                                     precision=s.precision, clean_fraction=s.clean_fraction)
    global_step, updates = counters["global_step"], counters["updates"]
    next_eval, next_sync = counters["next_eval"], counters["next_sync"]
    next_checkpoint = (global_step // s.checkpoint_every + 1) * s.checkpoint_every
    obs, _ = envs.reset(seed=s.seed + global_step)
    n = s.num_envs
    state = None
    fresh = np.zeros(n, dtype=bool)  # rows whose LSTM state starts again at the next step
    resetting = np.zeros(n, dtype=bool)  # rows whose next step is an autoreset
    images = [[obs["image"][i]] for i in range(n)]
    actions_of: list[list[int]] = [[] for _ in range(n)]
    rewards_of: list[list[float]] = [[] for _ in range(n)]
    recent_returns, recent_lengths, recent_stops, recent_actions = [], [], [], []
    start, start_step = time.perf_counter(), global_step
    # Wall time of the three phases of a step, logged as shares (perf/...) to show where time goes.
    phase_seconds = {"acting": 0.0, "environment": 0.0, "learning": 0.0}
    bar = tqdm(total=s.total_steps, initial=global_step, disable=not progress, desc="agent")

    while global_step < s.total_steps:
        # -- act: epsilon-greedy on the batch ---------------------------------------------
        epsilon = s.epsilon_end + (s.epsilon_start - s.epsilon_end) * max(0.0, 1.0 - global_step / s.epsilon_decay_steps)
        explorer.epsilon = epsilon
        tick = time.perf_counter()
        actions, state = explorer.predict(obs, state, episode_start=fresh)
        tock = time.perf_counter()
        obs, rewards, terminated, _, _ = envs.step(actions)
        phase_seconds["acting"] += tock - tick
        phase_seconds["environment"] += time.perf_counter() - tock

        # -- remember whole episodes ------------------------------------------------------
        acting = ~resetting
        global_step += int(acting.sum())
        for i in np.nonzero(acting)[0]:
            actions_of[i].append(int(actions[i]))
            rewards_of[i].append(float(rewards[i]))
            images[i].append(obs["image"][i])
            if terminated[i]:
                replay.add(Episode(np.stack(images[i]), np.array(actions_of[i]), np.array(rewards_of[i], np.float32)))
                recent_returns.append(sum(rewards_of[i]))
                recent_lengths.append(sum(a < NUM_TOOLS for a in actions_of[i]))
                recent_stops.append(actions_of[i][-1] == STOP)
                recent_actions += actions_of[i]
        for i in np.nonzero(resetting)[0]:  # the env reset this row: a new episode starts here
            images[i], actions_of[i], rewards_of[i] = [obs["image"][i]], [], []
        fresh = resetting | terminated
        resetting = terminated.copy()
        bar.update(int(acting.sum()))

        # -- learn ------------------------------------------------------------------------
        tick = time.perf_counter()
        if global_step >= s.learning_starts and len(replay):
            for group in optimizer.param_groups:
                group["lr"] = max(s.lr_min, s.lr * 0.5 ** (global_step // s.lr_halve_every))
            while updates < (global_step - s.learning_starts) // s.train_every:
                batch = replay.sample(s.batch_episodes, rng, device)
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
                loss = (losses * batch.mask).sum() / batch.mask.sum()
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                updates += 1
                if updates % 100 == 0:
                    writer.add_scalar("losses/td_loss", loss.item(), global_step)
                    writer.add_scalar("losses/q_values", (q_taken * batch.mask).sum().item() / batch.mask.sum().item(), global_step)
            if global_step >= next_sync:
                target.load_state_dict(q.state_dict())
                next_sync += s.target_sync_every
        phase_seconds["learning"] += time.perf_counter() - tick

        crossed = global_step // LOG_EVERY != (global_step - int(acting.sum())) // LOG_EVERY
        if recent_returns and (crossed or global_step >= s.total_steps):
            writer.add_scalar("charts/episodic_return", float(np.mean(recent_returns)), global_step)
            writer.add_scalar("charts/episodic_length", float(np.mean(recent_lengths)), global_step)
            writer.add_scalar("charts/stop_rate", float(np.mean(recent_stops)), global_step)
            writer.add_scalar("charts/epsilon", epsilon, global_step)
            writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
            elapsed = time.perf_counter() - start
            writer.add_scalar("charts/steps_per_second", (global_step - start_step) / elapsed, global_step)
            for phase, spent in phase_seconds.items():
                writer.add_scalar(f"perf/{phase}_share", spent / elapsed, global_step)
            usage = np.bincount(recent_actions, minlength=NUM_TOOLS + 1)[:NUM_TOOLS]
            for k in range(NUM_TOOLS):
                writer.add_scalar(f"charts/tool_usage/tool{k + 1:02d}", usage[k] / max(1, usage.sum()), global_step)
            recent_returns, recent_lengths, recent_stops, recent_actions = [], [], [], []

        if global_step >= next_eval or global_step >= s.total_steps:
            next_eval += s.eval_every
            for level in ("mild", "moderate", "severe") + (("clean",) if s.clean_fraction > 0 else ()):
                result = evaluate_agent(policy, level, s.eval_patches, s.data, s.toolbox, max_steps=s.max_steps,
                                        device=device, precision=s.precision)
                for key, value in result.items():
                    writer.add_scalar(f"eval/{level}/{key}", value, global_step)
            writer.add_image("images/toolchains", np.asarray(toolchain_picture(policy, s, device)), global_step,
                             dataformats="HWC")
            policy.save(out_dir / "agent.safetensors", training=asdict(s))
        if global_step >= next_checkpoint or global_step >= s.total_steps:
            next_checkpoint = (global_step // s.checkpoint_every + 1) * s.checkpoint_every
            counters = {"global_step": global_step, "updates": updates, "next_eval": next_eval, "next_sync": next_sync}
            _save_checkpoint(checkpoint_path, s, q, target, optimizer, replay, rng, counters)
    bar.close()
    envs.close()
    writer.close()
    policy.save(out_dir / "agent.safetensors", training=asdict(s))
    return policy


def preset(name: str, **overrides) -> DQNSettings:
    """'official' (the defaults) or 'cpu' (CPU_PRESET), with overrides."""
    if name not in ("official", "cpu"):
        raise ValueError(f"preset must be 'official' or 'cpu', got {name!r}")
    base = DQNSettings() if name == "official" else replace(DQNSettings(), **CPU_PRESET)
    return replace(base, **overrides)
