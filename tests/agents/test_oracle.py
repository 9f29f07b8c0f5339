import re
from pathlib import Path

import numpy as np
import pytest
import torch

from toolchain_restore import load_toolbox
from toolchain_restore.agents import greedy_toolchain
from toolchain_restore.data import read_image
from toolchain_restore.metrics import batch_psnr

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "rl-restore-samples"


def official_pairs(level: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The official repository's sample patches, made by its MATLAB pipeline (not our code)."""
    if not SAMPLES.is_dir():
        pytest.skip(f"the official sample patches are not at {SAMPLES}")
    L, H = [], []
    for path in sorted((SAMPLES / f"{level}_in").glob("*.png")):
        number = re.match(r"\d+", path.name).group(0)  # two severe inputs lack the _in suffix
        L.append(read_image(path))
        H.append(read_image(SAMPLES / f"{level}_gt" / f"{number}_gt.png"))
    to_tensor = lambda images: torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0  # noqa: E731
    return to_tensor(L), to_tensor(H)


@pytest.fixture(scope="module")
def toolbox():
    return load_toolbox()


@pytest.mark.parametrize("level", ["mild", "moderate", "severe"])
def test_shipped_tools_restore_the_official_samples(toolbox, level):
    L, H = official_pairs(level)
    assert len(L) == 4
    result = greedy_toolchain(toolbox, L, H)
    gains = [p[-1] - p[0] for p in result.psnrs]
    assert min(gains) >= 0.3
    assert float(np.mean(gains)) >= 0.5


@pytest.mark.slow
def test_greedy_chain_only_takes_steps_that_help(toolbox):
    L, H = official_pairs("moderate")
    result = greedy_toolchain(toolbox, L, H, max_steps=3)
    for chain, psnrs in zip(result.toolchains, result.psnrs):
        assert len(chain) <= 3 and len(psnrs) == len(chain) + 1
        assert all(b > a for a, b in zip(psnrs, psnrs[1:]))
    final = batch_psnr(result.restored, H)
    np.testing.assert_allclose(final.numpy(), [p[-1] for p in result.psnrs], atol=1e-9)


def test_greedy_stops_on_a_clean_patch(toolbox):
    _, H = official_pairs("mild")
    result = greedy_toolchain(toolbox, H.clone(), H)
    # Nothing improves on the ground truth itself.
    assert result.toolchains == [[] for _ in range(len(H))]
    assert torch.equal(result.restored, H)
