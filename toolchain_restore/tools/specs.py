"""What each of the 12 tools is for: distortion type, band and size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ToolSpec", "TOOL_SPECS", "NUM_TOOLS", "MACS_PER_PIXEL", "PARAMETERS"]

Distortion = Literal["blur", "noise", "jpeg"]
ToolSize = Literal["small", "large"]

MACS_PER_PIXEL: dict[str, int] = {"small": 21_776, "large": 50_560}
PARAMETERS: dict[str, int] = {"small": 21_827, "large": 50_851}


@dataclass(frozen=True)
class ToolSpec:
    """One tool of the toolbox."""

    index: int
    """Position in the toolbox, 0..11 (the paper's tool ``index + 1``)."""
    distortion: Distortion
    """The distortion it removes."""
    band: tuple[float, float]
    """The band it is trained on, (lighter, heavier): blur std, noise std (0-255) or JPEG quality."""
    size: ToolSize
    """Architecture: small (3 conv) or large (8 conv with 2 residual blocks)."""

    @property
    def name(self) -> str:
        return f"{self.distortion}{self.index % 4 + 1}"

    @property
    def mid(self) -> float:
        """The middle of the band, where the shipped tools are evaluated."""
        return 0.5 * (self.band[0] + self.band[1])

    @property
    def macs_per_pixel(self) -> int:
        return MACS_PER_PIXEL[self.size]

    def describe(self) -> str:
        unit = {"blur": "blur std", "noise": "noise std", "jpeg": "JPEG quality"}[self.distortion]
        return f"tool {self.index + 1:2d} ({self.name}, {self.size}): {unit} {self.band[0]:g}..{self.band[1]:g}"


def _specs() -> tuple[ToolSpec, ...]:
    bands = {
        "blur": [(0.0, 1.25), (1.25, 2.5), (2.5, 3.75), (3.75, 5.0)],
        "noise": [(0.0, 12.5), (12.5, 25.0), (25.0, 37.5), (37.5, 50.0)],
        "jpeg": [(100.0, 60.0), (60.0, 35.0), (35.0, 20.0), (20.0, 10.0)],
    }
    specs = []
    for t, distortion in enumerate(("blur", "noise", "jpeg")):
        for j, band in enumerate(bands[distortion]):
            specs.append(ToolSpec(4 * t + j, distortion, band, "small" if j < 2 else "large"))
    return tuple(specs)


TOOL_SPECS: tuple[ToolSpec, ...] = _specs()
NUM_TOOLS = len(TOOL_SPECS)
