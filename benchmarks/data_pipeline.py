"""The data pipeline: degraded patches per second per worker, and peak memory while
streaming a folder of images, for two folder sizes.

    python -m benchmarks.data_pipeline [--quick]

The pipeline is the environment's: ``ImageSet`` (files read on demand, decoded images in
a bounded cache) -> ``PatchSampler`` (three scales, a bounded cache of rescaled images)
-> ``draw_patch`` (a random 63x63 patch degraded at moderate, the training-only rules
on). Each worker is a fresh process that draws patches for a while and reports its
rate and its peak resident memory (VmHWM), so the numbers include Python and
the imported libraries but nothing of the benchmark's own process.

The folders are JPEG photographs-like images made from the embedded train images
(rescaled, cropped, flipped), written to a temporary folder and deleted afterwards. In
the full mode they are DIV2K-sized (2040 x 1356) and the caches have their default
budgets (512 + 256 MiB); the quick mode uses smaller images and budgets so that a
small folder also overflows them. A folder 4x larger must not raise the peak: memory is
bounded by the caches, not by the folder.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import Section, Target, median, run_alone

FULL = {"size": [2040, 1356], "folder_images": [120, 480], "image_cache_mib": 512, "scaled_cache_mib": 256,
        "seconds": 15.0, "workers": [1, 2], "repeats": 2}
QUICK = {"size": [768, 512], "folder_images": [30, 120], "image_cache_mib": 16, "scaled_cache_mib": 8,
         "seconds": 2.5, "workers": [1, 2], "repeats": 1}
FLAT_TOLERANCE = 0.10
"""The larger folder's peak memory may exceed the smaller one's by this share."""


def make_folder(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> int:
    """Write ``count`` distinct JPEG images of ``size`` (width, height); returns their decoded bytes."""
    from toolchain_restore.data import image_set

    sources = image_set(None, "train")
    rng = np.random.default_rng(seed)
    width, height = size
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        source = sources.get(k % len(sources))
        if source.ndim == 2:
            source = np.repeat(source[:, :, None], 3, axis=2)
        image = Image.fromarray(source[:, :, :3])
        # Rescale so that the image covers the target, then a random crop and flip: each file differs.
        factor = max(width / image.width, height / image.height) * rng.uniform(1.0, 1.5)
        image = image.resize((max(width, round(image.width * factor)), max(height, round(image.height * factor))),
                             Image.BICUBIC)
        left, top = int(rng.integers(image.width - width + 1)), int(rng.integers(image.height - height + 1))
        image = image.crop((left, top, left + width, top + height))
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        image.save(folder / f"{k:05d}.jpg", quality=95)
    return count * width * height * 3


def _memory_mib(field: str) -> float:
    """A field of /proc/self/status in MiB: VmRSS (now) or VmHWM (peak). Unlike ``ru_maxrss``,
    VmHWM starts again at exec, so a spawned worker does not inherit its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _stream(folder: str | None, image_cache: int, scaled_cache: int, seconds: float, seed: int, queue) -> None:
    """A worker: draw moderate patches for ``seconds``; put (patches, seconds, start MiB, peak MiB)."""
    import torch

    torch.set_num_threads(1)
    from toolchain_restore.data import ImageSet, PatchSampler, image_set
    from toolchain_restore.envs.episode import draw_patch

    images = image_set(None, "train") if folder is None else ImageSet(sorted(Path(folder).glob("*.jpg")), folder,
                                                                      cache_bytes=image_cache)
    sampler = PatchSampler(images, 63, cache_bytes=scaled_cache)
    rng = np.random.default_rng(seed)
    start_mib = _memory_mib("VmRSS")
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        draw_patch(sampler, rng, "moderate", training_rules=True)
        count += 1
    elapsed = time.perf_counter() - start
    queue.put((count, elapsed, start_mib, _memory_mib("VmHWM")))


def stream(folder: Path | None, workers: int, p: dict) -> list[tuple[int, float, float, float]]:
    """Run ``workers`` streaming processes at once; each one's (patches, seconds, start MiB, peak MiB)."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    procs = [context.Process(target=_stream, args=(None if folder is None else str(folder), p["image_cache_mib"] * 2**20,
                                                   p["scaled_cache_mib"] * 2**20, p["seconds"], seed, queue))
             for seed in range(workers)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=p["seconds"] + 300) for _ in procs]
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"a streaming worker failed with exit code {proc.exitcode}")
    return results


def run(quick: bool = False, device: str = "cpu", figures: Path | None = None, **overrides) -> Section:
    p = {**(QUICK if quick else FULL), **overrides}
    start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="toolchain-restore-bench-"))
    raw: dict = {"params": p, "folders": {}, "embedded": {}}
    try:
        folders = {}
        for count in p["folder_images"]:
            folders[count] = root / f"images{count}"
            raw["folders"][str(count)] = {"decoded_mib": make_folder(folders[count], count, tuple(p["size"])) / 2**20,
                                          "runs": {}}
        for repeat in range(p["repeats"]):
            raw["embedded"].setdefault("1", []).extend(stream(None, 1, p))
            for count, folder in folders.items():
                for workers in p["workers"]:
                    runs = raw["folders"][str(count)]["runs"].setdefault(str(workers), [])
                    runs.extend(stream(folder, workers, p))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def rate(results) -> float:
        return median([n / s for n, s, _, _ in results])

    def peak(results) -> float:
        return median([m for _, _, _, m in results])

    budget = f"{p['image_cache_mib']} + {p['scaled_cache_mib']} MiB"
    rows = [f"| embedded default (9 images, all cached) | - | 1 | {rate(raw['embedded']['1']):.0f} "
            f"| {median([s for _, _, s, _ in raw['embedded']['1']]):.0f} | {peak(raw['embedded']['1']):.0f} |"]
    for count in p["folder_images"]:
        entry = raw["folders"][str(count)]
        for workers in p["workers"]:
            results = entry["runs"][str(workers)]
            rows.append(f"| {count} images, {entry['decoded_mib']:.0f} MiB decoded | {budget} | {workers} "
                        f"| {rate(results):.0f} | {median([s for _, _, s, _ in results]):.0f} | {peak(results):.0f} |")
    w, h = p["size"]
    text = (f"Moderate 63x63 patches drawn for {p['seconds']} s per worker, each worker a fresh process with one torch "
            f"thread, {p['repeats']} repeat(s), medians over workers and repeats. Folders of {w}x{h} JPEG images.\n\n"
            "| images | cache budget | workers | patches/s per worker | memory at start (MiB) | peak memory (MiB) |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows))
    small, large = (str(c) for c in p["folder_images"][:2])
    peak_small = peak(raw["folders"][small]["runs"]["1"])
    peak_large = peak(raw["folders"][large]["runs"]["1"])
    targets = [Target(f"peak memory flat as the folder grows ({small} -> {large} images, 1 worker, within "
                      f"{100 * FLAT_TOLERANCE:.0f}%)", f"{peak_small:.0f} -> {peak_large:.0f} MiB",
                      peak_large <= (1 + FLAT_TOLERANCE) * peak_small)]
    return Section("Data pipeline", text, raw, [], targets, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    run_alone(run, __doc__, QUICK, FULL, argv)

if __name__ == "__main__":
    main()
