"""Image synthesis from layouts on held-out procedural scenes: pix2pixHD's variants, the
pix2pix U-Net baseline and SIMS (with and without retrieval), same data, same trainer,
same budget.

    python -m benchmarks.synthesis [--quick]

Each model trains for ``iterations`` optimiser steps of batch 1 (the staged pix2pixHD:
half on G1 alone at half resolution, half with the enhancer, G1 frozen for the first
fifth of the enhancer's half), Adam lr 2e-4 beta1 0.5, constant then linear decay over the second half.
Measures on ``test_scenes`` held-out scenes: L1 and PSNR to the real image (both on
[0, 1]), and the paper's segmentation protocol: a segmentation network trained on real
procedural images labels the synthesised ones, scored against the layouts (pixel
accuracy, mean IoU); the same network on the real images gives the ceiling. SIMS trains
its synthesis, alignment and ordering networks together for the same number of steps
(Adam lr 5e-4, cosine), with a memory bank cut from the same training scenes; "SIMS
without retrieval" is the same network fed empty canvases. Detail: the mean image-gradient
magnitude of the outputs over that of the real images (1 = as much fine detail as real).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import Section, resolve_device, run_alone

FULL = {"height": 128, "width": 256, "train_scenes": 400, "test_scenes": 48, "iterations": 2000,
        "segmenter_iterations": 0, "variants": ["global", "global+enhancer", "global+enhancer-fm", "pix2pix", "sims",
                                              "sims-no-retrieval"]}
QUICK = {"height": 64, "width": 128, "train_scenes": 24, "test_scenes": 4, "iterations": 8,
         "segmenter_iterations": 10, "variants": ["global", "global+enhancer", "global+enhancer-fm", "pix2pix", "sims",
                                               "sims-no-retrieval"]}
VARIANTS = {
    "global": ("G1 alone at full resolution, feature matching", "cpu", {"n_local_enhancers": 0, "ngf": 16}),
    "global+enhancer": ("G1 + one local enhancer (staged), feature matching", "cpu", {}),
    "global+enhancer-fm": ("G1 + one local enhancer (staged), no feature matching", "cpu",
                           {"feature_matching": False}),
    "pix2pix": ("pix2pix U-Net + one PatchGAN + L1 (baseline)", "pix2pix", {}),
    "sims": ("SIMS: retrieval, alignment, ordering, canvas + synthesis network", "sims", {}),
    "sims-no-retrieval": ("SIMS without retrieval (label map alone)", "sims", {"retrieval": False}),
}


def train_sims_variant(name: str, p: dict, device: str, out_dir: Path):
    """Train SIMS (or its ablation); returns (a function layout sample -> image, seconds,
    synthesis-network parameters)."""
    from toolchain_restore.generative.sims import SimsTask, preset, synthesize, trainer_defaults
    from toolchain_restore.training import Trainer

    settings = preset("cpu", height=p["height"], width=p["width"], train_scenes=p["train_scenes"],
                      test_scenes=min(p["test_scenes"], 4), **VARIANTS[name][2])
    trainer = trainer_defaults(out_dir=str(out_dir), iterations=p["iterations"], eval_every=max(1, p["iterations"]),
                               checkpoint_every=max(1, p["iterations"]), progress=False, device=device)
    start = time.perf_counter()
    task = SimsTask(settings, seed=trainer.seed)
    Trainer(trainer, (task.settings,)).fit(task)
    seconds = time.perf_counter() - start
    model = task.model.to(device).eval()
    return (lambda s: synthesize(model, task.bank, s.label, s.instance, device), seconds,
            sum(t.numel() for t in model.synthesis.parameters()))


def detail(images) -> float:
    """Mean absolute horizontal and vertical difference of neighbouring pixels (0..255 scale)."""
    total = 0.0
    for image in images:
        x = np.asarray(image, np.float32)
        total += 0.5 * (np.abs(np.diff(x, axis=0)).mean() + np.abs(np.diff(x, axis=1)).mean())
    return float(total / len(images))


def sims_claim(results: dict) -> str | None:
    """Whether retrieved real pixels gave more realistic detail: SIMS's detail ratio nearer to 1 than its
    ablation's, with a mean IoU at most 0.02 lower."""
    if not {"sims", "sims-no-retrieval"} <= set(results):
        return None
    a, b = results["sims"], results["sims-no-retrieval"]
    held = abs(1 - a["detail"]) < abs(1 - b["detail"]) and a["mean_iou"] >= b["mean_iou"] - 0.02
    return (f"The semi-parametric claim (retrieved real pixels give more realistic detail than synthesis from the "
            f"label map alone) {'held' if held else 'did not hold'} here: detail {a['detail']:.3f} with retrieval, "
            f"{b['detail']:.3f} without (real: 1); L1 {a['l1']:.4f} vs {b['l1']:.4f}, mean IoU {a['mean_iou']:.3f} "
            f"vs {b['mean_iou']:.3f}.")


def train_variant(name: str, p: dict, device: str, out_dir: Path):
    """Train one variant; returns (model, seconds, generator parameters)."""
    from toolchain_restore.generative.pix2pixhd import preset, train_pix2pixhd, trainer_defaults
    from toolchain_restore.generative.pix2pixhd.model import load_pix2pixhd

    _, preset_name, changes = VARIANTS[name]
    settings = preset(preset_name, height=p["height"], width=p["width"], train_scenes=p["train_scenes"],
                      test_scenes=min(p["test_scenes"], 4), **changes)
    staged = settings.n_local_enhancers > 0
    final_steps = p["iterations"] // 2 if staged else p["iterations"]
    if staged:
        settings.fix_global_iterations = final_steps // 5
    trainer = trainer_defaults(out_dir=str(out_dir), iterations=final_steps, eval_every=max(1, final_steps),
                               checkpoint_every=max(1, final_steps), progress=False, device=device)
    start = time.perf_counter()
    train_pix2pixhd(settings, trainer, global_iterations=p["iterations"] - final_steps if staged else None)
    seconds = time.perf_counter() - start
    model = load_pix2pixhd(out_dir / "pix2pixhd.safetensors", device)
    return model, seconds, sum(t.numel() for t in model.generator.parameters())


def segmenter_for(p: dict, device: str, out_dir: Path):
    """The shipped segmenter (128x256 scenes) when ``segmenter_iterations`` is 0, else one trained here."""
    from toolchain_restore.generative.segmentation import SegmentationSettings, load_segmenter, train_segmenter
    from toolchain_restore.serialization import shipped_weights
    from toolchain_restore.training import TrainerSettings

    if not p["segmenter_iterations"]:
        return load_segmenter(shipped_weights("segmenter.safetensors"), device)

    settings = SegmentationSettings(height=p["height"], width=p["width"], train_scenes=p["train_scenes"],
                                    test_scenes=p["test_scenes"])
    trainer = TrainerSettings(out_dir=str(out_dir), iterations=p["segmenter_iterations"], lr=2e-3,
                              eval_every=p["segmenter_iterations"], checkpoint_every=p["segmenter_iterations"],
                              progress=False, device=device)
    train_segmenter(settings, trainer)
    return load_segmenter(out_dir / "segmenter.safetensors", device)


def _sheet(rows: dict, samples, figures: Path) -> str:
    from toolchain_restore.generative.scenes import colorize_labels
    from PIL import Image

    lines = []
    for k in range(min(2, len(samples))):
        layout = colorize_labels(samples[k].label)
        tiles = [layout] + [images[k] for images in rows.values()] + [samples[k].image]
        lines.append(np.concatenate(tiles, axis=1))
    figures.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(lines, axis=0)).save(figures / "synthesis.png")
    return "synthesis.png"


def run(quick: bool = False, device: str = "cpu", figures: Path | None = None, **overrides) -> Section:
    from toolchain_restore.generative.datasets import synthesis_set
    from toolchain_restore.generative.pix2pixhd.sampling import evaluate_synthesis, synthesize

    p = {**(QUICK if quick else FULL), **overrides}
    device = str(resolve_device(device))
    start = time.perf_counter()
    test = synthesis_set("procedural", "test", 7, p["test_scenes"], p["height"], p["width"])
    samples = [test[k] for k in range(len(test))]
    results, outputs = {}, {}
    with tempfile.TemporaryDirectory(prefix="toolchain-restore-bench-") as root:
        segmenter = segmenter_for(p, device, Path(root) / "segmenter")
        real = evaluate_synthesis([s.image for s in samples], samples, segmenter)
        real_detail = detail([s.image for s in samples])
        for name in p["variants"]:
            if VARIANTS[name][1] == "sims":
                generate, seconds, parameters = train_sims_variant(name, p, device, Path(root) / name)
                images = [generate(s) for s in samples]
            else:
                model, seconds, parameters = train_variant(name, p, device, Path(root) / name)
                images = [synthesize(model, s.label, s.instance, device=device)[0] for s in samples]
            outputs[name] = images
            results[name] = {**evaluate_synthesis(images, samples, segmenter), "seconds": seconds,
                             "parameters": parameters, "detail": detail(images) / real_detail}
    rows = [f"| real images | - | - | - | {real['pixel_accuracy']:.3f} | {real['mean_iou']:.3f} | - | - | 1.000 |"]
    for name, r in results.items():
        rows.append(f"| {VARIANTS[name][0]} | {r['l1']:.4f} | {r['psnr']:.2f} | {r['parameters'] / 1e6:.2f}M | "
                    f"{r['pixel_accuracy']:.3f} | {r['mean_iou']:.3f} | {p['iterations']} | {r['seconds'] / 60:.1f} | "
                    f"{r['detail']:.3f} |")
    claim = sims_claim(results)
    text = (f"Procedural scenes at {p['height']}x{p['width']}: {p['train_scenes']} train, {p['test_scenes']} held-out "
            f"(disjoint seeds). Each model: {p['iterations']} steps of batch 1. The segmenter ("
            + ("the shipped one, toolchain_restore/weights/segmenter.md" if not p["segmenter_iterations"] else
               f"trained on real train scenes for {p['segmenter_iterations']} steps")
            + ") scores every model's images against their layouts; its scores on the real images are the "
            "ceiling.\n\n"
            "| model | L1 | PSNR (dB) | generator | pixel accuracy | mean IoU | steps | minutes | detail |\n"
            "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + (f"\n\n{claim}" if claim else ""))
    names = [_sheet(outputs, samples, figures)] if figures is not None and outputs else []
    raw = {"params": p, "real": real, "results": results, "sims_claim": claim}
    return Section("Image synthesis from layouts (pix2pixHD, pix2pix, SIMS)", text, raw, names, [],
                   time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    run_alone(run, __doc__, QUICK, FULL, argv, overrides=("iterations", "variants"))

if __name__ == "__main__":
    main()
