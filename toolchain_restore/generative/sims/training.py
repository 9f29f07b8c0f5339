"""Training SIMS on the generic trainer: one step trains all three networks, each on its
own batch and loss, summed (their parameters are disjoint, so each gets its own gradient).

- Synthesis network: a training layout with a *simulated* canvas (the reference's
  recipe: partners are the best same-class segments of other images in the memory bank;
  see :func:`canvas.simulate_canvas`), a fresh random one each time a layout is drawn
  (the reference precomputes several per image); L1 + multi-scale gradient loss + semantic
  cross-entropy, and the class-masked VGG loss given VGG-19 weights.
- Alignment network: (query segment, bank segment) pairs in the query's frame; half are
  the retrieved partner from another image, half the query's own segment moved by a
  random affine; masked L1 against the real image + mask L1.
- Ordering classifier: overlapping thing pairs of procedural layouts with their true
  depth order (none for folders, where the paste order falls back to the box-bottom rule).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...training import Trainer, TrainerSettings, is_main_process, step_rng
from ..datasets import SynthesisSample, folder_options, synthesis_set, to_model_image, with_label_count
from ..losses import load_vgg19
from ..scenes import colorize_labels
from .bank import MemoryBank, Segment, describe_segments
from .canvas import frame_inputs, simulate_canvas
from .losses import ClassMaskedVGGLoss, alignment_loss, gradient_loss
from .model import Sims, SimsSettings, save_sims
from .ordering import overlapping_pairs, pair_features, true_pairs

__all__ = ["SimsTask", "train_sims", "trainer_defaults", "ordering_accuracy", "ordering_pairs", "export_checkpoint"]


TRAINER_DEFAULTS: dict[str, object] = dict(lr=5e-4, beta1=0.9, schedule="cosine", out_dir="runs/sims")
"""How SIMS's trainer settings differ from ``TrainerSettings``'s defaults (``sims train`` takes them too)."""


def trainer_defaults(**changes) -> TrainerSettings:
    """Adam lr 5e-4 (beta1 0.9), cosine decay; out_dir runs/sims."""
    base = {**TRAINER_DEFAULTS, **changes}
    return TrainerSettings(**base)


class _Split:
    """The samples of one split with their segments (and the true depth order of procedural scenes)."""

    def __init__(self, settings: SimsSettings, split: str, count: int, pad_to: int) -> None:
        s = settings
        self.depth: list[list[int]] | None = None
        if s.data == "procedural":
            from ..scenes import procedural_split

            scenes = procedural_split(split, count, s.height, s.width)
            self.samples = [SynthesisSample(f"{split}_{k:05d}", x.label.astype(np.int64), x.instance.astype(np.int64),
                                            x.image) for k, x in enumerate(scenes)]
            self.depth = [x.depth_order for x in scenes]
        else:
            data = synthesis_set(s.data, split, s.label_count, 0, s.height, s.width, pad_to,
                                 **folder_options(s, pad_to))
            self.samples = [data[k] for k in range(len(data))]
        self.segments = [describe_segments(x.label, x.instance, s.label_count, s.min_area, s.shape_size,
                                           s.context_size) for x in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def pairs(self, size: int):
        """Every overlapping thing pair with a known order: (masks, classes, boxes, targets)."""
        parts = []
        for k, segs in enumerate(self.segments):
            if self.depth is None:
                break
            pairs, target = true_pairs(segs, self.depth[k], overlapping_pairs(segs))
            if len(pairs):
                parts.append((*pair_features(segs, pairs, size), torch.from_numpy(target)))
        if not parts:
            return None
        return tuple(torch.cat([p[k] for p in parts]) for k in range(4))


def ordering_pairs(settings: SimsSettings, split: str = "test", count: int = 64):
    """Every overlapping thing pair with its true order in ``count`` procedural scenes of
    ``split``: (masks, classes, boxes, targets), or None when there is none."""
    settings = with_label_count(settings)
    return _Split(settings, split, count, 1).pairs(settings.shape_size)


def ordering_accuracy(model: Sims, pairs) -> float:
    """Share of pairs whose front segment the classifier names."""
    masks, classes, boxes, target = pairs
    with torch.no_grad():
        device = next(model.parameters()).device
        logits = model.orderer(masks.to(device), classes.to(device), boxes.to(device)).cpu()
    return float(((logits > 0).float() == target).float().mean())


class SimsTask:
    """SIMS's training as a task of the generic trainer.

    Arguments:
        settings: data, bank, networks, losses.
        seed: initialisation seed.
        bank: the memory bank (default: ``settings.bank``'s folder, else cut from the training set).
    """

    def __init__(self, settings: SimsSettings, seed: int = 0, bank: MemoryBank | None = None) -> None:
        settings = with_label_count(settings)
        self.settings = s = settings
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.model = Sims(settings)
        pad_to = self.model.size_multiple
        self.train = _Split(s, "train", s.train_scenes, pad_to)
        self.test = _Split(s, "test", s.test_scenes, pad_to)
        if len(self.train) == 0:
            raise ValueError("no training layouts")
        self.vgg = ClassMaskedVGGLoss(load_vgg19(s.vgg_weights)) if s.vgg_weights else None
        self.test_pairs = self.test.pairs(s.shape_size)
        if not s.retrieval:
            self.bank, self.partners, self.train_pairs = None, None, None
            return
        if bank is None:
            bank = MemoryBank.open(s.bank) if s.bank else MemoryBank.build(self.train.samples, s.label_count,
                                                                             s.min_area, s.shape_size, s.context_size)
        if bank.label_count != s.label_count:
            raise ValueError(f"the memory bank has {bank.label_count} labels, the data {s.label_count}")
        self.bank = bank
        # Each training segment's partner: the best same-class bank segment of another image.
        own = {name: k for k, name in enumerate(bank.sources)}
        segs = self.train.segments
        labels = np.concatenate([x.labels for x in segs])
        present = set(np.unique(bank.labels).tolist())
        self.partners = []
        if len(labels):
            shapes = np.concatenate([x.shapes for x in segs])
            context = np.concatenate([x.context for x in segs])
            boxes = np.concatenate([x.boxes for x in segs])
            sizes = np.concatenate([np.tile(np.array(x.size), (len(x), 1)) for x in segs])
            exclude = np.concatenate([np.full(len(x), own.get(self.train.samples[k].name, -1))
                                      for k, x in enumerate(segs)])
            known = np.isin(labels, list(present))
            best = np.full(len(labels), -1, np.int64)
            if known.any():
                best[known] = bank.retrieve_arrays(labels[known], shapes[known], context[known], boxes[known],
                                                   sizes[known], 1, s.weights, exclude[known])[0][:, 0]
            splits = np.cumsum([len(x) for x in segs])[:-1]
            self.partners = np.split(best, splits)
        self.align_items = [(k, q) for k, x in enumerate(segs) for q in range(len(x))
                            if self.partners[k][q] >= 0 and x.masks[q].sum() >= 4 * s.min_area]
        self.train_pairs = self.train.pairs(s.shape_size)

    # ---- batches ---------------------------------------------------------------------------
    def _canvas(self, index: int, rng: np.random.Generator):
        sample, segs = self.train.samples[index], self.train.segments[index]
        if not self.settings.retrieval:
            return np.zeros((*sample.label.shape, 3), np.uint8), np.zeros(sample.label.shape, bool)
        partners = [None if j < 0 else self.bank.segment(int(j)) for j in self.partners[index]]
        canvas, mask, _ = simulate_canvas(sample.image, sample.label, segs, partners, rng, self.settings.simulation())
        return canvas, mask

    def _alignment_batch(self, rng: np.random.Generator):
        s = self.settings
        out = []
        for n in range(s.align_batch):
            k, q = self.align_items[int(rng.integers(len(self.align_items)))]
            sample, segs = self.train.samples[k], self.train.segments[k]
            full = segs.full_mask(q)
            perturb = None
            if n % 2 == 0:
                y0, x0, y1, x1 = segs.boxes[q]
                segment = Segment(int(segs.labels[q]), (y0, x0, y1, x1), segs.masks[q],
                                  np.where(segs.masks[q][..., None], sample.image[y0:y1, x0:x1], 0), k, 0)
                a = s.align_perturb
                perturb = torch.tensor([[1 + rng.uniform(-a, a), rng.uniform(-a, a) / 2, rng.uniform(-a, a)],
                                        [rng.uniform(-a, a) / 2, 1 + rng.uniform(-a, a), rng.uniform(-a, a)]],
                                       dtype=torch.float32)
            else:
                segment = self.bank.segment(int(self.partners[k][q]))
            out.append(frame_inputs(full, segs.boxes[q], segment, s.align_size, s.align_margin, perturb, sample.image))
        return [torch.stack([o[j] for o in out]) for j in range(4)]

    def make_batch(self, step: int, rank: int, world_size: int, seed: int) -> dict:
        s = self.settings
        rng = step_rng(seed, step, rank)
        labels, canvases, masks, images = [], [], [], []
        for index in rng.integers(0, len(self.train), s.batch_size):
            sample = self.train.samples[int(index)]
            canvas, mask = self._canvas(int(index), rng)
            label, image = sample.label, sample.image
            if s.flip and rng.random() < 0.5:
                label, image, canvas, mask = label[:, ::-1], image[:, ::-1], canvas[:, ::-1], mask[:, ::-1]
            labels.append(torch.from_numpy(np.ascontiguousarray(label)).long())
            images.append(to_model_image(np.ascontiguousarray(image)))
            canvases.append(to_model_image(np.ascontiguousarray(canvas)))
            masks.append(torch.from_numpy(np.ascontiguousarray(mask)).float()[None])
        if len({tuple(t.shape) for t in labels}) > 1:
            raise ValueError("a batch needs layouts of one size; use batch_size 1 for a folder of mixed sizes")
        batch = {"label": torch.stack(labels), "image": torch.stack(images), "canvas": torch.stack(canvases),
                 "mask": torch.stack(masks)}
        if s.retrieval and s.lambda_align and self.align_items:
            batch["align"] = self._alignment_batch(rng)
        if s.retrieval and s.lambda_order and self.train_pairs is not None:
            pick = torch.from_numpy(rng.integers(0, len(self.train_pairs[0]), s.order_batch))
            batch["order"] = [t[pick] for t in self.train_pairs]
        return batch

    # ---- losses ----------------------------------------------------------------------------
    def loss(self, model: Sims, batch: dict, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.settings
        label, real, canvas, mask = (batch[k].to(device) for k in ("label", "image", "canvas", "mask"))
        fake, logits = model(label, canvas, mask)
        l1 = (fake - real).abs().mean()
        grad = gradient_loss(fake, real, s.gradient_scales)
        ce = F.cross_entropy(logits, label)
        loss = s.lambda_l1 * l1 + s.lambda_gradient * grad + s.lambda_semantic * ce
        logs = {"l1": l1.item(), "gradient": grad.item(), "semantic": ce.item()}
        if self.vgg is not None:
            vgg = self.vgg.to(device)(fake, real, label, s.label_count)
            loss = loss + s.lambda_vgg * vgg
            logs["vgg"] = vgg.item()
        if "align" in batch:
            qm, sm, srgb, target = (t.to(device) for t in batch["align"])
            pixel, shape = alignment_loss(model.aligner(qm, sm, srgb), qm, sm, srgb, target)
            loss = loss + s.lambda_align * (pixel + shape)
            logs.update(align_pixel=pixel.item(), align_mask=shape.item())
        if "order" in batch:
            masks, classes, boxes, target = (t.to(device) for t in batch["order"])
            order = F.binary_cross_entropy_with_logits(model.orderer(masks, classes, boxes), target)
            loss = loss + s.lambda_order * order
            logs["order"] = order.item()
        return loss, logs

    # ---- evaluation ------------------------------------------------------------------------
    def evaluate(self, model: Sims, device: torch.device) -> dict[str, float]:
        """L1 and PSNR of the whole pipeline (retrieval from the bank, alignment, ordering,
        canvas, synthesis) on the held-out layouts, and the ordering accuracy on their pairs."""
        from .sampling import evaluate_sims

        samples = [x for x in self.test.samples if x.image is not None]
        metrics = {}
        if samples:
            scores, _ = evaluate_sims(model, self.bank, samples, None, device)
            metrics.update(scores)
        if self.test_pairs is not None and self.settings.retrieval:
            metrics["order_accuracy"] = ordering_accuracy(model, self.test_pairs)
        return metrics

    def sample_images(self, model: Sims, device: torch.device) -> dict[str, torch.Tensor]:
        """Layout, canvas, output and real image of the first held-out layouts, one row each."""
        from .sampling import synthesize

        rows = []
        for sample in self.test.samples[:2]:
            if sample.image is None:
                continue
            image, result = synthesize(model, self.bank, sample.label, sample.instance, device, return_canvas=True)
            canvas = result.canvas if result is not None else np.zeros_like(image)
            tiles = [colorize_labels(sample.label), canvas, image, sample.image]
            rows.append(torch.from_numpy(np.concatenate(tiles, axis=1)).permute(2, 0, 1).float() / 255)
        return {"layout_canvas_output_real": torch.cat(rows, dim=1)} if rows else {}


def train_sims(settings: SimsSettings, trainer: TrainerSettings, output: str | os.PathLike | None = None,
               bank: MemoryBank | None = None) -> dict[str, float]:
    """Train (resuming from ``trainer.out_dir``'s checkpoint), return the held-out metrics and
    write the model to ``output`` (default out_dir/sims.safetensors)."""
    task = SimsTask(settings, seed=trainer.seed, bank=bank)
    metrics = Trainer(trainer, (task.settings,)).fit(task)
    if is_main_process():
        save_sims(task.model.cpu(), Path(output) if output else Path(trainer.out_dir) / "sims.safetensors",
                  iterations=trainer.iterations, metrics=metrics)
    return metrics


def export_checkpoint(checkpoint: str | os.PathLike, settings: SimsSettings, output: str | os.PathLike,
                      half: bool = True) -> int:
    """Write the networks of a (possibly still running) training's checkpoint as a weights
    file; returns the checkpoint's step. ``settings`` are the run's (label_count filled in
    from the data when None)."""
    settings = with_label_count(settings)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = Sims(settings)
    model.load_state_dict(state["model"])
    save_sims(model, output, half=half, iterations=int(state["step"]), checkpoint=str(checkpoint))
    return int(state["step"])
