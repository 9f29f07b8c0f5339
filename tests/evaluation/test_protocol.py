import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from toolchain_restore import load_toolbox
from toolchain_restore.agents import load_agent
from toolchain_restore.agents.baseline_policies import FixedChainPolicy, RandomPolicy, parse_chain
from toolchain_restore.agents.oracle import all_chain_psnrs, apply_chains, best_fixed_chain, exhaustive_toolchain
from toolchain_restore.envs import ToolchainRestoreVectorEnv
from toolchain_restore.evaluation import (EvaluationSettings, ExhaustiveOracleMethod, GreedyOracleMethod, InputMethod,
                                          PolicyMethod, evaluate, held_out_set, markdown_report, paired_folder_sets,
                                          run_policy)
from toolchain_restore.evaluation.protocol import _chain_statistics
from toolchain_restore.metrics import batch_psnr

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "rl-restore-samples"


@pytest.fixture(scope="module")
def toolbox():
    return load_toolbox()


@pytest.fixture(scope="module")
def moderate():
    return held_out_set("moderate", 6)


def test_held_out_set_is_the_environments_patches_and_repeatable(moderate):
    again = held_out_set("moderate", 6)
    assert torch.equal(moderate.L, again.L) and torch.equal(moderate.H, again.H)
    envs = ToolchainRestoreVectorEnv(6, level="moderate", split="test", prefetch=False)
    obs, _ = envs.reset(seed=12345)
    assert np.array_equal(obs["image"], (moderate.L * 255).round().to(torch.uint8).numpy())
    assert not torch.equal(held_out_set("moderate", 6, seed=1).L, moderate.L)
    with pytest.raises(ValueError, match="positive"):
        held_out_set("moderate", 0)


def test_official_layout_reads_the_shipped_samples():
    if not SAMPLES.is_dir():
        pytest.skip(f"the official sample patches are not at {SAMPLES}")
    sets = paired_folder_sets(SAMPLES)
    assert [s.name for s in sets] == ["mild", "moderate", "severe"]
    assert all(s.L.shape == (4, 3, 63, 63) for s in sets)
    # the MATLAB pipeline degraded them: inputs are worse than their ground truths
    assert all(float(batch_psnr(s.L, s.H).max()) < 40 for s in sets)


def _write_pair(root: Path, name: str, key: str, size_in: tuple[int, int], size_gt: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    for suffix, size in (("in", size_in), ("gt", size_gt)):
        folder = root / f"{name}_{suffix}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{key}_{suffix}.png")


def test_official_layout_tiles_large_pairs_and_rejects_bad_ones(tmp_path):
    _write_pair(tmp_path / "ok", "mine", "1", (130, 70), (130, 70))
    (only,) = paired_folder_sets(tmp_path / "ok")
    assert only.name == "mine" and only.L.shape == (2, 3, 63, 63)
    _write_pair(tmp_path / "sizes", "x", "1", (63, 63), (64, 63))
    with pytest.raises(ValueError, match="1_in.png is 63x63 but .*1_gt.png is 63x64"):
        paired_folder_sets(tmp_path / "sizes")
    _write_pair(tmp_path / "small", "x", "1", (40, 40), (40, 40))
    with pytest.raises(ValueError, match="smaller than a 63x63 patch"):
        paired_folder_sets(tmp_path / "small")
    _write_pair(tmp_path / "unpaired", "x", "1", (63, 63), (63, 63))
    _write_pair(tmp_path / "unpaired", "x", "2", (63, 63), (63, 63))
    (tmp_path / "unpaired" / "x_gt" / "2_gt.png").unlink()
    with pytest.raises(ValueError, match=r"unmatched: \['2'\]"):
        paired_folder_sets(tmp_path / "unpaired")
    (tmp_path / "nogt" / "x_in").mkdir(parents=True)
    with pytest.raises(ValueError, match="no ground-truth folder"):
        paired_folder_sets(tmp_path / "nogt")
    with pytest.raises(ValueError, match="no '<name>_in' folder"):
        paired_folder_sets(tmp_path / "nogt" / "x_in")


@pytest.mark.parametrize("chain", [(), (5,), (5, 11, 0)])
def test_fixed_chain_policy_runs_exactly_its_chain(toolbox, moderate, chain):
    E, chains, decisions = run_policy(FixedChainPolicy(chain), toolbox, moderate.L)
    assert chains == [chain] * len(moderate)
    assert (decisions == min(len(chain) + 1, 3)).all()
    assert torch.allclose(E, apply_chains(toolbox, moderate.L, chains))


def test_policy_inputs_are_checked():
    with pytest.raises(ValueError, match="tools 0..11"):
        FixedChainPolicy([12])
    assert parse_chain("6, 12,1") == (5, 11, 0)
    for bad in ("0", "13", "a,b"):
        with pytest.raises(ValueError, match="tool numbers"):
            parse_chain(bad)
    actions, _ = RandomPolicy(0).predict({"image": np.zeros((500, 3, 63, 63), np.uint8)})
    assert set(actions.tolist()) == set(range(13))


@pytest.mark.slow
def test_exhaustive_search_bounds_the_greedy_oracle(toolbox, moderate):
    L, H = moderate.L[:3], moderate.H[:3]
    table = all_chain_psnrs(toolbox, L, H, max_steps=2)
    assert len(table) == 1 + 12 + 144
    chains, best = exhaustive_toolchain(table)
    assert torch.allclose(batch_psnr(apply_chains(toolbox, L, chains), H), best)
    greedy = GreedyOracleMethod(toolbox, max_steps=2).run(L, H)
    assert (best >= batch_psnr(greedy.E, H) - 1e-9).all() and (best >= batch_psnr(L, H)).all()
    chain, mean = best_fixed_chain(table)
    assert mean == max(float(v.mean()) for v in table.values()) and mean <= float(best.mean())


def test_chain_statistics():
    length, stop_rate, usage = _chain_statistics([(), (1,), (1, 2, 3), (4, 5, 6)], max_steps=3)
    assert length == 7 / 4
    assert stop_rate == [1 / 4, 1 / 3, 0.0]  # 4 decide at step 1 (one stops), 3 at step 2, 2 at step 3
    assert abs(sum(usage) - 1) < 1e-12 and usage[1] == 2 / 7


def test_evaluate_reports_every_method_with_compute(toolbox, moderate):
    agent = load_agent()
    methods = [InputMethod(), PolicyMethod("agent", agent, toolbox, agent.network.macs_per_step()),
               PolicyMethod("fixed", FixedChainPolicy((5,)), toolbox), GreedyOracleMethod(toolbox)]
    results = evaluate(methods, [moderate])
    by = {r.method: r for r in results}
    assert by["input"].gain == 0 and by["input"].macs == 0 and by["input"].stop_rate is None
    assert by["fixed"].macs == toolbox.macs(5, 63, 63)
    assert by["fixed"].stop_rate[:2] == [0.0, 1.0] and np.isnan(by["fixed"].stop_rate[2])  # nobody reaches step 3
    agent_row = by["agent"]
    tool_macs = agent_row.macs - agent.network.macs_per_step()  # at least one decision per patch
    assert agent_row.macs > agent.network.macs_per_step() and tool_macs > 0
    assert by["greedy oracle"].psnr >= agent_row.psnr - 1e-6
    table = markdown_report(results)
    assert "| agent |" in table and "Tool usage" in table


@pytest.mark.slow
def test_evaluate_command_on_the_official_layout(tmp_path):
    if not SAMPLES.is_dir():
        pytest.skip(f"the official sample patches are not at {SAMPLES}")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from toolchain_restore.cli import main

    out = tmp_path / "eval"
    assert main(["evaluate", "--pairs", str(SAMPLES), "--methods", "input", "agent", "random", "fixed", "greedy",
                 "--fixed-chain", "6,12", "--device", "cpu", "--out-dir", str(out)]) == 0
    report = (out / "report.md").read_text()
    for name in ("### mild", "### moderate", "### severe", "| fixed chain 6,12 |", "| greedy oracle |"):
        assert name in report
    assert (out / "chart.png").stat().st_size > 1000
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 15 and all(r["patches"] == 4 for r in rows)
    events = EventAccumulator(str(out))
    events.Reload()
    assert "evaluate/moderate/agent/psnr" in events.Tags()["scalars"]


def test_fixed_chain_search_records_in_the_toolbox(tmp_path, toolbox):
    from toolchain_restore.cli import main
    from toolchain_restore.evaluation.run import fixed_chain_of

    path = tmp_path / "toolbox.safetensors"
    toolbox.save(path)
    assert main(["fixed-chain", "--toolbox", str(path), "--patches", "2", "--max-steps", "1", "--write",
                 "--device", "cpu"]) == 0
    recorded = load_toolbox(path)
    chain = fixed_chain_of(recorded, "auto", 2, None, 1)
    assert len(chain) <= 1 and recorded.config["best_fixed_chain_patches"] == 2
    assert fixed_chain_of(recorded, "3,4", 2, None, 1) == (2, 3)


def test_unknown_method_is_refused(toolbox):
    from toolchain_restore.evaluation.run import build_methods

    with pytest.raises(ValueError, match="unknown methods"):
        build_methods(EvaluationSettings(methods=["agent", "magic"]), toolbox, torch.device("cpu"))


def test_two_baseline_files_of_one_network_get_rows_of_their_own(tmp_path):
    from toolchain_restore.baselines import DnCNN, VDSR, save_baseline
    from toolchain_restore.evaluation.run import baseline_methods

    paths = [str(tmp_path / name) for name in ("a.safetensors", "b.safetensors", "c.safetensors")]
    for path, model in zip(paths, (VDSR(depth=3, channels=4), VDSR(depth=3, channels=4), DnCNN(depth=3, channels=4))):
        save_baseline(model, path)
    names = [m.name for m in baseline_methods(paths, "fp32", torch.device("cpu"))]
    assert names == [f"VDSR-3x4 ({paths[0]})", f"VDSR-3x4 ({paths[1]})", "DnCNN-3x4"]


@pytest.mark.parametrize("agent, card", [(None, "toolbox_joint.md"), ("given", "toolbox.md")])
def test_the_agent_method_chains_the_shipped_agents_own_tools_only_for_the_shipped_agent(toolbox, agent, card):
    """The jointly tuned tools serve the shipped agent's chains; an agent of one's own, and the
    fixed chain and oracle always, get the tools trained one by one (load_toolbox())."""
    from toolchain_restore.evaluation.run import build_methods
    from toolchain_restore.serialization import shipped_weights

    agent_file = None if agent is None else str(shipped_weights("agent.safetensors"))
    methods = build_methods(EvaluationSettings(methods=["agent", "fixed", "greedy"], agent=agent_file),
                            toolbox, torch.device("cpu"))
    assert [m.toolbox.config["card"] for m in methods] == [card, "toolbox.md", "toolbox.md"]
