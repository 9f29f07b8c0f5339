"""Every benchmark, one report.

    python -m benchmarks            # the full budget (about 100 minutes on a 2-core CPU without native bf16, an hour of it DCNet's; a GPU when there is one)
    python -m benchmarks --quick    # minutes on 2 CPU cores (the smoke test runs this)
    python -m benchmarks --only quality whole_image_latency

Writes ``<out-dir>/<machine>-<date>[-quick].md`` (tables, the targets, the machine, the raw
figures of every section) and, in the folder of the same name, the PNG plots and
``raw.json``. Every timing is the median of repeated runs, and every comparison a ratio
of two figures measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import time
from pathlib import Path

from benchmarks import Section, machine, machine_slug, resolve_device

BENCHMARKS = ("quality", "env_throughput", "tool_efficiency", "whole_image_latency", "data_pipeline", "agent_training",
              "tool_training", "distributed", "dcnet", "synthesis", "posewarp")
"""Modules of this package, in report order; each has ``run(quick, device, figures) -> Section``."""


def _machine_table(info: dict) -> str:
    rows = [f"| {k.replace('_', ' ')} | {v} |" for k, v in info.items()]
    return "| | |\n|---|---|\n" + "\n".join(rows)


def _targets_table(sections: list[Section]) -> str:
    rows = [f"| {t.name} | {t.measured} | {'yes' if t.met else 'no' if t.met is False else 'n/a'} | {s.title} |"
            for s in sections for t in s.targets]
    return "| target | measured | met | section |\n|---|---|---|---|\n" + "\n".join(rows)


def render(sections: list[Section], info: dict, command: str, quick: bool, seconds: float, date: str,
           figure_dir: str) -> str:
    """The report as markdown."""
    parts = [f"# Benchmarks: {machine_slug(info)}, {date}{' (quick mode)' if quick else ''}", "",
             f"Made by `{command}` in {seconds / 60:.1f} minutes. Raw figures of every section are at its end and in "
             f"`{figure_dir}/raw.json`; each ratio in a table is recomputed from them.", "",
             "## Machine", "", _machine_table(info), "", "## Targets", "", _targets_table(sections), ""]
    for s in sections:
        parts += [f"## {s.title}", "", s.text, ""]
        parts += [f"![{name}]({figure_dir}/{name})" for name in s.figures]
        if s.figures:
            parts.append("")
        parts += [f"<details><summary>Raw figures ({s.seconds:.0f} s)</summary>", "", "```json",
                  json.dumps(s.raw, indent=1), "```", "", "</details>", ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small budget of each benchmark (minutes on 2 cores)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run these benchmarks only")
    parser.add_argument("--skip", nargs="+", choices=BENCHMARKS, default=[], help="run all benchmarks but these")
    parser.add_argument("--device", default="auto", help="auto (cuda when there is a GPU), cpu or cuda")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    info = machine(device)
    date = datetime.date.today().isoformat()
    # A partial run gets its own name, so that it never replaces the full report of the day.
    name = (f"{machine_slug(info)}-{date}{'-quick' if args.quick else ''}"
            + (f"-only-{'-'.join(args.only)}" if args.only else "") + (f"-without-{'-'.join(args.skip)}" if args.skip else ""))
    figures = args.out_dir / name
    figures.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sections = []
    for module in [m for m in args.only or BENCHMARKS if m not in args.skip]:
        print(f"benchmark {module} ...", flush=True)
        section = importlib.import_module(f"benchmarks.{module}").run(args.quick, device, figures)
        print(f"  {section.seconds:.0f} s", flush=True)
        sections.append(section)
    command = "python -m benchmarks" + (" --quick" if args.quick else "") + (
        f" --only {' '.join(args.only)}" if args.only else "") + (f" --skip {' '.join(args.skip)}" if args.skip else "") + (
        f" --device {args.device}" if args.device != "auto" else "")
    seconds = time.perf_counter() - start
    report = args.out_dir / f"{name}.md"
    report.write_text(render(sections, info, command, args.quick, seconds, date, name))
    (figures / "raw.json").write_text(json.dumps({"machine": info, "command": command, "seconds": seconds,
                                                  "sections": {s.title: s.raw for s in sections}}, indent=1))
    print(f"wrote {report}")
    return report


if __name__ == "__main__":
    main()
