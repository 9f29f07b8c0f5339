import json

import numpy as np
import pytest
import torch
from torch import nn

from toolchain_restore import load_agent, load_toolbox
from toolchain_restore.baselines.cnn import conv_macs_per_pixel
from toolchain_restore.cli import main
from toolchain_restore.demo import DemoSettings, run_demo
from toolchain_restore.tools import NUM_TOOLS


@pytest.mark.slow
def test_demo_command_writes_tables_figures_and_logs(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--out-dir", str(out), "--patches", "8", "--methods", "input", "agent", "random",
                 "--size", "64", "--max-images", "2", "--levels", "mild", "severe", "--progress", "false"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| agent |" in printed and "| random |" in printed
    assert "| chelsea.png | mild |" in printed and "| severe |" in printed
    for name in ("toolchains.png", "chart.png", "results.md"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in results["patches"]} == {"input", "agent", "random"}
    assert len(results["whole_images"]) == 4
    assert any(p.name.startswith("events.out.tfevents") for p in out.iterdir())


def multiply_adds_of_one_step(network: nn.Module) -> int:
    """Multiply-adds of the agent network on one patch, counted from the layers that ran
    (what each convolution and linear layer produced, and the LSTM's four gates), not from
    the network's own formula."""
    counted = []

    def count(layer, inputs, output):
        if isinstance(layer, nn.Conv2d):
            counted.append(output.numel() * layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1])
        elif isinstance(layer, nn.Linear):
            counted.append(output.numel() * layer.in_features)
        elif isinstance(layer, nn.LSTM):
            counted.append(4 * layer.hidden_size * (layer.input_size + layer.hidden_size) * output[0].shape[0])

    hooks = [m.register_forward_hook(count) for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.LSTM))]
    try:
        with torch.no_grad():
            network(torch.zeros(1, 3, network.patch_size, network.patch_size), torch.zeros(1, NUM_TOOLS))
    finally:
        for hook in hooks:
            hook.remove()
    return sum(counted)


@pytest.mark.slow
def test_demo_whole_images_follow_the_agents_vote_chain(tmp_path):
    report = run_demo(DemoSettings(out_dir=str(tmp_path), patches=0, size=96, max_images=2, levels=["moderate"],
                                   progress=False))
    # The demo's own agent and tools (DemoSettings' defaults: the shipped ones); a vote is one
    # view of one patch, whatever the agent's number of views.
    per_decision = load_agent(precision="fp32").with_views(1).macs_per_decision()
    assert per_decision == multiply_adds_of_one_step(load_agent(precision="fp32").network)
    tools = load_toolbox(precision="fp32").tools
    assert report.patch_results == [] and len(report.rows) == 2
    for row in report.rows:
        trace = row.trace
        assert len(trace.steps) == len(row.chain) + 1 == len(trace.psnrs)
        assert trace.psnrs[0] == pytest.approx(row.input_psnr) and trace.psnrs[-1] == pytest.approx(row.vote_psnr)
        assert all(step.shape == (96, 96, 3) and step.dtype == np.uint8 for step in trace.steps)
        tool_macs = sum(conv_macs_per_pixel(tools[t]) * 96 * 96 for t in row.chain)  # the tools ran on the image
        decisions = 4 * min(len(row.chain) + 1, 3)  # a 2 x 2 grid of voters at each step
        assert row.vote_macs == tool_macs + decisions * per_decision
    # The shipped agent restores moderate whole images on average, in both modes.
    assert np.mean([r.vote_psnr - r.input_psnr for r in report.rows]) > 0.0
    assert np.mean([r.blend_psnr - r.input_psnr for r in report.rows]) > 0.0
