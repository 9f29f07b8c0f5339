"""The main job on the embedded default: degrade held-out images at three severities and
restore each with the best greedy toolchain of the shipped toolbox."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .agents import greedy_toolchain
from .data import image_set
from .data.tensors import to_tensor, to_uint8
from .degrade import degrade
from .envs.episode import action_name
from .tools import load_toolbox
from .training import resolve_device, settings_markdown

__all__ = ["DemoSettings", "DemoRow", "run_demo"]


@dataclass
class DemoSettings:
    """Settings of ``toolchain-restore demo``."""

    out_dir: str = "runs/demo"
    """Where the figure, the table and the TensorBoard logs go."""
    data: str | None = None
    """Folder of clean images; None = the embedded default's held-out (test) images."""
    levels: list[str] = field(default_factory=lambda: ["mild", "moderate", "severe"])
    """Severities to degrade at."""
    size: int = 256
    """Side of the centre crop taken of each image (0 = whole image)."""
    max_images: int = 4
    """Use at most this many held-out images."""
    max_steps: int = 3
    """Longest toolchain."""
    toolbox: str | None = None
    """Toolbox file; None = the shipped one."""
    seed: int = 0
    """Seed of the degradations."""
    device: str = "auto"
    """auto, cpu or cuda."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class DemoRow:
    image: str
    level: str
    input_psnr: float
    restored_psnr: float
    chain: list[int]
    macs: int
    steps: list[np.ndarray]
    psnrs: list[float]
    clean: np.ndarray


def _centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    if size <= 0:
        return image
    h, w = image.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return image[top : top + size, left : left + size]


def chain_text(chain: list[int]) -> str:
    return " > ".join(action_name(a) for a in chain) or "(none)"


def figure(rows: list[DemoRow], max_steps: int, tile: int = 160) -> Image.Image:
    """A grid: one row per (image, level): input, each step, clean, with PSNR under each."""
    label_h, gap = 26, 4
    cols = max_steps + 2
    canvas = Image.new("RGB", (cols * (tile + gap), len(rows) * (tile + label_h + gap)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        y = r * (tile + label_h + gap)
        cells = [(row.steps[0], f"{row.image} {row.level}", f"input {row.psnrs[0]:.2f} dB")]
        for k in range(1, max_steps + 1):
            if k < len(row.steps):
                cells.append((row.steps[k], f"step {k}: {action_name(row.chain[k - 1])}", f"{row.psnrs[k]:.2f} dB"))
            else:
                cells.append((None, f"step {k}: stopped", ""))
        cells.append((row.clean, "clean", ""))
        for c, (img, top_text, bottom_text) in enumerate(cells):
            x = c * (tile + gap)
            if img is not None:
                canvas.paste(Image.fromarray(img).resize((tile, tile), Image.BICUBIC), (x, y))
            draw.text((x + 2, y + tile + 1), top_text, fill=(0, 0, 0))
            draw.text((x + 2, y + tile + 13), bottom_text, fill=(0, 0, 0))
    return canvas


def run_demo(settings: DemoSettings) -> list[DemoRow]:
    """Run the demo; print the table and write ``toolchains.png``, ``results.md`` and TensorBoard logs."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    start = time.perf_counter()
    device = resolve_device(settings.device)
    toolbox = load_toolbox(settings.toolbox, device)
    images = image_set(settings.data, "test")
    indices = list(range(min(settings.max_images, len(images))))
    out_dir = Path(settings.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    rows: list[DemoRow] = []
    jobs = [(i, level) for i in indices for level in settings.levels]
    for k, (i, level) in enumerate(tqdm(jobs, desc="demo", disable=not settings.progress)):
        clean = images.get(i)
        if clean is None:
            continue
        clean = _centre_crop(clean, settings.size)
        degraded, _ = degrade(clean, level, np.random.default_rng([settings.seed, i, k]))
        H, L = to_tensor([clean], device), to_tensor([degraded], device)
        result = greedy_toolchain(toolbox, L, H, settings.max_steps)
        chain = result.toolchains[0]
        macs = sum(toolbox.macs(a, *clean.shape[:2]) for a in chain)
        steps = [degraded] + [to_uint8(s)[0].transpose(1, 2, 0) for s in result.steps[1 : len(chain) + 1]]
        rows.append(
            DemoRow(images.paths[i].name, level, result.psnrs[0][0], result.psnrs[0][-1], chain, macs, steps, result.psnrs[0], clean)
        )

    lines = [
        "| image | level | input PSNR (dB) | restored PSNR (dB) | toolchain | multiply-adds (G) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.image} | {row.level} | {row.input_psnr:.2f} | {row.restored_psnr:.2f} | "
            f"{chain_text(row.chain)} | {row.macs / 1e9:.2f} |"
        )
    summary = ["", "| level | mean input PSNR | mean restored PSNR | mean gain | mean multiply-adds (G) |", "|---|---|---|---|---|"]
    writer = SummaryWriter(str(out_dir))
    for s, level in enumerate(settings.levels):
        sel = [r for r in rows if r.level == level]
        if not sel:
            continue
        inp = float(np.mean([r.input_psnr for r in sel]))
        out = float(np.mean([r.restored_psnr for r in sel]))
        macs = float(np.mean([r.macs for r in sel]))
        summary.append(f"| {level} | {inp:.2f} | {out:.2f} | {out - inp:+.2f} | {macs / 1e9:.2f} |")
        writer.add_scalar("demo/input_psnr", inp, s)
        writer.add_scalar("demo/restored_psnr", out, s)
        writer.add_scalar(f"demo/{level}/gain", out - inp, 0)
    table = "\n".join(lines + summary)
    fig = figure(rows, settings.max_steps)
    fig.save(out_dir / "toolchains.png")
    writer.add_image("demo/toolchains", np.asarray(fig), 0, dataformats="HWC")
    writer.add_text("demo/results", table, 0)
    writer.add_text("settings", settings_markdown(settings), 0)
    writer.close()
    crop = f"{settings.size}x{settings.size} centre crops" if settings.size > 0 else "whole images"
    header = (
        f"Greedy toolchains (tool chosen with the ground truth at each step, stop when none helps) "
        f"on {len(indices)} held-out images ({crop}), seed {settings.seed}."
    )
    (out_dir / "results.md").write_text(header + "\n\n" + table + "\n")
    print(header)
    print(table)
    print(f"\nwrote {out_dir / 'toolchains.png'}, {out_dir / 'results.md'} and TensorBoard logs in {out_dir} "
          f"({time.perf_counter() - start:.0f} s)")
    return rows
