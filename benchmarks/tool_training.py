"""Tool training in float32 and in bfloat16: patches per second, and the held-out PSNR
curve of the same training in both precisions.

    python -m benchmarks.tool_training [--quick] [--device cpu]

The generic trainer on ``ToolTrainingTask`` (each selected tool one MSE step on a batch of
its own band per trainer step), at ``TrainerSettings.precision`` fp32 and bf16, from the
same seed (the same initial weights and batches), the two interleaved seed by seed.
Patches per second: the median of the trainer's own per-step rate
(``charts/steps_per_second``, logged every step) times the patches of a step, leaving out
the first ``warmup`` steps and every step that follows a held-out evaluation. The
held-out PSNR is the trainer's ``eval/psnr_gain/mean`` (evaluated in float32 whatever the
training precision, every ``eval_every`` steps) plus the PSNR of the held-out inputs, and
at step 0 the untrained tools'. Targets of the benchmarks issue: where the machine has
native bf16, bf16 at least 1.8x the patches per second of fp32 (n/a elsewhere); both
precisions' final held-out PSNR within noise of each other (judged everywhere).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import Section, Target, auto_choice, bf16_target, median, read_scalars, resolve_device, run_alone
from toolchain_restore.metrics import batch_psnr
from toolchain_restore.tools.training import ToolTrainingSettings, ToolTrainingTask
from toolchain_restore.training import Trainer, TrainerSettings

FULL = {"tools": [5, 7], "batch_size": 8, "patch_size": 63, "iterations": 100, "eval_every": 10, "eval_patches": 32,
        "seeds": 2, "warmup": 3}
QUICK = {"tools": [5, 9], "batch_size": 4, "patch_size": 32, "iterations": 12, "eval_every": 4, "eval_patches": 8,
         "seeds": 1, "warmup": 2}
PRECISIONS = ("fp32", "bf16")
TARGET_BF16_SPEEDUP = 1.8
PSNR_TOLERANCE = 0.1
"""dB: the final PSNRs agree when they differ by at most this or the fp32 seeds' range, whichever is larger."""


def task_settings(p: dict, seed: int) -> ToolTrainingSettings:
    """The tools, batch and held-out set of the budget ``p``; initial weights from ``seed``."""
    return ToolTrainingSettings(tools=list(p["tools"]), batch_size=p["batch_size"], patch_size=p["patch_size"],
                                eval_patches=p["eval_patches"], init_seed=seed)


def held_out_input_psnr(task: ToolTrainingTask) -> float:
    """Mean PSNR (dB) of the held-out inputs (the tools' test sets), to turn PSNR gains into PSNRs."""
    return float(np.mean([float(batch_psnr(L, H).mean()) for L, H in task.test_sets().values()]))


def train_once(p: dict, precision: str, seed: int, device: str) -> dict[str, object]:
    """One training at ``precision``: per-step rates, patches per second, the held-out PSNR gain curve."""
    task = ToolTrainingTask(task_settings(p, seed))
    with tempfile.TemporaryDirectory(prefix="toolchain-restore-bench-") as out_dir:
        settings = TrainerSettings(out_dir=out_dir, iterations=p["iterations"], eval_every=p["eval_every"], log_every=1,
                                   checkpoint_every=p["iterations"], precision=precision, seed=seed, device=device,
                                   progress=False)
        began = time.perf_counter()
        Trainer(settings, (task.settings,)).fit(task)
        seconds = time.perf_counter() - began
        scalars = read_scalars(out_dir)
    # Step k's rate covers steps k-1..k: leave out the warm-up and the steps right after an evaluation.
    rates = [(step, rate) for step, rate in scalars["charts/steps_per_second"]
             if step > p["warmup"] and (step - 1) % p["eval_every"] != 0]
    if not rates:
        raise ValueError(f"no step left to time: {p['iterations']} iterations, warm-up {p['warmup']}, "
                         f"an evaluation every {p['eval_every']}")
    patches_per_step = p["batch_size"] * len(p["tools"])
    return {"seed": seed, "seconds": seconds, "step_rates": [rate for _, rate in rates],
            "patches_per_second": median([rate for _, rate in rates]) * patches_per_step,
            "psnr_gain": [[step, value] for step, value in scalars["eval/psnr_gain/mean"]]}


def start_gain(p: dict, seed: int, device: str) -> tuple[float, float]:
    """The held-out inputs' PSNR and the untrained tools' mean PSNR gain (step 0 of the curves)."""
    task = ToolTrainingTask(task_settings(p, seed))
    model = task.model.to(device).eval()
    with torch.no_grad():
        gain = task.evaluate(model, torch.device(device))["psnr_gain/mean"]
    return held_out_input_psnr(task), gain


def plot(raw: dict, path: Path) -> None:
    """Held-out PSNR against training step, one line per precision and seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for k, precision in enumerate(PRECISIONS):
        for run_ in raw["runs"][precision]:
            start = raw["start"][str(run_["seed"])]
            steps = [0] + [s for s, _ in run_["psnr_gain"]]
            psnr = [start["input_psnr"] + g for g in [start["gain"]] + [g for _, g in run_["psnr_gain"]]]
            ax.plot(steps, psnr, color=plt.cm.tab10(k), linestyle="-" if precision == "fp32" else "--", marker=".",
                    label=f"{precision}, seed {run_['seed']}")
    inputs = float(np.mean([s["input_psnr"] for s in raw["start"].values()]))
    ax.axhline(inputs, color="grey", linestyle=":", label="held-out inputs")
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out PSNR (dB, mean over the tools)")
    ax.set_title(f"tools {', '.join(map(str, raw['params']['tools']))}: fp32 and bf16 training from the same seed")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def final_psnr(raw: dict, precision: str) -> list[float]:
    """Each seed's final held-out PSNR (dB) at ``precision``."""
    return [raw["start"][str(r["seed"])]["input_psnr"] + r["psnr_gain"][-1][1] for r in raw["runs"][precision]]


def _targets(raw: dict, device: str) -> list[Target]:
    """The bf16 speed target (n/a without native bf16) and the agreement of the final held-out PSNRs."""
    speed = {k: median([r["patches_per_second"] for r in raw["runs"][k]]) for k in PRECISIONS}
    final = {k: final_psnr(raw, k) for k in PRECISIONS}
    difference = float(np.mean(final["bf16"]) - np.mean(final["fp32"]))
    tolerance = max(PSNR_TOLERANCE, max(final["fp32"]) - min(final["fp32"]))
    return [bf16_target(f"tool training at least {TARGET_BF16_SPEEDUP:g}x the patches per second of fp32 in bf16 "
                        "(native bf16)", speed["bf16"] / speed["fp32"], TARGET_BF16_SPEEDUP, device),
            Target(f"bf16 and fp32 tool training reach the same final held-out PSNR within noise (at most "
                   f"{PSNR_TOLERANCE} dB apart, or the fp32 seeds' range)", f"{difference:+.3f} dB (bf16 - fp32; "
                   f"tolerance {tolerance:.3f} dB)", abs(difference) <= tolerance)]


def run(quick: bool = False, device: str = "cpu", figures: Path | None = None, **overrides) -> Section:
    """``seeds`` trainings per precision (interleaved); the speed and PSNR table, the curves, the targets."""
    p = {**(QUICK if quick else FULL), **overrides}
    device = resolve_device(device)
    start = time.perf_counter()
    raw: dict = {"params": p, "device": device, "precision_auto": auto_choice(device), "start": {},
                 "runs": {k: [] for k in PRECISIONS}}
    for seed in range(p["seeds"]):
        input_psnr, gain = start_gain(p, seed, device)
        raw["start"][str(seed)] = {"input_psnr": input_psnr, "gain": gain}
        for precision in PRECISIONS:
            raw["runs"][precision].append(train_once(p, precision, seed, device))
    rows = []
    for k in PRECISIONS:
        runs, final = raw["runs"][k], final_psnr(raw, k)
        rows.append(f"| {k} | {median([r['patches_per_second'] for r in runs]):.1f} | {np.mean(final):.3f} "
                    f"| {np.mean([r['psnr_gain'][-1][1] for r in runs]):+.3f} | {median([r['seconds'] for r in runs]):.1f} |")
    speed = {k: median([r["patches_per_second"] for r in raw["runs"][k]]) for k in PRECISIONS}
    names = []
    if figures is not None:
        plot(raw, figures / "tool_training.png")
        names.append("tool_training.png")
    text = (f"Tools {', '.join(map(str, p['tools']))}, {p['batch_size']} patches of {p['patch_size']}x{p['patch_size']} "
            f"per tool per step, {p['iterations']} steps (Adam 1e-3, cosine), held-out evaluation every "
            f"{p['eval_every']} steps on {p['eval_patches']} patches per tool, {p['seeds']} seed(s) per precision, the "
            f"same seeds, interleaved; patches/s: median of the per-step rates (after {p['warmup']} warm-up steps, "
            f"without the steps that follow an evaluation), then median over seeds. Precision \"auto\" here: "
            f"{auto_choice(device)}.\n\n"
            "| precision | patches/s | final held-out PSNR (dB, mean over seeds) | final PSNR gain (dB) | wall s |\n"
            "|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            f"bf16 / fp32 patches per second: {speed['bf16'] / speed['fp32']:.2f}x. Held-out inputs: "
            f"{np.mean([s['input_psnr'] for s in raw['start'].values()]):.3f} dB.")
    return Section("Tool training speed and precision", text, raw, names, _targets(raw, device),
                   time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    run_alone(run, __doc__, QUICK, FULL, argv, ("tools", "iterations", "seeds", "batch_size"))

if __name__ == "__main__":
    main()
