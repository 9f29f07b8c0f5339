import json

import numpy as np
import pytest

from toolchain_restore.cli import main
from toolchain_restore.demo import DemoSettings, run_demo


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


def test_demo_whole_images_follow_the_agents_vote_chain(tmp_path):
    report = run_demo(DemoSettings(out_dir=str(tmp_path), patches=0, size=96, max_images=2, levels=["moderate"],
                                   progress=False))
    assert report.patch_results == [] and len(report.rows) == 2
    for row in report.rows:
        trace = row.trace
        assert len(trace.steps) == len(row.chain) + 1 == len(trace.psnrs)
        assert trace.psnrs[0] == pytest.approx(row.input_psnr) and trace.psnrs[-1] == pytest.approx(row.vote_psnr)
        assert all(step.shape == (96, 96, 3) and step.dtype == np.uint8 for step in trace.steps)
        tool_macs = sum((21_776 if t in (0, 1, 4, 5, 8, 9) else 50_560) * 96 * 96 for t in row.chain)
        decisions = 4 * min(len(row.chain) + 1, 3)  # a 2 x 2 grid of voters at each step
        assert row.vote_macs == tool_macs + decisions * 14_061_562  # one view per vote; the tools ran on the image
    # The shipped agent restores moderate whole images on average, in both modes.
    assert np.mean([r.vote_psnr - r.input_psnr for r in report.rows]) > 0.0
    assert np.mean([r.blend_psnr - r.input_psnr for r in report.rows]) > 0.0
