from benchmarks.env_throughput import main


def table_row(out: str, first: str) -> list[str]:
    """The cells of the markdown table row of ``out`` whose first cell is ``first``."""
    rows = [line for line in out.splitlines() if line.startswith(f"| {first} |")]
    assert rows, out
    return [c.strip() for c in rows[0].strip("|").split("|")]


def test_env_throughput_benchmark_runs_and_reports(capsys):
    main(["--num-envs", "2", "--seconds", "0.2", "--repeats", "1"])
    out = capsys.readouterr().out
    cells = table_row(out, "2")
    native, sync, ratio, outside = float(cells[1]), float(cells[2]), float(cells[3].rstrip("x")), float(cells[4].rstrip("%"))
    assert native > 0 and sync > 0 and 0 <= outside <= 100
    assert abs(ratio - native / sync) < 0.05 * ratio + 0.01


def test_tool_efficiency_benchmark_runs_and_reports(capsys):
    from benchmarks.tool_efficiency import main as tool_efficiency

    tool_efficiency(["--batch", "2", "--seconds", "0.1", "--repeats", "1"])
    out = capsys.readouterr().out
    cells = table_row(out, "2")
    toolbox, ceiling, efficiency = float(cells[1]), float(cells[2]), float(cells[3].rstrip("%"))
    assert toolbox > 0 and ceiling > 0
    assert abs(efficiency - 100 * toolbox / ceiling) < 0.05 * efficiency + 1


def test_whole_image_latency_benchmark_runs_and_reports(capsys):
    from benchmarks.whole_image_latency import main as whole_image_latency

    whole_image_latency(["--sizes", "70", "--repeats", "1"])
    out = capsys.readouterr().out
    cells = table_row(out, "70")
    vote, blend, dncnn = float(cells[1]), float(cells[2]), float(cells[3])
    assert min(vote, blend, dncnn) > 0
    assert abs(float(cells[4].rstrip("%")) - 100 * vote / dncnn) < 0.05 * 100 * vote / dncnn + 1
