"""Tool training's losses: each is the formula its option names, on the same batch."""

from __future__ import annotations

import pytest
import torch

from toolchain_restore.metrics import batch_psnr
from toolchain_restore.tools.training import ToolTrainingSettings, ToolTrainingTask

TINY = dict(tools=[1, 6], batch_size=2, patch_size=24, eval_patches=2)


@pytest.fixture(scope="module")
def batch():
    return ToolTrainingTask(ToolTrainingSettings(**TINY)).make_batch(step=0, rank=0, world_size=1, seed=0)


def _expected(kind: str, E: torch.Tensor, H: torch.Tensor) -> float:
    if kind == "mse":
        return float(torch.mean((E - H) ** 2))
    if kind == "l1":
        return float(torch.mean(torch.abs(E - H)))
    return -float(batch_psnr(E, H).mean())


@pytest.mark.parametrize("kind", ["mse", "l1", "psnr"])
def test_loss_is_the_named_formula_summed_over_tools(kind, batch):
    task = ToolTrainingTask(ToolTrainingSettings(**TINY, loss=kind))
    total, logs = task.loss(task.model, batch, torch.device("cpu"))
    with torch.no_grad():
        expected = sum(_expected(kind, task.model(L, i), H) for i, (L, H) in batch.items())
    assert float(total.detach()) == pytest.approx(expected, rel=1e-4, abs=0.02)
    assert set(logs) == {"mse/tool01", "mse/tool06"}
    total.backward()
    assert all(p.grad is not None for i in task.indices for p in task.model.tools[i].parameters())
