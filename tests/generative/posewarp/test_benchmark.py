"""The PoseWarp benchmark's run() at a tiny budget: every variant, the table, the figures."""

from benchmarks import posewarp


def test_benchmark_runs_every_variant_and_writes_its_figures(tmp_path):
    section = posewarp.run(quick=True, device="cpu", figures=tmp_path)
    assert set(section.raw["results"]) == set(posewarp.QUICK["variants"])
    for name, r in section.raw["results"].items():
        assert 0 <= r["l1"] <= 1 and -1 <= r["ssim"] <= 1 and r["gradient"]["mean"] >= 0
        assert posewarp.VARIANTS[name][0] in section.text
    for name in section.figures:
        assert (tmp_path / name).is_file()
    assert "posewarp.png" in section.figures
