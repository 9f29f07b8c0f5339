"""Patches and their augmentation: the 8 symmetries, applied to the degraded and the clean patch alike."""

import numpy as np
import pytest

from toolchain_restore.data import PatchSampler, image_set
from toolchain_restore.data.patches import DIHEDRAL_TRANSFORMS, dihedral
from toolchain_restore.degrade import degrade


def _asymmetric(h=5, w=5):
    return np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)


def test_the_eight_symmetries_are_distinct_and_preserve_pixels():
    image = _asymmetric()
    outs = [dihedral(image, k) for k in range(DIHEDRAL_TRANSFORMS)]
    assert len({o.tobytes() for o in outs}) == 8
    for o in outs:
        assert o.shape == image.shape and o.flags["C_CONTIGUOUS"]
        assert sorted(o.reshape(-1)) == sorted(image.reshape(-1))
    assert np.array_equal(outs[0], image)
    assert np.array_equal(outs[4], image.transpose(1, 0, 2))


@pytest.mark.parametrize("k", [-1, 8])
def test_an_unknown_symmetry_is_refused(k):
    with pytest.raises(ValueError, match="k must be in 0..7"):
        dihedral(_asymmetric(), k)


def _degrade(image, rng, crop):
    return degrade(image, "moderate", rng, crop=crop)


def test_augmented_patches_are_the_plain_ones_transformed_together():
    images = image_set(None, "train")
    plain, augmented = PatchSampler(images, 32), PatchSampler(images, 32, augment=True)
    seen = set()
    for seed in range(12):
        a = plain.sample(np.random.default_rng(seed), _degrade)
        rng = np.random.default_rng(seed)
        b = augmented.sample(rng, _degrade)
        k = int(b.source.rsplit("~", 1)[1])
        seen.add(k)
        assert b.source.startswith(a.source)
        assert np.array_equal(b.L, dihedral(a.L, k)) and np.array_equal(b.H, dihedral(a.H, k))
    assert len(seen) > 3  # the symmetry is drawn, not fixed
