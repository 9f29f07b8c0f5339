import pytest
import torch
from torch import nn

from toolchain_restore.agents.weight_average import WeightAverage


def set_weight(net: nn.Linear, value: float) -> None:
    with torch.no_grad():
        net.weight.fill_(value)
        net.bias.fill_(-value)


def test_no_averaging_shows_the_online_network_itself():
    online = nn.Linear(2, 2)
    average = WeightAverage(online, 0)
    average.update(100)
    assert average.network is online and not average.averaging and average.state_dict() == {}


def test_follows_the_online_network_before_start_and_holds_the_mean_after():
    online = nn.Linear(2, 2)
    average = WeightAverage(online, start=10)
    assert average.network is not online
    set_weight(online, 5.0)
    average.update(9)  # before the start: a copy
    assert torch.equal(average.network.weight, online.weight) and average.count == 0
    for step, value in zip((10, 11, 12), (1.0, 2.0, 6.0)):
        set_weight(online, value)
        average.update(step)
    assert average.count == 3
    assert torch.allclose(average.network.weight, torch.full((2, 2), 3.0))
    assert torch.allclose(average.network.bias, torch.full((2,), -3.0))
    assert torch.equal(online.weight, torch.full((2, 2), 6.0))  # the online network is left alone


def test_state_round_trips_and_a_missing_average_is_refused():
    online = nn.Linear(2, 2)
    first = WeightAverage(online, start=1)
    for value in (1.0, 3.0):
        set_weight(online, value)
        first.update(5)
    second = WeightAverage(nn.Linear(2, 2), start=1)
    second.load_state_dict(first.state_dict())
    assert second.count == 2 and torch.allclose(second.network.weight, torch.full((2, 2), 2.0))
    with pytest.raises(ValueError, match="average_from"):
        WeightAverage(nn.Linear(2, 2), start=1).load_state_dict({})
    with pytest.raises(ValueError, match="average_from"):
        WeightAverage(online, start=-1)


def test_average_agents_is_the_mean_of_each_weight_and_refuses_what_does_not_average(tmp_path):
    from toolchain_restore.agents.policy import RecurrentQPolicy
    from toolchain_restore.agents.stop_gate import StopGate
    from toolchain_restore.agents.weight_average import average_agents
    from toolchain_restore.errors import InvalidInput

    first, second = RecurrentQPolicy(seed=0, views=4), RecurrentQPolicy(seed=1)
    first.save(tmp_path / "a.safetensors", training={"seed": 0})
    second.save(tmp_path / "b.safetensors")
    mean = average_agents([tmp_path / "a.safetensors", tmp_path / "b.safetensors"])
    for name, value in mean.network.state_dict().items():
        expected = (first.network.state_dict()[name] + second.network.state_dict()[name]) / 2
        assert torch.allclose(value, expected)
    assert mean.views == 4 and mean.training_settings["seed"] == 0
    assert mean.training_settings["average_of"] == [str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")]
    with pytest.raises(InvalidInput, match="at least two"):
        average_agents([tmp_path / "a.safetensors"])
    from toolchain_restore.agents.network import RecurrentQNetwork

    RecurrentQPolicy(RecurrentQNetwork(hidden=20)).save(tmp_path / "narrow.safetensors")
    with pytest.raises(InvalidInput, match="narrow.safetensors: another network shape"):
        average_agents([tmp_path / "a.safetensors", tmp_path / "narrow.safetensors"])
    first.with_stop_gate(StopGate(8), 0.5).save(tmp_path / "gated.safetensors")
    with pytest.raises(InvalidInput, match="gated.safetensors: an agent with a stop gate"):
        average_agents([tmp_path / "a.safetensors", tmp_path / "gated.safetensors"])


def test_average_agents_command(tmp_path, capsys):
    from toolchain_restore.agents.policy import RecurrentQPolicy
    from toolchain_restore.cli import main

    for seed in (0, 1):
        RecurrentQPolicy(seed=seed).save(tmp_path / f"{seed}.safetensors")
    paths = [str(tmp_path / f"{seed}.safetensors") for seed in (0, 1)]
    assert main(["average-agents", *paths, "--output", str(tmp_path / "mean.safetensors")]) == 0
    assert RecurrentQPolicy.load(tmp_path / "mean.safetensors").training_settings["average_of"] == paths
    assert main(["average-agents", *paths, "--output", str(tmp_path / "mean.pt")]) == 2
    assert "--output: an agent file ends in .safetensors" in capsys.readouterr().err
