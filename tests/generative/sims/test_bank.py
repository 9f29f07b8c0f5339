"""The memory bank: segments, the on-disk format read lazily, retrieval, bad banks and queries."""

import json

import numpy as np
import pytest

from toolchain_restore.generative.sims import BankError, MemoryBank, describe_segments


def test_segments_are_the_connected_components_of_each_instance():
    label = np.zeros((20, 30), np.int64)
    label[2:6, 2:6] = 1
    label[10:15, 20:28] = 1  # a second component of the same class
    label[12:18, 3:9] = 2
    segs = describe_segments(label, None, 3, min_area=4)
    assert sorted(segs.labels.tolist()) == [0, 1, 1, 2]
    ones = np.flatnonzero(segs.labels == 1)
    assert {tuple(segs.boxes[k]) for k in ones} == {(2, 2, 6, 6), (10, 20, 15, 28)}
    assert all(segs.full_mask(k).sum() == segs.masks[k].sum() for k in range(len(segs)))


def test_a_saved_bank_reads_back_lazily_and_identically(bank, bank_folder):
    opened = MemoryBank.open(bank_folder)
    assert isinstance(opened.pixels_packed, np.memmap) and isinstance(opened.masks_packed, np.memmap)
    assert len(opened) == len(bank) and opened.sources == bank.sources
    for index in (0, len(bank) // 2, len(bank) - 1):
        a, b = bank.segment(index), opened.segment(index)
        assert a.label == b.label and a.box == b.box
        assert np.array_equal(a.mask, b.mask) and np.array_equal(a.pixels, b.pixels)


def test_segments_hold_their_source_pixels(bank, train_samples):
    for index in range(0, len(bank), 7):
        seg = bank.segment(index)
        y0, x0, y1, x1 = seg.box
        sample = train_samples[seg.source]
        assert np.array_equal(seg.pixels[seg.mask], sample.image[y0:y1, x0:x1][seg.mask])
        assert (sample.label[y0:y1, x0:x1][seg.mask] == seg.label).all()


@pytest.mark.parametrize("source", [0, 5, 11])
def test_retrieval_returns_the_exact_segment_when_the_query_is_in_the_bank(bank, train_samples, source):
    sample = train_samples[source]
    query = describe_segments(sample.label, sample.instance, 7)
    indices, scores = bank.retrieve(query, k=3)
    own = bank.segments_of(source)
    assert np.array_equal(indices[:, 0], own)
    assert np.allclose(scores[:, 0], 2.0)  # shape, context and box IoU all 1: 1 + 0.5 + 0.5
    # Leaving the query's own image out, every hit is another image's segment of the same class.
    others, _ = bank.retrieve(query, k=3, exclude_sources=np.full(len(query), source))
    hit = others[others >= 0]
    assert len(hit) and not np.isin(hit, own).any()
    assert (bank.labels[others[:, 0]] == query.labels).all()


def test_retrieval_weights_rank_by_shape_alone(bank, train_samples):
    query = describe_segments(train_samples[2].label, train_samples[2].instance, 7)
    indices, scores = bank.retrieve(query, k=5, weights=(1.0, 0.0, 0.0))
    assert (np.diff(scores, axis=1)[np.isfinite(scores[:, 1:])] <= 1e-6).all()
    assert np.allclose(scores[:, 0], 1.0)


def test_a_missing_or_corrupt_bank_is_refused(bank, tmp_path):
    with pytest.raises(BankError, match="no memory bank"):
        MemoryBank.open(tmp_path / "nowhere")
    folder = bank.save(tmp_path / "a")
    (folder / "pixels.npy").unlink()
    with pytest.raises(BankError, match="pixels.npy is missing"):
        MemoryBank.open(folder)
    folder = bank.save(tmp_path / "b")
    np.save(folder / "pixels.npy", np.zeros(10, np.uint8))
    with pytest.raises(BankError, match="shape"):
        MemoryBank.open(folder)
    folder = bank.save(tmp_path / "c")
    (folder / "index.json").write_text("{not json")
    with pytest.raises(BankError, match="corrupt index"):
        MemoryBank.open(folder)
    folder = bank.save(tmp_path / "d")
    (folder / "meta.npy").write_bytes(b"garbage")
    with pytest.raises(BankError, match="damaged"):
        MemoryBank.open(folder)
    folder = bank.save(tmp_path / "e")
    (folder / "index.json").unlink()
    with pytest.raises(BankError, match="no index.json"):
        MemoryBank.open(folder)
    folder = bank.save(tmp_path / "f")
    info = json.loads((folder / "index.json").read_text())
    (folder / "index.json").write_text(json.dumps({**info, "format": 99}))
    with pytest.raises(BankError, match="format 99"):
        MemoryBank.open(folder)


def test_a_class_absent_from_the_bank_and_labels_beyond_the_count_are_refused(train_samples):
    bank = MemoryBank.build(train_samples[:2], 9)
    label = np.full((32, 32), 8, np.int64)
    with pytest.raises(BankError, match=r"no segment of class\(es\) \[8\]"):
        bank.retrieve(describe_segments(label, None, 9))
    with pytest.raises(ValueError, match="label values must lie in 0..6"):
        describe_segments(label, None, 7)
    with pytest.raises(ValueError, match="label values must lie in 0..6"):
        MemoryBank.build([type(train_samples[0])("x", label, label, np.zeros((32, 32, 3), np.uint8))], 7)
