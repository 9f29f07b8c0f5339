"""Training speed of the recurrent DQN: environment steps per second, and where the time
goes (the agent acting, the environment with its tool inference, learning).

    python -m benchmarks.agent_training [--quick] [--device cpu]

Runs of the CPU preset from a fresh network on the shipped tools, each long enough to
learn for most of it (learning starts after ``learning_starts`` steps). Steps per second
and the shares of acting, environment and learning come from the run's own TensorBoard
scalars (``charts/steps_per_second``, ``perf/*_share``, logged by the trainer over the
whole run); tool inference is timed around ``Toolbox.apply`` inside the vector env's
step. Each figure is the median over repeated runs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks import Section, median, read_scalars, resolve_device, timed_tool_inference, run_alone
from toolchain_restore.agents.dqn import preset, train

FULL = {"total_steps": 1500, "learning_starts": 500, "repeats": 3}
QUICK = {"total_steps": 300, "learning_starts": 150, "repeats": 2}
PHASES = ("acting", "environment", "learning")


def measure_once(total_steps: int, learning_starts: int, device: str, seed: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="toolchain-restore-bench-") as out_dir:
        settings = preset("cpu", total_steps=total_steps, learning_starts=learning_starts, eval_every=10**9,
                          eval_patches=4, checkpoint_every=10**9, device=device, seed=seed, out_dir=out_dir)
        with timed_tool_inference() as spent:
            train(settings, progress=False)
        scalars = read_scalars(out_dir)
    last = {tag: values[-1][1] for tag, values in scalars.items()}
    # The env's share of the run and its measured seconds give the run's length as the trainer saw it.
    run_seconds = spent["env_step"] / last["perf/environment_share"]
    return {"steps_per_second": last["charts/steps_per_second"], **{p: last[f"perf/{p}_share"] for p in PHASES},
            "tools": spent["tools"] / run_seconds, "run_seconds": run_seconds}


def run(quick: bool = False, device: str = "cpu", figures: Path | None = None, **overrides) -> Section:
    p = {**(QUICK if quick else FULL), **overrides}
    device = resolve_device(device)
    start = time.perf_counter()
    runs = [measure_once(p["total_steps"], p["learning_starts"], device, seed) for seed in range(p["repeats"])]
    m = {k: median([r[k] for r in runs]) for k in runs[0]}
    other = 1.0 - sum(m[k] for k in PHASES)
    text = (f"{p['repeats']} runs of {p['total_steps']} environment steps (32 native vector envs, CPU preset: one "
            f"gradient step of 32 episodes every 4 environment steps from step {p['learning_starts']}); medians.\n\n"
            "| steps/s | acting | environment | of which tool inference | learning | other |\n|---|---|---|---|---|---|\n"
            f"| {m['steps_per_second']:.1f} | {100 * m['acting']:.0f}% | {100 * m['environment']:.0f}% "
            f"| {100 * m['tools']:.0f}% | {100 * m['learning']:.0f}% | {100 * other:.0f}% |\n\n"
            f"Tool inference against learning: {100 * m['tools']:.0f}% against {100 * m['learning']:.0f}% of the time.")
    return Section("Agent training speed", text, {"params": p, "device": device, "runs": runs}, [], [],
                   time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    run_alone(run, __doc__, QUICK, FULL, argv)

if __name__ == "__main__":
    main()
