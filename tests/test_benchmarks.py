"""The benchmarks: each module once on a tiny budget, checked; then the whole quick-mode
report assembled from those runs, with its ratios recomputed from the report's own raw figures."""

import json
import re
import statistics
from pathlib import Path

import pytest

from benchmarks import Section, Target, machine_slug, native_bf16


def table_row(text: str, first: str) -> list[str]:
    """The cells of the markdown table row of ``text`` whose first cell is ``first``."""
    rows = [line for line in text.splitlines() if line.startswith(f"| {first} |")]
    assert rows, text
    return [c.strip() for c in rows[0].strip("|").split("|")]


def percent(cell: str) -> float:
    return float(cell.split()[0].rstrip("%x"))


def check_precision_stated(section: Section) -> None:
    """The section says what precision "auto" resolved to, and its bf16 targets are n/a
    (met None) exactly where this CPU has no native bf16."""
    choice = section.raw["precision_auto"]
    assert choice.split()[0] in ("fp32", "bf16") and choice in section.text
    bf16_only = [t for t in section.targets if "native bf16)" in t.name]
    native = native_bf16("cpu")[0]
    assert all((t.met is None) != native or t.measured.startswith("not measured") for t in bf16_only), bf16_only


def check_env_throughput(section: Section) -> None:
    check_precision_stated(section)
    for n, r in section.raw["by_envs"].items():
        cells = table_row(section.text, n)
        native, sync, asyn, fp32 = (statistics.median(r[k]) for k in ("native", "sync", "async", "sync_fp32"))
        assert float(cells[1]) == pytest.approx(native, abs=0.51) and float(cells[2]) == pytest.approx(sync, abs=0.51)
        assert float(cells[4]) == pytest.approx(fp32, abs=0.51)
        assert percent(cells[5]) == pytest.approx(native / sync, abs=0.006)
        assert percent(cells[6]) == pytest.approx(native / asyn, abs=0.006)
        assert percent(cells[7]) == pytest.approx(native / fp32, abs=0.006)
        assert percent(cells[8]) == pytest.approx(100 * (1 - statistics.median(r["native_tool_share"])), abs=0.51)
        assert min(native, sync, asyn, fp32) > 0


def check_tool_efficiency(section: Section) -> None:
    check_precision_stated(section)
    for batch, r in section.raw["by_batch"].items():
        cells = table_row(section.text, batch)
        m = {k: statistics.median(v) for k, v in r.items()}
        for k, kind in enumerate(("toolbox", "toolbox_bf16", "ceiling", "ceiling_bf16", "ceiling_bf16_weights")):
            assert float(cells[1 + k]) == pytest.approx(m[kind] / 1e9, abs=0.006) and m[kind] > 0
        assert percent(cells[6]) == pytest.approx(100 * m["toolbox"] / m["ceiling"], abs=0.51)
        assert percent(cells[7]) == pytest.approx(100 * m["toolbox_bf16"] / m["ceiling_bf16"], abs=0.51)
        assert percent(cells[8]) == pytest.approx(m["toolbox_bf16"] / m["toolbox"], abs=0.006)
        assert percent(cells[9]) == pytest.approx(m["ceiling_bf16"] / m["ceiling"], abs=0.006)
        assert percent(cells[10]) == pytest.approx(m["ceiling_bf16_weights"] / m["ceiling"], abs=0.006)
    assert sum("bf16" in t.name for t in section.targets) == 2


def check_whole_image_latency(section: Section) -> None:
    check_precision_stated(section)
    for size, r in section.raw["by_size"].items():
        cells = table_row(section.text, size)
        t = {k: statistics.median(v) for k, v in r["seconds"].items()}
        assert percent(cells[4]) == pytest.approx(100 * t["vote"] / t["dncnn"], abs=0.51)
        assert percent(cells[5]) == pytest.approx(100 * t["blend"] / t["dncnn"], abs=0.51)
        assert percent(cells[7]) == pytest.approx(100 * r["macs"]["vote"] / r["macs"]["dncnn"], abs=0.51)
        assert float(cells[8]) == pytest.approx(t["dncnn_fp32"], abs=0.0006)
        assert percent(cells[9]) == pytest.approx(100 * t["vote"] / t["dncnn_fp32"], abs=0.51)
        # The agent's chains are far cheaper than the 17-layer CNN in multiply-adds.
        assert r["macs"]["vote"] < 0.5 * r["macs"]["dncnn"]


def check_quality(section: Section) -> None:
    rows = {(r["method"], r["test_set"]): r for r in section.raw["results"]}
    agent = {level: rows[("agent, jointly fine-tuned tools (shipped)", level)] for level in ("mild", "moderate", "severe")}
    dncnn = {level: rows[("DnCNN", level)] for level in agent}
    cells = table_row(section.text, "agent multiply-adds / DnCNN-style's")
    for k, level in enumerate(agent):
        assert percent(cells[k + 1]) == pytest.approx(100 * agent[level]["macs"] / dncnn[level]["macs"], abs=0.51)
        greedy = rows[("greedy oracle", level)]
        assert greedy["psnr"] >= agent[level]["psnr"] > rows[("input", level)]["psnr"]
    psnr = table_row(section.text, "agent PSNR minus DnCNN-style PSNR (dB)")
    assert float(psnr[2]) == pytest.approx(agent["moderate"]["psnr"] - dncnn["moderate"]["psnr"], abs=0.006)


def check_data_pipeline(section: Section) -> None:
    for count, entry in section.raw["folders"].items():
        for workers, runs in entry["runs"].items():
            assert len(runs) == int(workers) * section.raw["params"]["repeats"]
            assert all(n > 0 and peak >= start > 0 for n, _, start, peak in runs)


def check_agent_training(section: Section) -> None:
    check_precision_stated(section)
    runs = section.raw["runs"]
    assert set(runs) == {"fp32", "bf16"} and runs["fp32"]
    for precision, precision_runs in runs.items():
        for run in precision_runs:
            assert run["steps_per_second"] > 0
            assert 0 < run["tools"] <= run["environment"] + 0.02  # tool inference happens inside the env step
            assert 0.5 < run["acting"] + run["environment"] + run["learning"] <= 1.0
        cells = table_row(section.text, precision)
        if precision_runs:
            assert float(cells[1]) == pytest.approx(statistics.median(r["steps_per_second"] for r in precision_runs),
                                                    abs=0.051)
        else:  # skipped: only where bf16 is emulated and the budget says so
            assert precision == "bf16" and not native_bf16("cpu")[0] and cells[1].startswith("not run")
    if runs["bf16"]:
        ratio = statistics.median(r["steps_per_second"] for r in runs["bf16"]) / statistics.median(
            r["steps_per_second"] for r in runs["fp32"])
        assert f"bf16 / fp32 steps per second: {ratio:.2f}x" in section.text


def check_tool_training(section: Section) -> None:
    check_precision_stated(section)
    raw, p = section.raw, section.raw["params"]
    for precision in ("fp32", "bf16"):
        runs = raw["runs"][precision]
        assert [r["seed"] for r in runs] == list(range(p["seeds"]))
        for r in runs:
            assert r["patches_per_second"] == pytest.approx(
                statistics.median(r["step_rates"]) * p["batch_size"] * len(p["tools"]))
            assert [s for s, _ in r["psnr_gain"]][-1] == p["iterations"]
        final = [raw["start"][str(r["seed"])]["input_psnr"] + r["psnr_gain"][-1][1] for r in runs]
        cells = table_row(section.text, precision)
        assert float(cells[1]) == pytest.approx(statistics.median(r["patches_per_second"] for r in runs), abs=0.051)
        assert float(cells[2]) == pytest.approx(statistics.mean(final), abs=0.0006)
    # Same seed, same batches: the two precisions' curves are measured at the same steps.
    assert [s for s, _ in raw["runs"]["fp32"][0]["psnr_gain"]] == [s for s, _ in raw["runs"]["bf16"][0]["psnr_gain"]]
    assert any(t.name.startswith("bf16 and fp32 tool training") for t in section.targets)


def check_distributed(section: Section) -> None:
    runs = section.raw["runs"]
    assert [r["processes"] for r in runs.values()] == [1, 2, 1]
    assert all(len(r["loss"]) == len(r["steps"]) > 0 for r in runs.values())
    ratio = section.raw["distance_2p"] / section.raw["distance_seed"]
    assert section.targets[0].measured == f"{ratio:.2f}x"


def check_dcnet(section: Section) -> None:
    p = section.raw["params"]
    for operator, runs in section.raw["curves"].items():
        assert len(runs) == p["seeds"] and all(0 <= a <= 1 for run in runs for _, a in run)
        cells = table_row(section.text, operator)
        final = [run[-1][1] for run in runs]
        assert float(cells[2].split()[0]) == pytest.approx(sum(final) / len(final), abs=0.0006)
        for eps in p["epsilons"]:
            assert len(section.raw["robustness"][operator][f"bim@{eps}"]) == p["seeds"]
    assert set(section.raw["agent_gain"]) == {"plain", p["agent_operator"]}


def check_synthesis(section: Section) -> None:
    results = section.raw["results"]
    assert set(results) == set(section.raw["params"]["variants"])
    for name, r in results.items():
        assert 0 <= r["l1"] <= 1 and 0 <= r["pixel_accuracy"] <= 1 and 0 <= r["mean_iou"] <= 1
        cells = table_row(section.text, _synthesis_row(name))
        assert float(cells[1]) == pytest.approx(r["l1"], abs=5e-5)
        assert float(cells[4]) == pytest.approx(r["pixel_accuracy"], abs=5e-4)
        if len(cells) > 8:  # the detail column (SIMS's claim)
            assert float(cells[8]) == pytest.approx(r["detail"], abs=5e-4) and r["detail"] >= 0
    assert 0 <= section.raw["real"]["pixel_accuracy"] <= 1
    if {"sims", "sims-no-retrieval"} <= set(results):
        claim = section.raw["sims_claim"]
        assert claim in section.text and (" held here" in claim) != (" did not hold here" in claim)


def _synthesis_row(name: str) -> str:
    from benchmarks.synthesis import VARIANTS

    return VARIANTS[name][0]


def check_posewarp(section: Section) -> None:
    from benchmarks.posewarp import QUICK, VARIANTS

    assert set(section.raw["results"]) == set(QUICK["variants"])
    for name, r in section.raw["results"].items():
        assert 0 <= r["l1"] <= 1 and -1 <= r["ssim"] <= 1 and r["gradient"]["mean"] >= 0
        assert VARIANTS[name][0] in section.text
    assert "posewarp.png" in section.figures


CHECKS = {
    "env_throughput": (check_env_throughput, {"num_envs": [2], "seconds": 0.2, "repeats": 2}),
    "tool_efficiency": (check_tool_efficiency, {"batch": [2], "seconds": 0.1, "repeats": 2}),
    "whole_image_latency": (check_whole_image_latency, {"sizes": [70], "repeats": 2}),
    "quality": (check_quality, {"patches": 4}),
    "data_pipeline": (check_data_pipeline, {"folder_images": [3, 6], "seconds": 0.3, "workers": [1],
                                            "size": [200, 150]}),
    # 32 steps of 32 envs: no gradient step, so that the emulated bf16 run (this CPU's) stays short.
    "agent_training": (check_agent_training, {"total_steps": 32, "learning_starts": 32, "repeats": 1,
                                              "emulated_bf16": "run"}),
    "tool_training": (check_tool_training, {"tools": [5], "batch_size": 2, "patch_size": 24, "iterations": 6,
                                            "eval_every": 3, "eval_patches": 4, "seeds": 1, "warmup": 1}),
    "distributed": (check_distributed, {"iterations": 6, "global_batch": 4, "log_every": 1, "smooth": 3}),
    # 32 agent steps: one step of the CPU preset's 32 envs (their gradient steps are most of the cost).
    "dcnet": (check_dcnet, {"operators": ["plain", "tanh_cos"], "seeds": 1, "iterations": 10, "eval_every": 5,
                            "train_patches": 96, "test_patches": 48, "attack_patches": 24, "agent_steps": 32,
                            "agent_eval_patches": 4}),
    "synthesis": (check_synthesis, {"iterations": 2, "segmenter_iterations": 2, "train_scenes": 4, "test_scenes": 2,
                                    "variants": ["global+enhancer", "pix2pix", "sims", "sims-no-retrieval"]}),
    "posewarp": (check_posewarp, {}),  # its quick budget is already tiny
}
"""Every benchmark's check and the budget it runs at here."""


@pytest.fixture(scope="module")
def sections(tmp_path_factory):
    """Each benchmark run once, when a test first asks for it: (its figures' folder, its
    Section). The per-benchmark tests and the whole-report test share these runs."""
    import importlib

    done = {}

    def run(module: str) -> tuple[Path, Section]:
        if module not in done:
            figures = tmp_path_factory.mktemp(module)
            section = importlib.import_module(f"benchmarks.{module}").run(True, "cpu", figures, **CHECKS[module][1])
            done[module] = figures, section
        return done[module]

    return run


def test_every_benchmark_has_a_check():
    from benchmarks.__main__ import BENCHMARKS

    assert sorted(CHECKS) == sorted(BENCHMARKS) == sorted(_TITLES)


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(CHECKS))
def test_benchmark_measures_and_reports_consistent_figures(module, sections):
    figures, section = sections(module)
    assert section.title and section.text and section.seconds > 0
    json.dumps(section.raw)  # the report stores it
    CHECKS[module][0](section)
    for name in section.figures:
        assert (figures / name).stat().st_size > 1000


def replay(module: str, sections):
    """A stand-in for ``benchmarks.<module>.run`` that returns the run already made, its
    figures copied into the report's folder."""
    import shutil

    def run(quick, device, figures):
        assert quick is True and device == "cpu"
        source, section = sections(module)
        for name in section.figures:
            shutil.copy(source / name, figures / name)
        return section

    return run


@pytest.mark.slow
def test_quick_mode_end_to_end(tmp_path, sections, monkeypatch):
    """``python -m benchmarks --quick`` puts every benchmark's section into one report; each
    benchmark's run is the one the tests above made, so that none runs twice in the suite."""
    import importlib

    from benchmarks import machine
    from benchmarks.__main__ import BENCHMARKS, main

    for module in BENCHMARKS:
        monkeypatch.setattr(importlib.import_module(f"benchmarks.{module}"), "run", replay(module, sections))
    report = main(["--quick", "--device", "cpu", "--out-dir", str(tmp_path)])
    text = report.read_text()
    assert report.name.startswith(machine_slug(machine("cpu"))) and report.name.endswith("-quick.md")
    folder = tmp_path / report.stem
    raw = json.loads((folder / "raw.json").read_text())
    assert raw["machine"]["torch"] and raw["machine"]["cores"] >= 1 and "| torch |" in text
    assert "| precision auto |" in text and "| cpu capability |" in text and "| native bf16 |" in text
    assert len(raw["sections"]) == len(BENCHMARKS)
    for title in raw["sections"]:
        assert f"## {title}" in text
    # Every figure the report links to exists.
    for link in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):
        assert (tmp_path / link).stat().st_size > 1000
    assert {"quality.png", "distributed.png", "tool_training.png"} <= {p.name for p in folder.iterdir()}
    # The ratios printed in the report, recomputed from the raw figures printed with it.
    for module, (check, _) in CHECKS.items():
        title = next(t for t in raw["sections"] if t.lower().startswith(_TITLES[module]))
        body = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
        check(Section(title, body, raw["sections"][title], sections(module)[1].figures, _targets(text, title)))
    assert "| target | measured | met | section |" in text


_TITLES = {"env_throughput": "environment throughput", "tool_efficiency": "tool inference", "quality": "quality",
           "whole_image_latency": "whole-image", "data_pipeline": "data pipeline", "agent_training": "agent training",
           "dcnet": "dcnet", "synthesis": "image synthesis", "tool_training": "tool training",
           "distributed": "data-parallel training", "posewarp": "pose-guided"}


def _targets(text: str, title: str):
    rows = [line for line in text.splitlines() if line.startswith("| ") and line.rstrip().endswith(f"| {title} |")]
    met = {"yes": True, "no": False, "n/a": None}
    return [Target(c[0], c[1], met[c[2]]) for c in ([x.strip() for x in r.strip("|").split("|")] for r in rows)]


def test_machine_states_what_auto_chose_and_the_cpu_capability():
    from benchmarks import machine, machine_line
    from toolchain_restore import runtime

    info = machine("cpu")
    assert info["precision_auto"] == str(runtime.auto_precision("cpu"))
    assert info["cpu_capability"] == runtime.cpu_description()
    assert info["native_bf16"].startswith("yes" if native_bf16("cpu")[0] else "no")
    line = machine_line("cpu")
    assert info["precision_auto"] in line and info["cpu_capability"] in line


@pytest.mark.parametrize("flags, native", [(frozenset({"avx2"}), False), (frozenset({"avx2", "amx_bf16"}), True),
                                           (None, False)])
def test_bf16_targets_are_judged_only_on_a_cpu_with_native_bf16(monkeypatch, flags, native):
    from benchmarks import agent_training, bf16_target, env_throughput, tool_efficiency, tool_training
    from toolchain_restore import runtime

    monkeypatch.setattr(runtime, "cpu_flags", lambda: flags)
    assert native_bf16("cpu")[0] is native
    judged = (lambda ok: ok) if native else (lambda ok: None)
    figures = {"toolbox": 1.0, "toolbox_bf16": 3.0, "ceiling": 2.0, "ceiling_bf16": 4.0, "ceiling_bf16_weights": 4.0}
    one = {k: [v] for k, v in figures.items()}
    bf16 = [t for t in tool_efficiency._targets({"1": one, "32": one}, "cpu") if "native bf16)" in t.name]
    assert [t.met for t in bf16] == [judged(True), judged(True)]  # 3x the fp32 toolbox, 75% of the bf16 ceiling
    assert bf16[0].measured.startswith("3.00x") and bf16[1].measured.startswith("75%")
    # Not measured at batch 32: n/a everywhere.
    assert [t.met for t in tool_efficiency._targets({"8": one}, "cpu") if "batch 32" in t.name] == [None]
    env = {"native": [150.0], "sync": [100.0], "async": [100.0], "sync_fp32": [100.0], "native_tool_share": [0.9]}
    target = env_throughput._targets(env, "cpu")[-1]
    assert "native bf16)" in target.name and target.met is judged(False) and target.measured.startswith("1.50x")
    assert bf16_target("x", 2.0, 1.8, "cpu").met is judged(True)
    assert agent_training.precisions_to_run("cpu", "skip") == (("fp32", "bf16") if native else ("fp32",))
    assert agent_training.precisions_to_run("cpu", "run") == ("fp32", "bf16")
    run_ = lambda seed, rate, gain: {"seed": seed, "patches_per_second": rate, "psnr_gain": [[4, gain]]}  # noqa: E731
    raw = {"start": {"0": {"input_psnr": 30.0, "gain": 0.0}, "1": {"input_psnr": 30.0, "gain": 0.0}},
           "runs": {"fp32": [run_(0, 100.0, 1.0), run_(1, 100.0, 1.2)], "bf16": [run_(0, 250.0, 1.05), run_(1, 250.0, 1.3)]}}
    speed, agree = tool_training._targets(raw, "cpu")
    assert speed.met is judged(True) and speed.measured.startswith("2.50x")
    assert agree.met is True  # 0.075 dB apart: within 0.2 dB, the fp32 seeds' range, on every machine


@pytest.mark.parametrize("values, reference, higher_is_better, verdict", [
    ([0.8, 0.9], [0.5, 0.6], True, "held"),
    ([0.55, 0.9], [0.5, 0.6], True, "held on average, inside the seed spread"),
    ([0.5, 0.6], [0.5, 0.6], True, "did not hold"),
    ([100, 150], [200, 250], False, "held"),
    ([300, 350], [200, 250], False, "did not hold"),
])
def test_dcnet_claim_verdicts_compare_means_and_seed_ranges(values, reference, higher_is_better, verdict):
    from benchmarks.dcnet import compare

    assert compare(values, reference, higher_is_better) == verdict


def test_dcnet_claims_name_every_bounded_and_unbounded_operator():
    from benchmarks.dcnet import claims

    curve = lambda *acc: [(50 * (k + 1), a) for k, a in enumerate(acc)]  # noqa: E731
    raw = {"params": {"threshold": 0.5, "iterations": 150, "eval_every": 50, "epsilons": [0.01]},
           "curves": {"plain": [curve(0.2, 0.4, 0.6), curve(0.3, 0.5, 0.6)],
                      "tanh_cos": [curve(0.5, 0.6, 0.7), curve(0.6, 0.6, 0.7)],
                      "log_cos": [curve(0.1, 0.2, 0.3), curve(0.1, 0.2, 0.4)]},
           "robustness": {op: {"fgsm@0.01": [a, a], "bim@0.01": [a / 2, a / 2]}
                          for op, a in (("plain", 0.3), ("tanh_cos", 0.4), ("log_cos", 0.1))},
           "train_accuracy": {"plain": [0.7, 0.7], "tanh_cos": [0.8, 0.8], "log_cos": [0.9, 0.95]},
           "agent_gain": {"plain": 2.0, "tanh_cos": 1.9}}
    verdicts = {(claim.split(" ")[-1], op): verdict for claim, op, _, verdict in claims(raw)}
    assert verdicts[("plain", "tanh_cos")] == "held"  # 50 iterations to 50% against 100..150
    assert verdicts[("FGSM", "tanh_cos")] == verdicts[("BIM", "tanh_cos")] == "held"
    assert verdicts[("ones", "log_cos")] == "held"  # log_cos never reaches 50%, yet fits the training set best
    assert verdicts[("seed)", "tanh_cos")] == "did not hold"
    assert all(op != "log_cos" for (_, op) in verdicts if _ != "ones")
