"""bf16 against float32 on images the project never trained on: every tool, the agent's greedy
chains, the CNN baselines, the environment, and a short training.

The held-out images are the embedded default's test split and the official RL-Restore
sample patches (DIV2K, degraded by the official MATLAB code). On a CPU without native bf16
(this is checked, not assumed) bf16 is emulated and slow, so the sets are small.
"""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import toolchain_restore  # noqa: F401  (registers the env)
from toolchain_restore import load_agent, load_toolbox
from toolchain_restore.baselines import load_baseline
from toolchain_restore.evaluation.protocol import run_policy
from toolchain_restore.envs.held_out import held_out_set, paired_folder_sets
from toolchain_restore.metrics import batch_psnr
from toolchain_restore.serialization import shipped_weights
from toolchain_restore.tools import NUM_TOOLS, TOOL_SPECS
from toolchain_restore.tools.training import ToolTrainingSettings, ToolTrainingTask, band_test_set
from toolchain_restore.training import Trainer, TrainerSettings

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rl-restore-samples"
TOLERANCE_DB = 0.02
"""The issue's bound on |PSNR(bf16) - PSNR(fp32)| of a network's outputs."""
PRECISIONS_HERE = ["fp32", "bf16", "auto"] + (["fp16"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def toolboxes():
    fp32 = load_toolbox(precision="fp32")
    return fp32, fp32.with_precision("bf16")


def _official_samples() -> tuple[torch.Tensor, torch.Tensor]:
    if not SAMPLES.is_dir():
        pytest.skip(f"the official sample patches are not at {SAMPLES}")
    sets = paired_folder_sets(SAMPLES)
    return torch.cat([s.L for s in sets]), torch.cat([s.H for s in sets])


def _mean_psnr(E: torch.Tensor, H: torch.Tensor) -> float:
    return float(batch_psnr(E.clamp(0, 1), H).mean())


@torch.no_grad()
@pytest.mark.parametrize("tool", range(NUM_TOOLS), ids=[f"tool{i + 1}" for i in range(NUM_TOOLS)])
def test_every_tool_in_bf16_is_within_0_02_db_of_fp32(toolboxes, tool, one_thread):
    fp32, bf16 = toolboxes
    band_L, band_H = band_test_set(TOOL_SPECS[tool], 8)
    sample_L, sample_H = _official_samples()
    for L, H in ((band_L, band_H), (sample_L, sample_H)):
        out32, out16 = fp32(L, tool), bf16(L, tool)
        assert out16.dtype == torch.float32  # the residual is added in float32
        assert abs(_mean_psnr(out16, H) - _mean_psnr(out32, H)) < TOLERANCE_DB
        # bf16 really ran, except in the tools the file keeps in float32 (bf16 moved them by more than the bound).
        assert torch.equal(out16, out32) == (tool + 1 in fp32.fp32_tools)


@pytest.mark.slow
@torch.no_grad()
def test_the_agents_greedy_chains_in_bf16_end_within_0_02_db(toolboxes, one_thread):
    fp32, bf16 = toolboxes
    agent32 = load_agent(precision="fp32")
    agent16 = agent32.with_precision("bf16")
    sample_L, sample_H = _official_samples()
    # 12 held-out patches and the 12 official samples: emulated bf16 chains cost about 0.5 CPU
    # seconds a patch, and 24 keep the 0.85 agreement bound at more than 3 differing chains.
    test = held_out_set("moderate", 12)
    L, H = torch.cat([test.L, sample_L]), torch.cat([test.H, sample_H])
    E32, chains32, _ = run_policy(agent32, fp32, L)
    E16, chains16, _ = run_policy(agent16, bf16, L)
    same = np.mean([a == b for a, b in zip(chains32, chains16)])
    print(f"bf16 chose the fp32 chain on {100 * same:.0f}% of {len(L)} held-out patches")
    assert same >= 0.85  # differences are near ties only
    assert abs(_mean_psnr(E16, H) - _mean_psnr(E32, H)) < TOLERANCE_DB


@pytest.mark.slow
@torch.no_grad()
@pytest.mark.parametrize("name", ["dncnn", "vdsr"])
def test_cnn_baselines_in_bf16_are_within_0_02_db(name, one_thread):
    test = held_out_set("moderate", 6)
    model = load_baseline(shipped_weights(f"{name}.safetensors"), precision="fp32")
    out32, out16 = model(test.L), model.with_precision("bf16")(test.L)
    assert out16.dtype == torch.float32
    assert abs(_mean_psnr(out16, test.H) - _mean_psnr(out32, test.H)) < TOLERANCE_DB


@pytest.mark.parametrize("precision", PRECISIONS_HERE)
def test_check_env_passes_in_every_precision(precision, one_thread):
    env = gym.make("ToolchainRestore-v0", precision=precision)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.unwrapped.precision in ("fp32", "bf16", "fp16")
    _, info = env.reset(seed=3)
    _, reward, _, _, info = env.step(5)
    assert isinstance(reward, float) and isinstance(info["psnr"], float)


def _rollout(precision: str, vector: bool) -> list:
    kwargs = dict(precision=precision, max_steps=3)
    if vector:
        env = gym.make_vec("ToolchainRestore-v0", num_envs=3, vectorization_mode="vector_entry_point", **kwargs)
    else:
        env = gym.make("ToolchainRestore-v0", **kwargs)
    obs, _ = env.reset(seed=11)
    out = [obs["image"].copy()]
    for action in (5, 11, 0, 12, 3):
        obs, reward, terminated, _, _ = env.step(np.full(3, action) if vector else action)
        out += [obs["image"].copy(), np.asarray(reward, dtype=np.float64)]
        if not vector and terminated:
            obs, _ = env.reset()
    env.close()
    return out


@pytest.mark.parametrize("vector", [False, True], ids=["single", "vector"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_seeded_episodes_repeat_exactly_within_one_precision(precision, vector, one_thread):
    first, second = _rollout(precision, vector), _rollout(precision, vector)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_states_and_rewards_stay_float32_in_bf16(one_thread):
    env = gym.make_vec("ToolchainRestore-v0", num_envs=2, vectorization_mode="vector_entry_point", precision="bf16")
    env.reset(seed=0)
    _, reward, _, _, _ = env.step(np.array([5, 9]))
    assert env.unwrapped._batch.state.dtype == torch.float32
    assert reward.dtype in (np.float32, np.float64)
    env.close()


def _short_tool_training(tmp_path: Path, precision: str) -> float:
    # Batches of 2: half the emulated bf16 work of 4, and the same held-out gain (+0.48 dB in
    # fp32 here against +0.42 with 4; bf16 within 0.02 dB of it).
    task = ToolTrainingTask(ToolTrainingSettings(tools=[8], batch_size=2, patch_size=32, eval_patches=24))
    settings = TrainerSettings(out_dir=str(tmp_path / precision), iterations=40, lr=2e-3, eval_every=40,
                               checkpoint_every=40, progress=False, precision=precision, seed=5)
    metrics = Trainer(settings).fit(task)
    return metrics["psnr_gain/tool08"]


@pytest.mark.slow
def test_bf16_training_reaches_the_held_out_psnr_of_fp32(tmp_path, one_thread):
    fp32, bf16 = _short_tool_training(tmp_path, "fp32"), _short_tool_training(tmp_path, "bf16")
    print(f"held-out gain after the short run: fp32 {fp32:+.3f} dB, bf16 {bf16:+.3f} dB")
    assert fp32 > 0.25  # the short run learns: a noise tool gains on its band
    assert abs(bf16 - fp32) < 0.15


def test_the_precision_pages_example_prints_what_auto_means(capsys):
    # tests/test_docs.py runs every page's Python; this checks what the example says it prints.
    page = (Path(__file__).resolve().parents[1] / "docs" / "precision.md").read_text()
    code = page.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/precision.md", "exec"), {})
    assert capsys.readouterr().out.startswith(("fp32 (", "bf16 ("))


def test_restore_keeps_a_given_toolboxs_own_precision_when_told_none(monkeypatch):
    from toolchain_restore import restore
    from toolchain_restore.tools import Toolbox

    seen = []
    forward = Toolbox.forward
    monkeypatch.setattr(Toolbox, "forward", lambda self, x, i: seen.append(self.precision) or forward(self, x, i))
    toolbox = load_toolbox(precision="bf16")
    test = held_out_set("severe", 1)
    image = (test.L[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    restore(image, "vote", toolbox=toolbox, precision=None)
    kept, seen[:] = list(seen), []
    restore(image, "vote", toolbox=toolbox, precision="fp32")
    assert kept and set(kept) == {"bf16"}
    assert seen and set(seen) == {"fp32"}
