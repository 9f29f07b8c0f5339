"""Nearly clean patches: the level where an agent should stop at once, and the envs' clean_fraction."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import toolchain_restore  # noqa: F401  (registers the env)
from toolchain_restore.degrade import SEVERITY_BANDS, level_triples
from toolchain_restore.envs.episode import (NEAR_CLEAN, NEAR_CLEAN_BLUR, NEAR_CLEAN_JPEG, NEAR_CLEAN_NOISE,
                                            near_clean_params)
from toolchain_restore.envs.held_out import held_out_set
from toolchain_restore.metrics import batch_psnr


def test_near_clean_params_stay_light_and_are_sometimes_none():
    rng = np.random.default_rng(0)
    drawn = [near_clean_params(rng) for _ in range(400)]
    assert all(0 <= p.blur_std <= NEAR_CLEAN_BLUR and 0 <= p.noise_std <= NEAR_CLEAN_NOISE for p in drawn)
    assert all(p.jpeg_quality >= NEAR_CLEAN_JPEG for p in drawn)
    untouched = [p for p in drawn if p.blur_std == 0 and p.noise_std == 0 and p.jpeg_quality == 101]
    assert 25 < len(untouched) < 75  # each distortion present with probability 1/2: about 1 in 8 has none


def test_a_held_out_clean_set_is_nearly_clean():
    test = held_out_set(NEAR_CLEAN, 24)
    exact = (test.L == test.H).flatten(1).all(1)
    assert 0 < int(exact.sum()) < 24
    assert float(batch_psnr(test.L[~exact], test.H[~exact]).min()) > 30.0


def _episode_levels(env, episodes: int) -> list:
    levels = []
    for k in range(episodes):
        _, info = env.reset(seed=k)
        levels.append(info["levels"])
    return levels


def test_clean_fraction_mixes_nearly_clean_episodes_in_and_the_rules_keep_them():
    env = gym.make("ToolchainRestore-v0", clean_fraction=0.5, training_rules=True, precision="fp32")
    levels = _episode_levels(env, 40)
    clean = sum(lv is None for lv in levels)  # a nearly clean patch is drawn from no severity band
    assert 10 < clean < 30
    plain = gym.make("ToolchainRestore-v0", training_rules=True, precision="fp32")
    assert all(lv is not None for lv in _episode_levels(plain, 10))


def test_the_vector_env_takes_clean_fraction_too():
    envs = gym.make_vec("ToolchainRestore-v0", num_envs=4, vectorization_mode="vector_entry_point",
                        level=NEAR_CLEAN, precision="fp32")
    _, info = envs.reset(seed=0)
    assert envs.unwrapped.clean_fraction == 0.0
    _, reward, _, _, _ = envs.step(np.full(4, 7))  # a heavy noise tool on clean patches
    assert (reward < 0).all()
    envs.close()


@pytest.mark.parametrize("bad", [-0.1, 1.5, "half"])
def test_a_bad_clean_fraction_is_refused(bad):
    with pytest.raises(ValueError, match="clean_fraction must be a number in \\[0, 1\\]"):
        gym.make("ToolchainRestore-v0", clean_fraction=bad)


def test_levels_clean_and_mixed_are_named_in_the_error_for_unknown_levels():
    with pytest.raises(ValueError, match="'clean' or 'mixed'"):
        gym.make("ToolchainRestore-v0", level="pristine")


def _band_of(levels) -> str:
    return next(name for name in SEVERITY_BANDS if tuple(levels) in level_triples(name))


def test_the_mixed_level_draws_every_severity_band():
    env = gym.make("ToolchainRestore-v0", level="mixed", precision="fp32")
    bands = [_band_of(lv) for lv in _episode_levels(env, 45)]
    assert all(8 < bands.count(name) < 25 for name in ("mild", "moderate", "severe"))
    with_clean = gym.make("ToolchainRestore-v0", level="mixed", clean_fraction=0.5, precision="fp32")
    assert any(lv is None for lv in _episode_levels(with_clean, 20))
