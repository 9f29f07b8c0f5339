"""Data-parallel training under torchrun: the same tool training in 1 process and in 2
processes (gloo on CPU, NCCL on GPU), with the same global batch, should follow the same
loss curve within noise.

    python -m benchmarks.distributed [--quick]

Three runs of ``toolchain-restore train-tools`` on one tool: 1 process with a batch of
2B (seed 0), 2 processes under ``torchrun`` with B each (seed 0: the same global batch,
other patches), and 1 process with 2B and seed 1, whose distance from the first is the
noise: how far two equally valid runs lie apart. Each process has one torch thread. The
curves are compared after a moving average; the 2-process run is "within noise" when its
mean distance from the 1-process run is at most 1.5x the seed-to-seed distance.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import Section, Target, read_scalars, run_alone

FULL = {"tool": 6, "iterations": 300, "global_batch": 32, "log_every": 5, "smooth": 9}
QUICK = {"tool": 6, "iterations": 30, "global_batch": 8, "log_every": 2, "smooth": 3}
NOISE_FACTOR = 1.5
RUNS = {"1 process, seed 0": (1, 0), "2 processes, seed 0": (2, 0), "1 process, seed 1": (1, 1)}


def train_command(processes: int, p: dict, seed: int, out_dir: Path, port: int) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(processes),
                "--master_addr", "127.0.0.1", "--master_port", str(port)] if processes > 1 else [sys.executable]
    return launcher + [
        "-m", "toolchain_restore.cli", "train-tools", "--tools", str(p["tool"]), "--iterations", str(p["iterations"]),
        "--batch-size", str(p["global_batch"] // processes), "--seed", str(seed), "--log-every", str(p["log_every"]),
        "--eval-every", str(p["iterations"]), "--eval-patches", "32", "--checkpoint-every", str(p["iterations"]),
        "--lr", "5e-4", "--schedule", "constant", "--device", "cpu", "--progress", "false", "--out-dir", str(out_dir),
    ]


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Moving average (the ends average over what is there)."""
    kernel = np.ones(window)
    return np.convolve(values, kernel, mode="same") / np.convolve(np.ones_like(values), kernel, mode="same")


def plot(curves: dict[str, dict[str, list[float]]], window: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for k, (name, c) in enumerate(curves.items()):
        colour = plt.cm.tab10(k)
        ax.plot(c["steps"], c["loss"], color=colour, alpha=0.25, linewidth=0.8)
        ax.plot(c["steps"], smooth(np.array(c["loss"]), window), color=colour, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training MSE (rank 0's batch)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(quick: bool = False, device: str = "cpu", figures: Path | None = None, **overrides) -> Section:
    p = {**(QUICK if quick else FULL), **overrides}
    start = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    curves, raw_runs = {}, {}
    with tempfile.TemporaryDirectory(prefix="toolchain-restore-bench-") as root:
        for k, (name, (processes, seed)) in enumerate(RUNS.items()):
            out_dir = Path(root) / f"run{k}"
            began = time.perf_counter()
            done = subprocess.run(train_command(processes, p, seed, out_dir, 29600 + k), capture_output=True, text=True,
                                  env=env, timeout=3600)
            if done.returncode != 0:
                raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
            scalars = read_scalars(out_dir)
            steps, loss = zip(*scalars["losses/loss"])
            curves[name] = {"steps": list(steps), "loss": list(loss)}
            raw_runs[name] = {"processes": processes, "seed": seed, "seconds": time.perf_counter() - began,
                              "eval_psnr_gain": scalars[f"eval/psnr_gain/tool{p['tool']:02d}"][-1][1], **curves[name]}
    names = list(RUNS)
    smoothed = {n: np.log(smooth(np.array(c["loss"]), p["smooth"])) for n, c in curves.items()}
    # Distances of log-loss curves: relative differences, comparable over the whole run.
    distance_2p = float(np.mean(np.abs(smoothed[names[1]] - smoothed[names[0]])))
    distance_seed = float(np.mean(np.abs(smoothed[names[2]] - smoothed[names[0]])))
    figure_names = []
    if figures is not None:
        plot(curves, p["smooth"], figures / "distributed.png")
        figure_names.append("distributed.png")
    rows = [f"| {n} | {r['processes']} | {p['global_batch'] // r['processes']} | {r['seconds']:.0f} "
            f"| {np.mean(r['loss'][-max(1, len(r['loss']) // 5):]):.5f} | {r['eval_psnr_gain']:+.2f} |"
            for n, r in raw_runs.items()]
    text = (f"Tool {p['tool']}, {p['iterations']} iterations, global batch {p['global_batch']}, Adam 5e-4 constant, "
            f"CPU, gloo, one torch thread per process; loss logged every {p['log_every']} iterations (rank 0's batch in "
            f"the 2-process run), moving average over {p['smooth']} points.\n\n"
            "| run | processes | batch per process | wall s | loss, last fifth | held-out PSNR gain (dB) |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            f"Mean distance of the smoothed log-loss curves: 2 processes vs 1 process {distance_2p:.4f}; two seeds of "
            f"1 process (the noise) {distance_seed:.4f}; ratio {distance_2p / distance_seed:.2f}.")
    target = Target("1 vs 2 processes: the same loss curve within noise (distance at most 1.5x the seed-to-seed one)",
                    f"{distance_2p / distance_seed:.2f}x", distance_2p <= NOISE_FACTOR * distance_seed)
    raw = {"params": p, "runs": raw_runs, "distance_2p": distance_2p, "distance_seed": distance_seed}
    return Section("Data-parallel training (torchrun)", text, raw, figure_names, [target], time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    run_alone(run, __doc__, QUICK, FULL, argv)

if __name__ == "__main__":
    main()
