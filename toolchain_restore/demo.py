"""The main job on the embedded default: the shipped agent against the baselines.

Two parts, both on held-out images the agent and the tools never saw:

1. The paper's Table 3 protocol on held-out 63x63 patches at each severity: the agent,
   the random policy, the best fixed chain, the greedy oracle and the shipped DnCNN- and
   VDSR-style CNNs, with PSNR, SSIM and multiply-adds per patch.
2. Whole images (centre crops) degraded at each severity and restored by the agent in
   both whole-image modes: "vote" (the official one, one chain for the image) and "blend"
   (a chain per overlapping patch). The figure shows the vote chains step by step.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .agents import load_agent
from .config import AgentSelection, CleanImages, RunSettings, ToolchainSettings
from .data import image_set
from .data.corpus import AUTO_DATA, held_out_data
from .degrade import degrade
from .envs.figures import ChainTrace, chain_text, toolchain_figure
from .evaluation.protocol import MethodResult, evaluate
from .evaluation.report import markdown_report, plot_report
from .evaluation.run import EvaluationSettings, build_methods, chained_toolbox, open_report_writer
from .envs.held_out import EVALUATION_SEED, HeldOutSet, held_out_set
from .metrics import psnr
from .restore import restore
from .tools import load_toolbox
from .runtime import resolve_device

__all__ = ["DemoSettings", "DemoRow", "DemoReport", "run_demo"]


@dataclass
class DemoSettings(RunSettings, AgentSelection, ToolchainSettings, CleanImages):
    """Settings of ``toolchain-restore demo``: the seed draws the whole-image degradations
    (the patch sets use the project's evaluation seed); --data's test split is held out."""

    out_dir: str = "runs/demo"
    """Where the figures, the tables and the TensorBoard logs go."""
    data: str | None = AUTO_DATA
    """Folder of clean images whose test split is held out; 'auto' = the photo corpus (runs/corpus, or $TOOLCHAIN_RESTORE_CORPUS) when it is built, else the embedded default; none = the embedded default."""
    levels: list[str] = field(default_factory=lambda: ["mild", "moderate", "severe"])
    """Severities to degrade at."""
    patches: int = 128
    """Held-out 63x63 patches per severity for the method table (0 skips the table)."""
    methods: list[str] = field(default_factory=lambda: ["input", "agent", "random", "fixed", "greedy", "baselines"])
    """Methods of the patch table (see ``toolchain-restore evaluate --help``)."""
    size: int = 256
    """Side of the centre crop taken of each whole image (0 = the whole image)."""
    max_images: int = 4
    """Restore at most this many held-out whole images."""
    baselines: list[str] = field(default_factory=list)
    """CNN baseline files; none given = the shipped DnCNN- and VDSR-style networks."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class DemoRow:
    """One whole image at one severity, restored by the agent in both modes."""

    image: str
    level: str
    input_psnr: float
    vote_psnr: float
    blend_psnr: float
    chain: list[int]
    """The vote mode's chain (tools 0..11)."""
    vote_macs: int
    blend_macs: int
    blend_chain_length: float
    trace: ChainTrace = field(repr=False)


@dataclass
class DemoReport:
    patch_results: list[MethodResult]
    rows: list[DemoRow]


def _centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    if size <= 0:
        return image
    h, w = image.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return image[top : top + size, left : left + size]


def _whole_images(s: DemoSettings, agent, toolbox, device) -> list[DemoRow]:
    from tqdm.auto import tqdm

    images = image_set(s.data, "test")
    jobs = [(i, level) for i in range(min(s.max_images, len(images))) for level in s.levels]
    rows = []
    for k, (i, level) in enumerate(tqdm(jobs, desc="whole images", disable=not s.progress)):
        clean = images.get(i)
        if clean is None:  # unreadable: ImageSet already said which file
            continue
        clean = _centre_crop(clean, s.size)
        degraded, _ = degrade(clean, level, np.random.default_rng([s.seed, i, k]))
        vote = restore(degraded, "vote", agent, toolbox, s.max_steps, device, progress=False, keep_steps=True,
                       precision=s.precision)
        blend = restore(degraded, "blend", agent, toolbox, s.max_steps, device, progress=False, precision=s.precision)
        name = images.paths[i].name
        trace = ChainTrace(f"{name} {level}", vote.chain, vote.steps, [psnr(x, clean) for x in vote.steps], clean)
        rows.append(DemoRow(name, level, psnr(degraded, clean), psnr(vote.image, clean), psnr(blend.image, clean),
                            vote.chain, vote.macs, blend.macs, float(np.mean([len(c) for c in blend.chains])), trace))
    return rows


def _whole_image_tables(rows: list[DemoRow], levels: list[str]) -> str:
    lines = ["| image | level | input PSNR | vote PSNR | blend PSNR | vote toolchain | vote / blend multiply-adds (G) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.image} | {r.level} | {r.input_psnr:.2f} | {r.vote_psnr:.2f} | {r.blend_psnr:.2f} | "
                     f"{chain_text(r.chain)} | {r.vote_macs / 1e9:.2f} / {r.blend_macs / 1e9:.2f} |")
    lines += ["", "| level | mean input PSNR | mean vote PSNR | mean blend PSNR | vote gain | blend gain |",
              "|---|---|---|---|---|---|"]
    for level in levels:
        sel = [r for r in rows if r.level == level]
        if sel:
            inp, vote, blend = (float(np.mean([getattr(r, a) for r in sel])) for a in ("input_psnr", "vote_psnr", "blend_psnr"))
            lines.append(f"| {level} | {inp:.2f} | {vote:.2f} | {blend:.2f} | {vote - inp:+.2f} | {blend - inp:+.2f} |")
    return "\n".join(lines)


def run_demo(settings: DemoSettings) -> DemoReport:
    """Run the demo; print the tables and write ``results.md``, ``toolchains.png``,
    ``chart.png``, ``results.json`` and TensorBoard logs to ``out_dir``."""
    data, held_out = held_out_data(settings.data)
    s = replace(settings, data=data)
    start = time.perf_counter()
    device = resolve_device(s.device)
    toolbox = load_toolbox(s.toolbox, device, s.precision)
    agent = load_agent(s.agent, device, precision=s.precision)
    out_dir = Path(s.out_dir)
    writer, precision = open_report_writer(s, device)

    sections = [f"Held-out set: {held_out}."]
    patch_results: list[MethodResult] = []
    if s.patches > 0:
        evaluation = EvaluationSettings(levels=s.levels, patches=s.patches, data=s.data, methods=s.methods,
                                        agent=s.agent, toolbox=s.toolbox, baselines=s.baselines,
                                        max_steps=s.max_steps, device=s.device, precision=s.precision)
        methods = build_methods(evaluation, toolbox, device)
        sets = [held_out_set(level, s.patches, s.data) for level in s.levels]
        patch_results = evaluate(methods, [HeldOutSet(t.name, t.L.to(device), t.H.to(device)) for t in sets],
                                 s.max_steps, writer)
        plot_report(patch_results, out_dir / "chart.png")
        sections.append(f"## Held-out 63x63 patches, every method (seed {EVALUATION_SEED})\n\n"
                        + markdown_report(patch_results))

    rows = _whole_images(s, agent, chained_toolbox(toolbox, s.toolbox, s.agent, device, s.precision), device)
    crop = f"{s.size}x{s.size} centre crops" if s.size > 0 else "whole images"
    sections.append(f"## Held-out whole images ({crop}, seed {s.seed}): the agent's two whole-image modes\n\n"
                    + _whole_image_tables(rows, s.levels))
    if rows:
        figure = toolchain_figure([r.trace for r in rows], s.max_steps)
        figure.save(out_dir / "toolchains.png")
        writer.add_image("demo/toolchains", np.asarray(figure), 0, dataformats="HWC")
    for k, level in enumerate(s.levels):
        sel = [r for r in rows if r.level == level]
        if sel:
            for mode in ("vote", "blend"):
                gain = float(np.mean([getattr(r, f"{mode}_psnr") - r.input_psnr for r in sel]))
                writer.add_scalar(f"demo/whole_image_gain/{mode}", gain, k)
    text = "\n\n".join(sections)
    writer.add_text("demo/results", text, 0)
    writer.close()
    (out_dir / "results.md").write_text(f"# Demo\n\n{text}\n\nMade in {time.perf_counter() - start:.0f} s; {precision}.\n")
    (out_dir / "results.json").write_text(json.dumps({
        "patches": [{k: v for k, v in asdict(r).items() if k != "restoration"} for r in patch_results],
        "whole_images": [{k: v for k, v in asdict(r).items() if k != "trace"} for r in rows],
    }, indent=2))
    print(text)
    print(f"\n{precision}")
    print(f"\nwrote {out_dir}/results.md, toolchains.png (the agent's chains step by step), chart.png "
          f"(PSNR vs multiply-adds) and TensorBoard logs ({time.perf_counter() - start:.0f} s)")
    return DemoReport(patch_results, rows)
