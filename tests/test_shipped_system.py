"""The shipped agent (chaining the tools jointly fine-tuned for it), the separately trained
toolbox (the fixed chain, random policy and oracle, as ``evaluate`` runs them) and CNN
baselines against the agents issue's targets, on held-out patches drawn with a seed other
than the cards', and on held-out patches degraded by a pipeline written apart from
``toolchain_restore.degrade`` (``independent_degradation.py``)."""

import numpy as np
import pytest
import torch

from toolchain_restore import load_agent, load_toolbox
from toolchain_restore.agents.baseline_policies import FixedChainPolicy, RandomPolicy, parse_chain
from toolchain_restore.baselines import load_baseline
from toolchain_restore.data.tensors import to_tensor
from toolchain_restore.evaluation import CNNMethod, GreedyOracleMethod, PolicyMethod, evaluate, held_out_set
from toolchain_restore.evaluation.run import FIXED_CHAIN_KEY
from toolchain_restore.envs.held_out import HeldOutSet as PatchSet
from toolchain_restore.serialization import shipped_weights

from .independent_degradation import independent_patches

# Every method on 3 x 64 held-out patches, twice: about a minute on 2 CPU cores.
pytestmark = pytest.mark.slow

LEVELS = ("mild", "moderate", "severe")
PATCHES = 64
SEED = 2024  # the cards use 12345


DNCNN_PATCHES = 32
"""The DnCNN-style baseline's share of each set: its gain is far above the floor it is held
to (1.8 dB or more against 1), and its multiply-adds per patch do not depend on the patch."""


def evaluate_with_greedy_on_moderate(methods, sets, toolbox, moderate_only=(), subset=()) -> dict:
    """{(test set, method): result} of every method on every set, the greedy oracle and
    ``moderate_only`` on moderate only, ``subset`` on the first DNCNN_PATCHES of each set."""
    moderate = [s for s in sets if s.name == "moderate"]
    with torch.no_grad():
        rows = evaluate(methods, sets) + evaluate([GreedyOracleMethod(toolbox), *moderate_only], moderate)
        if subset:
            rows += evaluate(list(subset), [PatchSet(s.name, s.L[:DNCNN_PATCHES], s.H[:DNCNN_PATCHES]) for s in sets])
    return {(r.test_set, r.method): r for r in rows}


@pytest.fixture(scope="module")
def results():
    toolbox, chained, agent = load_toolbox(), load_toolbox(for_shipped_agent=True), load_agent()
    chain = parse_chain(str(toolbox.config[FIXED_CHAIN_KEY]))
    dncnn = load_baseline(shipped_weights("dncnn.safetensors"))
    methods = [
        PolicyMethod("agent", agent, chained, agent.macs_per_decision()),
        PolicyMethod("random", RandomPolicy(SEED), toolbox),
        PolicyMethod("fixed", FixedChainPolicy(chain), toolbox),
    ]
    # Joint tuning is judged on moderate alone (test_joint_tuning_raises_the_agents_moderate_psnr).
    before_joint = PolicyMethod("agent, tools before joint tuning", agent, toolbox, agent.macs_per_decision())
    sets = [held_out_set(level, PATCHES, seed=SEED) for level in LEVELS]
    return evaluate_with_greedy_on_moderate(methods, sets, toolbox, [before_joint], [CNNMethod("dncnn", dncnn)])


@pytest.mark.parametrize("level", LEVELS)
def test_agent_beats_the_random_policy(results, level):
    assert results[level, "agent"].psnr > results[level, "random"].psnr + 2.0


@pytest.mark.parametrize("level", LEVELS)
def test_agent_beats_the_best_fixed_chain(results, level):
    assert results[level, "agent"].psnr > results[level, "fixed"].psnr


def test_agent_gain_is_near_the_greedy_oracles_on_moderate(results):
    # Issue 17's target. The shipped agent reaches 89% on these pictures, 83% on the corpus test
    # split's photographs (agent.md; tests/test_shipped_on_corpus.py holds it to 75% there).
    assert results["moderate", "agent"].gain >= 0.85 * results["moderate", "greedy oracle"].gain


def test_joint_tuning_raises_the_agents_moderate_psnr(results):
    assert results["moderate", "agent"].psnr > results["moderate", "agent, tools before joint tuning"].psnr


@pytest.mark.parametrize("level", LEVELS)
def test_agent_costs_at_most_35_percent_of_dncnn(results, level):
    assert results[level, "agent"].macs <= 0.35 * results[level, "dncnn"].macs


@pytest.mark.parametrize("level", LEVELS)
def test_shipped_baseline_restores(results, level):
    assert results[level, "dncnn"].gain > 1.0
    assert np.isfinite(results[level, "dncnn"].ssim)


@pytest.mark.parametrize("for_shipped_agent, card", [(False, "toolbox.md"), (True, "toolbox_joint.md")])
def test_each_shipped_toolbox_records_its_card_and_fixed_chain(for_shipped_agent, card):
    toolbox = load_toolbox(for_shipped_agent=for_shipped_agent)
    assert toolbox.config["card"] == card
    assert len(parse_chain(str(toolbox.config[FIXED_CHAIN_KEY]))) <= 3


def test_the_shipped_agents_tools_are_the_jointly_tuned_ones():
    chained, separate = load_toolbox(for_shipped_agent=True), load_toolbox()
    assert chained.config["joint_tuning_iterations"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(chained.state_dict().values(), separate.state_dict().values()))


@pytest.fixture(scope="module")
def independent_results():
    toolbox, chained, agent = load_toolbox(), load_toolbox(for_shipped_agent=True), load_agent()
    chain = parse_chain(str(toolbox.config[FIXED_CHAIN_KEY]))
    methods = [PolicyMethod("agent", agent, chained), PolicyMethod("fixed", FixedChainPolicy(chain), toolbox),
               PolicyMethod("random", RandomPolicy(SEED), toolbox)]
    sets = [PatchSet(level, *map(to_tensor, independent_patches(level, PATCHES, seed=SEED + i)))
            for i, level in enumerate(LEVELS)]
    return evaluate_with_greedy_on_moderate(methods, sets, toolbox)


@pytest.mark.parametrize("level", [
    pytest.param("mild", marks=pytest.mark.xfail(strict=True, reason="target not met (agent.md): on these mild "
                                                 "patches the fixed chain 11, 6, 12 is 0.6 dB ahead of the agent")),
    "moderate", "severe"])
def test_agent_beats_the_baseline_policies_on_independently_degraded_patches(independent_results, level):
    agent = independent_results[level, "agent"]
    assert agent.psnr > independent_results[level, "fixed"].psnr
    assert agent.psnr > independent_results[level, "random"].psnr + 2.0


def test_agent_gain_is_near_the_greedy_oracles_on_independently_degraded_patches(independent_results):
    # The same floor as on the project's own degradation (agent.md has the measured share).
    assert independent_results["moderate", "agent"].gain >= 0.80 * independent_results["moderate", "greedy oracle"].gain


@pytest.mark.xfail(strict=True, reason="target not met yet (issue 17, agent.md): the shipped agent stops first on "
                                       "42% of these nearly clean patches, 18% of the corpus test split's")
def test_the_agent_stops_first_on_clean_or_nearly_clean_patches():
    from toolchain_restore.evaluation.protocol import run_policy

    test = held_out_set("clean", 64, seed=SEED)
    with torch.no_grad():
        _, chains, _ = run_policy(load_agent(), load_toolbox(for_shipped_agent=True), test.L)
    assert np.mean([len(c) == 0 for c in chains]) >= 0.9


def test_restoration_keeps_each_channels_mean_within_3_levels_on_the_official_real_jpegs():
    from pathlib import Path

    from toolchain_restore import restore
    from toolchain_restore.data.images import read_image

    folder = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rl-restore-samples" / "mine"
    if not folder.is_dir():
        pytest.skip(f"the official real-world JPEGs are not at {folder}")
    for path in sorted(folder.glob("*.jpg")):
        image = read_image(path)
        restored = restore(image, "vote").image
        shift = restored.reshape(-1, 3).mean(0) - image.reshape(-1, 3).astype(np.float64).mean(0)
        assert np.abs(shift).max() <= 3.0, f"{path.name}: channel means moved by {np.round(shift, 2)}"
