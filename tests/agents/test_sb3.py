"""Stable-Baselines3 agents: tiny end-to-end runs through the command line, the features
extractor, and the message a user without the optional packages gets."""

import json
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

import toolchain_restore  # noqa: F401 - registers the env
from toolchain_restore.agents.sb3 import MISSING_SB3, PatchFeaturesExtractor, SB3Settings, load_sb3, require_sb3, train_sb3

pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")

TINY = ["--n-envs", "2", "--total-timesteps", "16", "--learning-starts", "8", "--buffer-size", "64",
        "--batch-size", "8", "--n-steps", "8", "--n-epochs", "1", "--eval-every", "8", "--eval-patches", "2",
        "--device", "cpu", "--progress", "false"]
"""Seconds on a CPU: every part runs (learning, both evaluations, saving) on a handful of steps."""


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["dqn", "recurrent_ppo"])
def test_tiny_run_logs_evaluates_and_saves(tmp_path, algo, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from toolchain_restore.cli import main

    assert main(["train-sb3", "--algo", algo, *TINY, "--out-dir", str(tmp_path)]) == 0
    assert "held-out moderate" in capsys.readouterr().out
    assert json.loads((tmp_path / "settings.json").read_text())["algo"] == algo
    results = json.loads((tmp_path / "eval.json").read_text())
    assert {"mild", "moderate", "severe"} <= set(results) and 0 <= results["moderate"]["chain_length"] <= 3

    events = EventAccumulator(str(tmp_path))  # events in the run folder itself, no SB3 subfolder
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"eval/mild/psnr", "eval/moderate/gain", "eval/severe/chain_length", "charts/episodic_return"} <= tags
    assert len(events.Scalars("eval/moderate/psnr")) >= 2  # during training and at the end
    assert abs(events.Scalars("eval/moderate/gain")[-1].value - results["moderate"]["gain"]) < 1e-4

    model = load_sb3(tmp_path, device="cpu")
    env = gym.make("ToolchainRestore-v0", split="test")
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert 0 <= int(action) < 13


def test_a_run_folder_is_not_reused(tmp_path):
    (tmp_path / "events.out.tfevents.0.host").write_bytes(b"")
    with pytest.raises(FileExistsError, match="already holds a run"):
        train_sb3(SB3Settings(out_dir=str(tmp_path), device="cpu"))


def test_default_run_folder_is_named_after_the_algorithm():
    assert str(SB3Settings(algo="recurrent_ppo").run_dir) == "runs/sb3_recurrent_ppo"
    with pytest.raises(ValueError, match="algo"):
        SB3Settings(algo="ppo")


def test_features_extractor_shape():
    space = gym.make("ToolchainRestore-v0").observation_space
    extractor = PatchFeaturesExtractor(space, image_features=32)
    assert extractor.features_dim == 32 + 12 + 4  # image fc, previous tool one-hot, step one-hot (0..3)
    batch = {"image": torch.rand(5, 3, 63, 63), "previous_action": torch.zeros(5, 12), "step": torch.zeros(5, 4)}
    assert extractor(batch).shape == (5, 48)


def test_features_extractor_takes_sb3_preprocessed_observations():
    from stable_baselines3.common.preprocessing import preprocess_obs

    space = gym.make("ToolchainRestore-v0").observation_space
    sample = {k: torch.as_tensor(np.asarray(v))[None] for k, v in space.sample().items()}
    features = PatchFeaturesExtractor(space)(preprocess_obs(sample, space))
    assert features.shape == (1, 48) and features[0, 32 + 12:].sum() == 1  # the step arrives one-hot


@pytest.mark.parametrize("missing, algo", [("stable_baselines3", "dqn"), ("sb3_contrib", "recurrent_ppo")])
def test_missing_dependency_says_what_to_install(monkeypatch, tmp_path, capsys, missing, algo):
    from toolchain_restore.cli import main

    monkeypatch.setitem(sys.modules, missing, None)  # makes `import missing` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "toolchain-restore\[sb3\]"'):
        require_sb3(algo)
    assert main(["train-sb3", "--algo", algo, "--out-dir", str(tmp_path)]) == 2
    assert MISSING_SB3 in capsys.readouterr().err
