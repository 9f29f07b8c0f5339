import numpy as np
import pytest
import torch

from toolchain_restore import load_toolbox
from toolchain_restore.agents import load_agent
from toolchain_restore.agents.joint import JointTuningSettings, JointTuningTask, chain_forward
from toolchain_restore.evaluation import held_out_set, run_policy
from toolchain_restore.tools import NUM_TOOLS


@pytest.fixture(scope="module")
def patches():
    return held_out_set("moderate", 6)


def test_chain_forward_is_the_agents_chain_with_per_use_averaged_gradients(patches):
    agent = load_agent()
    toolbox = load_toolbox().train()
    E, chains = chain_forward(toolbox, agent, patches.L, 3)
    E_ref, chains_ref, _ = run_policy(agent, toolbox, patches.L, 3)
    assert chains == [list(c) for c in chains_ref] and torch.allclose(E, E_ref, atol=1e-6)
    ((E - patches.H) ** 2).flatten(1).mean(1).sum().backward()
    scaled = {i: [p.grad.clone() if p.grad is not None else None for p in t.parameters()] for i, t in enumerate(toolbox.tools)}

    # the same chains run plainly: gradients must be the scaled ones times the uses
    toolbox.zero_grad(set_to_none=True)
    current = patches.L
    for step in range(3):
        nxt = current
        for i in range(NUM_TOOLS):
            rows = [r for r, c in enumerate(chains) if len(c) > step and c[step] == i]
            if rows:
                index = torch.tensor(rows)
                nxt = nxt.index_put((index,), toolbox(current[index], i).clamp(0, 1))
        current = nxt
    ((current - patches.H) ** 2).flatten(1).mean(1).sum().backward()
    uses = np.bincount([i for c in chains for i in c], minlength=NUM_TOOLS)
    assert uses.sum() > 0
    for i, tool in enumerate(toolbox.tools):
        for p, g in zip(tool.parameters(), scaled[i]):
            if uses[i] == 0:
                assert g is None and p.grad is None
            else:
                torch.testing.assert_close(g * uses[i], p.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_joint_tuning_runs_through_the_trainer_and_resumes(tmp_path):
    from toolchain_restore.cli import main
    from toolchain_restore.tools import Toolbox

    args = ["joint-tune", "--batch-size", "2", "--eval-patches", "2", "--eval-levels", "moderate", "--device", "cpu",
            "--progress", "false", "--out-dir", str(tmp_path), "--checkpoint-every", "1", "--eval-every", "2",
            "--eval-band-patches", "2"]
    assert main(args + ["--iterations", "1"]) == 0
    assert main(args + ["--iterations", "2"]) == 0  # continues from the checkpoint of step 1
    tuned = Toolbox.load(tmp_path / "toolbox.safetensors")
    assert tuned.config["joint_tuning_iterations"] == 2
    start = load_toolbox()
    changed = [not all(torch.equal(a, b) for a, b in zip(t.parameters(), s.parameters()))
               for t, s in zip(tuned.tools, start.tools)]
    assert any(changed)
    task = JointTuningTask(JointTuningSettings(batch_size=3))
    a, b = task.make_batch(5, 0, 1, 0), task.make_batch(5, 0, 1, 0)
    assert torch.equal(a[0], b[0]) and a[0].shape == (3, 3, 63, 63)


def test_the_anchor_adds_each_tools_own_band_loss_and_the_evaluation_reports_single_tool_changes():
    plain = JointTuningTask(JointTuningSettings(batch_size=2, eval_patches=2, eval_levels=["moderate"],
                                                eval_band_patches=2))
    anchored = JointTuningTask(JointTuningSettings(batch_size=2, anchor_weight=0.5, anchor_batch=1, eval_patches=2,
                                                   eval_levels=["moderate"], eval_band_patches=2))
    a, b = plain.make_batch(3, 0, 1, 0), anchored.make_batch(3, 0, 1, 0)
    assert len(a) == 2 and len(b) == 3 and len(b[2]) == NUM_TOOLS and b[2][0][0].shape == (1, 3, 63, 63)
    assert torch.equal(a[0], b[0])  # the anchor's patches come from a stream of their own
    loss_plain, _ = plain.loss(plain.model, a, torch.device("cpu"))
    loss_anchored, logs = anchored.loss(anchored.model, b, torch.device("cpu"))
    with torch.no_grad():
        own = sum(float(torch.mean((anchored.model(l, i) - h) ** 2)) for i, (l, h) in enumerate(b[2]))
    assert loss_anchored.item() == pytest.approx(loss_plain.item() + 0.5 * own, rel=1e-5)
    assert logs["anchor_mse"] == pytest.approx(own / NUM_TOOLS, rel=1e-5)
    metrics = anchored.evaluate(anchored.model, torch.device("cpu"))
    assert metrics["tools/largest_drop"] == 0.0 and metrics["tools/tool05_change"] == 0.0
    with torch.no_grad():
        for p in anchored.model.tools[4].parameters():
            p.mul_(0.5)  # spoil tool 5: the report must show it
    metrics = anchored.evaluate(anchored.model, torch.device("cpu"))
    assert metrics["tools/tool05_change"] < 0 and metrics["tools/largest_drop"] == -metrics["tools/tool05_change"]
