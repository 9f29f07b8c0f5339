"""The shipped tools, as trained one by one, against the floors of their card, on held-out images."""

import numpy as np
import pytest
import torch

from toolchain_restore import load_toolbox
from toolchain_restore.tools import TOOL_SPECS
from toolchain_restore.tools.training import band_test_set, evaluate_tools

# Mid-band PSNR gain floors (dB) on each tool's own band (issue 17): blur 0.5, noise 1.5 / 3 /
# 5 / 6, JPEG 0.3 for the lightest band and 0.5 for the others.
FLOORS = {0: 0.5, 1: 0.5, 2: 0.5, 3: 0.5, 4: 1.5, 5: 3.0, 6: 5.0, 7: 6.0, 8: 0.3, 9: 0.5, 10: 0.5, 11: 0.5}
PATCHES = 48


def own_type_gains(patches: int, data: str | None = None, seed: int = 2024) -> np.ndarray:
    """Gains of each shipped tool on the bands of its own type (the other entries NaN): what the
    tests compare, a third of the whole 12 x 12 table's work. ``data`` None: the embedded default."""
    toolbox = load_toolbox()
    table = np.full((12, 12), np.nan)
    for group in (range(0, 4), range(4, 8), range(8, 12)):
        sets = {j: band_test_set(TOOL_SPECS[j], patches, data=data, seed=seed) for j in group}
        part = evaluate_tools(toolbox, sets, torch.device("cpu"), list(group))
        table[group.start:group.stop, group.start:group.stop] = part[group.start:group.stop, group.start:group.stop]
    return table


@pytest.fixture(scope="module")
def gains():
    # A seed other than the card's, so this is a second, independent draw of test patches.
    return own_type_gains(PATCHES)


@pytest.mark.slow
@pytest.mark.parametrize("tool", range(12), ids=[s.name for s in TOOL_SPECS])
def test_tool_meets_its_floor_on_its_own_band(gains, tool):
    assert gains[tool, tool] >= FLOORS[tool]


@pytest.mark.slow
@pytest.mark.parametrize("tool", range(12), ids=[s.name for s in TOOL_SPECS])
def test_tool_is_best_of_its_type_on_its_own_band(gains, tool):
    group = range(4 * (tool // 4), 4 * (tool // 4) + 4)
    best_other = max(gains[i, tool] for i in group if i != tool)
    assert gains[tool, tool] >= best_other - 0.1


def test_shipped_file_loads_with_its_config():
    toolbox = load_toolbox()
    assert toolbox.config.get("tools") == list(range(1, 13)) and toolbox.config.get("card") == "toolbox.md"
    assert not toolbox.training
    assert np.isfinite(sum(float(p.detach().abs().sum()) for p in toolbox.parameters()))


@pytest.mark.parametrize("for_shipped_agent, card", [(False, "toolbox.md"), (True, "toolbox_joint.md")])
def test_load_toolbox_gives_the_separate_tools_unless_the_shipped_agent_chains_them(for_shipped_agent, card):
    assert load_toolbox(for_shipped_agent=for_shipped_agent).config["card"] == card


def test_a_given_toolbox_file_wins_over_for_shipped_agent(tmp_path):
    from toolchain_restore.tools import Toolbox

    Toolbox().save(tmp_path / "mine.safetensors", card="mine")
    assert load_toolbox(tmp_path / "mine.safetensors", for_shipped_agent=True).config["card"] == "mine"


def test_the_tools_a_header_keeps_in_float32_compute_in_float32_in_bf16(tmp_path):
    from toolchain_restore.tools import FP32_TOOLS_KEY, Toolbox

    Toolbox().save(tmp_path / "t.safetensors", **{FP32_TOOLS_KEY: [2]})
    fp32 = Toolbox.load(tmp_path / "t.safetensors", precision="fp32")
    bf16 = fp32.with_precision("bf16")
    x = torch.rand(3, 3, 24, 24)
    assert torch.equal(bf16(x, 1), fp32(x, 1)) and not torch.equal(bf16(x, 0), fp32(x, 0))
    mixed = bf16.apply_tools(x, torch.tensor([0, 1, 12]))
    assert torch.equal(mixed[1], fp32(x[1:2], 1)[0]) and not torch.equal(mixed[0], fp32(x[:1], 0)[0])
    assert torch.equal(mixed[2], x[2])
    assert load_toolbox().fp32_tools == {3, 4}  # the shipped file's (toolbox.md)
