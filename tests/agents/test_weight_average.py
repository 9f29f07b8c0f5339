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
