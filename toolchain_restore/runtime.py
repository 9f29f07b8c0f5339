"""Where the networks run: device and arithmetic precision, resolved once for every job.

Precision is the one run-time choice of how the networks compute:

- ``"fp32"``: float32 everywhere;
- ``"bf16"``: convolutions and matrix products under ``torch.autocast`` in bfloat16 (CPU or CUDA);
- ``"fp16"``: the same in float16, CUDA only;
- ``"auto"`` (the default everywhere): bf16 where this machine runs it faster than float32,
  float32 otherwise. Decided once per process and device (see :func:`auto_precision`).

Only the networks' arithmetic changes: images, episode states, rewards and PSNR stay
float32, and every network returns float32. Weight files are not touched.
"""

from __future__ import annotations

import contextlib
import copy
import os
import platform
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, Literal

import torch

from .errors import InvalidInput, Unavailable

__all__ = [
    "Precision",
    "PRECISIONS",
    "PRECISION_ENV",
    "PrecisionChoice",
    "resolve_device",
    "check_precision",
    "check_module_precision",
    "resolve_precision",
    "auto_precision",
    "compute_dtype",
    "autocast",
    "module_autocast",
    "cpu_model",
    "cpu_description",
    "precision_summary",
    "PrecisionMixin",
]

Precision = Literal["auto", "fp32", "bf16", "fp16"]
"""The type of every ``precision`` setting."""
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
PRECISION_ENV = "TOOLCHAIN_RESTORE_PRECISION"
"""When set to fp32, bf16 or fp16, ``"auto"`` means that precision (the test suite pins fp32 this way)."""
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")
"""CPU flags of native bfloat16 arithmetic (x86's two, Arm's ``bf16``); without them oneDNN
emulates bf16, slower than float32."""
MIN_SPEEDUP = 1.15
"""``auto`` takes bf16 on a CPU only when its measured convolution is at least this much faster."""


@dataclass(frozen=True)
class PrecisionChoice:
    """What a precision setting resolved to on one device, and why."""

    precision: str
    """'fp32', 'bf16' or 'fp16'."""
    reason: str
    """One line: why (the user's choice, or what ``auto`` saw or measured)."""

    def __str__(self) -> str:
        return f"{self.precision} ({self.reason})"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' is CUDA when this machine has it, else the CPU; an explicit CUDA device must exist.

    Raises:
        InvalidInput: not a device name (--device takes auto, cpu, cuda or cuda:N).
        Unavailable: a CUDA device this machine does not have.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InvalidInput(f"--device {device!r}: expected auto, cpu, cuda or cuda:N ({err})") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise Unavailable(f"--device {device}: this machine has no CUDA device (use --device auto or cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise Unavailable(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return device


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ValueError naming the choices."""
    if precision not in PRECISIONS:
        raise InvalidInput(f"--precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


def check_module_precision(precision: str | None) -> str | None:
    """A network's own precision: None (the caller's context) or one of :data:`PRECISIONS`."""
    return None if precision is None else check_precision(precision)


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> PrecisionChoice:
    """The concrete precision of ``precision`` on ``device``: 'auto' decided, the others checked."""
    check_precision(precision)
    device = torch.device(device)
    if precision == "auto":
        return auto_precision(device)
    if precision == "fp16" and device.type != "cuda":
        raise InvalidInput(f"--precision fp16 needs a CUDA device (this run is on {device}); use bf16 or fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InvalidInput(f"--precision bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16 or fp32")
    return PrecisionChoice(precision, "asked for")


def auto_precision(device: str | torch.device = "cpu") -> PrecisionChoice:
    """What ``"auto"`` means on ``device`` in this process.

    - :data:`PRECISION_ENV` set: that precision.
    - CPU: float32 when the CPU's flags show no native bf16 instructions (bf16 would be
      emulated; reading the flags is reliable there). Where it has them, a short measurement
      (a tool-sized convolution in both precisions, about 0.1 s) decides, because whether
      bf16 pays depends on the chip: bf16 when it is at least 1.15x faster.
    - CUDA: bf16 on compute capability 8.0 and newer (bf16 tensor cores), else float32.
    """
    forced = os.environ.get(PRECISION_ENV, "").strip()
    if forced:
        if forced == "auto" or forced not in PRECISIONS:
            raise ValueError(f"{PRECISION_ENV} must be fp32, bf16 or fp16; got {forced!r}")
        choice = resolve_precision(forced, device)
        return PrecisionChoice(choice.precision, f"set by {PRECISION_ENV}")
    device = torch.device(device)
    if device.type == "cuda":
        return _auto_cuda(device.index if device.index is not None else torch.cuda.current_device())
    return _auto_cpu()


@lru_cache(maxsize=None)
def _auto_cuda(index: int) -> PrecisionChoice:
    major, minor = torch.cuda.get_device_capability(index)
    if major >= 8 and torch.cuda.is_bf16_supported():
        return PrecisionChoice("bf16", f"CUDA compute capability {major}.{minor} has bf16 tensor cores")
    return PrecisionChoice("fp32", f"CUDA compute capability {major}.{minor} has no bf16 tensor cores")


@lru_cache(maxsize=None)
def _auto_cpu() -> PrecisionChoice:
    flags = cpu_flags()
    if flags is not None and not any(f in flags for f in BF16_CPU_FLAGS):
        return PrecisionChoice("fp32", "the CPU has no native bf16 instructions (no amx_bf16, avx512_bf16 or bf16 flag)")
    speedup = measure_bf16_speedup()
    verdict = "bf16" if speedup >= MIN_SPEEDUP else "fp32"
    return PrecisionChoice(verdict, f"a bf16 convolution measured {speedup:.2f}x as fast as float32 "
                                    f"({'at least' if verdict == 'bf16' else 'below'} {MIN_SPEEDUP}x)")


def measure_bf16_speedup(repeats: int = 5) -> float:
    """float32 time over bf16-autocast time of one 64-channel 3x3 convolution on 8 channels-last
    32x32 images (the shape of the large tools' layers), best of ``repeats`` interleaved rounds."""
    generator = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.rand(8, 64, 32, 32, generator=generator).contiguous(memory_format=torch.channels_last)
    best = {False: float("inf"), True: float("inf")}
    with torch.no_grad():
        for round_ in range(repeats + 1):
            for bf16 in (False, True):
                start = time.perf_counter()
                for _ in range(3):
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        conv(x)
                if round_:  # the first round only warms oneDNN's kernels up
                    best[bf16] = min(best[bf16], time.perf_counter() - start)
    return best[False] / best[True]


def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (None where that cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        return model


def cpu_description() -> str:
    """The CPU's model, torch's CPU capability and its bf16 flags, for logs and reports."""
    model = cpu_model()
    flags = cpu_flags()
    native = "unknown" if flags is None else (", ".join(f for f in BF16_CPU_FLAGS if f in flags) or "none")
    return (f"{model}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}; "
            f"native bf16 flags: {native}; {torch.get_num_threads()} threads")


def precision_summary(precision: str, device: str | torch.device) -> str:
    """One line for logs and reports: what ``precision`` resolved to on ``device`` and why."""
    device = torch.device(device)
    choice = resolve_precision(precision, device)
    where = cpu_description() if device.type == "cpu" else torch.cuda.get_device_name(device)
    return f"precision {precision} -> {choice} on {device} [{where}]"


def compute_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a concrete precision (None for float32)."""
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(precision: str, device: str | torch.device) -> contextlib.AbstractContextManager:
    """A context in which the networks compute at ``precision`` on ``device``. 'fp32' switches
    autocast off (even inside an outer autocast region)."""
    device = torch.device(device)
    dtype = compute_dtype(resolve_precision(precision, device).precision)
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def module_autocast(precision: str | None, device: torch.device) -> Iterator[None]:
    """A network's own precision around its forward pass; ``None`` leaves the caller's context as is."""
    if precision is None:
        yield
        return
    with autocast(precision, device):
        yield


class PrecisionMixin:
    """For a network (an ``nn.Module``) that carries its own precision.

    ``precision`` None (a new network's default) computes in whatever context the caller
    sets, as a plain module does (the trainer's autocast while training); 'auto', 'fp32',
    'bf16' or 'fp16' make every forward pass compute at that precision. The loaders
    (``load_toolbox``, ``load_agent``, ``load_baseline``) give 'auto' unless told otherwise.
    """

    precision: str | None = None

    def with_precision(self, precision: str | None):
        """This network computing at ``precision``: the same parameters (not a copy of them),
        so training or moving one moves both; itself when the precision is already that."""
        precision = check_module_precision(precision)
        if precision == self.precision:
            return self
        other = copy.copy(self)  # shallow: the parameter and submodule dicts are shared
        other.precision = precision
        return other
