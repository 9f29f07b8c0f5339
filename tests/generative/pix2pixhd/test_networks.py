"""pix2pixHD's networks against the reference's architecture: shapes and parameter counts
computed from the reference's layer list, boundary maps and instance pooling on hand-made
maps, the losses."""

import pytest
import torch

from toolchain_restore.generative.losses import feature_matching_loss, lsgan_loss
from toolchain_restore.generative.pix2pixhd import (FeatureEncoder, MultiscaleDiscriminator, Pix2PixHD,
                                                    Pix2PixHDGenerator, instance_average, instance_boundaries,
                                                    one_hot_labels, preset)


def conv(cin, cout, k):
    return cin * cout * k * k + cout


def reference_global_count(cin, ngf, n_down, n_blocks, to_image=True):
    """G1 by the reference's list: 7x7 conv, stride-2 convs, residual blocks, transposed convs, 7x7 conv."""
    total = conv(cin, ngf, 7)
    total += sum(conv(ngf * 2**k, ngf * 2 ** (k + 1), 3) for k in range(n_down))
    total += n_blocks * 2 * conv(ngf * 2**n_down, ngf * 2**n_down, 3)
    total += sum(conv(ngf * 2 ** (k + 1), ngf * 2**k, 3) for k in range(n_down))
    return total + (conv(ngf, 3, 7) if to_image else 0)


def reference_enhancer_count(cin, ngf, n_blocks):
    return conv(cin, ngf, 7) + conv(ngf, 2 * ngf, 3) + n_blocks * 2 * conv(2 * ngf, 2 * ngf, 3) + conv(2 * ngf, ngf, 3)


def reference_patchgan_count(cin, ndf=64, n_layers=3):
    channels, total = [cin, ndf], conv(cin, ndf, 4)
    for _ in range(n_layers):
        channels.append(min(channels[-1] * 2, 512))
        total += conv(channels[-2], channels[-1], 4)
    return total + conv(channels[-1], 1, 4)


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_paper_global_generator_has_the_reference_parameter_count():
    # Cityscapes: 35 labels + boundary map; ngf 64, 4 downsamplings, 9 blocks.
    g = Pix2PixHDGenerator(36, ngf=64, n_downsample_global=4, n_blocks_global=9)
    assert count(g) == reference_global_count(36, 64, 4, 9)


@pytest.mark.parametrize("enhancers", [1, 2])
def test_enhancers_stack_on_a_global_generator_at_twice_the_width(enhancers):
    cin, ngf = 10, 4
    g = Pix2PixHDGenerator(cin, ngf=ngf, n_downsample_global=2, n_blocks_global=2, n_local_enhancers=enhancers,
                           n_blocks_local=1)
    expected = reference_global_count(cin, ngf * 2**enhancers, 2, 2, to_image=False)
    expected += sum(reference_enhancer_count(cin, ngf * 2 ** (enhancers - n), 1) for n in range(1, enhancers + 1))
    assert count(g) == expected + conv(ngf, 3, 7)
    out = g(torch.randn(2, cin, 64, 96))
    assert out.shape == (2, 3, 64, 96) and out.abs().max() <= 1


def test_global_generator_trained_alone_loads_under_an_enhancer():
    alone = Pix2PixHDGenerator(5, ngf=8, n_downsample_global=2, n_blocks_global=1)
    full = Pix2PixHDGenerator(5, ngf=4, n_downsample_global=2, n_blocks_global=1, n_local_enhancers=1)
    full.load_global(alone)
    for a, b in zip(alone.global_generator.features.parameters(), full.global_generator.features.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="twice"):
        Pix2PixHDGenerator(5, ngf=8, n_downsample_global=2, n_blocks_global=1, n_local_enhancers=1).load_global(alone)


@pytest.mark.parametrize("num_d", [1, 2, 3])
def test_multiscale_discriminator_features_and_counts(num_d):
    d = MultiscaleDiscriminator(39, ndf=64, n_layers=3, num_d=num_d)
    assert count(d) == num_d * reference_patchgan_count(39)
    outputs = d(torch.randn(1, 39, 64, 128))
    assert len(outputs) == num_d and all(len(o) == 5 for o in outputs)
    assert [o[-1].shape[1] for o in outputs] == [1] * num_d
    assert outputs[0][0].shape[-2:] == (33, 65)  # 4x4 conv, stride 2, padding 2
    if num_d > 1:
        assert outputs[1][0].shape[-2:] == (17, 33)  # on the input downsampled once


def test_instance_boundaries_on_a_hand_made_map():
    instance = torch.tensor([[[1, 1, 2],
                              [1, 1, 2],
                              [3, 3, 3]]])
    expected = torch.tensor([[[0, 1, 1],
                              [1, 1, 1],
                              [1, 1, 1]]], dtype=torch.float32)
    assert torch.equal(instance_boundaries(instance)[:, 0], expected)
    assert instance_boundaries(torch.zeros(1, 4, 4, dtype=torch.long)).sum() == 0


def test_instance_average_on_a_hand_made_map():
    features = torch.tensor([[[[1.0, 2.0, 10.0],
                               [3.0, 4.0, 20.0]]]])
    instance = torch.tensor([[[7, 7, 9],
                              [7, 7, 9]]])
    assert torch.equal(instance_average(features, instance), torch.tensor([[[[2.5, 2.5, 15.0], [2.5, 2.5, 15.0]]]]))
    # Ids are per image: the same id in two images averages separately.
    both = instance_average(torch.cat([features, features + 1]), torch.cat([instance, instance]))
    assert both[1, 0, 0, 0] == 3.5


def test_encoder_outputs_one_feature_per_instance():
    encoder = FeatureEncoder(3, 3, nef=4, n_downsample=2)
    instance = torch.zeros(1, 16, 16, dtype=torch.long)
    instance[:, 4:9, 3:12] = 5
    out = encoder(torch.randn(1, 3, 16, 16), instance)
    assert out.shape == (1, 3, 16, 16)
    assert torch.unique(out[0, 0][instance[0] == 5]).numel() == 1


def test_labels_out_of_range_are_a_clear_error():
    with pytest.raises(ValueError, match=r"0\.\.6 .*found 0\.\.9"):
        one_hot_labels(torch.tensor([[[0, 9]]]), 7)


def test_sizes_that_do_not_fit_the_downsamplings_are_a_clear_error():
    model = Pix2PixHD(preset("cpu", label_count=7))
    with pytest.raises(ValueError, match="multiples of 16"):
        model.generate(torch.zeros(1, 40, 64, dtype=torch.long), torch.zeros(1, 40, 64, dtype=torch.long))


def test_losses_follow_the_reference_weights():
    fake = [[torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)]] * 2
    real = [[torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2)]] * 2
    # Two matched layers per discriminator, weight 4 / 2, over 2 discriminators: 2 * (2 * 1 + 2 * 0) / 2.
    assert feature_matching_loss(fake, real).item() == pytest.approx(2.0)
    assert lsgan_loss(fake, real=True).item() == pytest.approx(2.0)
    assert lsgan_loss(fake, real=False).item() == pytest.approx(0.0)


def test_unet_baseline_keeps_the_size_and_uses_skips():
    from toolchain_restore.generative.pix2pixhd.networks import UNetGenerator

    g = UNetGenerator(7, ngf=4, depth=5).eval()
    x = torch.randn(1, 7, 64, 96)
    assert g(x).shape == (1, 3, 64, 96)
    dropouts = [m for m in g.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(dropouts) == 0 and len([m for m in UNetGenerator(7, depth=8).modules()
                                       if isinstance(m, torch.nn.Dropout)]) == 3


def test_pix2pix_preset_builds_a_single_scale_unet_model():
    from toolchain_restore.generative.pix2pixhd.networks import UNetGenerator

    model = Pix2PixHD(preset("pix2pix", label_count=7))
    assert isinstance(model.generator, UNetGenerator) and len(model.discriminator.scales) == 1
    assert model.condition_channels == 7 and model.size_multiple == 64
    with pytest.raises(ValueError, match="no local enhancers"):
        Pix2PixHD(preset("pix2pix", label_count=7, n_local_enhancers=1))
