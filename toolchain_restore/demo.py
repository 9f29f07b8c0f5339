from dataclasses import dataclass


@dataclass
class DemoSettings:
    """Placeholder until written."""

    out_dir: str = "runs/demo"
    """Where to write."""


def run_demo(settings):
    raise NotImplementedError
