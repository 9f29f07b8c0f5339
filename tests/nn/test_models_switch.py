"""Models switch their convolutions by one setting, and their files remember it."""

import pytest
import torch

from toolchain_restore.agents.dqn import DQNSettings, train
from toolchain_restore.agents.network import RecurrentQNetwork
from toolchain_restore.agents.policy import RecurrentQPolicy
from toolchain_restore.nn import DecoupledConv2d
from toolchain_restore.tools import Toolbox

# Tiny tensors: on 2 busy cores two torch threads mostly wait on each other (one test here
# took 90 CPU seconds with two and 3 with one).
pytestmark = pytest.mark.usefixtures("one_thread")


def decoupled_layers(module):
    return [m for m in module.modules() if isinstance(m, DecoupledConv2d)]


def test_toolbox_with_decoupled_convolutions_round_trips(tmp_path):
    torch.manual_seed(0)
    toolbox = Toolbox(conv="tanh_cos")
    assert len(decoupled_layers(toolbox)) == 6 * 3 + 6 * 8  # every layer of every tool
    assert sum(p.numel() for p in toolbox.parameters()) == sum(p.numel() for p in Toolbox().parameters())
    toolbox.save(tmp_path / "t.safetensors", iterations=1)
    loaded = Toolbox.load(tmp_path / "t.safetensors")
    assert loaded.conv == "tanh_cos" and loaded.config["iterations"] == 1
    x = torch.rand(2, 3, 20, 20)
    assert torch.allclose(loaded(x, 3), toolbox(x, 3))
    assert Toolbox.load(tmp_path / "t.safetensors").conv == "tanh_cos"
    assert decoupled_layers(Toolbox()) == []


def test_agent_with_a_decoupled_feature_extractor_round_trips(tmp_path):
    torch.manual_seed(0)
    network = RecurrentQNetwork(conv="ball_linear")
    assert len(decoupled_layers(network)) == 4
    assert sum(p.numel() for p in network.parameters()) == 88_063  # the same parameters as the paper's
    values, _ = network(torch.rand(3, 3, 63, 63), torch.zeros(3, 12))
    assert values.shape == (3, 13) and torch.isfinite(values).all()
    policy = RecurrentQPolicy(network)
    policy.save(tmp_path / "a.safetensors")
    loaded = RecurrentQPolicy.load(tmp_path / "a.safetensors")
    assert loaded.network.conv == "ball_linear"
    image = torch.randint(0, 256, (2, 3, 63, 63), dtype=torch.uint8)
    assert torch.allclose(loaded.network(image, torch.zeros(2, 12))[0], network(image, torch.zeros(2, 12))[0])


@pytest.mark.slow
def test_dqn_trains_a_decoupled_agent_and_refuses_a_mismatched_start(tmp_path):
    settings = DQNSettings(num_envs=2, total_steps=30, replay_steps=100, learning_starts=10, target_sync_every=20,
                           epsilon_decay_steps=20, eval_every=10**9, eval_patches=2, checkpoint_every=10**9,
                           conv="tanh_cos", device="cpu", out_dir=str(tmp_path / "a"))
    policy = train(settings, progress=False)
    assert policy.network.conv == "tanh_cos"
    assert RecurrentQPolicy.load(tmp_path / "a" / "agent.safetensors").network.conv == "tanh_cos"
    plain = RecurrentQPolicy(RecurrentQNetwork())
    plain.save(tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="'plain' convolutions"):
        train(DQNSettings(**{**settings.__dict__, "init_agent": str(tmp_path / "plain.safetensors"),
                             "out_dir": str(tmp_path / "b")}), progress=False)


@pytest.mark.parametrize("arch", ["dncnn", "vdsr"])
def test_cnn_baselines_with_decoupled_convolutions_round_trip(arch, tmp_path):
    from toolchain_restore.baselines.cnn import BASELINE_ARCHITECTURES, load_baseline, save_baseline

    torch.manual_seed(0)
    model = BASELINE_ARCHITECTURES[arch](depth=5, channels=8, conv="seg_cos").eval()
    assert len(decoupled_layers(model)) == 4  # all but the last layer, which outputs the residual
    assert "seg_cos" in model.display_name
    save_baseline(model, tmp_path / "b.safetensors")
    loaded = load_baseline(tmp_path / "b.safetensors")
    assert loaded.conv == "seg_cos"
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(loaded(x), model(x))
