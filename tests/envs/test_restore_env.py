import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

import toolchain_restore  # noqa: F401  (registers the env)
from toolchain_restore.envs import ToolchainRestoreEnv
from toolchain_restore.envs.episode import STOP


@pytest.fixture
def env():
    """A fresh env per test, so that no test sees another's episode. Cheap: the toolbox and
    the decoded images behind it are loaded once per process and shared."""
    return ToolchainRestoreEnv()


def test_registered_on_import_and_by_module_path():
    assert "ToolchainRestore-v0" in gym.registry
    e = gym.make("toolchain_restore:ToolchainRestore-v0", level="mild")
    assert isinstance(e.unwrapped, ToolchainRestoreEnv)
    assert e.unwrapped.level == "mild"


def test_gymnasium_checker_passes_without_warning():
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make("ToolchainRestore-v0", render_mode="rgb_array").unwrapped)


def test_stable_baselines3_checker_passes_without_warning():
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(ToolchainRestoreEnv(), warn=True)


def test_spaces(env):
    obs, info = env.reset(seed=0)
    assert env.action_space == gym.spaces.Discrete(13)
    assert obs["image"].dtype == np.uint8 and obs["image"].shape == (3, 63, 63)
    assert obs["previous_action"].shape == (12,) and not obs["previous_action"].any()
    assert obs["step"] == 0
    assert env.observation_space.contains(obs)
    for key in ("psnr", "input_psnr", "toolchain", "blur_std", "noise_std", "jpeg_quality", "levels"):
        assert key in info


def independent_psnr(state: torch.Tensor, clean_u8: np.ndarray) -> float:
    estimate = state[0].permute(1, 2, 0).double().numpy()
    return peak_signal_noise_ratio(clean_u8.astype(np.float64) / 255.0, estimate, data_range=1.0)


@pytest.mark.parametrize("chain", [[5, 0, 9], [7, 11, 2], [3, STOP]])
def test_reward_is_psnr_change_recomputed_independently(chain):
    env = ToolchainRestoreEnv(level="severe")
    obs, info = env.reset(seed=11)
    clean = env._patch.H
    state = torch.from_numpy(env._patch.L.copy()).permute(2, 0, 1)[None].float() / 255.0
    previous = independent_psnr(state, clean)
    assert info["input_psnr"] == pytest.approx(previous, abs=1e-6)
    for k, action in enumerate(chain):
        obs, reward, terminated, truncated, info = env.step(action)
        if action == STOP:
            assert reward == 0.0 and terminated
            break
        with torch.no_grad():
            state = env.toolbox.tools[action](state).clamp(0, 1)
        now = independent_psnr(state, clean)
        assert reward == pytest.approx(now - previous, abs=1e-6)
        assert info["psnr"] == pytest.approx(now, abs=1e-6)
        # The observation is the rounded float state; a pixel on a rounding boundary may
        # land one level apart when convolution sums in another order.
        diff = np.abs(obs["image"].astype(int) - np.round(state[0].numpy() * 255).astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
        assert obs["previous_action"][action] == 1.0 and obs["previous_action"].sum() == 1.0
        assert obs["step"] == k + 1
        assert isinstance(reward, float) and isinstance(terminated, bool) and truncated is False
        previous = now
    assert info["toolchain"] == [a for a in chain if a != STOP]


def test_same_seed_same_episode():
    a, b = ToolchainRestoreEnv(), ToolchainRestoreEnv()
    oa, ia = a.reset(seed=123)
    ob, ib = b.reset(seed=123)
    assert np.array_equal(oa["image"], ob["image"]) and ia == ib
    for action in (4, 9, 1):
        ra, rb = a.step(action), b.step(action)
        assert np.array_equal(ra[0]["image"], rb[0]["image"]) and ra[1:] == rb[1:]
    oc, _ = b.reset(seed=124)
    assert not np.array_equal(oa["image"], oc["image"])


def test_episode_ends_after_max_steps():
    env = ToolchainRestoreEnv(max_steps=2)
    env.reset(seed=0)
    assert env.step(0)[2] is False
    assert env.step(0)[2] is True
    with pytest.raises(RuntimeError, match="ended"):
        env.step(0)


@pytest.mark.parametrize("action", [13, -1, 1.5, "3", None, True, np.array([1, 2])])
def test_invalid_actions_are_clear_errors(env, action):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(action)


def test_numpy_integer_actions_are_accepted(env):
    """A NumPy integer or 0-d array is the same action as the Python int."""
    plain = ToolchainRestoreEnv()
    plain.reset(seed=0)
    env.reset(seed=0)
    for numpy_action, action in ((np.int64(3), 3), (np.array(4), 4)):
        obs, reward, terminated, truncated, info = env.step(numpy_action)
        expected = plain.step(action)
        assert np.array_equal(obs["image"], expected[0]["image"]) and obs["step"] == expected[0]["step"]
        assert (reward, terminated, truncated, info) == expected[1:]
    assert info["toolchain"] == [3, 4]
    assert isinstance(reward, float)


def test_step_before_reset():
    with pytest.raises(RuntimeError, match="reset"):
        ToolchainRestoreEnv().step(0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"level": "hard"}, "level"),
        ({"split": "valid"}, "split"),
        ({"max_steps": 0}, "max_steps"),
        ({"patch_size": 4}, "patch_size"),
        ({"render_mode": "human"}, "render_mode"),
        ({"data": "/no/such/folder"}, "does not exist"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        ToolchainRestoreEnv(**kwargs)


def test_render_rgb_array():
    env = ToolchainRestoreEnv(render_mode="rgb_array")
    env.reset(seed=1)
    env.step(2)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert frame.shape[1] >= 3 * 63


def test_training_rules_end_when_psnr_falls_below_input_and_not_before():
    """The rule ends an episode at the first step below the input PSNR, and only then (or at
    max_steps): neither an episode that stays above it nor a step that loses PSNR but stays
    above the input's ends early."""
    env = ToolchainRestoreEnv(training_rules=True, max_steps=3)
    env.reset(seed=5)
    rng = np.random.default_rng(0)
    seen = {"ended by the rule": 0, "ran its full length": 0, "lost PSNR above the input and went on": 0}
    for _ in range(100):
        env.reset()
        for k in range(env.max_steps):
            # Random tools: some help, some lose a little, some (a heavy deblur on a noisy
            # patch) fall below the input, so all three cases come within a few episodes.
            obs, reward, terminated, _, info = env.step(int(rng.integers(0, 12)))
            below, last = info["psnr"] < info["input_psnr"], k + 1 == env.max_steps
            assert terminated == (below or last), (k, info)
            seen["ended by the rule"] += below and not last
            seen["ran its full length"] += last and not below
            seen["lost PSNR above the input and went on"] += reward < 0 and not terminated
            if terminated:
                break
        if all(seen.values()):
            break
    assert all(seen.values()), seen


def test_without_training_rules_falling_below_the_input_does_not_end_an_episode():
    env = ToolchainRestoreEnv(max_steps=3)
    env.reset(seed=5)
    for _ in range(50):
        env.reset()
        obs, reward, terminated, _, info = env.step(3)
        if info["psnr"] < info["input_psnr"]:
            assert not terminated
            assert env.step(3)[2] is False and env.step(3)[2] is True  # the full max_steps
            return
    pytest.fail("no episode fell below its input PSNR")


def test_given_patch_through_options():
    env = ToolchainRestoreEnv()
    rng = np.random.default_rng(0)
    H = rng.integers(0, 256, (63, 63, 3), dtype=np.uint8)
    L = np.clip(H.astype(int) + rng.integers(-20, 21, H.shape), 0, 255).astype(np.uint8)
    obs, info = env.reset(options={"L": L, "H": H})
    assert np.array_equal(obs["image"], L.transpose(2, 0, 1))
    with pytest.raises(ValueError, match="uint8 array of shape"):
        env.reset(options={"L": L[:10], "H": H})


def test_folder_data(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(12):
        Image.fromarray(rng.integers(0, 256, (90, 100, 3), dtype=np.uint8)).save(tmp_path / f"{k}.png")
    env = ToolchainRestoreEnv(data=str(tmp_path), split="test")
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (3, 63, 63)


@pytest.mark.slow
def test_stable_baselines3_trains_on_it():
    from stable_baselines3 import PPO

    model = PPO("MultiInputPolicy", ToolchainRestoreEnv(), n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=16)
    action, _ = model.predict(ToolchainRestoreEnv().reset(seed=0)[0], deterministic=True)
    assert 0 <= int(action) < 13


def test_observations_are_fresh_arrays_even_when_the_image_does_not_change(env):
    obs, _ = env.reset(seed=3)
    after_stop, *_ = env.step(STOP)
    assert np.array_equal(obs["image"], after_stop["image"]) and obs["image"] is not after_stop["image"]
    after_stop["image"][:] = 0  # what the caller does with it is the caller's business
    assert env._observation()["image"].any()
