"""Steps per second of the native batched ToolchainRestore-v0 against Gymnasium's
SyncVectorEnv and AsyncVectorEnv over single envs, in the same run, at several numbers of
envs; and the native env at precision "auto" against SyncVectorEnv over float32 single
envs (``precision="fp32"``), what a user would otherwise run.

    python -m benchmarks.env_throughput [--quick] [--device cpu]

Random actions. Every figure is the median over ``repeats`` timed windows of each env
type, the types interleaved so they see the same machine load; a ratio compares two
medians of the same run. "outside tools" is the share of the native env's step time not
spent in tool inference (the tools' forward passes inside its step, timed around each call).
AsyncVectorEnv runs one process per env, each with one torch thread (the setting a user
would choose: N processes with the default thread count oversubscribe the cores).
The native, Sync and Async envs run at precision "auto" (the report says what it resolved
to); "Sync fp32" at fp32. Target of the benchmarks issue, where the CPU has native bf16:
native "auto" at least 2x Sync fp32 at 32 envs (n/a elsewhere; the ratio is still shown).
"""

from __future__ import annotations

import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import toolchain_restore  # noqa: F401  (registers the env)
from benchmarks import (Section, Target, auto_choice, bf16_target, median, resolve_device, timed_tool_inference,
                        run_alone)
from toolchain_restore.envs import ToolchainRestoreEnv

FULL = {"num_envs": [8, 32, 128], "seconds": 5.0, "repeats": 3}
QUICK = {"num_envs": [4, 8], "seconds": 0.5, "repeats": 3}

TARGET_ENVS = 32
"""The env count the environment issue's targets are stated at."""
TARGET_AUTO_OVER_FP32 = 2.0
KINDS = ("native", "sync", "async", "sync_fp32")
"""Raw keys: native, Sync and Async at precision "auto"; Sync over float32 single envs."""


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
    return ToolchainRestoreEnv(device=device, precision="auto")


def measure(num_envs: int, seconds: float, repeats: int, device: str) -> dict[str, list[float]]:
    """Every window's steps per second for the four env types of :data:`KINDS`, interleaved,
    and the native env's tool shares."""
    rng = np.random.default_rng(0)
    envs = {
        "native": gym.make_vec("ToolchainRestore-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                               device=device, precision="auto"),
        "sync": gym.vector.SyncVectorEnv([lambda: ToolchainRestoreEnv(device=device, precision="auto")
                                          for _ in range(num_envs)]),
        # CUDA cannot be used in forked workers; async workers stay on the CPU then.
        "async": gym.vector.AsyncVectorEnv([lambda: _single_thread_env("cpu" if device.startswith("cuda") else device)
                                            for _ in range(num_envs)], context="fork"),
        "sync_fp32": gym.vector.SyncVectorEnv([lambda: ToolchainRestoreEnv(device=device, precision="fp32")
                                               for _ in range(num_envs)]),
    }
    raw: dict[str, list[float]] = {kind: [] for kind in KINDS}
    raw["native_tool_share"] = []
    try:
        for vector_env in envs.values():
            vector_env.reset(seed=0)
        for _ in range(repeats):
            with timed_tool_inference() as spent:  # only the native env's step calls tools in it
                sps, share = steps_per_second(envs["native"], num_envs, seconds, rng, spent)
            raw["native"].append(sps)
            raw["native_tool_share"].append(share)
            for kind in KINDS[1:]:
                raw[kind].append(steps_per_second(envs[kind], num_envs, seconds, rng)[0])
    finally:
        for vector_env in envs.values():
            vector_env.close()
    return raw


def _row(n: str, r: dict[str, list[float]]) -> str:
    """The table row of ``n`` envs: each env type's median steps/s and the ratios of those medians."""
    m = {kind: median(r[kind]) for kind in KINDS}
    outside = 1.0 - median(r["native_tool_share"])
    return (f"| {n} | {m['native']:.0f} | {m['sync']:.0f} | {m['async']:.0f} | {m['sync_fp32']:.0f} "
            f"| {m['native'] / m['sync']:.2f}x | {m['native'] / m['async']:.2f}x | {m['native'] / m['sync_fp32']:.2f}x "
            f"| {100 * outside:.0f}% |")


def _targets(at: dict[str, list[float]] | None, device: str) -> list[Target]:
    """The environment issue's targets at :data:`TARGET_ENVS` envs (none when not measured)."""
    if at is None:
        return []
    ratio = median(at["native"]) / median(at["sync"])
    over_fp32 = median(at["native"]) / median(at["sync_fp32"])
    outside = 1.0 - median(at["native_tool_share"])
    on_gpu = device.startswith("cuda")
    bf16_name = (f"native env (precision auto) at least {TARGET_AUTO_OVER_FP32:g}x SyncVectorEnv over fp32 envs at "
                 f"{TARGET_ENVS} envs (CPU with native bf16)")
    return [
        Target(f"native env step time outside tool inference under 25% at {TARGET_ENVS} envs",
               f"{100 * outside:.0f}%", outside < 0.25),
        Target(f"native env at least 1.5x SyncVectorEnv at {TARGET_ENVS} envs (CPU)", f"{ratio:.2f}x",
               None if on_gpu else ratio >= 1.5),
        Target(f"native env at least 20x SyncVectorEnv at {TARGET_ENVS} envs (GPU)",
               f"{ratio:.2f}x" if on_gpu else "no GPU here", ratio >= 20 if on_gpu else None),
        Target(bf16_name, f"{over_fp32:.2f}x (n/a on a GPU)", None) if on_gpu
        else bf16_target(bf16_name, over_fp32, TARGET_AUTO_OVER_FP32, device),
    ]


def run(quick: bool = False, device: str = "cpu", figures: Path | None = None, **overrides) -> Section:
    """The four env types at each number of envs; the targets at 32 envs."""
    p = {**(QUICK if quick else FULL), **overrides}
    device = resolve_device(device)
    start = time.perf_counter()
    raw = {str(n): measure(n, p["seconds"], p["repeats"], device) for n in p["num_envs"]}
    text = (f"Random actions; median of {p['repeats']} windows of {p['seconds']} s per env type, interleaved. "
            f"Native, Sync and Async at precision \"auto\" ({auto_choice(device)}); Sync fp32 over single envs made "
            "with precision=\"fp32\". Ratios are native / other, from the medians in the same row.\n\n"
            "| envs | native steps/s | SyncVectorEnv steps/s | AsyncVectorEnv steps/s | SyncVectorEnv fp32 steps/s "
            "| native / Sync | native / Async | native (auto) / Sync fp32 | native step time outside tools |\n"
            "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(_row(n, r) for n, r in raw.items()))
    return Section("Environment throughput", text, {"params": p, "device": device, "precision_auto": auto_choice(device),
                                                    "by_envs": raw}, [], _targets(raw.get(str(TARGET_ENVS)), device),
                   time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    run_alone(run, __doc__, QUICK, FULL, argv, ("num_envs",))

if __name__ == "__main__":
    main()
