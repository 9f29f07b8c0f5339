"""Benchmarks: scripts that measure and report (not tests)."""

import platform

import torch


def machine_line(device: str) -> str:
    """The machine a benchmark ran on, as every report's first line."""
    return (f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, device {device}")
