"""pix2pixHD's networks (Wang et al., CVPR 2018): the coarse-to-fine generator (global
generator plus any number of local enhancers), the multi-scale PatchGAN discriminator
and the instance-feature encoder.

Shapes follow the reference: 7x7 reflection-padded convolutions at the ends, stride-2
3x3 convolutions down and transposed convolutions up, reflection-padded residual blocks,
InstanceNorm without affine parameters, ReLU; discriminators of 4x4 convolutions with
LeakyReLU 0.2 that return every layer's features for the feature-matching loss.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ResidualBlock", "GlobalGenerator", "Pix2PixHDGenerator", "UNetGenerator", "PatchDiscriminator",
           "MultiscaleDiscriminator", "FeatureEncoder", "downsample", "image_size_multiple"]


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Halve the resolution as the reference does between scales: 3x3 average pooling,
    stride 2, padding not counted."""
    return nn.functional.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)


def image_size_multiple(n_downsample_global: int, n_local_enhancers: int) -> int:
    """Height and width must be multiples of this for the generator's down and up paths to
    meet: 2 ** (downsamplings of the global generator + one per local enhancer)."""
    return 2 ** (n_downsample_global + n_local_enhancers)


class ResidualBlock(nn.Module):
    """x + (pad, 3x3 conv, norm, ReLU, pad, 3x3 conv, norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _down_up(in_channels: int, ngf: int, n_downsample: int, n_blocks: int) -> list[nn.Module]:
    """7x7 conv to ngf, n_downsample stride-2 convs doubling the channels, n_blocks residual
    blocks, n_downsample transposed convs halving them: ends with ngf channels at the input
    resolution."""
    layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7), _norm(ngf), nn.ReLU(True)]
    for k in range(n_downsample):
        c = ngf * 2**k
        layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), _norm(2 * c), nn.ReLU(True)]
    layers += [ResidualBlock(ngf * 2**n_downsample) for _ in range(n_blocks)]
    for k in reversed(range(n_downsample)):
        c = ngf * 2**k
        layers += [nn.ConvTranspose2d(2 * c, c, 3, stride=2, padding=1, output_padding=1), _norm(c), nn.ReLU(True)]
    return layers


def _to_image(ngf: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh())


class GlobalGenerator(nn.Module):
    """G1: the image at the input's resolution from its own features (``features``) and a
    7x7 convolution to ``out_channels`` with tanh (``to_image``).

    Arguments:
        in_channels: label one-hot + boundary map + instance features.
        ngf: channels of the first layer (reference: 64).
        n_downsample: stride-2 convolutions (reference: 4).
        n_blocks: residual blocks at the bottleneck (reference: 9).
    """

    def __init__(self, in_channels: int, out_channels: int = 3, ngf: int = 64, n_downsample: int = 4,
                 n_blocks: int = 9) -> None:
        super().__init__()
        self.features = nn.Sequential(*_down_up(in_channels, ngf, n_downsample, n_blocks))
        self.to_image = _to_image(ngf, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_image(self.features(x))


class _LocalEnhancer(nn.Module):
    """One enhancer G2: a front end (7x7 conv to ngf, stride-2 conv to 2 ngf) whose output
    is summed with the coarser generator's last features, then residual blocks and a
    transposed convolution back to ngf channels at the enhancer's resolution."""

    def __init__(self, in_channels: int, ngf: int, n_blocks: int) -> None:
        super().__init__()
        self.front = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7), _norm(ngf), nn.ReLU(True),
                                   nn.Conv2d(ngf, 2 * ngf, 3, stride=2, padding=1), _norm(2 * ngf), nn.ReLU(True))
        self.back = nn.Sequential(*[ResidualBlock(2 * ngf) for _ in range(n_blocks)],
                                  nn.ConvTranspose2d(2 * ngf, ngf, 3, stride=2, padding=1, output_padding=1),
                                  _norm(ngf), nn.ReLU(True))

    def forward(self, x: torch.Tensor, coarse_features: torch.Tensor) -> torch.Tensor:
        return self.back(self.front(x) + coarse_features)


class Pix2PixHDGenerator(nn.Module):
    """The coarse-to-fine generator: G1 on the input downsampled ``n_local_enhancers`` times,
    then each enhancer doubles the resolution. With 0 enhancers it is G1 alone.

    G1 is built at ``ngf * 2 ** n_local_enhancers`` channels and the finest enhancer at
    ``ngf``, so a G1 trained alone with ``ngf = g`` loads into a one-enhancer generator
    with ``ngf = g / 2`` (:meth:`load_global`), the reference's staged training.

    Arguments:
        in_channels: label one-hot + boundary map + instance features.
        out_channels: 3 for RGB.
        ngf: channels of the finest level (reference: 64 for G1 alone, 32 with one enhancer).
        n_downsample_global, n_blocks_global: G1's stride-2 convolutions (4) and residual blocks (9).
        n_local_enhancers: enhancers stacked on G1 (the reference trains with 1 at 2048x1024).
        n_blocks_local: residual blocks per enhancer (3).
    """

    def __init__(self, in_channels: int, out_channels: int = 3, ngf: int = 64, n_downsample_global: int = 4,
                 n_blocks_global: int = 9, n_local_enhancers: int = 0, n_blocks_local: int = 3) -> None:
        super().__init__()
        self.n_local_enhancers = n_local_enhancers
        ngf_global = ngf * 2**n_local_enhancers
        self.global_generator = GlobalGenerator(in_channels, out_channels, ngf_global, n_downsample_global,
                                                n_blocks_global)
        # A G1 under enhancers ends at its features; its to_image layers are kept only
        # when it stands alone.
        if n_local_enhancers:
            del self.global_generator.to_image
        self.enhancers = nn.ModuleList(
            _LocalEnhancer(in_channels, ngf * 2 ** (n_local_enhancers - n), n_blocks_local)
            for n in range(1, n_local_enhancers + 1))
        self.to_image = _to_image(ngf, out_channels) if n_local_enhancers else None

    def forward(self, x: torch.Tensor, freeze_global: bool = False) -> torch.Tensor:
        """The image for input ``x``; ``freeze_global`` runs G1 without gradients (the
        schedule's first enhancer steps), so only the enhancers learn."""
        pyramid = [x]
        for _ in range(self.n_local_enhancers):
            pyramid.append(downsample(pyramid[-1]))
        if not self.n_local_enhancers:
            return self.global_generator(x)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not freeze_global):
            features = self.global_generator.features(pyramid[-1])
        for n, enhancer in enumerate(self.enhancers, start=1):
            features = enhancer(pyramid[self.n_local_enhancers - n], features)
        return self.to_image(features)

    def global_parameters(self) -> list[nn.Parameter]:
        return list(self.global_generator.parameters())

    def load_global(self, coarse: "Pix2PixHDGenerator") -> None:
        """Take G1's features from a generator trained at the coarser level (the staged
        schedule); it must have one enhancer fewer and twice the channels."""
        source = coarse.global_generator.features if coarse.n_local_enhancers == 0 else None
        if source is None or coarse.n_local_enhancers != self.n_local_enhancers - 1:
            raise ValueError("load_global takes a global generator trained alone (0 enhancers) into a generator with "
                             f"1 enhancer; got {coarse.n_local_enhancers} and {self.n_local_enhancers}")
        try:
            self.global_generator.features.load_state_dict(source.state_dict())
        except RuntimeError as err:
            raise ValueError(f"the global generator does not fit (its ngf must be twice this one's): {err}") from err


class PatchDiscriminator(nn.Module):
    """A PatchGAN: 4x4 convolutions C64 s2 - C128 s2 - C256 s2 - C512 s1 - 1 channel s1
    (for ``n_layers = 3``), LeakyReLU 0.2, InstanceNorm on all but the first; returns the
    output of every layer (the last is the real/fake map)."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        pad = 2  # ceil((4 - 1) / 2) as in the reference
        layers = [nn.Sequential(nn.Conv2d(in_channels, ndf, 4, stride=2, padding=pad), nn.LeakyReLU(0.2, True))]
        channels = ndf
        for n in range(1, n_layers + 1):
            out = min(channels * 2, 512)
            stride = 2 if n < n_layers else 1
            layers.append(nn.Sequential(nn.Conv2d(channels, out, 4, stride=stride, padding=pad), _norm(out),
                                        nn.LeakyReLU(0.2, True)))
            channels = out
        layers.append(nn.Sequential(nn.Conv2d(channels, 1, 4, stride=1, padding=pad)))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return outputs


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` identical PatchGANs, the k-th on the input downsampled k times (paper: 3)."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, num_d: int = 3) -> None:
        super().__init__()
        if num_d < 1:
            raise ValueError(f"num_d must be at least 1, got {num_d}")
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, ndf, n_layers) for _ in range(num_d))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        results = []
        for k, discriminator in enumerate(self.scales):
            if k:
                x = downsample(x)
            results.append(discriminator(x))
        return results


class FeatureEncoder(nn.Module):
    """E: an image to a low-dimensional feature map (7x7 conv, stride-2 convs down,
    transposed convs up, 7x7 conv, tanh), then averaged over each instance so every
    pixel of an object carries the object's feature.

    Arguments:
        in_channels: 3 for RGB.
        feature_channels: the feature's dimension (reference: 3).
        nef: channels of the first layer (reference: 16).
        n_downsample: stride-2 convolutions (reference: 4).
    """

    def __init__(self, in_channels: int = 3, feature_channels: int = 3, nef: int = 16, n_downsample: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(*_down_up(in_channels, nef, n_downsample, 0), _to_image(nef, feature_channels))

    def forward(self, image: torch.Tensor, instance: torch.Tensor) -> torch.Tensor:
        from .maps import instance_average

        return instance_average(self.body(image), instance)


class UNetGenerator(nn.Module):
    """pix2pix's U-Net (the single-scale baseline): ``depth`` 4x4 stride-2 convolutions
    down (ngf, 2 ngf, 4 ngf, then 8 ngf; LeakyReLU 0.2, InstanceNorm but on the outermost
    and innermost), transposed convolutions up with skip connections (ReLU, InstanceNorm,
    dropout 0.5 in the 8 ngf levels between the fourth and the bottleneck: three of them
    at depth 8), tanh at the end (``final_tanh=False`` returns the raw last layer instead,
    for heads that apply their own activations, e.g. PoseWarp's softmax masks).
    Inputs must be multiples of 2^depth."""

    def __init__(self, in_channels: int, out_channels: int = 3, ngf: int = 64, depth: int = 8,
                 dropout: float = 0.5, final_tanh: bool = True) -> None:
        super().__init__()
        widths = [ngf * min(2**k, 8) for k in range(depth)]
        self.down = nn.ModuleList()
        for k, w in enumerate(widths):
            layers: list[nn.Module] = [] if k == 0 else [nn.LeakyReLU(0.2, True)]
            layers.append(nn.Conv2d(in_channels if k == 0 else widths[k - 1], w, 4, stride=2, padding=1))
            if 0 < k < depth - 1:
                layers.append(_norm(w))
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()
        for k in reversed(range(depth)):
            source = widths[k] if k == depth - 1 else 2 * widths[k]
            target = out_channels if k == 0 else widths[k - 1]
            layers = [nn.ReLU(True), nn.ConvTranspose2d(source, target, 4, stride=2, padding=1)]
            if k == 0:
                if final_tanh:
                    layers.append(nn.Tanh())
            else:
                layers.append(_norm(target))
                if 4 <= k <= depth - 2 and dropout > 0:  # the 8 ngf levels between 4 ngf and the bottleneck
                    layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        x = self.up[0](skips.pop())
        for layer in self.up[1:]:
            x = layer(torch.cat([x, skips.pop()], dim=1))
        return x
