"""Pose-guided human image synthesis on held-out procedural figure videos: the modular
PoseWarp model against the paper's U-Net baseline, same data, trainer and budget, and
the paper's loss comparison for the modular model (L1, feature loss, feature + GAN).

    python -m benchmarks.posewarp [--quick] [--iterations N] [--size S]

Each model trains for ``iterations`` steps of batch 4 (Adam lr ``lr``, constant) on
``train_videos`` procedural videos; the GAN variant then fine-tunes ``gan_iterations``
more steps with the conditional GAN loss (weight 0.1). Measured on ``test_pairs`` pairs of
held-out videos (unseen figures over held-out photographs): SSIM and L1 of the output to
the real target frame, and the gradient-magnitude statistics of the outputs (the paper's
sharpness comparison; the real targets' statistics are the reference). The modular model
with the feature loss is also run on the real sample tennis frames (a figure).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import Section, resolve_device, run_alone

FULL = {"size": 128, "depth": 5, "ngf": 12, "iterations": 1500, "gan_iterations": 300, "lr": 2e-4,
        "train_videos": 400, "test_videos": 16, "test_pairs": 32,
        "variants": ["modular-l1", "modular-feature", "modular-feature+gan", "unet-feature"]}
QUICK = {"size": 32, "depth": 3, "ngf": 4, "iterations": 2, "gan_iterations": 1, "lr": 2e-4, "train_videos": 4,
         "test_videos": 2, "test_pairs": 2, "variants": ["modular-l1", "modular-feature", "modular-feature+gan",
                                                         "unet-feature"]}
VARIANTS = {
    "modular-l1": ("PoseWarp, L1", {"architecture": "modular", "loss": "l1"}),
    "modular-feature": ("PoseWarp, feature loss", {"architecture": "modular", "loss": "feature"}),
    "modular-feature+gan": ("PoseWarp, feature + GAN", {"architecture": "modular", "loss": "feature", "gan": True}),
    "unet-feature": ("U-Net baseline, feature loss", {"architecture": "unet", "loss": "feature"}),
    "unet-l1": ("U-Net baseline, L1", {"architecture": "unet", "loss": "l1"}),
}
SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "posewarp-samples"


def train_variant(name: str, p: dict, device: str, out_dir: Path):
    """Train one variant; returns (model, seconds, parameters without the discriminator)."""
    from toolchain_restore.generative.posewarp import load_posewarp, preset, train_posewarp, trainer_defaults

    _, changes = VARIANTS[name]
    changes = dict(changes)
    gan = changes.pop("gan", False)
    settings = preset("cpu", size=p["size"], depth=p["depth"], ngf=p["ngf"], ndf=max(4, p["ngf"]),
                      train_videos=p["train_videos"], test_videos=p["test_videos"], test_pairs=min(4, p["test_pairs"]),
                      gan_iterations=p["gan_iterations"] if gan else 0, **changes)
    trainer = trainer_defaults(out_dir=str(out_dir), iterations=p["iterations"], lr=p["lr"],
                               eval_every=max(1, p["iterations"]), checkpoint_every=max(1, p["iterations"]),
                               progress=False, device=device)
    start = time.perf_counter()
    train_posewarp(settings, trainer)
    seconds = time.perf_counter() - start
    model = load_posewarp(out_dir / "posewarp.safetensors", device)
    return model, seconds, sum(t.numel() for t in model.generators().parameters())


def _real_frames(model, device: str, figures: Path) -> str | None:
    """Frame 1 of the sample tennis video put in the poses of frames 3, 5 and 7."""
    from toolchain_restore.generative.posewarp.data import FolderPairs
    from toolchain_restore.generative.posewarp.sampling import pose_picture, synthesize, write_sheet

    if not (SAMPLES / "info").is_dir():
        return None
    folder = FolderPairs(SAMPLES, model.settings.size)
    video = folder.folder.videos[0]
    rows = []
    for target in (3, 5, 7):
        pair = folder.pair(video, 1, target)
        out = synthesize(model, [pair], device)[0]
        rows.append([pair.source, pose_picture(pair.target_joints, model.settings.size), out["output"], pair.target])
    write_sheet(figures / "posewarp_real.png", rows)
    return "posewarp_real.png"


def run(quick: bool = False, device: str = "cpu", figures: Path | None = None, **overrides) -> Section:
    import torch

    from toolchain_restore.generative.datasets import to_model_image
    from toolchain_restore.generative.posewarp.data import ProceduralPairs
    from toolchain_restore.generative.posewarp.sampling import gradient_statistics, pose_picture, synthesize, write_sheet
    from toolchain_restore.generative.posewarp.training import pose_metrics

    p = {**(QUICK if quick else FULL), **overrides}
    device = str(resolve_device(device))
    start = time.perf_counter()
    pairs = ProceduralPairs("test", p["test_videos"], 32, p["size"]).fixed(p["test_pairs"])
    real = torch.stack([to_model_image(x.target) for x in pairs])
    results, outputs, models = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="toolchain-restore-bench-") as root:
        for name in p["variants"]:
            model, seconds, parameters = train_variant(name, p, device, Path(root) / name)
            images = [r["output"] for lo in range(0, len(pairs), 8) for r in synthesize(model, pairs[lo:lo + 8], device)]
            outputs[name], models[name] = images, model
            scores = pose_metrics(torch.stack([to_model_image(x) for x in images]), real)
            results[name] = {"ssim": float(np.mean(scores["ssim"])), "l1": float(np.mean(scores["l1"])),
                             "ssim_per_pair": scores["ssim"], "gradient": gradient_statistics(images),
                             "seconds": seconds, "parameters": parameters}
    target_gradient = gradient_statistics([x.target for x in pairs])
    rows = [f"| real target frames | - | - | {target_gradient['mean']:.4f} | {target_gradient['p90']:.4f} | - | - |"]
    for name, r in results.items():
        g = r["gradient"]
        rows.append(f"| {VARIANTS[name][0]} | {r['ssim']:.4f} | {r['l1']:.4f} | {g['mean']:.4f} | {g['p90']:.4f} | "
                    f"{r['parameters'] / 1e6:.2f}M | {r['seconds'] / 60:.1f} |")
    text = (f"Procedural figure videos at {p['size']}x{p['size']}: {p['train_videos']} training videos; "
            f"{p['test_pairs']} pairs of {p['test_videos']} held-out videos (unseen figures over held-out "
            f"photographs). Every model: {p['iterations']} steps of batch 4, Adam lr {p['lr']} (constant), U-Nets "
            f"of {p['ngf']} channels and {p['depth']} levels; the GAN variant {p['gan_iterations']} more steps "
            "with the conditional GAN loss (weight 0.1). Gradient magnitude: finite differences of the grey output "
            "on [0, 1] (mean, 90th percentile); the real frames' are the reference for sharpness.\n\n"
            "| model | SSIM | L1 | gradient mean | gradient p90 | parameters | minutes |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    names: list[str] = []
    if figures is not None and outputs:
        figures.mkdir(parents=True, exist_ok=True)
        sheet = [[x.source, pose_picture(x.target_joints, p["size"])] + [outputs[n][k] for n in outputs] + [x.target]
                 for k, x in enumerate(pairs[:4])]
        write_sheet(figures / "posewarp.png", sheet)
        names.append("posewarp.png")
        best = "modular-feature" if "modular-feature" in models else next(iter(models))
        real_name = _real_frames(models[best], device, figures)
        if real_name:
            names.append(real_name)
        text += ("\n\nposewarp.png: source | target pose | " + " | ".join(VARIANTS[n][0] for n in outputs) +
                 " | real target. posewarp_real.png: the real tennis frame 1 in the poses of frames 3, 5, 7 "
                 f"({VARIANTS[best][0]}, trained on procedural figures only) | real frame.")
    raw = {"params": p, "target_gradient": target_gradient, "results": results}
    return Section("Pose-guided human image synthesis (PoseWarp vs U-Net)", text, raw, names, [],
                   time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    run_alone(run, __doc__, QUICK, FULL, argv, overrides=("iterations", "size", "depth", "ngf", "gan_iterations",
                                                          "train_videos", "test_pairs"))


if __name__ == "__main__":
    main()
