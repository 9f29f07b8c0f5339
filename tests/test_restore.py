"""Whole-image restoration (toolchain_restore.restore) and ``toolchain-restore restore``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

import toolchain_restore
from toolchain_restore import load_agent, load_toolbox
from toolchain_restore.cli import main
from toolchain_restore.data.image_io import read_native, write_native
from toolchain_restore.degrade import degrade
from toolchain_restore.envs.episode import STOP
from toolchain_restore.metrics import psnr
from toolchain_restore.restore import (
    MODES,
    PATCH_SIZE,
    RestoreResult,
    apply_tool_tiled,
    blend_weights,
    receptive_radius,
    restore,
)


@pytest.fixture(scope="module")
def agent():
    return load_agent()


@pytest.fixture(scope="module")
def toolbox():
    """The tools the shipped agent chains (what restore() takes when given no toolbox)."""
    return load_toolbox(for_shipped_agent=True)


def photo(height: int, width: int) -> np.ndarray:
    """A real (textured) uint8 RGB crop, so the agent sees natural content."""
    return np.ascontiguousarray(skdata.chelsea()[60 : 60 + height, 120 : 120 + width])


class ScriptedPolicy:
    """A test double with SB3's ``predict``: ``choose(observation) -> actions``; it records
    every observation it is shown."""

    def __init__(self, choose) -> None:
        self.choose = choose
        self.seen: list[dict[str, np.ndarray]] = []

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        self.seen.append({k: np.array(v) for k, v in observation.items()})
        return np.asarray(self.choose(observation), dtype=np.int64), state


def constant_tool(tool: int, steps: int) -> ScriptedPolicy:
    """Tool ``tool`` on every patch for ``steps`` steps, then stop."""
    return ScriptedPolicy(lambda obs: np.where(obs["step"] >= steps, STOP, tool))


@torch.no_grad()
def apply_whole(toolbox, image_float_rgb: np.ndarray, tool: int, steps: int) -> np.ndarray:
    x = torch.from_numpy(image_float_rgb).permute(2, 0, 1)[None]
    for _ in range(steps):
        x = toolbox(x, tool).clamp(0, 1)
    return x[0].permute(1, 2, 0).numpy()


# -- formats ------------------------------------------------------------------------------


def _variants() -> list[tuple[str, np.ndarray]]:
    rgb = photo(40, 50)
    gray = rgb.mean(axis=2).round().astype(np.uint8)
    alpha = np.random.default_rng(0).integers(0, 256, (40, 50), dtype=np.uint8)
    return [
        ("gray 2-D", gray),
        ("gray HxWx1", gray[:, :, None]),
        ("gray + alpha", np.dstack([gray, alpha])),
        ("rgb", rgb),
        ("rgba", np.dstack([rgb, alpha])),
        ("uint16 rgb", rgb.astype(np.uint16) * 257 + 100),
        ("float32", rgb.astype(np.float32) / 255),
        ("float64 gray", gray.astype(np.float64) / 255),
        ("1x1", rgb[:1, :1]),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_output_has_the_input_format(mode, agent, toolbox):
    for name, image in _variants():
        result = restore(image, mode, agent, toolbox)
        assert isinstance(result, RestoreResult)
        assert result.image.shape == image.shape and result.image.dtype == image.dtype, name
        assert result.mode == mode and len(result.chains) == len(result.patch_origins) >= 1
        if image.ndim == 3 and image.shape[2] in (2, 4):
            assert np.array_equal(result.image[:, :, -1], image[:, :, -1]), f"{name}: alpha changed"
        if image.dtype.kind == "f":
            assert 0.0 <= result.image.min() and result.image.max() <= 1.0


@pytest.mark.parametrize("mode", ["vote", "blend"])
def test_the_shipped_agent_chains_its_jointly_tuned_tools_by_default(mode, agent, toolbox):
    image = photo(70, 90)
    by_default = restore(image, mode, precision="fp32").image
    assert np.array_equal(by_default, restore(image, mode, agent, toolbox, precision="fp32").image)
    assert not np.array_equal(by_default, restore(image, mode, agent, load_toolbox(), precision="fp32").image)


def test_the_package_exports_restore():
    assert toolchain_restore.restore is restore and "restore" in toolchain_restore.__all__
    assert toolchain_restore.RestoreResult is RestoreResult


def test_gray_is_restored_as_gray_replicated_and_averaged(toolbox):
    gray = photo(40, 50)[:, :, 1]
    result = restore(gray, "vote", constant_tool(5, 1), toolbox)
    canvas = np.pad(np.repeat(gray[:, :, None], 3, axis=2).astype(np.float32) / 255, ((0, 23), (0, 13), (0, 0)), "reflect")
    expected = apply_whole(toolbox, canvas, 5, 1)[:40, :50]
    assert np.abs(result.image.astype(np.float64) - np.round(expected.mean(axis=2) * 255)).max() <= 1


def test_uint16_keeps_its_full_precision(agent, toolbox):
    # A 16-bit image whose values are no multiple of 257 and span far above 255.
    rgb = photo(40, 50).astype(np.float64) / 255
    ramp = np.linspace(0, 0.003, 50)[None, :, None]  # detail finer than one 8-bit step
    image16 = np.round(np.clip(rgb * 0.98 + ramp, 0, 1) * 65535).astype(np.uint16)
    result = restore(image16, "vote", agent, toolbox)
    as_float = restore(image16.astype(np.float32) / 65535, "vote", agent, toolbox)
    assert result.chain == as_float.chain
    # The 16-bit result is the float result rounded to 16 bits, not an 8-bit image x 257.
    assert np.abs(result.image.astype(np.float64) - as_float.image.astype(np.float64) * 65535).max() <= 1.0
    assert result.image.max() > 255 and (result.image % 257 != 0).mean() > 0.9
    via_8bit = restore((image16 / 257).round().astype(np.uint8), "vote", agent, toolbox).image.astype(np.uint16) * 257
    assert not np.array_equal(result.image, via_8bit)


# -- vote mode ----------------------------------------------------------------------------


def test_vote_gives_every_patch_the_same_chain(agent, toolbox):
    image = photo(70, 130)
    result = restore(image, "vote", agent, toolbox)
    # 2 x 3 patches: the last row starts at 7, the last column at 67, to end on the border.
    assert result.patch_origins == [(0, 0), (0, 63), (0, 67), (7, 0), (7, 63), (7, 67)]
    assert len(result.chains) == 6
    assert all(chain == result.chain for chain in result.chains)
    assert all(sum(counts.values()) == 6 for counts in result.votes)
    # Each step's winner is the majority: either the next tool of the chain or stop.
    for step, counts in enumerate(result.votes):
        winner = max(counts, key=lambda a: (counts[a], -a))
        assert winner == (result.chain[step] if step < len(result.chain) else STOP)
    assert "vote over 6 patches" in result.summary()


def test_vote_applies_the_majority_tool_and_stops_on_a_stop_majority(toolbox):
    image = photo(70, 130)  # 2 x 3 patches

    def choose(obs):
        # Step 0: 4 patches want tool 5, 2 want tool 9. Step 1: 4 patches stop.
        n = len(obs["image"])
        first = np.where(np.arange(n) < 4, 5, 9)
        later = np.where(np.arange(n) < 4, STOP, 2)
        return first if obs["step"][0] == 0 else later

    policy = ScriptedPolicy(choose)
    result = restore(image, "vote", policy, toolbox, max_steps=3)
    assert result.chain == [5] and result.votes == [{5: 4, 9: 2}, {2: 2, STOP: 4}]
    # The second decision saw the whole image after tool 5, and tool 5 as previous action.
    after = apply_whole(toolbox, image.astype(np.float32) / 255, 5, 1)
    seen = policy.seen[1]
    assert np.abs(seen["image"][0].astype(int) - np.round(after[:63, :63].transpose(2, 0, 1) * 255)).max() <= 1
    assert np.abs(seen["image"][5].astype(int) - np.round(after[7:, 67:].transpose(2, 0, 1) * 255)).max() <= 1
    assert (seen["previous_action"].argmax(axis=1) == 5).all() and (seen["previous_action"].sum(axis=1) == 1).all()
    assert (policy.seen[0]["previous_action"] == 0).all()


def test_vote_with_a_constant_tool_is_the_tool_on_the_whole_image(toolbox):
    image = photo(100, 140)
    steps = 2
    result = restore(image.astype(np.float32) / 255, "vote", constant_tool(6, steps), toolbox)
    whole = apply_whole(toolbox, image.astype(np.float32) / 255, 6, steps)
    # The tools ran on the image itself, nothing padded: the same result everywhere.
    assert np.allclose(result.image, whole, atol=1e-5)
    assert result.tool_macs == steps * toolbox.macs(6, 100, 140)


def test_vote_keeps_every_step_in_the_input_format(agent, toolbox):
    image = photo(50, 90)[:, :, 0]  # gray
    result = restore(image, "vote", agent, toolbox, keep_steps=True)
    assert len(result.steps) == len(result.chain) + 1
    assert all(step.shape == image.shape and step.dtype == image.dtype for step in result.steps)
    assert np.array_equal(result.steps[0], image) and np.array_equal(result.steps[-1], result.image)
    scripted = restore(image.astype(np.float32) / 255, "vote", constant_tool(6, 2), toolbox, keep_steps=True)
    # 50 rows are padded to one patch's 63 for the vote; the tool saw that padding near the bottom.
    first = apply_whole(toolbox, np.repeat(image[:, :, None].astype(np.float32) / 255, 3, axis=2), 6, 1).mean(axis=2)
    margin = receptive_radius(toolbox.tools[6])
    assert np.allclose(scripted.steps[1][:-margin], first[:-margin], atol=1e-5)
    with pytest.raises(ValueError, match="keep_steps needs mode='vote'"):
        restore(image, "blend", agent, toolbox, keep_steps=True)


def test_macs_count_tools_and_agent_decisions(agent, toolbox):
    per_view = agent.network.macs_per_step()
    assert abs(per_view - 14.06e6) < 0.01e6 and agent.views == 4
    result = restore(photo(70, 130), "vote", agent, toolbox)  # one view per vote by default
    assert result.agent_macs == 6 * len(result.votes) * per_view
    assert result.tool_macs == sum(toolbox.macs(t, 70, 130) for t in result.chain)
    assert result.macs == result.tool_macs + result.agent_macs
    assert restore(photo(70, 130), "vote", agent, toolbox, views=2).agent_macs == 6 * len(result.votes) * 2 * per_view
    blend = restore(photo(70, 130), "blend", agent, toolbox)  # the agent's own views
    decisions = sum(min(len(c) + 1, 3) for c in blend.chains)
    assert blend.agent_macs == decisions * agent.views * per_view
    with pytest.raises(ValueError, match="views must be in 1..8"):
        restore(photo(70, 130), "blend", agent, toolbox, views=0)
    assert blend.tool_macs == sum(toolbox.macs(t, 63, 63) for c in blend.chains for t in c)


# -- blend mode ---------------------------------------------------------------------------


def test_blend_with_a_constant_tool_matches_the_tool_on_the_whole_image(toolbox):
    image = photo(120, 150).astype(np.float32) / 255
    for tool, floor in ((6, 50.0), (2, 38.0)):  # a denoiser; a deblurrer (sharper edge effects)
        result = restore(image, "blend", constant_tool(tool, 1), toolbox)
        whole = apply_whole(toolbox, image, tool, 1)
        b = 16  # the whole-image run sees zero padding at the image border, blend a reflection
        assert psnr(result.image[b:-b, b:-b], whole[b:-b, b:-b]) > floor
        assert all(chain == [tool] for chain in result.chains)
        assert psnr(result.image, whole) > psnr(image, whole) + 3  # it did apply the tool


def test_blend_patches_cover_the_image_with_their_own_chains(agent, toolbox):
    result = restore(photo(70, 130), "blend", agent, toolbox, stride=47)
    tops = sorted({t for t, _ in result.patch_origins})
    lefts = sorted({l for _, l in result.patch_origins})
    assert tops[0] <= 0 and tops[-1] + PATCH_SIZE >= 70 and lefts[0] <= 0 and lefts[-1] + PATCH_SIZE >= 130
    assert len(result.chains) == len(tops) * len(lefts)
    assert all(len(c) <= 3 for c in result.chains)
    assert "blend of" in result.summary()


def test_blend_batches_do_not_change_the_result(agent, toolbox):
    image = photo(70, 130)
    one = restore(image, "blend", agent, toolbox, batch_size=1)
    all_at_once = restore(image, "blend", agent, toolbox, batch_size=1000)
    assert one.chains == all_at_once.chains
    assert np.abs(one.image.astype(int) - all_at_once.image.astype(int)).max() <= 1


def test_blend_weights_are_positive_and_cross_fade():
    w = blend_weights(63, 16)
    assert w.min() > 0 and w.max() == 1.0
    ramp = w[31]
    # Neighbours 47 apart: their weights add up to a constant over the 16-pixel overlap.
    overlap = ramp[47:] + ramp[:16]
    assert np.allclose(overlap, overlap[0])


def test_tools_in_tiles_equal_the_tool_on_the_whole_image(toolbox):
    x = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(0))
    assert receptive_radius(toolbox.tools[0]) == 8 and receptive_radius(toolbox.tools[3]) == 8
    with torch.no_grad():
        for tool in (0, 3):
            assert torch.allclose(apply_tool_tiled(toolbox, x, tool, tile=32), toolbox(x, tool), atol=1e-5)


# -- quality ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_restoring_a_degraded_held_out_image_raises_psnr(mode, agent, toolbox):
    clean = np.ascontiguousarray(skdata.chelsea()[100:228, 150:278])  # chelsea is a held-out test image
    # Seed 1 draws blur 2.5, noise 36, JPEG 49. (Seed 0 draws a blur of 4.1 that none of
    # the tools can undo: even the greedy oracle gains only 0.04 dB on it.)
    degraded, _ = degrade(clean, "moderate", np.random.default_rng(1))
    result = restore(degraded, mode, agent, toolbox)
    assert psnr(result.image, clean) > psnr(degraded, clean) + 3.0


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((2, 4, 4, 3), np.uint8), "H x W or H x W x C"),
        (np.zeros(10, np.uint8), "H x W or H x W x C"),
        (np.zeros((8, 8, 5), np.uint8), "channels"),
        (np.zeros((3, 8, 8), np.uint8), "channels"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
        (np.zeros((8, 8, 3), np.int32), "unsupported pixel type"),
        (np.zeros((8, 8, 3), bool), "unsupported pixel type"),
        (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
        (np.full((8, 8, 3), 2.0, np.float32), r"\[0, 1\]"),
    ],
)
def test_bad_images_are_refused_clearly(image, message, toolbox):
    with pytest.raises(ValueError, match=message):
        restore(image, "vote", constant_tool(0, 1), toolbox)


def test_bad_arguments_are_refused_clearly(toolbox):
    image = photo(8, 8)
    with pytest.raises(ValueError, match="'vote', 'blend'"):
        restore(image, "mosaic", constant_tool(0, 1), toolbox)
    with pytest.raises(ValueError, match="stride"):
        restore(image, "blend", constant_tool(0, 1), toolbox, stride=0)
    with pytest.raises(ValueError, match="max_steps"):
        restore(image, "vote", constant_tool(0, 1), toolbox, max_steps=-1)
    with pytest.raises(ValueError, match="actions in 0..12"):
        restore(image, "vote", ScriptedPolicy(lambda obs: np.full(len(obs["image"]), 13)), toolbox)
    with pytest.raises(ValueError, match="actions in 0..12"):
        restore(image, "blend", ScriptedPolicy(lambda obs: np.full(len(obs["image"]), 13)), toolbox)


# -- the command --------------------------------------------------------------------------


def test_cli_round_trips_a_16_bit_png(tmp_path, capsys):
    gray16 = (photo(40, 50)[:, :, 0].astype(np.uint16) * 257 + 37)
    Image.fromarray(gray16).save(tmp_path / "gray16.png")  # Pillow's 16-bit gray PNG (I;16)
    rgb16 = photo(40, 50).astype(np.uint16) * 257 + 11
    write_native(tmp_path / "rgb16.png", rgb16)  # 16-bit colour, which Pillow cannot write
    for name, original in (("gray16.png", gray16), ("rgb16.png", rgb16)):
        out = tmp_path / f"out_{name}"
        assert main(["restore", str(tmp_path / name), str(out), "--device", "cpu"]) == 0
        restored = read_native(out)
        assert restored.dtype == np.uint16 and restored.shape == original.shape
        assert restored.max() > 255 and (restored % 257 != 0).any()
    printed = capsys.readouterr().out
    assert "vote over" in printed and "chain" in printed


def test_cli_round_trips_a_gray_png_in_blend_mode(tmp_path, capsys):
    gray = photo(40, 50)[:, :, 2]
    Image.fromarray(gray).save(tmp_path / "gray.png")
    assert main(["restore", str(tmp_path / "gray.png"), str(tmp_path / "out.png"), "--mode", "blend"]) == 0
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == "L" and im.size == (50, 40)
    assert "blend of" in capsys.readouterr().out


def test_cli_restores_a_folder(tmp_path, capsys):
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    Image.fromarray(photo(30, 40)).save(source / "a.png")
    Image.fromarray(np.dstack([photo(30, 40), np.full((30, 40), 200, np.uint8)])).save(source / "sub" / "b.png")
    assert main(["restore", str(source), str(tmp_path / "out")]) == 0
    assert read_native(tmp_path / "out" / "a.png").shape == (30, 40, 3)
    rgba = read_native(tmp_path / "out" / "sub" / "b.png")
    assert rgba.shape == (30, 40, 4) and (rgba[:, :, 3] == 200).all()


def test_cli_reports_a_corrupt_file_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    out = tmp_path / "out.png"
    assert main(["restore", str(bad), str(out)]) != 0
    assert "bad.png" in capsys.readouterr().err and not out.exists()
    assert main(["restore", str(tmp_path / "missing.png"), str(out)]) != 0
    assert "missing.png" in capsys.readouterr().err and not out.exists()
    assert main(["restore", str(bad), str(tmp_path / "out.xyz")]) != 0
    assert "unknown image format" in capsys.readouterr().err
