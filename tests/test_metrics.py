"""PSNR and its loss: the loss is minus the mean per-sample PSNR and weights samples alike."""

from __future__ import annotations

import pytest
import torch

from toolchain_restore.metrics import batch_psnr, psnr_loss


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    H = torch.rand(3, 3, 8, 8, generator=g)
    # One coarse, one fine and one nearly perfect estimate.
    scales = torch.tensor([0.1, 0.01, 0.001]).view(3, 1, 1, 1)
    return (H + scales * torch.randn(3, 3, 8, 8, generator=g)), H


def test_psnr_loss_is_minus_the_mean_psnr():
    E, H = _pair()
    # The 80 dB floor moves the 60 dB sample by 0.04 dB, the mean by a third of that.
    assert float(psnr_loss(E, H)) == pytest.approx(-float(batch_psnr(E, H).mean()), abs=0.02)
    assert float(psnr_loss(E, H, floor=0.0)) == pytest.approx(-float(batch_psnr(E, H).mean()), abs=1e-3)


def test_psnr_loss_moves_every_sample_where_mse_ignores_the_nearly_perfect_one():
    E, H = _pair()
    grads = {}
    for name, fn in (("mse", lambda e: torch.mean((e - H) ** 2)), ("psnr", lambda e: psnr_loss(e, H))):
        e = E.clone().requires_grad_(True)
        fn(e).backward()
        step = e.grad.flatten(1).norm(dim=1)
        # The nearly perfect sample's share of the gradient, against the coarse one's.
        grads[name] = float(step[2] / step[0])
    assert grads["mse"] < 0.02
    assert grads["psnr"] > 10


def test_psnr_loss_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
