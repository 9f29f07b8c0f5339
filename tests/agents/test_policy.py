import numpy as np
import pytest
import torch

from toolchain_restore.agents import RecurrentQNetwork, RecurrentQPolicy
from toolchain_restore.agents.network import SamePadConv2d
from toolchain_restore.envs import ToolchainRestoreEnv
from toolchain_restore.serialization import WeightsError, save_weights


def test_reference_architecture():
    net = RecurrentQNetwork()
    # TensorFlow's LSTM has one bias per gate, PyTorch's two: 87,863 + 200.
    assert sum(p.numel() for p in net.parameters()) == 88_063
    assert [m.out_channels for m in net.convs if isinstance(m, torch.nn.Conv2d)] == [32, 24, 24, 24]
    assert [m.kernel_size for m in net.convs if isinstance(m, torch.nn.Conv2d)] == [(9, 9), (5, 5), (5, 5), (5, 5)]
    assert net.fc.in_features == 4 * 4 * 24 and net.fc.out_features == 32
    assert net.lstm.input_size == 32 + 12 and net.lstm.hidden_size == 50
    assert net.head.out_features == 13
    assert abs(net.macs_per_step() - 14.1e6) < 0.1e6


@pytest.mark.parametrize("size, out", [(63, 32), (32, 16), (8, 4), (5, 3)])
def test_same_padding_halves_with_ceiling(size, out):
    conv = SamePadConv2d(3, 4, 5, stride=2)
    assert conv(torch.zeros(1, 3, size, size)).shape[-2:] == (out, out)


def test_sequence_equals_step_by_step():
    torch.manual_seed(0)
    net = RecurrentQNetwork()
    images = torch.randint(0, 256, (3, 4, 3, 63, 63), dtype=torch.uint8)
    previous = torch.zeros(3, 4, 12)
    previous[1:, :, 5] = 1
    whole, _ = net(images, previous)
    state = None
    for t in range(3):
        values, state = net(images[t], previous[t], state)
        torch.testing.assert_close(values, whole[t])


def test_bad_shapes():
    net = RecurrentQNetwork()
    with pytest.raises(ValueError, match="previous_action"):
        net(torch.zeros(2, 3, 63, 63), torch.zeros(2, 13))
    with pytest.raises(ValueError, match="image"):
        net(torch.zeros(2, 1, 63, 63), torch.zeros(2, 12))


def test_predict_protocol_and_episode_start():
    policy = RecurrentQPolicy(seed=0)
    env = ToolchainRestoreEnv()
    obs, _ = env.reset(seed=0)
    action, state = policy.predict(obs, deterministic=True)
    assert 0 <= int(action) < 13 and state[0].shape == (1, 1, 50)
    batched = {k: np.stack([np.asarray(v)] * 3) for k, v in obs.items()}
    actions, state = policy.predict(batched, deterministic=True)
    assert actions.shape == (3,) and (actions == action).all()
    _, after = policy.predict(batched, state=state, deterministic=True)
    _, restarted = policy.predict(batched, state=state, episode_start=np.array([True, False, False]), deterministic=True)
    np.testing.assert_allclose(restarted[0][:, 0], policy.predict(batched, deterministic=True)[1][0][:, 0], atol=1e-6)
    np.testing.assert_allclose(restarted[0][:, 1:], after[0][:, 1:], atol=1e-6)
    with pytest.raises(ValueError, match="observation"):
        policy.predict({"image": np.zeros((3, 10, 10), np.uint8), "previous_action": np.zeros(12)})


def test_epsilon_explores_only_when_not_deterministic():
    policy = RecurrentQPolicy(epsilon=1.0, seed=0)
    obs = {"image": np.zeros((64, 3, 63, 63), np.uint8), "previous_action": np.zeros((64, 12), np.float32)}
    greedy, _ = policy.predict(obs, deterministic=True)
    assert len(set(greedy.tolist())) == 1
    explored, _ = policy.predict(obs, deterministic=False)
    assert len(set(explored.tolist())) > 5


def test_evaluate_policy_of_stable_baselines3_runs_it():
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    policy = RecurrentQPolicy(seed=0)
    env = Monitor(ToolchainRestoreEnv(level="moderate"))
    mean, std = evaluate_policy(policy, env, n_eval_episodes=4, deterministic=True)
    assert np.isfinite(mean) and np.isfinite(std)


def test_save_and_load(tmp_path):
    policy = RecurrentQPolicy(epsilon=0.05, seed=0)
    policy.save(tmp_path / "agent.safetensors")
    loaded = RecurrentQPolicy.load(tmp_path / "agent.safetensors")
    assert loaded.epsilon == 0.05 and loaded.training_settings is None
    policy.save(tmp_path / "trained.safetensors", training={"total_steps": 7, "double_dqn": True})
    assert RecurrentQPolicy.load(tmp_path / "trained.safetensors").training_settings == {"total_steps": 7, "double_dqn": True}
    for a, b in zip(policy.network.state_dict().values(), loaded.network.state_dict().values()):
        assert torch.equal(a, b)
    save_weights(torch.nn.Linear(2, 2), tmp_path / "other.safetensors", "something.else")
    with pytest.raises(WeightsError, match="expected 'toolchain_restore.RecurrentQPolicy'"):
        RecurrentQPolicy.load(tmp_path / "other.safetensors")


def test_shipped_agent_loads_and_restores():
    from toolchain_restore import load_agent
    from toolchain_restore.agents.dqn import evaluate_agent

    agent = load_agent()
    assert sum(p.numel() for p in agent.network.parameters()) == 88_063
    # The card reports +4.22 dB on the corpus test split; a small draw of the embedded default's must still clearly gain.
    assert evaluate_agent(agent, "moderate", 32)["gain"] > 1.0
    settings = agent.training_settings
    assert settings["double_dqn"] and settings["toolbox"] == "toolbox.safetensors" and settings["data"] == "corpus:dev"


@pytest.mark.parametrize("views", [1, 2, 4, 8])
def test_views_average_the_values_of_flipped_copies_each_with_its_own_state(views):
    from toolchain_restore.agents.policy import symmetric_views

    torch.manual_seed(0)
    policy = RecurrentQPolicy(RecurrentQNetwork(), views=views)
    images = torch.randint(0, 256, (2, 3, 3, 63, 63), dtype=torch.uint8)
    previous = torch.zeros(2, 3, 12)
    previous[1, :, 4] = 1
    state = None
    for t in range(2):
        actions, state = policy.predict({"image": images[t].numpy(), "previous_action": previous[t].numpy()}, state,
                                        episode_start=np.full(3, t == 0), deterministic=True)
        assert state[0].shape == (views, 3, 50)
    copies = symmetric_views(images.flatten(0, 1), views).view(views, 2, 3, 3, 63, 63)
    expected = torch.stack([policy.network(copies[v], previous)[0][-1] for v in range(views)]).mean(0)
    assert (actions == expected.argmax(-1).numpy()).all()
    assert policy.macs_per_decision() == views * policy.network.macs_per_step()


def test_eight_views_choose_the_same_tool_for_a_flipped_or_transposed_patch():
    torch.manual_seed(1)
    policy = RecurrentQPolicy(RecurrentQNetwork(), views=8)
    image = torch.randint(0, 256, (4, 3, 63, 63), dtype=torch.uint8)
    previous = np.zeros((4, 12), np.float32)
    values = []
    for x in (image, image.flip(-1), image.transpose(-1, -2), image.flip(-2).transpose(-1, -2)):
        obs = {"image": x.numpy(), "previous_action": previous}
        values.append(policy.predict(obs, deterministic=True)[0])
    assert all((v == values[0]).all() for v in values)


def test_views_are_saved_overridden_and_checked(tmp_path):
    RecurrentQPolicy(views=4).save(tmp_path / "agent.safetensors")
    assert RecurrentQPolicy.load(tmp_path / "agent.safetensors").views == 4
    assert RecurrentQPolicy.load(tmp_path / "agent.safetensors", views=1).views == 1
    with pytest.raises(ValueError, match="views must be in 1..8"):
        RecurrentQPolicy(views=9)
    policy = RecurrentQPolicy(views=2)
    obs = {"image": np.zeros((3, 3, 63, 63), np.uint8), "previous_action": np.zeros((3, 12), np.float32)}
    _, one_view_state = RecurrentQPolicy(views=1).predict(obs)
    with pytest.raises(ValueError, match=r"state must be two arrays of shape \(2, 3, 50\)"):
        policy.predict(obs, one_view_state)
