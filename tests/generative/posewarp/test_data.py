"""The official per-video layout on the real sample video, its errors, procedural videos
and training pairs."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

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


def write_videos(root, names, frames=3, size=(40, 60)):
    """Videos in the official layout: frames/<video>/<n>.jpg from 1, info/<video>.mat with a
    struct data of X (14 x 2 x frames) and bbox (frames x 4)."""
    (root / "info").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        folder = root / "frames" / name
        folder.mkdir(parents=True)
        for n in range(1, frames + 1):
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{n}.jpg")
        x = np.stack([rng.uniform(15, 45, (14, frames)), rng.uniform(10, 30, (14, frames))], axis=1)
        boxes = np.tile([15.0, 10.0, 30.0, 20.0], (frames, 1))
        scipy.io.savemat(root / "info" / f"{name}.mat", {"data": {"X": x, "bbox": boxes}})


VIDEOS = [f"video_{i:02d}" for i in range(12)]


def test_a_folder_is_split_by_video_never_by_frame(tmp_path):
    write_videos(tmp_path, VIDEOS)
    train, test = VideoFolder(tmp_path, "train"), VideoFolder(tmp_path, "test")
    assert train.videos and test.videos and not set(train.videos) & set(test.videos)
    assert sorted(train.videos + test.videos) == VIDEOS and VideoFolder(tmp_path).videos == VIDEOS
    assert VideoFolder(tmp_path, "test").videos == test.videos  # by name: the same split every time
    # Adding a video moves no other video between the splits.
    write_videos(tmp_path, ["video_99"])
    assert set(test.videos) <= set(VideoFolder(tmp_path, "test").videos)
    pairs = FolderPairs(tmp_path, 32, split="test")
    assert set(pairs.folder.videos) == set(VideoFolder(tmp_path, "test").videos)
    from toolchain_restore.generative.posewarp.data import pair_source

    assert not set(pair_source(str(tmp_path), "train", 32, 0, 0, False).folder.videos) & set(pairs.folder.videos)


def test_train_and_test_folders_are_an_explicit_split_and_one_video_cannot_be_split(tmp_path):
    write_videos(tmp_path / "train", ["a", "b"])
    write_videos(tmp_path / "test", ["c"])
    assert VideoFolder(tmp_path, "train").videos == ["a", "b"] and VideoFolder(tmp_path, "test").videos == ["c"]
    with pytest.raises(ValueError, match="one video .*held-out pairs come from held-out videos"):
        VideoFolder(SAMPLES, "test")
    assert VideoFolder(SAMPLES).videos == [VIDEO]  # no split: every video, as before


def test_bad_frames_are_named_when_the_folder_is_opened_and_left_out(tmp_path):
    write_videos(tmp_path, ["a", "b"], frames=4)
    frame = tmp_path / "frames" / "a" / "2.jpg"
    frame.write_bytes(frame.read_bytes()[:-300])  # cut off: no end-of-image marker
    with pytest.warns(UserWarning, match=r"skipping .*frames/a/2\.jpg: truncated"):
        folder = VideoFolder(tmp_path)
    assert folder.frame_numbers("a") == [1, 3, 4] and folder.frame_numbers("b") == [1, 2, 3, 4]


def smooth_frame(height, width):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([127 + 100 * np.sin(x / 23.0), 127 + 100 * np.cos(y / 17.0), (x + y) % 256 * 0 + 90],
                    axis=2).round().astype(np.uint8)


def test_pasting_the_crop_of_the_frame_back_gives_the_frame_inside_the_box():
    from toolchain_restore.generative.posewarp.data import apply_affine, crop_matrix, paste_back

    frame = smooth_frame(200, 300)
    # Scale 1 and whole-pixel shifts: resampling is exact, so is the round trip.
    box = np.array([100.0, 50.0, 80.0, 100.0])
    matrix = crop_matrix(box, 120)  # side 1.2 x 100 = 120: scale 1
    assert matrix[0, 0] == 1.0
    back = paste_back(frame, apply_affine(frame, matrix, 120), matrix)
    np.testing.assert_array_equal(back, frame)
    # Any scale: the frame back inside the box up to the blur of down- and up-sampling.
    box = np.array([130.0, 40.0, 45.0, 120.0])
    matrix = crop_matrix(box, 64)
    crop = apply_affine(frame, matrix, 64)
    back = paste_back(frame, crop, matrix)
    x, y, w, h = box.astype(int)
    inside = (slice(y, y + h), slice(x, x + w))
    assert np.abs(back[inside].astype(int) - frame[inside]).mean() < 2.0
    # Another crop (a model's output) replaces the frame inside its footprint only.
    white = paste_back(frame, np.full_like(crop, 255), matrix)
    assert (white[inside] == 255).all()
    changed = (white != frame).any(-1)
    ys, xs = np.nonzero(changed)
    side = 1.2 * 120
    assert xs.min() >= 152.5 - side / 2 - 1 and xs.max() <= 152.5 + side / 2 + 1
    assert ys.min() >= 100 - side / 2 - 1 and ys.max() <= 100 + side / 2 + 1


def test_pasting_back_a_crop_that_reaches_past_the_frame_edge(tmp_path):
    from toolchain_restore.generative.posewarp.data import apply_affine, crop_matrix, paste_back

    frame = smooth_frame(120, 160)
    matrix = crop_matrix(np.array([-20.0, 70.0, 60.0, 60.0]), 48)  # the square overhangs the left and bottom
    back = paste_back(frame, apply_affine(frame, matrix, 48), matrix)
    assert back.shape == frame.shape
    assert np.abs(back[75:120, 0:35].astype(int) - frame[75:120, 0:35]).mean() < 3.0


def test_a_real_frame_is_pasted_back_where_its_person_was_cut_from():
    from toolchain_restore.generative.posewarp.data import paste_back

    pairs = FolderPairs(SAMPLES, 64)
    pair = pairs.pair(VIDEO, 1, 1)
    frame, _, box = pairs.folder.frame(VIDEO, 1)
    back = paste_back(frame, pair.source, pair.crop)
    x, y, w, h = box.round().astype(int)
    half, cx, cy = 0.6 * max(w, h) + 2, x + w / 2, y + h / 2  # the crop's square, margin 1.2, and a pixel
    outside = np.ones(frame.shape[:2], bool)
    outside[max(0, int(cy - half)):int(cy + half), max(0, int(cx - half)):int(cx + half)] = False
    assert back.shape == frame.shape and np.array_equal(back[outside], frame[outside])
    inside = back[y:y + h, x:x + w].astype(float), frame[y:y + h, x:x + w].astype(float)
    assert np.corrcoef(inside[0].ravel(), inside[1].ravel())[0, 1] > 0.8
