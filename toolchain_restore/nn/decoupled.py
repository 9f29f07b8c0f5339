"""Decoupled convolutions (DCNet, Liu et al., CVPR 2018).

A convolution computes, at each position, the inner product of a patch ``x`` and a filter
``w``: ``<w, x> = |w| |x| cos(theta)``. A decoupled convolution replaces it by
``h(|x|) * g(theta)`` (times ``|w|`` in the weighted variant): a magnitude function of the
patch norm and an angular function of the angle between patch and filter. Everything is
computed with ordinary convolutions: ``|x| cos(theta) = conv(x, w / |w|)`` and
``|x| = sqrt(conv(x * x, ones) + eps)``, one value per output position (per group).

Magnitude functions ``h`` (``rho`` the operator radius):

- bounded: ``sphere`` (alpha), ``ball`` (alpha * min(|x|, rho) / rho), ``tanh`` (alpha * tanh(|x| / rho));
- unbounded: ``linear`` (alpha * |x|), ``seg`` (alpha * |x| up to rho, then slope beta,
  continuous at rho), ``log`` (alpha * log(1 + |x|)), ``mix`` (alpha * |x| + beta * log(1 + |x|)).

Angular functions ``g``: ``cos`` (cos theta), ``linear`` (1 - 2 theta / pi), ``sigmoid``
(a sigmoid of theta through 1 at 0, 0 at pi/2 and -1 at pi, steepness ``k``), ``sqcos``
(sign(cos theta) cos^2 theta).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InvalidInput

__all__ = ["MAGNITUDES", "BOUNDED", "ANGULARS", "DecoupledConv2d", "conv2d", "parse_conv_kind", "project_filters",
           "orthogonality_penalty"]

MAGNITUDES = ("sphere", "ball", "tanh", "linear", "seg", "log", "mix")
BOUNDED = ("sphere", "ball", "tanh")
"""Magnitudes with |h| <= alpha whatever the input (unweighted)."""
ANGULARS = ("cos", "linear", "sigmoid", "sqcos")
EPS = 1e-4
"""Added under the square roots of the norms, as in the official code: no NaN at a zero patch."""
RADIUS_FLOOR = 1e-4
"""A learnable radius is ``r^2 + RADIUS_FLOOR`` (times the running patch norm): always positive."""


def _magnitude(kind: str, norm: torch.Tensor, rho: torch.Tensor | float, alpha: float, beta: float) -> torch.Tensor:
    if kind == "sphere":
        return torch.full_like(norm, alpha)
    if kind == "ball":
        return alpha * torch.minimum(norm, torch.as_tensor(rho, dtype=norm.dtype)) / rho
    if kind == "tanh":
        return alpha * torch.tanh(norm / rho)
    if kind == "linear":
        return alpha * norm
    if kind == "seg":
        return torch.where(norm <= rho, alpha * norm, beta * norm + (alpha - beta) * rho)
    if kind == "log":
        return alpha * torch.log1p(norm)
    if kind == "mix":
        return alpha * norm + beta * torch.log1p(norm)
    raise ValueError(f"unknown magnitude function {kind!r}; choose from {MAGNITUDES}")


def _angular(kind: str, cos: torch.Tensor, k: float) -> torch.Tensor:
    if kind == "cos":
        return cos
    if kind == "sqcos":
        return torch.sign(cos) * cos * cos
    # acos has an infinite slope at +-1; a hair inside keeps gradients finite.
    theta = torch.acos(cos.clamp(-1.0 + 1e-7, 1.0 - 1e-7))
    if kind == "linear":
        return 1.0 - 2.0 * theta / math.pi
    if kind == "sigmoid":
        a = math.exp(-math.pi / (2.0 * k))
        e = torch.exp(theta / k - math.pi / (2.0 * k))
        return ((1.0 + a) / (1.0 - a)) * (1.0 - e) / (1.0 + e)
    raise ValueError(f"unknown angular function {kind!r}; choose from {ANGULARS}")


class DecoupledConv2d(nn.Conv2d):
    """A drop-in ``nn.Conv2d`` computing ``h(|x|) g(theta)`` (times ``|w|`` when weighted).

    Takes ``nn.Conv2d``'s arguments (stride, padding, dilation, groups, bias, padding_mode)
    and its weight layout, so a trained plain convolution's weights load into it.

    Args:
        magnitude: one of ``MAGNITUDES``.
        angular: one of ``ANGULARS``.
        radius: the operator radius rho (ball, tanh, seg), in units of the patch norm.
        learnable_radius: learn one radius per output channel, ``rho = (r^2 + 1e-4) * m``
            with ``r`` starting at 1 and ``m`` a running mean of the patch norm (decay
            ``radius_momentum``; the first training batch sets it), as the official code.
        weighted: multiply by the filter norm ``|w|`` as well.
        alpha, beta: the magnitude functions' constants (beta: seg's slope past rho, mix's
            log weight).
        sigmoid_k: steepness of the sigmoid angular function (smaller is steeper).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *, magnitude: str = "tanh",
                 angular: str = "cos", radius: float = 1.0, learnable_radius: bool = False, weighted: bool = False,
                 alpha: float = 1.0, beta: float = 0.5, sigmoid_k: float = 0.3, radius_momentum: float = 0.999,
                 device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode,
                         device=device, dtype=dtype)
        if magnitude not in MAGNITUDES:
            raise ValueError(f"unknown magnitude function {magnitude!r}; choose from {MAGNITUDES}")
        if angular not in ANGULARS:
            raise ValueError(f"unknown angular function {angular!r}; choose from {ANGULARS}")
        if radius <= 0 or sigmoid_k <= 0 or not 0.0 <= radius_momentum < 1.0:
            raise ValueError(f"need radius > 0, sigmoid_k > 0 and 0 <= radius_momentum < 1; got {radius}, "
                             f"{sigmoid_k}, {radius_momentum}")
        self.magnitude, self.angular, self.weighted = magnitude, angular, weighted
        self.alpha, self.beta, self.sigmoid_k = alpha, beta, sigmoid_k
        self.radius, self.radius_momentum = radius, radius_momentum
        if learnable_radius:
            self.radius_root = nn.Parameter(torch.ones(out_channels, device=device, dtype=dtype))
            self.register_buffer("running_norm", torch.full((), float("nan"), device=device, dtype=dtype))
        else:
            self.register_parameter("radius_root", None)
            self.register_buffer("running_norm", None)

    @property
    def learnable_radius(self) -> bool:
        return self.radius_root is not None

    def patch_norm(self, x: torch.Tensor) -> torch.Tensor:
        """|x| of every patch, per group: N x groups x H' x W'."""
        ones = torch.ones(self.groups, self.in_channels // self.groups, *self.kernel_size, device=x.device, dtype=x.dtype)
        # nn.Conv2d's own convolution (padding mode included): one output channel per group.
        return torch.sqrt(self._conv_forward(x * x, ones, None) + EPS)

    def operator_radius(self, norm: torch.Tensor) -> torch.Tensor | float:
        """rho: the fixed radius, or the learned one per output channel (1 x C x 1 x 1)."""
        if not self.learnable_radius:
            return self.radius
        if self.training:
            with torch.no_grad():
                batch = norm.mean().to(self.running_norm.dtype)
                if torch.isnan(self.running_norm):
                    self.running_norm.copy_(batch)
                else:
                    self.running_norm.mul_(self.radius_momentum).add_((1.0 - self.radius_momentum) * batch)
        scale = 1.0 if torch.isnan(self.running_norm) else self.running_norm
        return ((self.radius_root ** 2 + RADIUS_FLOOR) * scale).view(1, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_norm = torch.sqrt(self.weight.pow(2).sum(dim=(1, 2, 3)) + EPS)  # one per output channel
        projection = self._conv_forward(x, self.weight / w_norm.view(-1, 1, 1, 1), None)  # |x| cos(theta)
        norm = self.patch_norm(x).repeat_interleave(self.out_channels // self.groups, dim=1)
        cos = (projection / norm).clamp(-1.0, 1.0)
        out = _magnitude(self.magnitude, norm, self.operator_radius(norm), self.alpha, self.beta) * _angular(
            self.angular, cos, self.sigmoid_k)
        if self.weighted:
            out = out * w_norm.view(1, -1, 1, 1)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out

    def extra_repr(self) -> str:
        extra = f", magnitude={self.magnitude}, angular={self.angular}, radius={self.radius}"
        if self.learnable_radius:
            extra += ", learnable_radius=True"
        if self.weighted:
            extra += ", weighted=True"
        return super().extra_repr() + extra


def parse_conv_kind(kind: str) -> tuple[str, str, bool] | None:
    """'plain' -> None; '<magnitude>_<angular>' or 'weighted_<magnitude>_<angular>' ->
    (magnitude, angular, weighted). A clear error names the valid choices."""
    if kind == "plain":
        return None
    parts = kind.split("_")
    weighted = parts[0] == "weighted"
    if weighted:
        parts = parts[1:]
    if len(parts) != 2 or parts[0] not in MAGNITUDES or parts[1] not in ANGULARS:
        raise InvalidInput(f"--conv: unknown convolution {kind!r}: use 'plain' or '[weighted_]<magnitude>_<angular>' "
                           f"with magnitude in {MAGNITUDES} and angular in {ANGULARS}, e.g. 'tanh_cos'")
    return parts[0], parts[1], weighted


def conv2d(kind: str, in_channels: int, out_channels: int, kernel_size, **kwargs) -> nn.Conv2d:
    """A convolution of the named kind ('plain', 'tanh_cos', 'weighted_seg_linear', ...):
    how a model switches its convolutions by one setting. Extra keyword arguments go to
    the layer (``stride``, ``padding``, ..., and for decoupled ones ``radius``,
    ``learnable_radius``, ...)."""
    parsed = parse_conv_kind(kind)
    if parsed is None:
        return nn.Conv2d(in_channels, out_channels, kernel_size, **kwargs)
    magnitude, angular, weighted = parsed
    return DecoupledConv2d(in_channels, out_channels, kernel_size, magnitude=magnitude, angular=angular,
                           weighted=weighted, **kwargs)


@torch.no_grad()
def project_filters(model: nn.Module) -> int:
    """Scale every filter of every decoupled convolution in ``model`` to unit norm (the
    official code does it every 100 iterations: unweighted operators ignore |w|, and this
    keeps the raw filters from drifting in scale). Returns how many layers it touched."""
    count = 0
    for m in model.modules():
        if isinstance(m, DecoupledConv2d):
            m.weight.div_(m.weight.pow(2).sum(dim=(1, 2, 3), keepdim=True).add(EPS).sqrt())
            count += 1
    return count


def orthogonality_penalty(model: nn.Module) -> torch.Tensor:
    """Sum over the decoupled convolutions of ``|W W^T - I|^2``, W the unit-norm filters as
    rows (out_channels x in_channels/groups * k * k): the official code's regulariser
    (weight 1e-5) that spreads the filters' directions."""
    total = None
    for m in model.modules():
        if isinstance(m, DecoupledConv2d):
            w = m.weight.flatten(1)
            w = w / torch.sqrt(w.pow(2).sum(dim=1, keepdim=True) + EPS)
            gram = w @ w.t()
            term = (gram - torch.eye(len(w), device=w.device, dtype=w.dtype)).pow(2).sum()
            total = term if total is None else total + term
    if total is None:
        return torch.zeros((), device=next(model.parameters()).device)
    return total
