"""The shapes world: deterministic, held-out combinations unseen in training, ground truth that fits."""

import numpy as np
import pytest

from mmtests.data import facts, render


def test_same_seed_gives_the_same_bytes():
    a, _, _ = render.render_scene(7, "test")
    b, _, _ = render.render_scene(7, "test")
    assert a.tobytes() == b.tobytes()


def test_splits_differ():
    assert render.render_scene(3, "train")[0].tobytes() != render.render_scene(3, "test")[0].tobytes()


@pytest.mark.parametrize("split", ["train", "test"])
def test_held_out_combinations_never_appear_outside_heldout(split):
    for seed in range(300):
        _, objects, _ = render.render_scene(seed, split)
        assert all((o.colour, o.shape) not in render.HELDOUT_COMBOS for o in objects)


def test_heldout_split_main_objects_are_all_held_out():
    for seed in range(100):
        main = render.render_scene(seed, "heldout")[1][0]
        assert (main.colour, main.shape) in render.HELDOUT_COMBOS


def test_every_shape_and_colour_is_held_out_at_most_once_per_colour():
    assert len(render.HELDOUT_COMBOS) == len(facts.COLOURS)
    assert {s for _, s in render.HELDOUT_COMBOS} == set(facts.SHAPES)


def test_bbox_encloses_the_main_object_pixels():
    image, objects, boxes = render.render_scene(11, "test")
    x0, y0, x1, y1 = boxes[0]
    main = objects[0]
    assert x0 <= main.cx <= x1 and y0 <= main.cy <= y1
    assert (x1 - x0) <= 2 * main.radius + 2 and (y1 - y0) <= 2 * main.radius + 2


def test_distractors_are_smaller_and_of_another_shape():
    for seed in range(100):
        main, *distractors = render.render_scene(seed, "train")[1]
        for d in distractors:
            assert d.radius < main.radius and d.shape != main.shape


def test_captions_always_say_which_object_is_big():
    rng = np.random.default_rng(0)
    for seed in range(50):
        objects = render.render_scene(seed, "train")[1]
        for caption in render.captions(objects, rng):
            words = set(caption.rstrip(".").split())
            assert words & {"big", "large", "small", "little"}, caption


def test_dataset_has_class_labels_bbox_and_captions():
    ds = render.build_split("test", 8)
    assert ds.features["shape"].names == list(facts.SHAPES)
    assert ds.features["colour"].names == list(facts.COLOURS)
    row = ds[0]
    assert row["image"].size == (facts.IMAGE_SIZE, facts.IMAGE_SIZE)
    assert len(row["bbox"]) == 4 and row["captions"]
    main = render.render_scene(0, "test")[1][0]
    assert facts.SHAPES[row["shape"]] == main.shape and facts.COLOURS[row["colour"]] == main.colour


def test_unknown_split_is_a_clear_error():
    with pytest.raises(ValueError, match="known: train, test, heldout"):
        render.build_split("validation", 1)


# sha256 of 5 scenes per split (pixels and captions), per WORLD_VERSION.
WORLD_DIGESTS = {1: "9346f9da80f7c03339269830b6da677992892172a97caa0e3bafa6d942e61d8b"}


def test_rendering_matches_the_world_version_digest():
    import hashlib

    h = hashlib.sha256()
    for split in ("train", "test", "heldout"):
        for i in range(5):
            image, objects, _ = render.render_scene(i, split)
            h.update(image.tobytes())
            h.update(repr(render.captions(objects, np.random.default_rng(i))).encode())
    assert h.hexdigest() == WORLD_DIGESTS.get(render.WORLD_VERSION), (
        "the shapes world renders differently from what WORLD_VERSION promises: bump WORLD_VERSION in "
        f"mmtests/data/render.py and record {h.hexdigest()} in WORLD_DIGESTS (and retrain the zoo)"
    )
