"""``toolchain-restore``: one command, a subcommand per job."""

from __future__ import annotations

import argparse
import sys

from .config import add_settings_arguments, settings_from_args

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

    print(tool_report(args.toolbox, args.data, args.patches, args.device))
    return 0


def _train_agent(args: argparse.Namespace) -> int:
    import dataclasses

    from .agents.dqn import DQNSettings, preset, train

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(DQNSettings) if hasattr(args, f.name)}
    settings = preset(args.preset, **given)
    train(settings, progress=args.progress)
    print(f"wrote {settings.out_dir}/agent.safetensors (TensorBoard logs beside it)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoSettings, run_demo

    run_demo(settings_from_args(DemoSettings, args))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .agents.dqn import DQNSettings
    from .demo import DemoSettings
    from .tools.training import ToolTrainingSettings
    from .training import TrainerSettings

    parser = argparse.ArgumentParser(prog="toolchain-restore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="restore held-out embedded images at three severities with the shipped toolbox")
    add_settings_arguments(p, DemoSettings)
    p.set_defaults(func=_demo)

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

    p = sub.add_parser("evaluate-tools", help="PSNR gain of every tool on every tool's band (held-out patches)")
    p.add_argument("--toolbox", default=None, help="toolbox file (default: the shipped one)")
    p.add_argument("--data", default=None, help="folder of clean images (default: embedded test images)")
    p.add_argument("--patches", type=int, default=200, help="held-out patches per band")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=_evaluate_tools)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
