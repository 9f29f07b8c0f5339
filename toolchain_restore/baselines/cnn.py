"""The single large CNNs that RL-Restore is compared with: DnCNN and VDSR.

The paper's claim is that a chain of small tools matches one large network at a fraction
of its computation; these are the large networks, sized as in its table (DnCNN 17 conv
layers of 64 channels, about 2.2 G multiply-adds per 63x63 patch; VDSR 20 conv layers of
64 channels, about 2.65 G). Both are fully convolutional, stride 1, zero "same" padding,
RGB in and out, so like the tools they accept any spatial size.

Multiply-adds are counted from the convolution layers only (``in/groups * out * kh * kw``
per output pixel); ReLU, BatchNorm and the residual addition are left out, as in the
paper's and the tools' counts.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..runtime import PrecisionMixin, check_module_precision, module_autocast
from ..nn import conv2d
from ..data.tensors import check_image_batch
from ..serialization import WeightsError, load_weights, read_metadata, save_weights
from ..tools.architectures import _start_near_identity

__all__ = [
    "DnCNN",
    "VDSR",
    "BASELINE_ARCHITECTURES",
    "BASELINE_KIND",
    "conv_macs_per_pixel",
    "save_baseline",
    "load_baseline",
]

BASELINE_KIND = "toolchain_restore.CNNBaseline"
"""The ``kind`` tag of baseline weights files; the architecture name is in their config."""


def conv_macs_per_pixel(module: nn.Module) -> int:
    """Multiply-adds per output pixel of all the convolutions in ``module``.

    Only valid for stride-1, "same"-padded networks, where every layer runs once per pixel
    of the input; anything else is refused rather than miscounted.
    """
    total = 0
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            if layer.stride != (1, 1) or layer.dilation != (1, 1):
                raise ValueError(f"{layer}: only stride-1, undilated convolutions are counted per pixel")
            kh, kw = layer.kernel_size
            total += (layer.in_channels // layer.groups) * layer.out_channels * kh * kw
    return total


def _kaiming_init(module: nn.Module) -> None:
    # PyTorch's default conv init (uniform, a=sqrt(5)) shrinks the signal by about 6x in
    # variance per ReLU layer: after 15-20 layers the gradients vanish and a plain VDSR
    # does not train with Adam. He (fan-in, ReLU) init keeps the scale through the depth,
    # as both papers do (VDSR explicitly; DnCNN with BatchNorm is less sensitive).
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class _Baseline(PrecisionMixin, nn.Module):
    """What both baselines share: the multiply-add count, the config a file must record,
    and a precision of their own (``precision``, as the Toolbox's: None while training,
    'auto' from :func:`load_baseline`)."""

    arch: str = ""
    default_depth: int = 0

    def __init__(self, depth: int | None, channels: int, conv: str = "plain") -> None:
        super().__init__()
        depth = self.default_depth if depth is None else depth
        if not isinstance(depth, int) or depth < 3:
            raise ValueError(f"depth must be an int of at least 3 conv layers, got {depth!r}")
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        self.depth = depth
        self.channels = channels
        self.conv = conv
        self.config: dict = {}
        """The config stored in the file it was loaded from (empty for a new network)."""
        c = channels
        layers: list[nn.Module] = [conv2d(conv, 3, c, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += self.hidden_layer(c, conv)
        # The last layer stays a plain convolution: it outputs a residual of any sign and size,
        # which a bounded decoupled operator could not.
        layers.append(nn.Conv2d(c, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)
        _kaiming_init(self)
        _start_near_identity(self.body[-1])
        # Channels-last convolutions train about a third faster on this CPU (oneDNN).
        self.to(memory_format=torch.channels_last)

    @staticmethod
    def hidden_layer(channels: int, conv: str) -> list[nn.Module]:
        """One of the ``depth - 2`` middle layers, its convolution of kind ``conv``."""
        raise NotImplementedError

    sign: float = 1.0
    """The output is ``input + sign * body(input)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x)
        x = x.contiguous(memory_format=torch.channels_last)
        with module_autocast(self.precision, x.device):
            residual = self.body(x)
        return x + self.sign * residual.to(x.dtype)

    @property
    def display_name(self) -> str:
        """The name reports print: "DnCNN", "VDSR", or e.g. "VDSR-10x32" for a non-default size."""
        name = type(self).__name__
        if (self.depth, self.channels) != (self.default_depth, 64):
            name += f"-{self.depth}x{self.channels}"
        return name if self.conv == "plain" else f"{name} ({self.conv})"

    @property
    def macs_per_pixel(self) -> int:
        """Convolution multiply-adds per pixel (computed from the layers)."""
        return conv_macs_per_pixel(self)

    def macs(self, height: int, width: int) -> int:
        """Multiply-adds on one H x W image (stride 1, same padding: per pixel times pixels)."""
        return self.macs_per_pixel * int(height) * int(width)

    @property
    def num_conv_layers(self) -> int:
        return sum(isinstance(m, nn.Conv2d) for m in self.modules())

    @property
    def num_parameters(self) -> int:
        """Trainable parameters (BatchNorm running statistics are buffers, not counted)."""
        return sum(p.numel() for p in self.parameters())

    def arch_config(self) -> dict:
        """What :func:`load_baseline` needs to rebuild this network before loading weights."""
        return {"arch": self.arch, "depth": self.depth, "channels": self.channels, "conv": self.conv}


class DnCNN(_Baseline):
    """DnCNN (Zhang et al., 2017) on RGB: 17 conv layers of 64 channels by default.

    conv 3x3 3->64, ReLU; 15 x (conv 3x3 64->64 without bias, BatchNorm, ReLU);
    conv 3x3 64->3. Residual learning as in DnCNN: the body predicts the distortion
    ``L - H`` and the output is ``input - body(input)`` (not clipped).

    558,403 parameters (plus BatchNorm running statistics); 556,416 multiply-adds per
    pixel, 2.208 G per 63x63 patch (the paper's table: about 2.2 G).
    """

    arch = "dncnn"
    default_depth = 17
    sign = -1.0  # DnCNN's body predicts the distortion

    def __init__(self, depth: int | None = None, channels: int = 64, conv: str = "plain") -> None:
        super().__init__(depth, channels, conv)

    @staticmethod
    def hidden_layer(channels: int, conv: str) -> list[nn.Module]:
        # The bias of a convolution followed by BatchNorm is cancelled by BN's mean.
        return [conv2d(conv, channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True)]


class VDSR(_Baseline):
    """VDSR (Kim et al., 2016) on RGB: 20 conv layers of 64 channels by default, no BatchNorm.

    conv 3x3 3->64, ReLU; 18 x (conv 3x3 64->64, ReLU); conv 3x3 64->3; global residual:
    the output is ``input + body(input)`` (not clipped). A smaller ``depth`` or
    ``channels`` gives a "VDSR-s" like the paper's smaller variant.

    668,227 parameters; 667,008 multiply-adds per pixel, 2.647 G per 63x63 patch (the
    paper's table: about 2.65 G).
    """

    arch = "vdsr"
    default_depth = 20

    def __init__(self, depth: int | None = None, channels: int = 64, conv: str = "plain") -> None:
        super().__init__(depth, channels, conv)

    @staticmethod
    def hidden_layer(channels: int, conv: str) -> list[nn.Module]:
        return [conv2d(conv, channels, channels, 3, padding=1), nn.ReLU(inplace=True)]


BASELINE_ARCHITECTURES: dict[str, type[_Baseline]] = {"dncnn": DnCNN, "vdsr": VDSR}
"""Architecture name (as stored in a weights file and given to ``--arch``) -> class."""


def save_baseline(model: _Baseline, path: str | os.PathLike, **extra) -> None:
    """Write a baseline as safetensors; ``extra`` (training facts) is stored in its config."""
    if not isinstance(model, _Baseline):
        raise TypeError(f"expected a DnCNN or VDSR, got {type(model).__name__}")
    save_weights(model, path, BASELINE_KIND, {**extra, **model.arch_config()})


def load_baseline(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                  precision: str | None = "auto") -> _Baseline:
    """Rebuild the baseline a file describes, load its weights, return it in eval mode,
    computing at ``precision`` (see ``toolchain_restore.runtime``).

    The file's config (``model.config`` afterwards, as for the Toolbox) holds the architecture and whatever
    :func:`save_baseline` was given.

    Raises:
        WeightsError: missing or corrupt file, weights of another kind, an unknown
            architecture, or tensors that do not fit it.
    """
    kind, config = read_metadata(path)
    if kind != BASELINE_KIND:
        raise WeightsError(f"{path}: holds weights of kind {kind or 'unknown'!r}, expected {BASELINE_KIND!r}")
    arch = config.get("arch")
    if arch not in BASELINE_ARCHITECTURES:
        raise WeightsError(f"{path}: unknown baseline architecture {arch!r}; expected one of {sorted(BASELINE_ARCHITECTURES)}")
    try:
        model = BASELINE_ARCHITECTURES[arch](depth=config.get("depth"), channels=config.get("channels", 64),
                                             conv=config.get("conv", "plain"))
    except (TypeError, ValueError) as err:
        raise WeightsError(f"{path}: corrupt baseline config {config} ({err})") from err
    load_weights(model, path, BASELINE_KIND)
    model.config = config
    model.precision = check_module_precision(precision)
    return model.to(map_location, memory_format=torch.channels_last).eval()
