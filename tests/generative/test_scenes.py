"""The procedural scenes: seeded, well-formed label and instance maps, varied instances,
the true depth order, disjoint splits, any size."""


import numpy as np
import pytest

from toolchain_restore.errors import InvalidInput
from toolchain_restore.generative import (SCENE_CLASSES, SCENE_PALETTE, THING_CLASSES, Scene, colorize_labels, make_scene,
                                          make_scenes, procedural_split)
from toolchain_restore.generative.scenes import SPLIT_SIZE, TEST_SEED_START, procedural_scene

THING_LABELS = [SCENE_CLASSES.index(c) for c in THING_CLASSES]


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return make_scenes(8, seed=100)


def test_a_scene_is_a_pure_function_of_its_seed():
    a, b, c = make_scene(7), make_scene(7), make_scene(8)
    for field in ("label", "instance", "image"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert a.depth_order == b.depth_order
    assert not np.array_equal(a.image, c.image) and not np.array_equal(a.label, c.label)


def test_arrays_have_the_promised_shapes_types_and_values(scenes):
    for scene in scenes:
        assert scene.label.shape == (128, 256) and scene.label.dtype == np.uint8
        assert scene.instance.shape == (128, 256) and scene.instance.dtype == np.int32
        assert scene.image.shape == (128, 256, 3) and scene.image.dtype == np.uint8
        assert scene.label.max() < len(SCENE_CLASSES)
    # Over a handful of scenes every class shows up.
    assert set(np.unique(np.concatenate([s.label.ravel() for s in scenes])).tolist()) == set(range(len(SCENE_CLASSES)))


def test_instance_ids_follow_the_cityscapes_convention(scenes):
    for scene in scenes:
        thing = np.isin(scene.label, THING_LABELS)
        assert np.array_equal(scene.instance[~thing], scene.label[~thing].astype(np.int32))
        assert np.array_equal(scene.instance[thing] // 1000, scene.label[thing].astype(np.int32))
        for cls in THING_LABELS:
            ks = sorted({i % 1000 for i in np.unique(scene.instance[scene.label == cls]).tolist()})
            assert ks == list(range(len(ks))), (cls, ks)  # numbered 0, 1, 2, ... without gaps


def test_every_thing_class_has_several_instances(scenes):
    for cls in THING_LABELS:
        per_scene = [len(np.unique(s.instance[s.label == cls])) for s in scenes]
        assert max(per_scene) >= 2 and sum(per_scene) >= 2 * len(scenes) * 0.75, (SCENE_CLASSES[cls], per_scene)


@pytest.mark.parametrize("thing", THING_CLASSES)
def test_instances_of_one_class_differ_in_colour(scenes, thing):
    cls = SCENE_CLASSES.index(thing)
    spreads = []
    for scene in scenes:
        means = [scene.image[scene.instance == i].mean(axis=0) for i in np.unique(scene.instance[scene.label == cls])
                 if (scene.instance == i).sum() >= 20]
        if len(means) >= 2:
            means = np.array(means)
            spreads.append(np.abs(means[:, None] - means[None]).max())
    assert spreads and np.median(spreads) > 12, spreads


def test_depth_order_lists_exactly_the_visible_things_back_to_front(scenes):
    for scene in scenes:
        things = set(np.unique(scene.instance[scene.instance >= 1000]).tolist())
        assert sorted(scene.depth_order) == sorted(things) and len(scene.depth_order) == len(things)
        # Buildings stand on the horizon, so they are always the farthest things.
        kinds = [i // 1000 for i in scene.depth_order]
        building = SCENE_CLASSES.index("building")
        if building in kinds:
            assert kinds[: kinds.count(building)] == [building] * kinds.count(building)


def test_things_overlap_so_occlusion_happens():
    # Distinct thing instances touching each other: one of them is cut by the other, which
    # happens only where their shapes overlap (or abut) and the nearer one was painted last.
    touching = 0
    for scene in make_scenes(6, seed=0):
        for a, b in ((scene.instance[:, 1:], scene.instance[:, :-1]), (scene.instance[1:], scene.instance[:-1])):
            touching += int(((a != b) & (a >= 1000) & (b >= 1000)).sum())
    assert touching > 0


def test_splits_never_share_a_seed_and_reject_other_names():
    train, test = procedural_split("train", 3, 64, 64), procedural_split("test", 3, 64, 64)
    assert np.array_equal(train[1].image, make_scene(1, 64, 64).image)
    assert np.array_equal(test[0].image, make_scene(1_000_000, 64, 64).image)
    assert not any(np.array_equal(a.image, b.image) for a in train for b in test)
    with pytest.raises(ValueError, match="'val'"):
        procedural_split("val", 3)


def test_a_scene_is_made_directly_by_its_index_and_is_the_one_the_split_lists():
    listed = procedural_split("test", 3, 64, 64)
    for index in (0, 2):
        direct = procedural_scene("test", index, 64, 64)
        assert np.array_equal(direct.image, listed[index].image) and direct.depth_order == listed[index].depth_order
    far = procedural_scene("train", SPLIT_SIZE - 1, 32, 32)  # made at once, not after a million others
    assert np.array_equal(far.label, make_scene(TEST_SEED_START - 1, 32, 32).label)


@pytest.mark.parametrize("index", [-1, SPLIT_SIZE])
def test_a_scene_index_outside_the_split_is_refused_naming_it(index):
    with pytest.raises(InvalidInput, match=f"--scene {index}: the procedural test scenes are numbered 0..999999"):
        procedural_scene("test", index, what="--scene")


@pytest.mark.parametrize("size", [(32, 32), (64, 64), (96, 160), (200, 48)])
def test_any_size_works(size):
    scene = make_scene(3, *size)
    assert scene.label.shape == size and scene.instance.shape == size and scene.image.shape == (*size, 3)
    assert len(np.unique(scene.label)) >= 4


def test_too_small_a_scene_is_refused():
    with pytest.raises(ValueError, match="height=16"):
        make_scene(0, 16, 64)


def test_label_pictures_use_the_scene_palette_then_distinct_colours():
    scene = make_scene(0)
    picture = colorize_labels(scene.label)
    assert picture.shape == (128, 256, 3) and picture.dtype == np.uint8
    assert np.array_equal(colorize_labels(np.arange(7)[None]), SCENE_PALETTE[None])
    many = colorize_labels(np.arange(35)[None])[0]
    assert len({tuple(c) for c in many}) == 35  # Cityscapes' labels stay apart
