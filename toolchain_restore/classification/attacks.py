"""Adversarial attacks for the robustness claim: FGSM and BIM (iterative FGSM), in the L-inf
ball of radius ``eps`` around images in [0, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["fgsm", "bim", "robust_accuracy"]


def _gradient_sign(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return grad.sign()


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """One step of size ``eps`` along the sign of the loss gradient (Goodfellow et al.)."""
    return (x + eps * _gradient_sign(model, x, y)).clamp(0.0, 1.0).detach()


def bim(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10,
        step_size: float | None = None) -> torch.Tensor:
    """``steps`` FGSM steps of ``step_size`` (default eps / 4), each projected back into the
    eps-ball and [0, 1] (Kurakin et al.)."""
    step_size = eps / 4 if step_size is None else step_size
    adv = x.detach().clone()
    for _ in range(steps):
        adv = adv + step_size * _gradient_sign(model, adv, y)
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0.0, 1.0).detach()
    return adv


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: str, eps: float,
                    batch_size: int = 256) -> float:
    """Accuracy of the model in eval mode on ``attack`` ('none', 'fgsm' or 'bim') images."""
    if attack not in ("none", "fgsm", "bim"):
        raise ValueError(f"attack must be 'none', 'fgsm' or 'bim', got {attack!r}")
    model.eval()
    correct = 0
    for lo in range(0, len(x), batch_size):
        xb, yb = x[lo : lo + batch_size], y[lo : lo + batch_size]
        if attack == "fgsm":
            xb = fgsm(model, xb, yb, eps)
        elif attack == "bim":
            xb = bim(model, xb, yb, eps)
        with torch.no_grad():
            correct += int((model(xb).argmax(1) == yb).sum())
    return correct / len(x)
