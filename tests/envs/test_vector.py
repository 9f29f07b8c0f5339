import gymnasium as gym
import numpy as np
import pytest

import toolchain_restore  # noqa: F401
from toolchain_restore.envs import ToolchainRestoreEnv, ToolchainRestoreVectorEnv


def make_native(n, **kwargs):
    return gym.make_vec("ToolchainRestore-v0", num_envs=n, vectorization_mode="vector_entry_point", **kwargs)


def test_make_vec_gives_the_native_vector_env():
    envs = make_native(3, level="severe")
    assert isinstance(envs, gym.vector.VectorEnv)
    assert isinstance(envs, ToolchainRestoreVectorEnv)
    assert envs.num_envs == 3 and envs.level == "severe"
    assert envs.single_action_space == gym.spaces.Discrete(13)
    obs, info = envs.reset(seed=0)
    assert envs.observation_space.contains(obs)
    envs.close()


def assert_same_observations(a, b):
    assert np.array_equal(a["previous_action"], b["previous_action"])
    assert np.array_equal(a["step"], b["step"])
    # Batched and single convolutions sum in a different order: a pixel on a rounding
    # boundary may land one level apart.
    diff = np.abs(a["image"].astype(int) - b["image"].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


@pytest.mark.parametrize(
    "num_envs, kwargs",
    [(5, {}), (3, {"level": "mild"}), (4, {"level": "severe", "training_rules": True, "split": "test", "max_steps": 2})],
)
@pytest.mark.slow
def test_same_as_single_envs_given_the_same_seeds(num_envs, kwargs):
    native = make_native(num_envs, **kwargs)
    sync = gym.vector.SyncVectorEnv([lambda: ToolchainRestoreEnv(**kwargs) for _ in range(num_envs)])
    on, info_n = native.reset(seed=7)
    os_, info_s = sync.reset(seed=7)
    assert_same_observations(on, os_)
    np.testing.assert_allclose(info_n["input_psnr"], info_s["input_psnr"], atol=1e-9)
    rng = np.random.default_rng(0)
    resets = 0
    for _ in range(12):  # several episodes each: at most 3 steps, and stops drawn 1 time in 13
        actions = rng.integers(0, 13, num_envs)
        on, rn, tn, un, info_n = native.step(actions)
        os_, rs, ts, us, info_s = sync.step(actions)
        assert_same_observations(on, os_)
        np.testing.assert_allclose(rn, rs, atol=1e-4)
        assert np.array_equal(tn, ts) and np.array_equal(un, us)
        np.testing.assert_allclose(info_n["psnr"], info_s["psnr"], atol=1e-4)
        np.testing.assert_allclose(info_n["noise_std"], info_s["noise_std"])
        resets += int(tn.sum())
    assert resets >= 2 * num_envs  # the autoresets were compared too
    native.close()
    sync.close()


def test_seeded_runs_repeat_and_seed_lists():
    runs = []
    for _ in range(2):
        envs = make_native(4)
        obs, _ = envs.reset(seed=[1, 2, 3, 4])
        out = [obs["image"]]
        for a in ([0, 5, 12, 9], [12, 1, 2, 3], [4, 4, 4, 4]):
            out.append(envs.step(np.array(a))[0]["image"])
        runs.append(out)
        envs.close()
    for x, y in zip(*runs):
        assert np.array_equal(x, y)


def test_next_step_autoreset():
    envs = make_native(2)
    obs, _ = envs.reset(seed=0)
    first = obs["image"][0].copy()
    _, reward, terminated, _, _ = envs.step(np.array([12, 0]))
    assert terminated.tolist() == [True, False] and reward[0] == 0.0
    obs, reward, terminated, _, _ = envs.step(np.array([3, 0]))  # row 0 resets, its action is ignored
    assert obs["step"].tolist() == [0, 2] and reward[0] == 0.0 and not terminated[0]
    assert not np.array_equal(obs["image"][0], first)
    _, _, terminated, _, _ = envs.step(np.array([0, 0]))
    assert terminated.tolist() == [False, True]
    envs.close()


@pytest.mark.parametrize("actions", [[0, 13], [-1, 0], [0], [0.5, 1.0]])
def test_invalid_actions(actions):
    envs = make_native(2)
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="actions"):
        envs.step(np.array(actions))
    envs.close()


def test_step_before_reset_and_bad_arguments():
    envs = make_native(2)
    with pytest.raises(RuntimeError, match="reset"):
        envs.step(np.array([0, 0]))
    with pytest.raises(ValueError, match="num_envs"):
        ToolchainRestoreVectorEnv(num_envs=0)
    with pytest.raises(ValueError, match="seeds"):
        envs.reset(seed=[1, 2, 3])
    envs.close()


def test_render_gives_one_frame_per_env():
    envs = make_native(2, render_mode="rgb_array")
    envs.reset(seed=0)
    frames = envs.render()
    assert len(frames) == 2 and frames[0].dtype == np.uint8
    envs.close()


def assert_same_infos(native: dict, sync: dict) -> None:
    assert sorted(native) == sorted(sync)
    for key, value in sync.items():
        if key.startswith("_"):
            assert np.array_equal(native[key], value), key
        elif key in ("psnr", "input_psnr"):
            np.testing.assert_allclose(native[key], value, atol=1e-4)
        else:
            assert list(native[key]) == list(value), key


def test_infos_equal_the_single_envs_key_for_key():
    kwargs = {"level": "severe", "max_steps": 2}
    native = make_native(3, **kwargs)
    sync = gym.vector.SyncVectorEnv([lambda: ToolchainRestoreEnv(**kwargs) for _ in range(3)])
    _, info_n = native.reset(seed=3)
    _, info_s = sync.reset(seed=3)
    assert {"toolchain", "levels", "source", "_toolchain"} <= set(info_n)
    assert_same_infos(info_n, info_s)
    for actions in ([0, 12, 5], [4, 1, 9], [2, 2, 2], [12, 7, 8]):  # stops, max_steps and autoresets
        info_n = native.step(np.array(actions))[-1]
        info_s = sync.step(np.array(actions))[-1]
        assert_same_infos(info_n, info_s)
    native.close()
    sync.close()


def test_reset_options_are_the_single_envs():
    rng = np.random.default_rng(0)
    L, H = (rng.integers(0, 256, (63, 63, 3), dtype=np.uint8) for _ in range(2))
    native = make_native(2)
    obs, info = native.reset(seed=0, options={"L": L, "H": H})
    single = ToolchainRestoreEnv()
    obs1, info1 = single.reset(seed=0, options={"L": L, "H": H})
    for row in range(2):
        assert np.array_equal(obs["image"][row], obs1["image"])
    assert list(info["source"]) == ["given", "given"] and info["input_psnr"][0] == pytest.approx(info1["input_psnr"])
    per_row = np.stack([L, H]), np.stack([H, L])
    obs, info = native.reset(options={"L": per_row[0], "H": per_row[1]})
    assert np.array_equal(obs["image"][1].transpose(1, 2, 0), H)
    with pytest.raises(ValueError, match="options\\['L'\\]"):
        native.reset(options={"L": L[:10], "H": H})
    native.close()


def test_reset_mask_resets_only_those_rows():
    native = make_native(3)
    obs, _ = native.reset(seed=0)
    native.step(np.array([0, 1, 2]))
    obs, info = native.reset(seed=9, options={"reset_mask": np.array([False, True, False])})
    assert obs["step"].tolist() == [1, 0, 1]
    assert info["_psnr"].tolist() == [False, True, False]
    with pytest.raises(ValueError, match="reset_mask"):
        native.reset(options={"reset_mask": np.array([True, False])})
    native.close()
