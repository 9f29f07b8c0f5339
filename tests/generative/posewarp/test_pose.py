"""Joint heatmaps, the segmentation prior, part transforms and warping."""

import numpy as np
import pytest
import torch

from toolchain_restore.generative.posewarp.figures import ProceduralVideo
from toolchain_restore.generative.posewarp.pose import (LIMBS, fit_transform, limb_log_prior, part_transforms,
                                                        pose_heatmaps, warp_parts)


def joints(seed=0, size=64):
    return ProceduralVideo(seed, size).frame(0)[1]


def test_heatmaps_peak_at_the_joints():
    j = np.round(joints()).astype(np.float64)
    maps = pose_heatmaps(j, 64, 64)
    assert maps.shape == (14, 64, 64)
    for k in range(14):
        y, x = np.unravel_index(int(maps[k].argmax()), (64, 64))
        assert (x, y) == (int(j[k, 0]), int(j[k, 1])) and float(maps[k].max()) == pytest.approx(1.0)
    j[3] = np.nan
    assert float(pose_heatmaps(j, 64, 64)[3].abs().max()) == 0.0


def test_prior_favours_each_limb_along_it():
    j = joints()
    prior = limb_log_prior(j, 64, 64)
    assert prior.shape == (11, 64, 64)
    for k, limb in enumerate(LIMBS):
        x, y = np.round(j[list(limb)].mean(0)).astype(int)
        assert prior[k + 1, y, x] > prior[0, y, x]
    assert int(prior[:, 0, 0].argmax()) == 0  # a corner is background


@pytest.mark.parametrize("kind", ["similarity", "affine"])
def test_part_transforms_map_target_joints_onto_source_joints(kind):
    rng = np.random.default_rng(0)
    target = joints(1)
    angle, scale = 0.3, 1.2
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    if kind == "affine":
        rotation = rotation @ np.array([[1.0, 0.3], [0.0, 0.8]])
    source = target @ rotation.T + rng.normal(size=2)
    # Limbs of two joints are mapped exactly whatever the poses; the torso when the poses
    # differ by a map of the fitted kind.
    source[:2] += rng.normal(size=(2, 2)) * 3
    transforms = part_transforms(source, target, kind)
    for k, limb in enumerate(LIMBS):
        pts = target[list(limb)]
        mapped = pts @ transforms[k][:, :2].T + transforms[k][:, 2]
        np.testing.assert_allclose(mapped, source[list(limb)], atol=1e-6)


def test_similarity_is_least_squares_on_the_torso():
    rng = np.random.default_rng(1)
    t = rng.uniform(0, 50, (4, 2))
    s = t + rng.normal(size=(4, 2))
    m = fit_transform(t, s, "similarity")
    assert m[0, 0] == pytest.approx(m[1, 1]) and m[0, 1] == pytest.approx(-m[1, 0])
    residual = ((t @ m[:, :2].T + m[:, 2] - s) ** 2).sum()
    assert residual <= ((t - s) ** 2).sum() + 1e-9
    with pytest.raises(ValueError, match="similarity"):
        fit_transform(t, s, "projective")


def test_warping_with_identical_poses_returns_the_masked_source():
    image, j = ProceduralVideo(2, 32).frame(0)
    source = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
    masks = torch.rand(1, 10, 32, 32)
    transforms = torch.from_numpy(part_transforms(j, j))[None]
    warped = warp_parts(source, masks, transforms)
    assert warped.shape == (1, 10, 3, 32, 32)
    torch.testing.assert_close(warped[0], source[0][None] * masks[0][:, None], atol=1e-5, rtol=0)


def test_wrong_joint_shapes_are_named():
    with pytest.raises(ValueError, match="14 x 2"):
        part_transforms(np.zeros((13, 2)), np.zeros((14, 2)))


def test_unet_without_final_tanh_keeps_its_layers_and_returns_raw_values():
    from toolchain_restore.generative.pix2pixhd.networks import UNetGenerator

    torch.manual_seed(0)
    with_tanh = UNetGenerator(3, 2, 4, 3, dropout=0.0)
    torch.manual_seed(0)
    raw = UNetGenerator(3, 2, 4, 3, dropout=0.0, final_tanh=False)
    raw.load_state_dict(with_tanh.state_dict())  # same parameters, only the activation differs
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(torch.tanh(raw(x)), with_tanh(x))
