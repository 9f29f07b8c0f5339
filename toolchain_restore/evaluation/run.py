"""``toolchain-restore evaluate``: the standard methods on the standard test sets, one report."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..agents.baseline_policies import FixedChainPolicy, RandomPolicy, parse_chain
from ..agents.oracle import Chain, all_chain_psnrs, best_fixed_chain
from ..agents.policy import load_agent
from ..baselines import load_baseline
from ..data.corpus import AUTO_DATA, held_out_data
from ..config import AgentSelection, CleanImages, RunSettings, ToolchainSettings
from ..errors import InvalidInput
from ..serialization import WeightsError, shipped_weights
from ..tools import Toolbox, load_toolbox
from ..runtime import precision_summary, resolve_device
from ..config import settings_markdown
from .protocol import (CNNMethod, ExhaustiveOracleMethod, GreedyOracleMethod, InputMethod, Method, MethodResult,
                       PolicyMethod, evaluate)
from .report import markdown_report, plot_report
from ..envs.held_out import EVALUATION_SEED, HeldOutSet, held_out_set, paired_folder_sets

__all__ = ["EvaluationSettings", "METHODS", "search_fixed_chain", "fixed_chain_of", "build_methods", "test_sets_for",
           "run_evaluation", "FIXED_CHAIN_KEY"]

METHODS = ("input", "agent", "random", "fixed", "greedy", "exhaustive", "baselines")
"""Method names ``--methods`` accepts; "baselines" means every CNN baseline given."""

FIXED_CHAIN_KEY = "best_fixed_chain"
"""Toolbox metadata key holding the chain ``search_fixed_chain`` found for it (tool numbers 1..12)."""


@dataclass
class EvaluationSettings(RunSettings, AgentSelection, ToolchainSettings, CleanImages):
    """Settings of ``toolchain-restore evaluate``."""

    out_dir: str = "runs/evaluate"
    data: str | None = AUTO_DATA
    """Folder of clean images whose split is held out; 'auto' = the photo corpus (runs/corpus, or $TOOLCHAIN_RESTORE_CORPUS) when it is built, else the embedded default; none = the embedded default."""
    """Where report.md, chart.png, results.json and TensorBoard scalars go."""
    seed: int = EVALUATION_SEED
    """Seed of the held-out test sets (the same seed gives the same patches to every method)."""
    levels: list[str] = field(default_factory=lambda: ["mild", "moderate", "severe"])
    """Severities of the held-out test sets (ignored with --pairs)."""
    patches: int = 256
    """Patches per held-out test set."""
    split: str = "test"
    """Which split of --data the patches come from (a flat folder puts one image in ten in 'test')."""
    pairs: str | None = None
    """Folder in the official layout (<name>_in/ beside <name>_gt/) to evaluate instead of held-out sets."""
    methods: list[str] = field(default_factory=lambda: ["input", "agent", "random", "fixed", "greedy", "baselines"])
    """Methods to run, from: input agent random fixed greedy exhaustive baselines."""
    agent_views: int | None = None
    """Symmetric views the agent averages per decision (1..8); None = what the agent file records."""
    baselines: list[str] = field(default_factory=list)
    """CNN baseline files (DnCNN- or VDSR-style); none given = the shipped ones."""
    fixed_chain: str = "auto"
    """The fixed chain as tool numbers ('6,12,11'), or 'auto': the toolbox's recorded best chain, searched when absent."""
    fixed_chain_patches: int = 64
    """Moderate train-split patches the fixed-chain search scores every chain on."""


def search_fixed_chain(toolbox: Toolbox, patches: int = 64, data: str | None = None, level: str = "moderate",
                       max_steps: int = 3, seed: int = 0) -> tuple[Chain, float]:
    """The one chain with the best mean PSNR on ``patches`` train-split patches (every chain
    up to ``max_steps`` tools is scored, the empty one included)."""
    train = held_out_set(level, patches, data, seed=seed, split="train")
    device = next(toolbox.parameters()).device
    return best_fixed_chain(all_chain_psnrs(toolbox, train.L.to(device), train.H.to(device), max_steps))


def fixed_chain_of(toolbox: Toolbox, spec: str, patches: int, data: str | None, max_steps: int) -> Chain:
    """``spec`` parsed, or (for 'auto') the chain recorded in the toolbox file, else searched."""
    if spec != "auto":
        return parse_chain(spec)
    recorded = getattr(toolbox, "config", {}).get(FIXED_CHAIN_KEY)
    if recorded:
        return parse_chain(str(recorded))
    print(f"the toolbox records no best fixed chain: scoring every chain on {patches} train patches "
          f"(minutes on a CPU; record one with `toolchain-restore fixed-chain --write`)")
    return search_fixed_chain(toolbox, patches, data, max_steps=max_steps)[0]


def _shipped_baselines() -> list[str]:
    found = []
    for name in ("dncnn.safetensors", "vdsr.safetensors"):
        try:
            found.append(str(shipped_weights(name)))
        except WeightsError:  # an install without this baseline evaluates without it
            pass
    return found


def chained_toolbox(toolbox: Toolbox, toolbox_file: str | None, agent_file: str | None, device: torch.device,
                    precision: str | None) -> Toolbox:
    """The tools an agent chains: ``toolbox`` (``toolbox_file`` loaded), except that the
    shipped agent (``agent_file`` None) with no toolbox file given chains the tools jointly
    tuned for it."""
    if toolbox_file is not None or agent_file is not None:
        return toolbox
    return load_toolbox(None, device, precision, for_shipped_agent=True)


def build_methods(s: EvaluationSettings, toolbox: Toolbox, device: torch.device) -> list[Method]:
    unknown = sorted(set(s.methods) - set(METHODS))
    if unknown:
        raise InvalidInput(f"--methods: unknown methods {unknown}; choose from {list(METHODS)}")
    methods: list[Method] = []
    for name in s.methods:
        if name == "input":
            methods.append(InputMethod())
        elif name == "agent":
            agent = load_agent(s.agent, device=device, views=s.agent_views, precision=s.precision)
            methods.append(PolicyMethod("agent", agent, chained_toolbox(toolbox, s.toolbox, s.agent, device, s.precision),
                                        agent.macs_per_decision(), s.max_steps))
        elif name == "random":
            methods.append(PolicyMethod("random", RandomPolicy(s.seed), toolbox, 0, s.max_steps))
        elif name == "fixed":
            chain = fixed_chain_of(toolbox, s.fixed_chain, s.fixed_chain_patches, s.data, s.max_steps)
            label = "fixed chain " + (",".join(str(i + 1) for i in chain) or "(none)")
            methods.append(PolicyMethod(label, FixedChainPolicy(chain), toolbox, 0, s.max_steps))
        elif name == "greedy":
            methods.append(GreedyOracleMethod(toolbox, s.max_steps))
        elif name == "exhaustive":
            methods.append(ExhaustiveOracleMethod(toolbox, s.max_steps))
        elif name == "baselines":
            methods += baseline_methods(s.baselines or _shipped_baselines(), s.precision, device)
    return methods


def baseline_methods(paths: list[str], precision: str | None, device: torch.device) -> list[CNNMethod]:
    """One method per baseline file, named by its network; where two files hold the same
    network (say, a new VDSR beside the shipped one), by network and file, so that neither
    row of the report hides the other."""
    models = [load_baseline(path, precision=precision).to(device) for path in paths]
    names = [getattr(model, "display_name", Path(path).stem) for model, path in zip(models, paths)]
    return [CNNMethod(name if names.count(name) == 1 else f"{name} ({path})", model)
            for name, model, path in zip(names, models, paths)]


def test_sets_for(s: EvaluationSettings) -> list[HeldOutSet]:
    if s.pairs is not None:
        return paired_folder_sets(s.pairs)
    return [held_out_set(level, s.patches, s.data, s.seed, split=s.split) for level in s.levels]


def open_report_writer(s: RunSettings, device: torch.device) -> tuple[Any, str]:
    """A TensorBoard writer in ``s.out_dir`` (created) that holds the settings and what the
    precision resolved to, and that precision's one-line summary: what evaluate and the
    demo record before they measure."""
    from torch.utils.tensorboard import SummaryWriter

    Path(s.out_dir).mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(str(s.out_dir))
    writer.add_text("settings", settings_markdown(s), 0)
    precision = precision_summary(s.precision, device)
    writer.add_text("precision", precision, 0)
    return writer, precision


def run_evaluation(s: EvaluationSettings) -> list[MethodResult]:
    """Evaluate, then write ``report.md``, ``chart.png``, ``results.json`` and TensorBoard
    scalars to ``out_dir``."""
    data, held_out = held_out_data(s.data, s.split)
    s = replace(s, data=data)
    if s.pairs is not None:
        held_out = f"the pairs in {s.pairs}"
    device = resolve_device(s.device)
    toolbox = load_toolbox(s.toolbox, device, s.precision)
    start = time.perf_counter()
    sets = [HeldOutSet(t.name, t.L.to(device), t.H.to(device)) for t in test_sets_for(s)]
    methods = build_methods(s, toolbox, device)
    out = Path(s.out_dir)
    writer, precision = open_report_writer(s, device)
    results = evaluate(methods, sets, s.max_steps, writer)
    writer.close()
    report = markdown_report(results)
    command = "toolchain-restore evaluate " + " ".join(f"--{k.replace('_', '-')} {v if not isinstance(v, list) else ' '.join(map(str, v))}"
                                                      for k, v in asdict(s).items() if v not in (None, [], ""))
    (out / "report.md").write_text(f"# Evaluation\n\nHeld-out set: {held_out}.\n\n{report}\n\n"
                                   f"Made by `{command}` in {time.perf_counter() - start:.0f} s; {precision}.\n")
    plot_report(results, out / "chart.png")
    (out / "results.json").write_text(json.dumps([{k: v for k, v in asdict(r).items() if k != "restoration"}
                                                  for r in results], indent=2))
    return results
