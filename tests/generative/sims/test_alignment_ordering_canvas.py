"""Alignment recovers a shift, the ordering classifier learns the depth order, and the
simulated training canvas copies nothing from outside the mask intersections."""

import numpy as np
import pytest
import torch

from toolchain_restore.generative.sims import (CanvasSimulation, Segment, SimsTask, describe_segments, preset,
                                               simulate_canvas)
from toolchain_restore.generative.sims.canvas import box_fit_mask, frame_inputs
from toolchain_restore.generative.sims.losses import alignment_loss
from toolchain_restore.generative.sims.sampling import align_candidates
from toolchain_restore.generative.sims.training import ordering_accuracy

# Tiny tensors: on 2 busy cores two torch threads mostly wait on each other (one test here
# took 90 CPU seconds with two and 3 with one).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def task():
    torch.manual_seed(0)
    return SimsTask(preset("cpu", height=64, width=128, train_scenes=60, test_scenes=30, ngf=4, levels=2,
                           align_batch=32))


@pytest.fixture(scope="module")
def trained(task):
    """The alignment and ordering networks after a short training on their own losses (the
    alignment network on the half of its batches that are randomly moved copies)."""
    model = task.model
    optimiser = torch.optim.Adam([*model.aligner.parameters(), *model.orderer.parameters()], lr=1e-3)
    for step in range(200):
        rng = np.random.default_rng(step)
        qm, sm, srgb, real = (t[::2] for t in task._alignment_batch(rng))
        pixel, shape = alignment_loss(model.aligner(qm, sm, srgb), qm, sm, srgb, real)
        pick = torch.from_numpy(rng.integers(0, len(task.train_pairs[0]), 64))
        masks, classes, boxes, target = (t[pick] for t in task.train_pairs)
        order = torch.nn.functional.binary_cross_entropy_with_logits(model.orderer(masks, classes, boxes), target)
        optimiser.zero_grad()
        (pixel + shape + order).backward()
        optimiser.step()
    return model.eval()


def _own_segment(sample, segs, q):
    y0, x0, y1, x1 = segs.boxes[q]
    pixels = np.where(segs.masks[q][..., None], sample.image[y0:y1, x0:x1], 0)
    return Segment(int(segs.labels[q]), (y0, x0, y1, x1), segs.masks[q], pixels, 0, 0)


@pytest.mark.slow
@pytest.mark.parametrize("shift", [(4.0, 0.0), (0.0, -4.0), (3.0, 3.0)])
def test_alignment_of_a_shifted_copy_recovers_the_shift(task, trained, shift):
    """A segment moved by ``shift`` frame pixels (x, y) in its own frame: the network's map
    moves it back (its translation is the shift, in frame units)."""
    size = task.settings.align_size
    errors, identity = [], []
    for sample, segs in zip(task.test.samples[:12], task.test.segments[:12]):
        for q in np.flatnonzero([m.sum() >= 120 for m in segs.masks])[:2]:
            d = torch.tensor(shift) * 2 / size
            moved = torch.tensor([[1.0, 0, -d[0]], [0, 1.0, -d[1]]])
            qm, sm, srgb, _ = frame_inputs(segs.full_mask(q), segs.boxes[q], _own_segment(sample, segs, q), size,
                                           task.settings.align_margin, moved)
            with torch.no_grad():
                theta = trained.aligner(qm[None], sm[None], srgb[None])[0]
            errors.append(float((theta[:, 2] - d).abs().max()) * size / 2)
            identity.append(float(d.abs().max()) * size / 2)
    assert len(errors) >= 8
    # Within 1.5 frame pixels on average, from an offset of 3-4 pixels.
    assert np.mean(errors) < 1.5 < np.mean(identity)


def test_the_box_fit_fallback_places_a_bank_segment_on_itself_and_refinement_recovers_a_shift(task):
    from toolchain_restore.generative.sims import MemoryBank
    from toolchain_restore.generative.sims.sampling import _refine

    sample, segs = task.test.samples[0], task.test.segments[0]
    q = int(np.argmax([m.sum() for m in segs.masks]))
    own = MemoryBank.build([sample], 7)
    candidates = np.full((len(segs), 1), -1)
    candidates[q, 0] = int(np.flatnonzero((own.labels == segs.labels[q]) & (own.meta[:, 6] == segs.masks[q].sum()))[0])
    chosen, thetas = align_candidates(None, segs, candidates, own, "box")
    assert chosen[q] == candidates[q, 0] and thetas[q] is None and (chosen[np.arange(len(segs)) != q] == -1).all()
    # Gradient refinement of the map on the mask alone (synthesis time) undoes a 3-pixel shift.
    size = task.settings.align_size
    d = torch.tensor([3.0, -2.0]) * 2 / size
    qm, sm, _, _ = frame_inputs(segs.full_mask(q), segs.boxes[q], _own_segment(sample, segs, q), size,
                                task.settings.align_margin, torch.tensor([[1.0, 0, -d[0]], [0, 1.0, -d[1]]]))
    theta = _refine(torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]), qm[None], sm[None], 150)
    assert float((theta[0, :, 2] - d).abs().max()) * size / 2 < 0.75


@pytest.mark.slow
def test_ordering_accuracy_on_held_out_pairs(task, trained):
    assert task.test_pairs is not None and len(task.test_pairs[0]) >= 30
    accuracy = ordering_accuracy(trained, task.test_pairs)
    assert accuracy >= 0.8
    masks, classes, boxes, _ = task.test_pairs
    with torch.no_grad():
        forward = trained.orderer(masks, classes, boxes)
        swapped = trained.orderer(masks.flip(1), classes.flip(1), boxes.flip(1))
    assert torch.allclose(forward, -swapped, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("simulation", [CanvasSimulation(), CanvasSimulation(1.0, 3, 1.0, 10.0, 0.2),
                                        CanvasSimulation(0.0, 0, 0.0)])
def test_the_simulated_canvas_never_copies_pixels_outside_the_mask_intersection(bank, train_samples, seed,
                                                                                 simulation):
    sample = train_samples[seed]
    segs = describe_segments(sample.label, sample.instance, 7)
    best, _ = bank.retrieve(segs, 1, exclude_sources=np.full(len(segs), seed))
    partners = [bank.segment(int(j)) for j in best[:, 0]]
    assert all(p.source != seed for p in partners)
    canvas, filled, copied = simulate_canvas(sample.image, sample.label, segs, partners,
                                             np.random.default_rng(seed), simulation)
    # The intersections: each segment's mask and its partner's mask stretched onto its box.
    intersections = np.zeros(sample.label.shape, bool)
    for q, partner in enumerate(partners):
        y0, x0, y1, x1 = segs.boxes[q]
        intersections[y0:y1, x0:x1] |= segs.masks[q] & box_fit_mask(partner.mask, (y1 - y0, x1 - x0))
    assert copied.any() and not (copied & ~intersections).any()
    assert not (canvas[~filled] != 0).any()
    # The canvas is a function of the copied pixels alone: change every other pixel, same canvas.
    noisy = np.random.default_rng(99).integers(0, 256, sample.image.shape).astype(np.uint8)
    other = np.where(copied[..., None], sample.image, noisy)
    again, filled_again, _ = simulate_canvas(other, sample.label, segs, partners, np.random.default_rng(seed),
                                             simulation)
    assert np.array_equal(again, canvas) and np.array_equal(filled_again, filled)
    if simulation.move == 0 and simulation.colour_transfer == 0:
        assert np.array_equal(filled, copied) and np.array_equal(canvas[filled], sample.image[filled])
    if simulation.erase_width:
        assert filled.sum() < intersections.sum()


def test_without_ordering_labels_larger_segments_are_pasted_first(train_samples):
    from toolchain_restore.generative.sims import paste_order
    from toolchain_restore.generative.sims.bank import THING_DEPTH

    sample = train_samples[0]
    segments = describe_segments(sample.label, sample.instance, 7)
    order = paste_order(segments)
    areas = [int(segments.masks[i].sum()) for i in order]
    stuff = [a for a, i in zip(areas, order) if segments.instances[i] < THING_DEPTH]
    things = [a for a, i in zip(areas, order) if segments.instances[i] >= THING_DEPTH]
    assert areas == stuff + things and stuff == sorted(stuff, reverse=True) and things == sorted(things, reverse=True)
    assert sorted(order) == list(range(len(segments)))


def test_a_model_trained_on_a_folder_does_not_let_its_untrained_orderer_decide(bank, tmp_path, monkeypatch, capsys):
    from toolchain_restore.generative.sims import Sims, sampling, save_sims
    from toolchain_restore.generative.sims.cli import main

    model = Sims(preset("cpu", label_count=7, ngf=4, levels=2, height=64, width=128, data=str(tmp_path)))
    assert not model.ordering_learned and Sims(preset("cpu", label_count=7, ngf=4, levels=2)).ordering_learned
    save_sims(model, tmp_path / "folder.safetensors")
    seen = []
    real_paste_order = sampling.paste_order
    monkeypatch.setattr(sampling, "paste_order", lambda segments, orderer, size: seen.append(orderer) or
                        real_paste_order(segments, orderer, size))
    assert main(["synthesize", "--weights", str(tmp_path / "folder.safetensors"), "--bank",
                 str(bank.save(tmp_path / "bank")), "--output", str(tmp_path / "s.png")]) == 0
    assert seen == [None]
    note = capsys.readouterr().out.splitlines()[0]
    assert note.startswith("note: the ordering network is not trained") and note.endswith("larger segments first")
