"""DCNet's training aids: filter projection and the orthogonality penalty, alone and as
options of the generic trainer."""

import pytest
import torch
from torch import nn

from toolchain_restore.nn import DecoupledConv2d, orthogonality_penalty, project_filters
from toolchain_restore.training import Trainer, TrainerSettings

# Tiny tensors: on 2 busy cores two torch threads mostly wait on each other (one test here
# took 90 CPU seconds with two and 3 with one).
pytestmark = pytest.mark.usefixtures("one_thread")


def filter_norms(layer: nn.Conv2d) -> torch.Tensor:
    return layer.weight.flatten(1).norm(dim=1)


def test_projection_normalises_only_decoupled_filters():
    torch.manual_seed(0)
    model = nn.Sequential(DecoupledConv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), DecoupledConv2d(4, 2, 1))
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(7.0)
    plain_before = model[2].weight.clone()
    assert project_filters(model) == 2
    for layer in (model[0], model[3]):
        assert torch.allclose(filter_norms(layer), torch.ones(len(layer.weight)), atol=1e-4)
    assert torch.equal(model[2].weight, plain_before)


def test_orthogonality_penalty_is_zero_for_orthonormal_filters_and_positive_otherwise():
    layer = DecoupledConv2d(4, 4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(4).view(4, 4, 1, 1) * 3.0)  # orthogonal, any scale
    assert float(orthogonality_penalty(layer).detach()) < 1e-6
    with torch.no_grad():
        layer.weight[1] = layer.weight[0]  # two filters the same direction
    assert abs(float(orthogonality_penalty(layer).detach()) - 2.0) < 1e-3  # the two off-diagonal ones
    assert float(orthogonality_penalty(nn.Conv2d(3, 3, 1))) == 0.0


class TinyTask:
    """Fit a decoupled convolution to a fixed random target."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = nn.Sequential(DecoupledConv2d(3, 6, 3, padding=1, magnitude="tanh"), nn.ReLU(),
                                   DecoupledConv2d(6, 3, 3, padding=1, magnitude="linear"))
        self.x, self.y = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)

    def make_batch(self, step, rank, world_size, seed):
        return self.x, self.y

    def loss(self, model, batch, device):
        x, y = batch
        mse = ((model(x) - y) ** 2).mean()
        return mse, {"mse": mse.item()}

    def evaluate(self, model, device):
        return {}


def test_trainer_projects_filters_and_adds_the_penalty(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    task = TinyTask()
    start_penalty = float(orthogonality_penalty(task.model).detach())
    settings = TrainerSettings(out_dir=str(tmp_path), iterations=30, lr=1e-2, schedule="constant", log_every=5,
                               eval_every=30, checkpoint_every=30, progress=False, device="cpu",
                               filter_projection_every=10, orthogonality_weight=1.0)
    Trainer(settings).fit(task)
    for layer in (task.model[0], task.model[2]):  # the last step (30) projected them
        assert torch.allclose(filter_norms(layer), torch.ones(len(layer.weight)), atol=1e-4)
    assert float(orthogonality_penalty(task.model).detach()) < start_penalty
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert "losses/orthogonality" in events.Tags()["scalars"]


def test_the_aids_are_a_callback_equal_to_the_settings(tmp_path):
    from toolchain_restore.nn import DCNetTrainingAids

    common = dict(iterations=12, lr=1e-2, schedule="constant", log_every=4, eval_every=12, checkpoint_every=12,
                  progress=False, device="cpu")
    by_settings = TinyTask()
    Trainer(TrainerSettings(out_dir=str(tmp_path / "a"), filter_projection_every=4, orthogonality_weight=0.5,
                            **common)).fit(by_settings)
    by_callback = TinyTask()
    Trainer(TrainerSettings(out_dir=str(tmp_path / "b"), **common),
            callbacks=(DCNetTrainingAids(filter_projection_every=4, orthogonality_weight=0.5),)).fit(by_callback)
    plain = TinyTask()
    Trainer(TrainerSettings(out_dir=str(tmp_path / "c"), **common)).fit(plain)
    for (name, a), (_, b), (_, c) in zip(*(t.model.state_dict().items() for t in (by_settings, by_callback, plain))):
        assert torch.equal(a, b), name
    assert not all(torch.equal(a, c) for a, c in zip(by_settings.model.state_dict().values(),
                                                      plain.model.state_dict().values()))
