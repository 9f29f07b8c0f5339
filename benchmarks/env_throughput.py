"""Steps per second of the native batched ToolchainRestore-v0 against Gymnasium's
SyncVectorEnv over single envs, in the same run, at several numbers of envs.

    python -m benchmarks.env_throughput [--num-envs 8 32 128] [--seconds 5] [--repeats 3]

Every figure is the median over ``--repeats`` timed windows; the ratio compares the two
medians of the same run. "outside tools" is the share of the native env's step time not
spent in tool inference (Toolbox.apply), measured by timing that call.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np

from benchmarks import machine_line
import toolchain_restore  # noqa: F401  (registers the env)
from toolchain_restore.envs import ToolchainRestoreEnv


class TimedApply:
    """Wraps Toolbox.apply to add up the time spent in it."""

    def __init__(self, toolbox):
        self.inner = toolbox.apply
        self.seconds = 0.0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def steps_per_second(envs, num_envs: int, seconds: float, rng: np.random.Generator, timer: TimedApply | None = None):
    """Env steps (summed over sub-envs) per second of random actions, and the tool-inference share."""
    envs.step(rng.integers(0, 13, num_envs))  # warm-up
    if timer:
        timer.seconds = 0.0
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        envs.step(rng.integers(0, 13, num_envs))
        steps += num_envs
    elapsed = time.perf_counter() - start
    return steps / elapsed, (timer.seconds / elapsed if timer else float("nan"))


def measure(num_envs: int, seconds: float, repeats: int, device: str) -> dict[str, float]:
    rng = np.random.default_rng(0)
    native = gym.make_vec("ToolchainRestore-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", device=device)
    timer = TimedApply(native.toolbox)
    native.toolbox.apply = timer
    sync = gym.vector.SyncVectorEnv([lambda: ToolchainRestoreEnv(device=device) for _ in range(num_envs)])
    native.reset(seed=0)
    sync.reset(seed=0)
    native_runs, sync_runs, tool_shares = [], [], []
    for _ in range(repeats):  # interleaved, so both see the same machine load
        sps, share = steps_per_second(native, num_envs, seconds, rng, timer)
        native_runs.append(sps)
        tool_shares.append(share)
        sync_runs.append(steps_per_second(sync, num_envs, seconds, rng)[0])
    native.close()
    sync.close()
    n, s = statistics.median(native_runs), statistics.median(sync_runs)
    return {"native": n, "sync": s, "ratio": n / s, "outside_tools": 1.0 - statistics.median(tool_shares)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one timed window")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per env type (median)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both envs use it)")
    args = parser.parse_args(argv)
    print(machine_line(args.device))
    print("| envs | native steps/s | SyncVectorEnv steps/s | ratio | native step time outside tools |")
    print("|---|---|---|---|---|")
    for n in args.num_envs:
        r = measure(n, args.seconds, args.repeats, args.device)
        print(f"| {n} | {r['native']:.0f} | {r['sync']:.0f} | {r['ratio']:.2f}x | {100 * r['outside_tools']:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
