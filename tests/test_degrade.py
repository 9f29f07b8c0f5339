"""The degradation protocol: level bands, parameter draws, blur, noise, JPEG and crops."""

import itertools
import math

import numpy as np
import pytest
from skimage import data as skdata

from toolchain_restore.degrade import (
    BLUR_GRID,
    JPEG_GRID,
    NOISE_GRID,
    SEVERITY_BANDS,
    DegradationParams,
    degrade,
    gaussian_blur,
    level_triples,
    sample_params,
)

SEVERITIES = ("mild", "moderate", "severe")


@pytest.fixture(scope="module")
def astronaut():
    return skdata.astronaut()


@pytest.fixture(scope="module")
def coffee():
    return skdata.coffee()


@pytest.fixture(scope="module")
def small_image(astronaut):
    # 64 x 80 region with detail (the face), enough to see every distortion.
    return np.ascontiguousarray(astronaut[40:104, 160:240])


# ---------------------------------------------------------------- level triples and bands


@pytest.mark.parametrize(
    "severity, count, band",
    [("mild", 163, (9, 11)), ("moderate", 434, (12, 17)), ("severe", 163, (18, 20))],
)
def test_level_triples_count_and_band(severity, count, band):
    triples = level_triples(severity)
    assert len(triples) == count
    assert len(set(triples)) == count
    lo, hi = band
    assert SEVERITY_BANDS[severity] == band
    for k, m, n in triples:
        assert all(1 <= v <= 10 for v in (k, m, n))
        assert lo <= k + m + n - 2 <= hi
    # Every triple of the band is there, none missing.
    expected = {t for t in itertools.product(range(1, 11), repeat=3) if lo <= sum(t) - 2 <= hi}
    assert set(triples) == expected


def test_bands_are_disjoint():
    sets = {s: set(level_triples(s)) for s in SEVERITIES}
    for a, b in itertools.combinations(SEVERITIES, 2):
        assert not sets[a] & sets[b]
        lo_a, hi_a = SEVERITY_BANDS[a]
        lo_b, hi_b = SEVERITY_BANDS[b]
        assert hi_a < lo_b or hi_b < lo_a


def test_unknown_severity_raises():
    with pytest.raises(ValueError, match="unknown severity"):
        level_triples("extreme")


def test_grids_follow_the_reference():
    assert BLUR_GRID == pytest.approx([0.5 * i for i in range(11)])
    assert NOISE_GRID == pytest.approx([5.0 * i for i in range(11)])
    assert tuple(JPEG_GRID) == (100, 80, 60, 50, 40, 35, 30, 25, 20, 15, 10)


# ---------------------------------------------------------------- parameter draws


@pytest.mark.parametrize("severity", SEVERITIES)
def test_sample_params_lie_in_the_bins_of_their_levels(severity):
    rng = np.random.default_rng(1234)
    lo, hi = SEVERITY_BANDS[severity]
    seen_levels = set()
    for _ in range(200):
        p = sample_params(severity, rng)
        k, m, n = p.levels
        seen_levels.add(p.levels)
        assert lo <= k + m + n - 2 <= hi
        assert BLUR_GRID[k - 1] <= p.blur_std <= BLUR_GRID[k]
        assert NOISE_GRID[m - 1] <= p.noise_std <= NOISE_GRID[m]
        q_light, q_heavy = JPEG_GRID[n - 1], JPEG_GRID[n]
        assert isinstance(p.jpeg_quality, int)
        assert round(q_heavy) <= p.jpeg_quality <= round(q_light)
    # 200 draws over >= 163 triples: many distinct triples must come up.
    assert len(seen_levels) > 50


@pytest.mark.parametrize("severity", SEVERITIES)
def test_sample_params_is_reproducible(severity):
    a = [sample_params(severity, np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]


# ---------------------------------------------------------------- seeds


@pytest.mark.parametrize("severity", SEVERITIES)
def test_same_seed_gives_identical_output(small_image, severity):
    out1, p1 = degrade(small_image, severity, 42)
    out2, p2 = degrade(small_image, severity, 42)
    out3, p3 = degrade(small_image, severity, np.random.default_rng(42))
    assert np.array_equal(out1, out2) and p1 == p2
    assert np.array_equal(out1, out3) and p1 == p3
    assert out1.dtype == np.uint8 and out1.shape == small_image.shape


@pytest.mark.parametrize("severity", SEVERITIES)
def test_different_seeds_give_different_output(small_image, severity):
    out1, p1 = degrade(small_image, severity, 1)
    out2, p2 = degrade(small_image, severity, 2)
    assert p1 != p2
    assert not np.array_equal(out1, out2)


def test_same_seed_with_explicit_noise_is_reproducible(small_image):
    kwargs = dict(blur_std=1.0, noise_std=10.0, jpeg_quality=50)
    a, _ = degrade(small_image, rng=5, **kwargs)
    b, _ = degrade(small_image, rng=5, **kwargs)
    c, _ = degrade(small_image, rng=6, **kwargs)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


# ---------------------------------------------------------------- explicit parameters


def test_no_distortion_returns_the_image_unchanged(small_image):
    out, params = degrade(small_image, rng=0, blur_std=0, noise_std=0, jpeg_quality=101)
    assert np.array_equal(out, small_image)
    assert params == DegradationParams(0.0, 0.0, 101)
    assert params.levels is None


def test_no_distortion_on_a_float_image_gives_its_8_bit_version(small_image):
    as_float = small_image.astype(np.float64) / 255.0
    out, _ = degrade(as_float, rng=0, blur_std=0, noise_std=0, jpeg_quality=101)
    assert out.dtype == np.uint8
    assert np.array_equal(out, small_image)


@pytest.mark.parametrize(
    "given",
    [
        {"blur_std": 1.0},
        {"noise_std": 5.0},
        {"jpeg_quality": 50},
        {"blur_std": 1.0, "noise_std": 5.0},
        {"blur_std": 1.0, "jpeg_quality": 50},
        {"noise_std": 5.0, "jpeg_quality": 50},
    ],
)
def test_partial_explicit_parameters_raise(small_image, given):
    with pytest.raises(ValueError, match="all three"):
        degrade(small_image, rng=0, **given)


@pytest.mark.parametrize(
    "blur, noise, quality",
    [
        (-0.5, 0.0, 101),
        (0.0, -1.0, 101),
        (0.0, 0.0, 0),
        (0.0, 0.0, -5),
        (0.0, 0.0, 102),
        (math.nan, 0.0, 101),
        (0.0, math.nan, 101),
        (math.inf, 0.0, 101),
        (0.0, math.inf, 101),
        (0.0, 0.0, math.nan),
    ],
)
def test_bad_explicit_parameters_raise(small_image, blur, noise, quality):
    with pytest.raises(ValueError):
        degrade(small_image, rng=0, blur_std=blur, noise_std=noise, jpeg_quality=quality)


def test_no_level_and_no_parameters_raises(small_image):
    with pytest.raises(ValueError):
        degrade(small_image, None, 0)


def test_unknown_level_raises(small_image):
    with pytest.raises(ValueError):
        degrade(small_image, "extreme", 0)


# ---------------------------------------------------------------- blur against references


def reference_kernel(std):
    x = np.arange(21, dtype=np.float64) - 10
    xx, yy = np.meshgrid(x, x, indexing="ij")
    kernel = np.exp(-(xx**2 + yy**2) / (2.0 * std**2))
    return kernel / kernel.sum()


def reference_blur_numpy(image, std):
    """Direct (non-separable) 21x21 correlation over a replicate-padded image."""
    kernel = reference_kernel(std)
    padded = np.pad(image.astype(np.float64), ((10, 10), (10, 10), (0, 0)), mode="edge")
    h, w = image.shape[:2]
    out = np.zeros(image.shape, dtype=np.float64)
    for dy in range(21):
        for dx in range(21):
            out += kernel[dy, dx] * padded[dy : dy + h, dx : dx + w]
    return out


@pytest.mark.parametrize("std", [0.3, 1.0, 2.7, 5.0])
@pytest.mark.parametrize("shape", [(40, 31, 3), (7, 5, 3)])
def test_gaussian_blur_matches_a_direct_2d_kernel(std, shape):
    rng = np.random.default_rng(0)
    image = rng.random(shape)
    ours = gaussian_blur(image, std)
    assert ours.shape == image.shape
    np.testing.assert_allclose(ours, reference_blur_numpy(image, std), rtol=0, atol=1e-12)


@pytest.mark.parametrize("std", [0.6, 1.9, 4.4])
def test_gaussian_blur_matches_scipy(small_image, std):
    ndimage = pytest.importorskip("scipy.ndimage")
    image = small_image.astype(np.float64) / 255.0
    kernel = reference_kernel(std)
    expected = np.stack(
        [ndimage.convolve(image[:, :, c], kernel, mode="nearest") for c in range(3)], axis=2
    )
    np.testing.assert_allclose(gaussian_blur(image, std), expected, rtol=0, atol=1e-12)


def test_gaussian_blur_of_zero_std_is_a_copy():
    image = np.random.default_rng(3).random((9, 11, 3))
    out = gaussian_blur(image, 0.0)
    assert np.array_equal(out, image)
    assert out is not image


def test_gaussian_blur_keeps_a_constant_image():
    image = np.full((12, 30, 3), 0.37)
    np.testing.assert_allclose(gaussian_blur(image, 3.0), image, atol=1e-12)


@pytest.mark.parametrize("std", [0.8, 3.2])
def test_degrade_blur_only_is_the_quantised_reference_blur(small_image, std):
    out, _ = degrade(small_image, rng=0, blur_std=std, noise_std=0, jpeg_quality=101)
    expected = np.clip(np.round(reference_blur_numpy(small_image / 255.0, std) * 255.0), 0, 255)
    diff = np.abs(out.astype(int) - expected.astype(int))
    # Summation order may move a value sitting on a rounding boundary by one level.
    assert diff.max() <= 1
    assert (diff > 0).mean() < 1e-3


# ---------------------------------------------------------------- crops


_full_cache = {}


def full_degraded(name, image, blur, quality):
    key = (name, blur, quality)
    if key not in _full_cache:
        _full_cache[key] = degrade(image, rng=0, blur_std=blur, noise_std=0, jpeg_quality=quality)[0]
    return _full_cache[key]


def crops_for(height, width):
    return [
        (0, 0, 63, 63),  # top-left corner
        (height - 63, width - 63, 63, 63),  # bottom-right corner
        (0, width - 40, 25, 40),  # top-right corner
        (height - 17, 0, 17, 50),  # bottom-left corner
        (37, 101, 63, 63),  # offsets not multiple of 16
        (16, 32, 48, 64),  # aligned to the macro-block grid
        (123, 5, 1, 1),  # one pixel
        (3, 9, 70, 29),  # odd sizes
        (0, 0, height, width),  # the whole image
    ]


@pytest.mark.parametrize("blur, quality", [(0.0, 101), (1.7, 101), (0.0, 30), (2.3, 75), (4.9, 10)])
@pytest.mark.parametrize("which", ["astronaut", "coffee", "odd"])
def test_crop_equals_the_crop_of_the_whole(astronaut, coffee, which, blur, quality):
    image = {"astronaut": astronaut, "coffee": coffee, "odd": astronaut[:509, :503]}[which]
    image = np.ascontiguousarray(image)
    height, width = image.shape[:2]
    whole = full_degraded(which, image, blur, quality)
    for crop in crops_for(height, width):
        top, left, ch, cw = crop
        part, _ = degrade(image, rng=0, blur_std=blur, noise_std=0, jpeg_quality=quality, crop=crop)
        assert part.shape == (ch, cw, 3), crop
        assert np.array_equal(part, whole[top : top + ch, left : left + cw]), crop


# ---------------------------------------------------------------- noise


def test_noise_has_the_requested_std():
    grey = np.full((160, 160, 3), 128, dtype=np.uint8)
    out, _ = degrade(grey, rng=11, blur_std=0, noise_std=25, jpeg_quality=101)
    diff = out.astype(np.float64) / 255.0 - grey.astype(np.float64) / 255.0
    assert abs(diff.mean()) < 2e-3
    assert diff.std() == pytest.approx(25.0 / 255.0, rel=0.03)


def test_noise_is_clipped_to_the_valid_range():
    dark = np.zeros((32, 32, 3), dtype=np.uint8)
    out, _ = degrade(dark, rng=2, blur_std=0, noise_std=50, jpeg_quality=101)
    # About half the noise is negative and must be clipped at 0.
    assert (out == 0).mean() > 0.4
    assert out.max() > 0


# ---------------------------------------------------------------- JPEG


def block_boundary_contrast(image):
    grey = image.astype(np.float64).mean(axis=2)
    dx = np.abs(np.diff(grey, axis=1))  # dx[:, j] is between columns j and j + 1
    dy = np.abs(np.diff(grey, axis=0))
    across_x = dx[:, 7::8].mean()
    within_x = np.delete(dx, np.s_[7::8], axis=1).mean()
    across_y = dy[7::8, :].mean()
    within_y = np.delete(dy, np.s_[7::8], axis=0).mean()
    return across_x + across_y, within_x + within_y


def test_jpeg_is_applied_and_blocky(astronaut):
    image = np.ascontiguousarray(astronaut[:256, :256])
    out, _ = degrade(image, rng=0, blur_std=0, noise_std=0, jpeg_quality=10)
    assert not np.array_equal(out, image)
    assert np.abs(out.astype(int) - image.astype(int)).mean() > 1.0
    across, within = block_boundary_contrast(out)
    assert across > 1.3 * within
    # The clean image has no such 8-pixel structure.
    clean_across, clean_within = block_boundary_contrast(image)
    assert clean_across < 1.1 * clean_within


def test_heavier_jpeg_loses_more(astronaut):
    image = np.ascontiguousarray(astronaut[:128, :128])
    errors = []
    for quality in (95, 50, 10):
        out, _ = degrade(image, rng=0, blur_std=0, noise_std=0, jpeg_quality=quality)
        errors.append(np.abs(out.astype(int) - image.astype(int)).mean())
    assert errors[0] < errors[1] < errors[2]


# ---------------------------------------------------------------- bad images and crops


@pytest.mark.parametrize(
    "image, error",
    [
        (np.zeros((16, 16), dtype=np.uint8), ValueError),
        (np.zeros((16, 16, 4), dtype=np.uint8), ValueError),
        (np.zeros((16, 16, 1), dtype=np.uint8), ValueError),
        (np.zeros((0, 16, 3), dtype=np.uint8), ValueError),
        (np.zeros((16, 16, 3), dtype=np.int32), TypeError),
        (np.zeros((16, 16, 3), dtype=bool), TypeError),
        (np.full((16, 16, 3), 1.5), ValueError),
        (np.full((16, 16, 3), -0.01), ValueError),
        (np.full((16, 16, 3), np.nan), ValueError),
        (np.zeros((16, 16, 3)).tolist(), TypeError),
    ],
    ids=["HxW", "HxWx4", "HxWx1", "empty", "int32", "bool", "above-1", "below-0", "nan", "list"],
)
def test_bad_images_raise(image, error):
    with pytest.raises(error):
        degrade(image, rng=0, blur_std=1.0, noise_std=0, jpeg_quality=50)


@pytest.mark.parametrize(
    "crop",
    [
        (0, 0, 65, 10),
        (0, 0, 10, 81),
        (-1, 0, 10, 10),
        (0, -1, 10, 10),
        (60, 0, 5, 10),
        (0, 75, 10, 6),
        (0, 0, 0, 10),
        (0, 0, 10, 0),
        (64, 80, 1, 1),
    ],
)
def test_crops_outside_the_image_raise(small_image, crop):
    assert small_image.shape[:2] == (64, 80)
    with pytest.raises(ValueError, match="crop"):
        degrade(small_image, rng=0, blur_std=1.0, noise_std=0, jpeg_quality=50, crop=crop)
