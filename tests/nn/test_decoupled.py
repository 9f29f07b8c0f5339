"""Decoupled convolutions against a direct patch-by-patch reference (unfold, float64), their
bounds, continuity, gradients, and the drop-in contract with nn.Conv2d."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toolchain_restore.nn import ANGULARS, BOUNDED, MAGNITUDES, DecoupledConv2d, conv2d, parse_conv_kind

# Tiny tensors: on 2 busy cores two torch threads mostly wait on each other (one test here
# took 90 CPU seconds with two and 3 with one).
pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 1e-4


def reference_h(kind, norm, rho, alpha, beta):
    """The magnitude functions as the paper writes them, element by element."""
    out = torch.empty_like(norm)
    for i, n in enumerate(norm.flatten().tolist()):
        r = float(rho.flatten()[i].detach()) if torch.is_tensor(rho) else rho
        out.view(-1)[i] = {
            "sphere": alpha,
            "ball": alpha * min(n, r) / r,
            "tanh": alpha * math.tanh(n / r),
            "linear": alpha * n,
            "seg": alpha * n if n <= r else beta * n + (alpha - beta) * r,
            "log": alpha * math.log(1 + n),
            "mix": alpha * n + beta * math.log(1 + n),
        }[kind]
    return out


def reference_g(kind, cos, k):
    out = torch.empty_like(cos)
    for i, c in enumerate(cos.flatten().tolist()):
        theta = math.acos(max(-1.0, min(1.0, c)))
        a = math.exp(-math.pi / (2 * k))
        out.view(-1)[i] = {
            "cos": c,
            "linear": 1 - 2 * theta / math.pi,
            "sigmoid": (1 + a) / (1 - a) * (1 - math.exp(theta / k - math.pi / (2 * k)))
            / (1 + math.exp(theta / k - math.pi / (2 * k))),
            "sqcos": math.copysign(c * c, c) if c != 0 else 0.0,
        }[kind]
    return out


def reference(layer: DecoupledConv2d, x: torch.Tensor) -> torch.Tensor:
    """Every output from its own patch: unfold, norms, angle, h * g (* |w|) + b."""
    n, _, height, width = x.shape
    kh, kw = layer.kernel_size
    out_h = (height + 2 * layer.padding[0] - layer.dilation[0] * (kh - 1) - 1) // layer.stride[0] + 1
    out_w = (width + 2 * layer.padding[1] - layer.dilation[1] * (kw - 1) - 1) // layer.stride[1] + 1
    cols = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)  # N x (C k k) x L
    per_group_in = layer.in_channels // layer.groups
    per_group_out = layer.out_channels // layer.groups
    outputs = []
    for o in range(layer.out_channels):
        g = o // per_group_out
        patches = cols.view(n, layer.in_channels, kh * kw, -1)[:, g * per_group_in : (g + 1) * per_group_in]
        patches = patches.reshape(n, per_group_in * kh * kw, -1)
        w = layer.weight[o].reshape(-1)
        x_norm = torch.sqrt((patches ** 2).sum(1) + EPS)
        w_norm = torch.sqrt((w ** 2).sum() + EPS)
        cos = torch.einsum("k,nkl->nl", w, patches) / (w_norm * x_norm)
        rho = layer.operator_radius(x_norm)
        rho = rho.flatten()[o].expand_as(x_norm) if torch.is_tensor(rho) else rho
        value = reference_h(layer.magnitude, x_norm, rho, layer.alpha, layer.beta) * reference_g(
            layer.angular, cos, layer.sigmoid_k)
        if layer.weighted:
            value = value * w_norm
        if layer.bias is not None:
            value = value + layer.bias[o]
        outputs.append(value.view(n, out_h, out_w))
    return torch.stack(outputs, dim=1)


GEOMETRIES = [
    dict(in_channels=3, out_channels=4, kernel_size=3, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=2, padding=(1, 0), dilation=(1, 2), groups=2),
]


@pytest.mark.parametrize("magnitude", MAGNITUDES)
@pytest.mark.parametrize("angular", ANGULARS)
def test_matches_the_patch_by_patch_reference(magnitude, angular):
    torch.manual_seed(0)
    for geometry in GEOMETRIES:
        layer = DecoupledConv2d(**geometry, magnitude=magnitude, angular=angular, radius=1.5).double().eval()
        x = torch.randn(2, geometry["in_channels"], 7, 8, dtype=torch.float64)
        assert torch.allclose(layer(x), reference(layer, x), atol=1e-10), (magnitude, angular, geometry)


@pytest.mark.parametrize("options", [dict(weighted=True), dict(learnable_radius=True), dict(bias=False),
                                     dict(padding_mode="reflect", padding=1)])
def test_variants_match_the_reference(options):
    torch.manual_seed(1)
    geometry = {**GEOMETRIES[0], **options}
    for magnitude in ("tanh", "seg", "mix"):
        layer = DecoupledConv2d(**geometry, magnitude=magnitude, angular="linear").double()
        if layer.learnable_radius:
            with torch.no_grad():
                layer.radius_root.uniform_(0.5, 1.5)
            layer(torch.randn(2, 3, 7, 8, dtype=torch.float64))  # sets the running norm
            layer.eval()
        x = torch.randn(2, 3, 7, 8, dtype=torch.float64)
        if options.get("padding_mode") == "reflect":
            padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
            plain = DecoupledConv2d(**{**geometry, "padding_mode": "zeros", "padding": 0}, magnitude=magnitude,
                                    angular="linear").double()
            plain.load_state_dict(layer.state_dict())
            assert torch.allclose(layer(x), reference(plain, padded), atol=1e-10)
        else:
            assert torch.allclose(layer(x), reference(layer, x), atol=1e-10)


@pytest.mark.parametrize("magnitude", BOUNDED)
@pytest.mark.parametrize("angular", ANGULARS)
def test_bounded_operators_stay_within_alpha(magnitude, angular):
    torch.manual_seed(2)
    layer = DecoupledConv2d(3, 8, 3, padding=1, bias=False, magnitude=magnitude, angular=angular, alpha=2.0)
    x = 100 * torch.randn(4, 3, 16, 16)
    assert layer(x).abs().max() <= 2.0 + 1e-5
    unbounded = DecoupledConv2d(3, 8, 3, padding=1, bias=False, magnitude="linear", angular=angular, alpha=2.0)
    unbounded.load_state_dict(layer.state_dict())
    assert unbounded(x).abs().max() > 10  # grows with the input where bounded ones do not


def test_seg_is_continuous_at_the_radius():
    layer = DecoupledConv2d(1, 1, 1, bias=False, magnitude="seg", angular="cos", radius=2.0, alpha=1.0, beta=0.5)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    # A 1x1 filter: |x| is the pixel itself (up to eps), cos(theta) = 1 for positive pixels.
    with torch.no_grad():
        below, above = layer(torch.tensor([[[[2.0 - 1e-4]]]])), layer(torch.tensor([[[[2.0 + 1e-4]]]]))
        slope_above = float(layer(torch.tensor([[[[3.0]]]])) - layer(torch.tensor([[[[2.5]]]]))) / 0.5
    assert abs(float(below - above)) < 1e-3
    assert slope_above == pytest.approx(0.5, abs=1e-3)


def test_ball_is_the_angular_function_beyond_the_radius():
    torch.manual_seed(3)
    for angular in ANGULARS:
        ball = DecoupledConv2d(3, 5, 3, bias=False, magnitude="ball", angular=angular, radius=0.5, alpha=1.0).double()
        sphere = DecoupledConv2d(3, 5, 3, bias=False, magnitude="sphere", angular=angular, alpha=1.0).double()
        sphere.load_state_dict(ball.state_dict())
        x = 10 + torch.rand(2, 3, 6, 6, dtype=torch.float64)  # every patch norm far above 0.5
        assert torch.allclose(ball(x), sphere(x), atol=1e-12)


@pytest.mark.parametrize("magnitude", MAGNITUDES)
def test_gradients_of_every_magnitude(magnitude):
    torch.manual_seed(4)
    layer = DecoupledConv2d(2, 3, 3, padding=1, magnitude=magnitude, angular="cos", radius=1.0).double()
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: F_call(layer, x, w, b), (x, layer.weight, layer.bias))


@pytest.mark.parametrize("angular", ANGULARS)
@pytest.mark.parametrize("weighted", [False, True])
def test_gradients_of_every_angular(angular, weighted):
    torch.manual_seed(5)
    layer = DecoupledConv2d(2, 3, 3, padding=1, magnitude="tanh", angular=angular, weighted=weighted).double()
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: F_call(layer, x, w, b), (x, layer.weight, layer.bias))


def F_call(layer, x, weight, bias):
    """The layer as a function of its input and parameters, for gradcheck."""
    return torch.func.functional_call(layer, {"weight": weight, "bias": bias}, (x,))


def test_learnable_radius_gets_gradient_and_tracks_the_patch_norm():
    torch.manual_seed(6)
    layer = DecoupledConv2d(3, 4, 3, magnitude="tanh", angular="cos", learnable_radius=True)
    assert layer.radius_root.shape == (4,) and torch.isnan(layer.running_norm)
    x = torch.randn(2, 3, 8, 8)
    layer(x).sum().backward()
    assert layer.radius_root.grad is not None and layer.radius_root.grad.abs().sum() > 0
    first = float(layer.running_norm)
    assert first == pytest.approx(float(layer.patch_norm(x).mean()), rel=1e-5)
    layer(3 * x)
    assert float(layer.running_norm) == pytest.approx(0.999 * first + 0.001 * float(layer.patch_norm(3 * x).mean()),
                                                      rel=1e-5)
    layer.eval()
    before = float(layer.running_norm)
    layer(10 * x)
    assert float(layer.running_norm) == before  # evaluation does not move it
    # Its gradient is checked in float64 (eval: the running norm fixed).
    layer = layer.double()
    root = layer.radius_root.detach().clone().requires_grad_(True)
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda r: torch.func.functional_call(layer, {"radius_root": r}, (x,)), (root,))


@pytest.mark.parametrize("magnitude", MAGNITUDES)
@pytest.mark.parametrize("angular", ANGULARS)
def test_no_nan_at_zero_patches(magnitude, angular):
    layer = DecoupledConv2d(3, 4, 3, padding=1, magnitude=magnitude, angular=angular)
    x = torch.zeros(1, 3, 6, 6, requires_grad=True)
    out = layer(x)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all() and torch.isfinite(layer.weight.grad).all()


def test_a_plain_convolutions_weights_load_and_conv2d_switches_by_name():
    plain = nn.Conv2d(3, 8, 3, padding=1)
    decoupled = conv2d("tanh_cos", 3, 8, 3, padding=1)
    decoupled.load_state_dict(plain.state_dict())
    assert isinstance(decoupled, DecoupledConv2d) and decoupled(torch.rand(1, 3, 9, 9)).shape == (1, 8, 9, 9)
    assert type(conv2d("plain", 3, 8, 3)) is nn.Conv2d
    weighted = conv2d("weighted_seg_linear", 3, 8, 3, learnable_radius=True)
    assert weighted.weighted and weighted.magnitude == "seg" and weighted.angular == "linear" and weighted.learnable_radius
    assert parse_conv_kind("ball_sqcos") == ("ball", "sqcos", False)
    assert "tanh_cos" in repr(conv2d("tanh_cos", 1, 1, 1)).replace("magnitude=tanh, angular=cos", "tanh_cos")


@pytest.mark.parametrize("kind", ["tanh", "cube_cos", "tanh_tan", "weighted_", "plain_cos"])
def test_unknown_kinds_are_refused_by_name(kind):
    with pytest.raises(ValueError, match="magnitude in"):
        conv2d(kind, 3, 8, 3)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="magnitude"):
        DecoupledConv2d(3, 4, 3, magnitude="cube")
    with pytest.raises(ValueError, match="angular"):
        DecoupledConv2d(3, 4, 3, angular="tan")
    with pytest.raises(ValueError, match="radius > 0"):
        DecoupledConv2d(3, 4, 3, radius=0.0)
