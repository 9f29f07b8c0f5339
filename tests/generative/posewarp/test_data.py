"""The official per-video layout on the real sample video, its errors, procedural videos
and training pairs."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from toolchain_restore.generative.posewarp.data import (FolderPairs, MatFileError, ProceduralPairs, VideoFolder,
                                                        read_video_info)
from toolchain_restore.generative.posewarp.figures import ProceduralVideo

SAMPLES = str(Path(__file__).resolve().parents[3].parent / "shared" / "data" / "posewarp-samples")
VIDEO = "Flavia Pennetta in 4k"


def test_reads_the_sample_video():
    joints, boxes = read_video_info(f"{SAMPLES}/info/{VIDEO}.mat")
    assert joints.shape == (8, 14, 2) and boxes.shape == (8, 4)
    assert np.isfinite(joints).all() and (boxes[:, 2:] > 0).all()
    folder = VideoFolder(SAMPLES)
    assert folder.videos == [VIDEO] and folder.frame_numbers(VIDEO) == list(range(1, 9))
    image, j, box = folder.frame(VIDEO, 1)
    assert image.ndim == 3 and image.shape[2] == 3
    # The joints lie inside the frame and (nearly) inside the box.
    assert (j >= 0).all() and (j[:, 0] < image.shape[1]).all() and (j[:, 1] < image.shape[0]).all()
    assert (j[:, 0] > box[0] - 0.2 * box[2]).all() and (j[:, 0] < box[0] + 1.2 * box[2]).all()


def test_pairs_are_cropped_by_the_box_to_the_model_size():
    pair = FolderPairs(SAMPLES, 64).pair(VIDEO, 1, 5)
    assert pair.source.shape == pair.target.shape == (64, 64, 3)
    for j in (pair.source_joints, pair.target_joints):
        assert (j > 0).all() and (j < 64).all()
    augmented = FolderPairs(SAMPLES, 64, augment=True).sample(np.random.default_rng(0))
    assert augmented.source.shape == (64, 64, 3) and augmented.source_joints.shape == (14, 2)


def _copy(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(SAMPLES, root)
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    root.chmod(0o755)
    return root, root / "info" / f"{VIDEO}.mat"


def test_missing_and_malformed_info_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no info file"):
        read_video_info(tmp_path / "none.mat")
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"not a mat file at all")
    with pytest.raises(MatFileError, match="not a readable"):
        read_video_info(bad)
    scipy.io.savemat(bad, {"other": np.zeros(3)})
    with pytest.raises(MatFileError, match="struct 'data'"):
        read_video_info(bad)
    scipy.io.savemat(bad, {"data": {"X": np.zeros((13, 2, 8)), "bbox": np.zeros((8, 4))}})
    with pytest.raises(MatFileError, match="14 x 2 x frames"):
        read_video_info(bad)
    scipy.io.savemat(bad, {"data": {"X": np.zeros((14, 2, 8)), "bbox": np.zeros((7, 4))}})
    with pytest.raises(MatFileError, match="bbox"):
        read_video_info(bad)
    root, mat = _copy(tmp_path)
    mat.unlink()
    with pytest.raises(FileNotFoundError, match="no info file"):
        VideoFolder(root)


def test_frames_without_joints_are_named(tmp_path):
    root, mat = _copy(tmp_path)
    joints, boxes = read_video_info(mat)
    x = joints.transpose(1, 2, 0).copy()
    x[:, :, 2] = np.nan
    scipy.io.savemat(mat, {"data": {"X": x, "bbox": boxes}})
    with pytest.raises(ValueError, match="3.jpg: frame 3 has no joints"):
        VideoFolder(root)
    x = joints.transpose(1, 2, 0)[:, :, :6]
    scipy.io.savemat(mat, {"data": {"X": x, "bbox": boxes[:6]}})
    with pytest.raises(ValueError, match="frame 7 has no joints"):
        VideoFolder(root)


def test_procedural_videos_are_deterministic_per_seed():
    a, b = ProceduralVideo(3, 48), ProceduralVideo(3, 48)
    (ia, ja), (ib, jb) = a.frame(5), b.frame(5)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(ja, jb)
    other, _ = ProceduralVideo(4, 48).frame(5)
    assert not np.array_equal(ia, other)
    assert not np.array_equal(ia, a.frame(6)[0])
    assert ProceduralVideo(7, 96).frame(0)[0].shape == (96, 96, 3)
    # Same video: same background where neither frame shows the figure.
    _, _, la = a.frame_with_labels(5)
    _, _, lb = a.frame_with_labels(6)
    free = (la == 0) & (lb == 0)
    same = (ia == a.frame(6)[0]).all(-1)
    assert free.mean() > 0.5 and same[free].mean() > 0.9  # all but the figures' soft edges


def test_held_out_videos_use_other_figures_and_photos():
    train, test = ProceduralPairs("train", 4, 8, 32), ProceduralPairs("test", 4, 8, 32)
    assert train.video(0).split == "train" and test.video(0).split == "test"
    r1, r2 = np.random.default_rng(1), np.random.default_rng(1)
    p1, p2 = train.sample(r1), train.sample(r2)
    np.testing.assert_array_equal(p1.source, p2.source)
