import numpy as np
import pytest
import torch

from toolchain_restore.agents.dqn import CPU_PRESET, DQNSettings, evaluate_agent, preset, train
from toolchain_restore.agents.network import RecurrentQNetwork
from toolchain_restore.agents.policy import RecurrentQPolicy
from toolchain_restore.agents.replay import Episode, EpisodeReplay

# Tiny tensors: on 2 busy cores two torch threads mostly wait on each other (one test here
# took 90 CPU seconds with two and 3 with one).
pytestmark = pytest.mark.usefixtures("one_thread")


def episode(actions, size=8):
    t = len(actions)
    return Episode(np.full((t + 1, 3, size, size), t, np.uint8), np.array(actions), np.arange(t, dtype=np.float32))


def test_replay_keeps_the_newest_steps_within_capacity():
    replay = EpisodeReplay(capacity=5)
    for actions in ([0, 1, 2], [12], [3, 12], [4, 5]):
        replay.add(episode(actions))
    assert replay.steps == 5 and [e.length for e in replay.episodes] == [1, 2, 2]
    with pytest.raises(ValueError, match="T >= 1"):
        replay.add(Episode(np.zeros((1, 3, 8, 8), np.uint8), np.array([], dtype=np.int64), np.array([], np.float32)))


def test_replay_batch_is_padded_time_first_with_previous_actions():
    replay = EpisodeReplay(capacity=100)
    replay.add(episode([5, 0, 12]))
    replay.add(episode([7]))
    batch = replay.sample(8, np.random.default_rng(0))
    assert batch.images.shape == (4, 8, 3, 8, 8) and batch.actions.shape == (3, 8)
    for b in range(8):
        length = int(batch.mask[:, b].sum())
        assert batch.done[length - 1, b] == 1 and batch.done[:, b].sum() == 1
        if length == 3:
            assert batch.previous[0, b].sum() == 0 and batch.previous[1, b, 5] == 1 and batch.previous[2, b, 0] == 1
            assert batch.previous[3, b].sum() == 0  # stop has no slot
        else:
            assert batch.previous[1, b, 7] == 1 and batch.mask[1:, b].sum() == 0


@pytest.mark.slow
@pytest.mark.parametrize("double_dqn, views", [(False, 1), (True, 4)])
def test_tiny_training_run(tmp_path, double_dqn, views):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # Batches of 4 episodes: the checks need gradient steps, not good ones, and 32 cost 8x more.
    settings = DQNSettings(num_envs=4, total_steps=120, replay_steps=200, learning_starts=40, target_sync_every=40,
                           batch_episodes=4, epsilon_decay_steps=80, eval_every=120, eval_patches=4,
                           double_dqn=double_dqn, views=views, device="cpu", out_dir=str(tmp_path))
    policy = train(settings, progress=False)
    assert isinstance(policy, RecurrentQPolicy)
    loaded = RecurrentQPolicy.load(tmp_path / "agent.safetensors")
    assert loaded.views == views
    for a, b in zip(policy.network.state_dict().values(), loaded.network.state_dict().values()):
        assert torch.equal(a, b)
    assert loaded.training_settings["double_dqn"] is double_dqn and loaded.training_settings["total_steps"] == 120
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"eval/moderate/psnr", "eval/severe/gain", "charts/episodic_return", "charts/epsilon",
            "charts/tool_usage/tool01"} <= tags
    assert "images/toolchains" in events.Tags()["images"]
    shares = [events.Scalars(f"perf/{phase}_share")[-1].value for phase in ("acting", "environment", "learning")]
    assert all(0 < share < 1 for share in shares) and sum(shares) <= 1.0


def test_evaluation_is_repeatable():
    policy = RecurrentQPolicy(seed=0)
    a = evaluate_agent(policy, "moderate", 6)
    b = evaluate_agent(policy, "moderate", 6)
    assert a == b and 0 <= a["chain_length"] <= 3
    assert abs(sum(v for k, v in a.items() if k.startswith("tool_usage")) - (1.0 if a["chain_length"] else 0.0)) < 1e-9


def test_presets():
    assert preset("official") == DQNSettings()
    cpu = preset("cpu", seed=3)
    assert cpu.total_steps == CPU_PRESET["total_steps"] and cpu.seed == 3
    with pytest.raises(ValueError, match="preset"):
        preset("huge")


@pytest.mark.slow
def test_train_agent_command(tmp_path):
    from toolchain_restore.cli import main

    code = main(["train-agent", "--preset", "cpu", "--num-envs", "4", "--total-steps", "60", "--learning-starts", "20",
                 "--batch-episodes", "4", "--eval-every", "60", "--eval-patches", "4", "--device", "cpu", "--progress", "false",
                 "--out-dir", str(tmp_path)])
    assert code == 0 and (tmp_path / "agent.safetensors").is_file()
    import json

    written = json.loads((tmp_path / "settings.json").read_text())
    assert written["total_steps"] == 60 and written["replay_steps"] == 30_000  # preset value kept
    assert written["batch_episodes"] == 4


def _resume_settings(tmp_path, total_steps, **kw):
    base = dict(num_envs=4, total_steps=total_steps, replay_steps=200, learning_starts=20, target_sync_every=40,
                batch_episodes=4, epsilon_decay_steps=80, eval_every=1000, eval_patches=2, checkpoint_every=40, device="cpu",
                out_dir=str(tmp_path))
    return DQNSettings(**{**base, **kw})


def _weights(policy):
    return [t.clone() for t in policy.network.state_dict().values()]


@pytest.mark.slow
def test_interrupted_training_resumes_from_its_checkpoint(tmp_path):
    first = train(_resume_settings(tmp_path / "a", 80), progress=False)  # the "interrupted" run stops at 80
    state = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    assert state["counters"]["global_step"] >= 80 and state["counters"]["updates"] > 0
    assert sum(len(e[1]) for e in state["replay"]) > 0
    import shutil

    shutil.copytree(tmp_path / "a", tmp_path / "b")
    resumed_a = train(_resume_settings(tmp_path / "a", 160), progress=False)
    resumed_b = train(_resume_settings(tmp_path / "b", 160), progress=False)
    after = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    assert after["counters"]["global_step"] >= 160 and after["counters"]["updates"] > state["counters"]["updates"]
    assert all(torch.equal(x, y) for x, y in zip(_weights(resumed_a), _weights(resumed_b)))  # deterministic resume
    assert not all(torch.equal(x, y) for x, y in zip(_weights(first), _weights(resumed_a)))  # it went on learning


@pytest.mark.slow
def test_resume_refuses_other_settings_and_corrupt_checkpoints(tmp_path):
    train(_resume_settings(tmp_path, 40), progress=False)
    with pytest.raises(RuntimeError, match="gamma"):
        train(_resume_settings(tmp_path, 80, gamma=0.5), progress=False)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="unreadable"):
        train(_resume_settings(tmp_path, 80), progress=False)
    with pytest.raises(RuntimeError, match="--resume is false"):  # it would overwrite the run
        train(_resume_settings(tmp_path, 40, resume=False), progress=False)
    train(_resume_settings(tmp_path, 40, overwrite=True), progress=False)  # starting over is allowed


@pytest.mark.slow
def test_second_stage_starts_from_an_agent(tmp_path):
    start = RecurrentQPolicy(seed=0)
    torch.nn.init.constant_(start.network.head.bias, 0.5)  # unlike any fresh network
    start.save(tmp_path / "start.safetensors")
    settings = _resume_settings(tmp_path / "run", 8, init_agent=str(tmp_path / "start.safetensors"), learning_starts=1000)
    trained = train(settings, progress=False)  # no learning in 8 steps: the weights are the start agent's
    assert all(torch.equal(x, y) for x, y in zip(_weights(trained), _weights(start)))


@pytest.mark.slow
def test_bf16_training_learns_and_records_its_precision(tmp_path, one_thread):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    settings = DQNSettings(num_envs=2, total_steps=24, replay_steps=100, learning_starts=8, train_every=4,
                           batch_episodes=4, epsilon_decay_steps=20, eval_every=1000, eval_patches=2,
                           precision="bf16", device="cpu", out_dir=str(tmp_path))
    torch.manual_seed(settings.seed)  # as train does before building its network
    before = RecurrentQNetwork().state_dict()["head.weight"].clone()
    policy = train(settings, progress=False)
    assert policy.precision == "bf16"
    assert not torch.equal(before, policy.network.state_dict()["head.weight"])  # gradient steps ran
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert "precision" in events.Tags()["tensors"] or "precision/text_summary" in events.Tags()["tensors"]


def test_clean_fraction_reaches_the_envs_and_the_evaluations(tmp_path, one_thread):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    settings = DQNSettings(num_envs=2, total_steps=12, replay_steps=100, learning_starts=1000, eval_every=12,
                           eval_patches=2, clean_fraction=0.5, device="cpu", out_dir=str(tmp_path))
    train(settings, progress=False)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert {"eval/clean/stop_first", "eval/moderate/stop_first"} <= set(events.Tags()["scalars"])


OLD_DQN_CHECKPOINT_KEYS = {"settings", "q", "target", "optimizer", "replay", "rng", "torch_rng", "counters"}
"""What agents/dqn.py wrote before training.Run: ``settings`` (the DQNSettings as a dict),
``q`` and ``target`` state dicts, ``optimizer``, ``replay`` (a list of numpy (images,
actions, rewards) episodes), ``rng`` (the run's numpy Generator's bit_generator.state),
``torch_rng`` and ``counters`` (global_step, updates, next_eval, next_sync). No CUDA,
Python or global-numpy random state."""


def test_a_checkpoint_in_the_old_format_resumes_like_a_new_one(tmp_path):
    import shutil

    train(_resume_settings(tmp_path / "new", 40), progress=False)
    state = torch.load(tmp_path / "new" / "checkpoint.pt", weights_only=False)
    new_keys = {"cuda_rng", "python_rng", "numpy_rng", "cpu_seconds", "run_settings", "average"}
    assert OLD_DQN_CHECKPOINT_KEYS | new_keys == set(state)
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    torch.save({k: state[k] for k in OLD_DQN_CHECKPOINT_KEYS}, tmp_path / "old" / "checkpoint.pt")
    from_new = train(_resume_settings(tmp_path / "new", 80), progress=False)
    from_old = train(_resume_settings(tmp_path / "old", 80), progress=False)
    after = torch.load(tmp_path / "old" / "checkpoint.pt", weights_only=False)["counters"]
    assert after["global_step"] >= 80 and after["updates"] > state["counters"]["updates"]
    assert all(torch.equal(x, y) for x, y in zip(_weights(from_new), _weights(from_old)))


def test_callbacks_see_the_loop_and_the_held_out_evaluation(tmp_path, one_thread):
    from toolchain_restore.agents.dqn import HeldOutEvaluation
    from toolchain_restore.training import Callback

    class Recorder(Callback):
        def __init__(self):
            self.calls = []

        def on_train_start(self, state):
            self.calls.append(("start", state.step))

        def on_loss(self, state, loss):
            self.calls.append(("loss", state.step))
            return loss

        def on_step_end(self, state):
            self.calls.append(("step", state.step))

        def on_evaluate(self, state):
            self.calls.append(("evaluate", state.step, set(state.metrics)))

        def on_train_end(self, state):
            self.calls.append(("end", state.step))

    recorder = Recorder()
    settings = DQNSettings(num_envs=2, total_steps=12, replay_steps=100, learning_starts=4, train_every=4,
                           batch_episodes=2, eval_every=12, eval_patches=2, device="cpu", out_dir=str(tmp_path))
    train(settings, progress=False, callbacks=(recorder,))
    kinds = [call[0] for call in recorder.calls]
    assert kinds[0] == "start" and recorder.calls[0][1] == 0 and kinds[-1] == "end"
    assert kinds.count("loss") == 2 and kinds.count("evaluate") == 1
    steps = [call[1] for call in recorder.calls if call[0] == "step"]
    assert steps == sorted(steps) and steps[-1] >= 12
    (evaluation,) = [call for call in recorder.calls if call[0] == "evaluate"]
    assert evaluation[1] >= 12 and {"mild/psnr", "moderate/gain", "severe/chain_length"} <= evaluation[2]
    assert HeldOutEvaluation(RecurrentQPolicy(), settings).levels == ("mild", "moderate", "severe")


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_of_the_step_it_came_in_and_resumes_from_it(tmp_path):
    import os
    import signal

    from toolchain_restore.errors import Interrupted
    from toolchain_restore.training import Callback

    class TermAt(Callback):
        sent_at = None

        def on_step_end(self, state):
            if self.sent_at is None and state.step >= 44:  # between the checkpoints of steps 40 and 80
                self.sent_at = state.step
                os.kill(os.getpid(), signal.SIGTERM)

    term = TermAt()
    with pytest.raises(Interrupted, match="stopped by SIGTERM after step"):
        train(_resume_settings(tmp_path, 160), progress=False, callbacks=(term,))
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["counters"]["global_step"] == term.sent_at
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the run's handler is gone with it
    train(_resume_settings(tmp_path, 160), progress=False)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["counters"]["global_step"] >= 160


@pytest.mark.slow
def test_weight_averaging_writes_the_mean_and_the_online_network_and_resumes(tmp_path):
    import shutil

    averaged = lambda out, steps: _resume_settings(out, steps, average_from=40)
    train(averaged(tmp_path / "a", 80), progress=False)
    state = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    assert state["average"]["count"] > 0
    agent = RecurrentQPolicy.load(tmp_path / "a" / "agent.safetensors")
    online = RecurrentQPolicy.load(tmp_path / "a" / "online.safetensors")
    assert not all(torch.equal(x, y) for x, y in zip(_weights(agent), _weights(online)))
    assert all(torch.equal(x, y) for x, y in zip(_weights(online), state["q"].values()))
    assert all(torch.equal(x, y) for x, y in zip(_weights(agent), state["average"]["weights"].values()))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    resumed_a, resumed_b = (train(averaged(tmp_path / run, 120), progress=False) for run in "ab")
    assert all(torch.equal(x, y) for x, y in zip(_weights(resumed_a), _weights(resumed_b)))
    assert torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["average"]["count"] > state["average"]["count"]
    with pytest.raises(RuntimeError, match="--average-from: 40 -> 80"):  # a resume may not change where averaging starts
        train(_resume_settings(tmp_path / "a", 160, average_from=80), progress=False)
