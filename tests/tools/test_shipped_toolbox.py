"""The shipped tools, as trained one by one, against the floors of their card, on held-out images."""

import numpy as np
import pytest
import torch

from toolchain_restore import load_toolbox
from toolchain_restore.serialization import shipped_weights
from toolchain_restore.tools import SEPARATE_TOOLBOX, TOOL_SPECS
from toolchain_restore.tools.training import band_test_set, evaluate_tools

# Mid-band PSNR gain floors (dB) on each tool's own band.
FLOORS = {4: 1.5, 5: 3.0, 6: 5.0, 7: 6.0}
DEFAULT_FLOOR = 0.3
PATCHES = 48


@pytest.fixture(scope="module")
def gains():
    """Gains of each tool on the bands of its own type (the other entries NaN): what the
    tests compare, a third of the whole 12 x 12 table's work."""
    toolbox = load_toolbox(shipped_weights(SEPARATE_TOOLBOX))
    table = np.full((12, 12), np.nan)
    for group in (range(0, 4), range(4, 8), range(8, 12)):
        # Seeds other than the card's, so this is a second, independent draw of test patches.
        sets = {j: band_test_set(TOOL_SPECS[j], PATCHES, seed=2024) for j in group}
        part = evaluate_tools(toolbox, sets, torch.device("cpu"), list(group))
        table[group.start:group.stop, group.start:group.stop] = part[group.start:group.stop, group.start:group.stop]
    return table


@pytest.mark.slow
@pytest.mark.parametrize("tool", range(12), ids=[s.name for s in TOOL_SPECS])
def test_tool_meets_its_floor_on_its_own_band(gains, tool):
    assert gains[tool, tool] >= FLOORS.get(tool, DEFAULT_FLOOR)


@pytest.mark.slow
@pytest.mark.parametrize("tool", range(12), ids=[s.name for s in TOOL_SPECS])
def test_tool_is_best_of_its_type_on_its_own_band(gains, tool):
    group = range(4 * (tool // 4), 4 * (tool // 4) + 4)
    best_other = max(gains[i, tool] for i in group if i != tool)
    assert gains[tool, tool] >= best_other - 0.1


def test_shipped_file_loads_with_its_config():
    toolbox = load_toolbox(shipped_weights(SEPARATE_TOOLBOX))
    assert toolbox.config.get("tools") == list(range(1, 13)) and toolbox.config.get("card") == "toolbox.md"
    assert not toolbox.training
    assert np.isfinite(sum(float(p.detach().abs().sum()) for p in toolbox.parameters()))
