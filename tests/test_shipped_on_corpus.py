"""The shipped stack against issue 17's targets on the photo corpus's test split (photographs
never trained on), where a corpus is built; skipped with how to build it where it is not, so
CI does not depend on it. The cards' figures use 256 patches per severity and seed 12345;
these use 64 and another seed."""

from pathlib import Path

import numpy as np
import pytest
import torch

from toolchain_restore import load_agent, load_toolbox, restore
from toolchain_restore.agents.baseline_policies import FixedChainPolicy, parse_chain
from toolchain_restore.baselines import load_baseline
from toolchain_restore.data.images import read_image
from toolchain_restore.degrade import degrade
from toolchain_restore.evaluation import CNNMethod, PolicyMethod, evaluate, held_out_set
from toolchain_restore.evaluation.run import FIXED_CHAIN_KEY
from toolchain_restore.metrics import psnr
from toolchain_restore.serialization import shipped_weights
from toolchain_restore.tools import TOOL_SPECS

from .test_shipped_system import evaluate_with_greedy_on_moderate
from .tools.test_shipped_toolbox import FLOORS, own_type_gains

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).resolve().parents[1] / "runs" / "corpus"
LEVELS = ("mild", "moderate", "severe")
PATCHES = 64
SEED = 2024


@pytest.fixture(scope="module")
def corpus() -> str:
    if not ((CORPUS / "manifest.json").is_file() and (CORPUS / "test").is_dir()):
        pytest.skip(f"no photo corpus at {CORPUS}: build it with `make corpus`")
    return str(CORPUS)


@pytest.fixture(scope="module")
def results(corpus):
    toolbox, chained, agent = load_toolbox(), load_toolbox(for_shipped_agent=True), load_agent()
    methods = [PolicyMethod("agent", agent, chained),
               PolicyMethod("fixed", FixedChainPolicy(parse_chain(str(toolbox.config[FIXED_CHAIN_KEY]))), toolbox)]
    sets = [held_out_set(level, PATCHES, corpus, seed=SEED) for level in LEVELS]
    return evaluate_with_greedy_on_moderate(methods, sets, toolbox)


@pytest.mark.parametrize("level", LEVELS)
def test_agent_restores_every_severity(results, level):
    assert results[level, "agent"].gain > 1.0


@pytest.mark.parametrize("level", LEVELS)
def test_agent_beats_the_best_fixed_chain(results, level):
    assert results[level, "agent"].psnr > results[level, "fixed"].psnr


def test_agent_gain_is_near_the_greedy_oracles_on_moderate(results):
    # What the shipped agent reaches on the card's patches (agent.md), so that it cannot slip back.
    assert results["moderate", "agent"].gain >= 0.75 * results["moderate", "greedy oracle"].gain


CLAIM_PATCHES = 256
"""The paper's claim is a 0.3 dB margin on a difference that moved by 0.2 dB between 64 and 256
patches of one draw, so it is checked on as many patches as the cards use."""


def test_the_papers_claim_agent_level_with_dncnn_at_a_third_of_its_cost(corpus):
    # Issue 17's target, against the DnCNN-style baseline trained on the same photographs for the
    # toolbox's CPU time (baselines.md).
    agent = load_agent()
    methods = [PolicyMethod("agent", agent, load_toolbox(for_shipped_agent=True), agent.macs_per_decision()),
               CNNMethod("dncnn", load_baseline(shipped_weights("dncnn.safetensors")))]
    with torch.no_grad():
        rows = evaluate(methods, [held_out_set("moderate", CLAIM_PATCHES, corpus, seed=SEED)])
    agent_result, dncnn = rows
    assert agent_result.psnr >= dncnn.psnr - 0.3
    assert agent_result.macs <= 0.35 * dncnn.macs


@pytest.fixture(scope="module")
def tool_gains(corpus):
    return own_type_gains(PATCHES, corpus, SEED)


@pytest.mark.parametrize("tool", [
    pytest.param(t, marks=pytest.mark.xfail(strict=True, reason="target not met (toolbox.md): tool 9 gains -0.06 dB "
                                                                  "on the corpus test split at quality 80"))
    if t == 8 else t for t in range(12)], ids=[s.name for s in TOOL_SPECS])
def test_each_tool_meets_its_floor_on_photographs(tool_gains, tool):
    assert tool_gains[tool, tool] >= FLOORS[tool]


@pytest.mark.parametrize("tool", range(12), ids=[s.name for s in TOOL_SPECS])
def test_each_tool_is_best_of_its_type_on_photographs(tool_gains, tool):
    group = range(4 * (tool // 4), 4 * (tool // 4) + 4)
    assert tool_gains[tool, tool] >= max(tool_gains[i, tool] for i in group if i != tool) - 0.1


@pytest.mark.parametrize("mode", ["vote", "blend"])
def test_a_whole_held_out_photo_at_moderate_gains_2_db_and_keeps_the_colour_of_its_ground_truth(corpus, mode):
    image = read_image(Path(corpus) / "test" / "skimage-coffee.png")[:256, :384]
    degraded, _ = degrade(image, "moderate", np.random.default_rng(SEED))
    restored = restore(degraded, mode).image
    assert psnr(restored, image) >= psnr(degraded, image) + 2.0
    # Against the ground truth: clipped noise moves the degraded input's own means by up to 12 levels.
    shift = restored.reshape(-1, 3).mean(0) - image.reshape(-1, 3).astype(np.float64).mean(0)
    assert np.abs(shift).max() <= 3.0, f"channel means moved by {np.round(shift, 2)}"
