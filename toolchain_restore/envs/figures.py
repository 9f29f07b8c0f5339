"""Pictures of toolchains: each restoration as a row of input, every step and the clean image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..data.tensors import to_uint8
from .episode import action_name
from .toolchain import run_policy
from ..metrics import batch_psnr
from ..tools import Toolbox

__all__ = ["ChainTrace", "toolchain_figure", "trace_policy", "chain_text"]


@dataclass
class ChainTrace:
    """One restoration step by step."""

    title: str
    """Shown above the input (e.g. the image name and severity)."""
    chain: list[int]
    """Tools applied, 0..11."""
    steps: list[np.ndarray]
    """H x W x 3 uint8 images: the input, then the image after each tool of ``chain``."""
    psnrs: list[float]
    """PSNR of each image of ``steps`` against the clean image."""
    clean: np.ndarray | None = None
    """The ground truth, H x W x 3 uint8 (shown last when given)."""


def chain_text(chain: Sequence[int]) -> str:
    """The tools of a chain by name, in order."""
    return " > ".join(action_name(a) for a in chain) or "(none)"


def toolchain_figure(traces: Sequence[ChainTrace], max_steps: int, tile: int = 160) -> Image.Image:
    """A grid, one row per trace: input, step 1..max_steps (blank after a stop), clean;
    the tool and the PSNR under every picture."""
    label_h, gap = 26, 4
    cols = max_steps + 2
    canvas = Image.new("RGB", (cols * (tile + gap), max(1, len(traces)) * (tile + label_h + gap)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, trace in enumerate(traces):
        y = r * (tile + label_h + gap)
        cells = [(trace.steps[0], trace.title, f"input {trace.psnrs[0]:.2f} dB")]
        for k in range(1, max_steps + 1):
            if k < len(trace.steps):
                cells.append((trace.steps[k], f"step {k}: {action_name(trace.chain[k - 1])}", f"{trace.psnrs[k]:.2f} dB"))
            else:
                cells.append((None, f"step {k}: stopped" if k == len(trace.steps) else "", ""))
        cells.append((trace.clean, "clean" if trace.clean is not None else "", ""))
        for c, (image, top_text, bottom_text) in enumerate(cells):
            x = c * (tile + gap)
            if image is not None:
                canvas.paste(Image.fromarray(image).resize((tile, tile), Image.BICUBIC), (x, y))
            draw.text((x + 2, y + tile + 1), top_text, fill=(0, 0, 0))
            draw.text((x + 2, y + tile + 13), bottom_text, fill=(0, 0, 0))
    return canvas


@torch.no_grad()
def trace_policy(policy: Any, toolbox: Toolbox, L: torch.Tensor, H: torch.Tensor, max_steps: int = 3) -> list[ChainTrace]:
    """The policy's greedy episodes on the rows of ``L``, recorded step by step."""

    states: list[torch.Tensor] = []
    _, chains, _ = run_policy(policy, toolbox, L, max_steps, trace=states)
    psnrs = torch.stack([batch_psnr(s, H) for s in states], dim=1).cpu().numpy()
    images = [to_uint8(s).transpose(0, 2, 3, 1) for s in states]
    clean = to_uint8(H).transpose(0, 2, 3, 1)
    traces = []
    for n, chain in enumerate(chains):
        kept = len(chain) + 1  # a row's state stops changing once it stopped
        traces.append(ChainTrace(f"patch {n}", list(chain),
                                 [images[k][n] for k in range(kept)], psnrs[n, :kept].tolist(), clean[n]))
    return traces
