"""The procedural shapes set: deterministic, balanced, and boxes that hold exactly the object."""

import numpy as np
import pytest
from PIL import Image

from engine.data.shapes import (
    CLASS_NAMES,
    SAMPLE_SEED,
    make_shape_image,
    make_shape_mask,
    make_shapes,
    write_sample_images,
)

N_CLASSES = len(CLASS_NAMES)


@pytest.fixture(scope="module")
def batch():
    return make_shapes(60, seed=11)


def object_footprint(label, seed, size=64):
    """Pixels the object changes: the image minus the same scene drawn without the object."""
    with_object, _ = make_shape_image(label, size=size, seed=seed)
    without, _ = make_shape_image(label, size=size, seed=seed, with_object=False)
    return np.abs(with_object.astype(int) - without.astype(int)).max(axis=-1)


def test_class_names_hold_the_six_shapes():
    assert CLASS_NAMES[:6] == ("circle", "square", "triangle", "star", "cross", "ring")


def test_batch_shapes_and_dtypes(batch):
    assert batch.images.shape == (60, 64, 64, 3) and batch.images.dtype == np.uint8
    assert batch.labels.shape == (60,) and batch.labels.dtype == np.int64
    assert batch.boxes.shape == (60, 4) and np.issubdtype(batch.boxes.dtype, np.integer)
    assert batch.class_names == list(CLASS_NAMES)
    assert len(batch) == 60


def test_size_sets_the_image_side():
    assert make_shapes(2, size=40).images.shape == (2, 40, 40, 3)


def test_same_seed_gives_identical_batches():
    a, b = make_shapes(12, seed=5), make_shapes(12, seed=5)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.boxes, b.boxes)


def test_image_i_does_not_depend_on_n():
    short, long = make_shapes(7, seed=3), make_shapes(13, seed=3)
    np.testing.assert_array_equal(short.images, long.images[:7])
    np.testing.assert_array_equal(short.boxes, long.boxes[:7])


def test_batch_image_is_the_single_image_of_seed_and_index(batch):
    image, box = make_shape_image(9 % N_CLASSES, seed=(11, 9))
    np.testing.assert_array_equal(batch.images[9], image)
    assert tuple(batch.boxes[9]) == box


def test_different_seeds_give_different_images():
    a, b = make_shapes(6, seed=0), make_shapes(6, seed=1)
    assert all((a.images[i] != b.images[i]).mean() > 0.5 for i in range(6))


def test_int_seed_differs_from_seed_with_trailing_zero():
    # NumPy's SeedSequence alone would treat 4 and (4, 0) as one seed.
    assert not np.array_equal(make_shape_image(0, seed=4)[0], make_shape_image(0, seed=(4, 0))[0])


def test_labels_are_balanced(batch):
    np.testing.assert_array_equal(np.bincount(batch.labels, minlength=N_CLASSES), [10] * N_CLASSES)
    counts = np.bincount(make_shapes(64, seed=2).labels, minlength=N_CLASSES)
    assert counts.max() - counts.min() <= 1


def test_boxes_lie_inside_the_image(batch):
    x0, y0, x1, y1 = batch.boxes.T
    assert (0 <= x0).all() and (x0 < x1).all() and (x1 <= 64).all()
    assert (0 <= y0).all() and (y0 < y1).all() and (y1 <= 64).all()


@pytest.mark.parametrize("index", range(0, 60, 5))
def test_box_is_tight_around_the_pixels_the_object_changes(index):
    # Independent of how the box is computed: draw the scene with and without the object.
    label, seed = index % N_CLASSES, (11, index)
    footprint = object_footprint(label, seed)
    rows, cols = np.flatnonzero(footprint.any(axis=1)), np.flatnonzero(footprint.any(axis=0))
    x0, y0, x1, y1 = make_shape_image(label, seed=seed)[1]
    assert (x0 <= cols[0] and cols[-1] < x1) and (y0 <= rows[0] and rows[-1] < y1)
    # Sub-pixel edges can blend to the background value, so allow one pixel of slack.
    assert cols[0] - x0 <= 1 and x1 - 1 - cols[-1] <= 1
    assert rows[0] - y0 <= 1 and y1 - 1 - rows[-1] <= 1


def test_object_stands_out_from_the_background():
    for label in range(N_CLASSES):
        seed = (21, label)
        footprint = object_footprint(label, seed)
        inside = make_shape_mask(label, seed=seed) == 1.0
        assert np.median(footprint[inside]) > 40


def test_mask_matches_the_pixels_the_object_changes():
    for label in range(N_CLASSES):
        seed = (31, label)
        footprint = object_footprint(label, seed)
        mask = make_shape_mask(label, seed=seed)
        assert mask.shape == (64, 64) and mask.dtype == np.float32
        assert 0.0 <= mask.min() and mask.max() == 1.0
        assert not (footprint[mask == 0]).any()
        assert (footprint[mask >= 0.5] > 0).all()


def test_same_seed_and_another_label_changes_only_the_object():
    a, _ = make_shape_image(0, seed=8)
    b, _ = make_shape_image(5, seed=8)
    untouched = (make_shape_mask(0, seed=8) == 0) & (make_shape_mask(5, seed=8) == 0)
    np.testing.assert_array_equal(a[untouched], b[untouched])


def test_circle_diameter_spans_30_to_70_percent_of_the_side():
    boxes = make_shapes(120, size=64, seed=4).boxes[::N_CLASSES]  # the circles
    widths = boxes[:, 2] - boxes[:, 0]
    assert widths.min() >= 0.3 * 64 - 1 and widths.max() <= 0.7 * 64 + 2


def test_write_sample_images(tmp_path):
    paths = write_sample_images(tmp_path, size=48)
    assert [p.name for p in paths] == [f"shape_{name}.png" for name in CLASS_NAMES]
    image, _ = make_shape_image(3, size=48, seed=(SAMPLE_SEED, 3))
    np.testing.assert_array_equal(np.asarray(Image.open(paths[3]).convert("RGB")), image)


@pytest.mark.parametrize("kwargs", [
    {"label": N_CLASSES}, {"label": -1}, {"label": 0, "size": 8}, {"label": 0, "seed": -1},
])
def test_make_shape_image_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_shape_image(**kwargs)


def test_make_shapes_rejects_negative_n():
    with pytest.raises(ValueError):
        make_shapes(-1)
