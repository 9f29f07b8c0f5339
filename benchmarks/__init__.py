"""Benchmarks: scripts that measure and report (not tests).

``python -m benchmarks [--quick]`` runs every benchmark and writes one report,
``benchmarks/results/<machine>-<date>.md`` (see ``benchmarks/__main__.py``). Each module
also runs alone (``python -m benchmarks.env_throughput``) and prints its section.

Every module has ``run(quick, device, figures) -> Section``: it measures, repeats each
timing and keeps the median, and puts every figure it measured in ``Section.raw`` so that
the report's ratios can be recomputed from the raw numbers printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from toolchain_restore import runtime

__all__ = ["Section", "Target", "machine", "machine_slug", "machine_line", "median", "seconds", "print_section",
           "resolve_device", "read_scalars", "timed_tool_inference", "run_alone", "native_bf16", "auto_choice",
           "bf16_target"]


@dataclass
class Target:
    """One target of the benchmarks issue and whether this run met it."""

    name: str
    measured: str
    met: bool | None
    """None where the target does not apply on this machine (a GPU target on a CPU)."""


@dataclass
class Section:
    """One benchmark's part of the report."""

    title: str
    text: str
    """Markdown: what was measured and how, then the tables."""
    raw: dict[str, Any]
    """Every measured figure (each repeat, before the median), JSON-serialisable."""
    figures: list[str] = field(default_factory=list)
    """PNG file names, relative to the report's figure folder."""
    targets: list[Target] = field(default_factory=list)
    seconds: float = 0.0
    """Wall time of the whole benchmark."""


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when there is a GPU, else 'cpu'."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def machine(device: str = "cpu") -> dict[str, Any]:
    """What the benchmarks ran on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "cpu": runtime.cpu_model(),
        "cores": cores,
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(_memory_gib() or 0.0, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    info["precision_auto"] = auto_choice(device)
    info["cpu_capability"] = runtime.cpu_description()
    native, why = native_bf16(device)
    info["native_bf16"] = f"{'yes' if native else 'no'}: {why}"
    return info


def machine_slug(info: dict[str, Any]) -> str:
    """A file-name-safe name of the machine: its GPU, else its CPU, and the core count."""
    name = info.get("gpu") or info["cpu"]
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"{slug}-{info['cores']}cores"


def machine_line(device: str) -> str:
    """The machine in one line, first line of every benchmark's printout."""
    info = machine(device)
    gpu = f" ({info['gpu']})" if "gpu" in info else ""
    return (f"machine: {info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads, "
            f"{info['memory_gib']} GiB, torch {info['torch']}, device {device}{gpu}; "
            f"precision auto -> {info['precision_auto']}; CPU: {info['cpu_capability']}")


def auto_choice(device: str) -> str:
    """What precision "auto" resolves to on ``device`` in this process, and why (the
    benchmarks measure "auto" as a user gets it, TOOLCHAIN_RESTORE_PRECISION included, and say so)."""
    return str(runtime.auto_precision(device))


def native_bf16(device: str) -> tuple[bool, str]:
    """Whether ``device`` computes bfloat16 natively (the bf16 targets apply only there), and why.

    A CPU needs one of ``runtime.BF16_CPU_FLAGS`` (without them oneDNN emulates bf16, slower
    than float32); a GPU, compute capability 8.0 or newer."""
    if device.startswith("cuda"):
        major, minor = torch.cuda.get_device_capability(torch.device(device))
        return major >= 8, f"CUDA compute capability {major}.{minor}"
    flags = runtime.cpu_flags()
    if flags is None:
        return False, "the CPU flags cannot be read"
    found = [f for f in runtime.BF16_CPU_FLAGS if f in flags]
    if found:
        return True, "CPU flags " + ", ".join(found)
    return False, f"the CPU has none of the flags {', '.join(runtime.BF16_CPU_FLAGS)}: bf16 is emulated"


def bf16_target(name: str, ratio: float | None, at_least: float, device: str, unit: str = "x") -> Target:
    """A bf16 target: judged (``ratio >= at_least``) where ``device`` has native bf16, else n/a
    (``met`` None) with the ratio still reported; ``ratio`` None: not measured in this run."""
    native, why = native_bf16(device)
    if ratio is None:
        return Target(name, "not measured in this run" + ("" if native else f" (n/a: {why})"), None)
    shown = f"{100 * ratio:.0f}%" if unit == "%" else f"{ratio:.2f}x"
    if not native:
        return Target(name, f"{shown} (n/a: {why})", None)
    return Target(name, shown, ratio >= at_least)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def seconds(run: Callable[[], object]) -> float:
    """Wall time of one call."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def read_scalars(run_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """Every TensorBoard scalar a run wrote: tag -> [(step, value), ...] in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@contextmanager
def timed_tool_inference():
    """Adds up the seconds of the tools' forward passes (``Toolbox.forward``, which the
    toolchain core calls once per chosen tool) inside the native vector env's ``step``
    (``spent["tools"]``) and of that ``step`` itself (``spent["env_step"]``), for as long as
    the context lasts."""
    from toolchain_restore.envs.vector import ToolchainRestoreVectorEnv
    from toolchain_restore.tools import Toolbox

    spent = {"tools": 0.0, "env_step": 0.0}
    apply, step = Toolbox.forward, ToolchainRestoreVectorEnv.step
    inside = [False]

    def timed_apply(self, *args, **kwargs):
        if not inside[0]:
            return apply(self, *args, **kwargs)
        start = time.perf_counter()
        try:
            return apply(self, *args, **kwargs)
        finally:
            spent["tools"] += time.perf_counter() - start

    def timed_step(self, *args, **kwargs):
        inside[0] = True
        start = time.perf_counter()
        try:
            return step(self, *args, **kwargs)
        finally:
            inside[0] = False
            spent["env_step"] += time.perf_counter() - start

    Toolbox.forward, ToolchainRestoreVectorEnv.step = timed_apply, timed_step
    try:
        yield spent
    finally:
        Toolbox.forward, ToolchainRestoreVectorEnv.step = apply, step


def print_section(section: Section) -> None:
    """A benchmark run alone prints its section: the machine, the text, the targets."""
    print(f"## {section.title}\n\n{section.text}\n")
    for t in section.targets:
        print(f"- target: {t.name}: {t.measured} ({'met' if t.met else 'not met' if t.met is False else 'n/a'})")
    print("\nraw: " + json.dumps(section.raw))


def run_alone(run: Callable[..., Section], doc: str, quick: dict[str, Any], full: dict[str, Any],
              argv: list[str] | None = None, overrides: tuple[str, ...] = (), extra: dict[str, str] | None = None) -> None:
    """The command line of one benchmark run alone (``python -m benchmarks.<name>``): --quick,
    --device, --figures, a flag for each budget entry named in ``overrides`` (typed from
    ``full``), and ``extra`` string options passed to ``run`` by name; prints the section."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{quick} instead of {full}")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--figures", type=Path, help="folder for the section's PNG plots")
    for name in overrides:
        default = full[name]
        if isinstance(default, list):
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(default[0]), nargs="+")
        else:
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(default))
    for name, default in (extra or {}).items():
        parser.add_argument(f"--{name.replace('_', '-')}", default=default)
    args = vars(parser.parse_args(argv))
    budget = {name: args[name] for name in overrides if args[name] is not None}
    options = {name: args[name] for name in (extra or {})}
    print(machine_line(resolve_device(args["device"])))
    print_section(run(args["quick"], args["device"], args["figures"], **options, **budget))
