from toolchain_restore.cli import main


def test_demo_command_writes_table_figure_and_logs(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--out-dir", str(out), "--size", "64", "--max-images", "2", "--levels", "mild", "severe",
                 "--progress", "false"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| chelsea.png | mild |" in printed and "| severe |" in printed
    assert (out / "toolchains.png").stat().st_size > 0
    assert (out / "results.md").read_text().count("\n| ") >= 6
    assert any(p.name.startswith("events.out.tfevents") for p in out.iterdir())


def test_demo_restores_better_than_the_input(tmp_path):
    from toolchain_restore.demo import DemoSettings, run_demo

    rows = run_demo(DemoSettings(out_dir=str(tmp_path), size=96, max_images=2, levels=["moderate"], progress=False))
    assert len(rows) == 2
    for row in rows:
        # The greedy oracle only applies a tool when it helps.
        assert row.restored_psnr >= row.input_psnr
        assert row.macs == sum(21_776 * 96 * 96 if t in (0, 1, 4, 5, 8, 9) else 50_560 * 96 * 96 for t in row.chain)
