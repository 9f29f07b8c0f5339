"""Training speed of the recurrent DQN in float32 and in bfloat16: environment steps per
second, and where the time goes (the agent acting, the environment with its tool
inference, learning).

    python -m benchmarks.agent_training [--quick] [--device cpu] [--emulated-bf16 run]

Runs of the CPU preset from a fresh network on the shipped tools, each long enough to
learn for most of it (learning starts after ``learning_starts`` steps), at precision fp32
and bf16 (``DQNSettings.precision``: the Q-network and the tools), the two interleaved
run by run, the same seeds. Steps per second and the shares of acting, environment and
learning come from the run's own TensorBoard scalars (``charts/steps_per_second``,
``perf/*_share``, logged by the trainer over the whole run); tool inference is timed
around the tools' forward passes inside the vector env's step. Each figure is the median over
repeated runs. Target of the benchmarks issue, where the machine has native bf16: bf16 at
least 1.8x the steps per second of fp32. Where bf16 is emulated (about 16x slower than
float32 here on an AVX2 CPU: a quick run would take minutes), the bf16 runs are skipped
and the target is n/a, unless ``emulated_bf16`` is "run".
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks import (Section, auto_choice, bf16_target, median, native_bf16, read_scalars, resolve_device,
                        timed_tool_inference, run_alone)
from toolchain_restore.agents.dqn import preset, train

FULL = {"total_steps": 1500, "learning_starts": 500, "repeats": 3, "emulated_bf16": "skip"}
QUICK = {"total_steps": 300, "learning_starts": 150, "repeats": 2, "emulated_bf16": "skip"}
PHASES = ("acting", "environment", "learning")
PRECISIONS = ("fp32", "bf16")
TARGET_BF16_SPEEDUP = 1.8


def measure_once(total_steps: int, learning_starts: int, device: str, seed: int, precision: str) -> dict[str, float]:
    """One training run at ``precision``: its steps per second, the shares of its phases and of tool inference."""
    with tempfile.TemporaryDirectory(prefix="toolchain-restore-bench-") as out_dir:
        settings = preset("cpu", total_steps=total_steps, learning_starts=learning_starts, eval_every=10**9,
                          eval_patches=4, checkpoint_every=10**9, device=device, seed=seed, out_dir=out_dir,
                          precision=precision)
        with timed_tool_inference() as spent:
            train(settings, progress=False)
        scalars = read_scalars(out_dir)
    last = {tag: values[-1][1] for tag, values in scalars.items()}
    # The env's share of the run and its measured seconds give the run's length as the trainer saw it.
    run_seconds = spent["env_step"] / last["perf/environment_share"]
    return {"steps_per_second": last["charts/steps_per_second"], **{p: last[f"perf/{p}_share"] for p in PHASES},
            "tools": spent["tools"] / run_seconds, "run_seconds": run_seconds}


def precisions_to_run(device: str, emulated_bf16: str) -> tuple[str, ...]:
    """fp32 always; bf16 where the device has native bf16, or where asked to run it emulated."""
    if emulated_bf16 not in ("skip", "run"):
        raise ValueError(f"emulated_bf16 must be 'skip' or 'run', got {emulated_bf16!r}")
    return PRECISIONS if native_bf16(device)[0] or emulated_bf16 == "run" else ("fp32",)


def _row(precision: str, runs: list[dict[str, float]], why_not: str) -> str:
    """The table row of one precision: medians over its runs (or why it was not run)."""
    if not runs:
        return f"| {precision} | not run ({why_not}) | | | | | |"
    m = {k: median([r[k] for r in runs]) for k in runs[0]}
    other = 1.0 - sum(m[k] for k in PHASES)
    return (f"| {precision} | {m['steps_per_second']:.1f} | {100 * m['acting']:.0f}% | {100 * m['environment']:.0f}% "
            f"| {100 * m['tools']:.0f}% | {100 * m['learning']:.0f}% | {100 * other:.0f}% |")


def run(quick: bool = False, device: str = "cpu", figures: Path | None = None, **overrides) -> Section:
    """``repeats`` runs per precision (interleaved, seeds 0..repeats-1); the per-precision table and the bf16 target."""
    p = {**(QUICK if quick else FULL), **overrides}
    device = resolve_device(device)
    start = time.perf_counter()
    chosen = precisions_to_run(device, p["emulated_bf16"])
    runs: dict[str, list[dict[str, float]]] = {precision: [] for precision in PRECISIONS}
    for seed in range(p["repeats"]):
        for precision in chosen:
            runs[precision].append(measure_once(p["total_steps"], p["learning_starts"], device, seed, precision))
    why_not = f"{native_bf16(device)[1]}; emulated_bf16='run' runs it"
    speed = {k: median([r["steps_per_second"] for r in v]) if v else None for k, v in runs.items()}
    ratio = speed["bf16"] / speed["fp32"] if speed["bf16"] is not None else None
    text = (f"{p['repeats']} runs per precision of {p['total_steps']} environment steps (32 native vector envs, CPU "
            f"preset: one gradient step of 32 episodes every 4 environment steps from step {p['learning_starts']}), "
            f"the precisions interleaved run by run, the same seeds; medians. Precision \"auto\" here: "
            f"{auto_choice(device)}.\n\n"
            "| precision | steps/s | acting | environment | of which tool inference | learning | other |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(_row(k, v, why_not) for k, v in runs.items()) + "\n\n"
            + (f"bf16 / fp32 steps per second: {ratio:.2f}x." if ratio is not None else "bf16 / fp32: not measured."))
    target = bf16_target(f"agent training at least {TARGET_BF16_SPEEDUP:g}x the environment steps per second of fp32 "
                         "in bf16 (native bf16)", ratio, TARGET_BF16_SPEEDUP, device)
    raw = {"params": p, "device": device, "precision_auto": auto_choice(device), "native_bf16": native_bf16(device)[1],
           "runs": runs}
    return Section("Agent training speed", text, raw, [], [target], time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    run_alone(run, __doc__, QUICK, FULL, argv, ("total_steps", "learning_starts", "repeats", "emulated_bf16"))

if __name__ == "__main__":
    main()
