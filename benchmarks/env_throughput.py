"""Steps per second of the native batched ToolchainRestore-v0 against Gymnasium's
SyncVectorEnv and AsyncVectorEnv over single envs, in the same run, at several numbers of
envs.

    python -m benchmarks.env_throughput [--quick] [--device cpu]

Random actions. Every figure is the median over ``repeats`` timed windows of each env
type, the types interleaved so they see the same machine load; a ratio compares two
medians of the same run. "outside tools" is the share of the native env's step time not
spent in tool inference (``Toolbox.apply`` inside its step, timed around the call).
AsyncVectorEnv runs one process per env, each with one torch thread (the setting a user
would choose: N processes with the default thread count oversubscribe the cores).
"""

from __future__ import annotations

import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import toolchain_restore  # noqa: F401  (registers the env)
from benchmarks import Section, Target, median, resolve_device, timed_tool_inference, run_alone
from toolchain_restore.envs import ToolchainRestoreEnv

FULL = {"num_envs": [8, 32, 128], "seconds": 5.0, "repeats": 3}
QUICK = {"num_envs": [4, 8], "seconds": 0.5, "repeats": 3}

TARGET_ENVS = 32
"""The env count the environment issue's targets are stated at."""


def steps_per_second(envs, num_envs: int, seconds: float, rng: np.random.Generator,
                     spent: dict[str, float] | None = None) -> tuple[float, float]:
    """Env steps (summed over sub-envs) per second of random actions, and the tool-inference
    share (from ``spent``, the counters of :func:`benchmarks.timed_tool_inference`)."""
    envs.step(rng.integers(0, 13, num_envs))  # warm-up
    if spent is not None:
        spent["tools"] = 0.0
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        envs.step(rng.integers(0, 13, num_envs))
        steps += num_envs
    elapsed = time.perf_counter() - start
    return steps / elapsed, (spent["tools"] / elapsed if spent is not None else float("nan"))


def _single_thread_env(device: str) -> ToolchainRestoreEnv:
    torch.set_num_threads(1)
    return ToolchainRestoreEnv(device=device)


def measure(num_envs: int, seconds: float, repeats: int, device: str) -> dict[str, list[float]]:
    """Every window's steps per second for the three env types, and the native tool shares."""
    rng = np.random.default_rng(0)
    native = gym.make_vec("ToolchainRestore-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", device=device)
    sync = gym.vector.SyncVectorEnv([lambda: ToolchainRestoreEnv(device=device) for _ in range(num_envs)])
    # CUDA cannot be used in forked workers; async workers stay on the CPU then.
    async_device = "cpu" if device.startswith("cuda") else device
    asynchronous = gym.vector.AsyncVectorEnv([lambda: _single_thread_env(async_device) for _ in range(num_envs)],
                                             context="fork")
    raw: dict[str, list[float]] = {"native": [], "sync": [], "async": [], "native_tool_share": []}
    try:
        for envs in (native, sync, asynchronous):
            envs.reset(seed=0)
        for _ in range(repeats):
            with timed_tool_inference() as spent:  # only the native env's step calls tools in it
                sps, share = steps_per_second(native, num_envs, seconds, rng, spent)
            raw["native"].append(sps)
            raw["native_tool_share"].append(share)
            raw["sync"].append(steps_per_second(sync, num_envs, seconds, rng)[0])
            raw["async"].append(steps_per_second(asynchronous, num_envs, seconds, rng)[0])
    finally:
        for envs in (native, sync, asynchronous):
            envs.close()
    return raw


def run(quick: bool = False, device: str = "cpu", figures: Path | None = None, **overrides) -> Section:
    p = {**(QUICK if quick else FULL), **overrides}
    device = resolve_device(device)
    start = time.perf_counter()
    raw, rows = {}, []
    for n in p["num_envs"]:
        r = raw[str(n)] = measure(n, p["seconds"], p["repeats"], device)
        native, sync, asyn = median(r["native"]), median(r["sync"]), median(r["async"])
        outside = 1.0 - median(r["native_tool_share"])
        rows.append(f"| {n} | {native:.0f} | {sync:.0f} | {asyn:.0f} | {native / sync:.2f}x | {native / asyn:.2f}x "
                    f"| {100 * outside:.0f}% |")
    text = (f"Random actions; median of {p['repeats']} windows of {p['seconds']} s per env type, interleaved. "
            "Ratios are native / other, from the medians in the same row.\n\n"
            "| envs | native steps/s | SyncVectorEnv steps/s | AsyncVectorEnv steps/s | native / Sync | native / Async "
            "| native step time outside tools |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    targets = []
    at = raw.get(str(TARGET_ENVS))
    if at is not None:
        ratio = median(at["native"]) / median(at["sync"])
        outside = 1.0 - median(at["native_tool_share"])
        on_gpu = device.startswith("cuda")
        targets.append(Target(f"native env step time outside tool inference under 25% at {TARGET_ENVS} envs",
                              f"{100 * outside:.0f}%", outside < 0.25))
        targets.append(Target(f"native env at least 1.5x SyncVectorEnv at {TARGET_ENVS} envs (CPU)", f"{ratio:.2f}x",
                              None if on_gpu else ratio >= 1.5))
        targets.append(Target(f"native env at least 20x SyncVectorEnv at {TARGET_ENVS} envs (GPU)",
                              f"{ratio:.2f}x" if on_gpu else "no GPU here", ratio >= 20 if on_gpu else None))
    return Section("Environment throughput", text, {"params": p, "device": device, "by_envs": raw}, [], targets,
                   time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    run_alone(run, __doc__, QUICK, FULL, argv, ("num_envs",))

if __name__ == "__main__":
    main()
