import numpy as np
import pytest
import torch
from gymnasium.utils import seeding

from toolchain_restore import load_toolbox
from toolchain_restore.agents import greedy_toolchain
from toolchain_restore.agents.demonstrations import (demonstration_loss, demonstration_targets, greedy_demonstrations,
                                                     load_demonstrations, pretrain, sample_demonstrations,
                                                     save_demonstrations)
from toolchain_restore.agents.dqn import DQNSettings, train
from toolchain_restore.agents.network import RecurrentQNetwork
from toolchain_restore.agents.policy import RecurrentQPolicy
from toolchain_restore.data.tensors import to_tensor
from toolchain_restore.envs.episode import STOP, draw_patch, make_sampler
from toolchain_restore.tools import NUM_TOOLS

PATCHES = 6


@pytest.fixture(scope="module")
def demos(one_thread):
    return greedy_demonstrations(load_toolbox(), PATCHES, seed=7, batch_size=4)


def test_demonstrations_follow_the_greedy_oracle(demos):
    sampler = make_sampler(None, "train", 63)
    drawn = [draw_patch(sampler, seeding.np_random(7 + i)[0], "moderate", True)[0] for i in range(PATCHES)]
    greedy = greedy_toolchain(load_toolbox(), to_tensor([p.L for p in drawn]), to_tensor([p.H for p in drawn]))
    for demo, chain, psnrs, patch in zip(demos, greedy.toolchains, greedy.psnrs, drawn):
        tools = demo.actions[demo.actions != STOP].tolist()
        assert tools == chain
        assert demo.images[0].transpose(1, 2, 0).tolist() == patch.L.tolist()  # the env's first observation
        np.testing.assert_allclose(demo.rewards[:len(chain)], np.diff(psnrs), atol=1e-4)
        # The oracle's reward is the best of the 12 recorded; stop comes only when no tool helps.
        for t, action in enumerate(demo.actions):
            if action == STOP:
                assert demo.rewards[t] == 0 and demo.tool_rewards[t].max() <= 0 and t == demo.length - 1
            else:
                assert demo.tool_rewards[t, action] == pytest.approx(demo.rewards[t]) == demo.tool_rewards[t].max()
        assert demo.length == min(len(chain) + 1, 3)
        assert len(demo.images) == demo.length + 1 and demo.tool_rewards.shape == (demo.length, NUM_TOOLS)


def test_demonstrations_save_and_load(demos, tmp_path):
    save_demonstrations(tmp_path / "demos.npz", demos)
    loaded = load_demonstrations(tmp_path / "demos.npz")
    assert len(loaded) == len(demos)
    for a, b in zip(demos, loaded):
        for name in ("images", "actions", "rewards", "tool_rewards"):
            assert np.array_equal(getattr(a, name), getattr(b, name))


def test_targets_give_the_oracle_its_return_and_others_their_reward(demos):
    demo = max(demos, key=lambda d: d.length)
    targets = demonstration_targets(demo, gamma=0.5)
    returns = [sum(0.5 ** k * r for k, r in enumerate(demo.rewards[t:])) for t in range(demo.length)]
    np.testing.assert_allclose(targets[np.arange(demo.length), demo.actions], returns, rtol=1e-5)
    for t, action in enumerate(demo.actions):
        others = [a for a in range(NUM_TOOLS) if a != action]
        np.testing.assert_array_equal(targets[t, others], demo.tool_rewards[t, others])
        assert action == STOP or targets[t, STOP] == 0


def test_batches_replay_the_chain_with_previous_tools(demos):
    batch = sample_demonstrations(demos, 5, np.random.default_rng(0), gamma=0.99)
    for b in range(5):
        length = int(batch.mask[:, b].sum())
        for t in range(length - 1):
            action = int(batch.actions[t, b])
            assert action == STOP or batch.previous[t + 1, b, action] == 1
        assert batch.previous[0, b].sum() == 0


@pytest.mark.slow
def test_pretraining_lowers_its_loss_and_learns_the_oracle(demos):
    torch.manual_seed(0)
    q = RecurrentQNetwork()
    batch = sample_demonstrations(demos, len(demos), np.random.default_rng(1), gamma=0.99)
    before, _ = demonstration_loss(q, batch, margin=0.8, margin_weight=1.0)
    pretrain(q, demos, updates=400, batch_episodes=len(demos), lr=2e-3)
    after, parts = demonstration_loss(q, batch, margin=0.8, margin_weight=1.0)
    assert after.item() < 0.6 * before.item()
    assert parts["agreement"] > 0.8  # a handful of chains is easy to memorise


@pytest.mark.slow
def test_training_pretrains_on_demonstrations_first(demos, tmp_path):
    save_demonstrations(tmp_path / "demos.npz", demos)
    settings = DQNSettings(num_envs=2, total_steps=4, learning_starts=1000, eval_every=1000, eval_patches=2,
                           demonstrations=[str(tmp_path / "demos.npz")], demo_updates=3, device="cpu",
                           out_dir=str(tmp_path / "run"))
    trained = train(settings, progress=False)  # no DQN learning in 4 steps: the agent is the pretrained one
    pretrained = RecurrentQPolicy.load(tmp_path / "run" / "pretrained.safetensors")
    torch.manual_seed(0)  # the network train() starts from (its seed is 0)
    fresh = RecurrentQNetwork()
    for a, b, c in zip(trained.network.state_dict().values(), pretrained.network.state_dict().values(),
                       fresh.state_dict().values()):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, c) for a, c in zip(pretrained.network.state_dict().values(), fresh.state_dict().values()))
    assert pretrained.training_settings["demo_updates"] == 3


def test_demonstrate_command(tmp_path, one_thread):
    from toolchain_restore.cli import main

    out = tmp_path / "demos.npz"
    assert main(["demonstrate", "--patches", "2", "--level", "severe", "--seed", "3", "--output", str(out),
                 "--device", "cpu"]) == 0
    loaded = load_demonstrations(out)
    assert len(loaded) == 2 and all(d.tool_rewards.shape == (d.length, NUM_TOOLS) for d in loaded)
