"""ROAD (remove and debias): the noisy linear imputation against a dense solve of the paper's
equations written out by hand, and the curves against a tiny model and the demo model."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from engine.data.shapes import make_shape_mask, make_shapes
from engine.models.catalogue import DEMO_MODEL_PATH
from engine.models.explorable import ExplorableModel
from engine.saliency.metrics import road
from engine.saliency import road as road_module
from engine.saliency.road import impute, removal_masks

# The paper's weights, written out again: direct neighbours 1/6, diagonal ones 1/12.
WEIGHTS = {(dy, dx): (1 / 12 if dy and dx else 1 / 6)
           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx}


def dense_imputation(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Each removed pixel is the weighted mean of its in-image neighbours: one equation per
    removed pixel, assembled pixel by pixel and solved densely."""
    h, w, channels = image.shape
    unknown = [(y, x) for y in range(h) for x in range(w) if removed[y, x]]
    index = {p: i for i, p in enumerate(unknown)}
    a = np.zeros((len(unknown), len(unknown)))
    b = np.zeros((len(unknown), channels))
    for i, (y, x) in enumerate(unknown):
        for (dy, dx), weight in WEIGHTS.items():
            q = (y + dy, x + dx)
            if not (0 <= q[0] < h and 0 <= q[1] < w):
                continue
            a[i, i] += weight
            if q in index:
                a[i, index[q]] -= weight
            else:
                b[i] += weight * image[q]
    out = image.astype(np.float64).copy()
    for (y, x), value in zip(unknown, np.linalg.solve(a, b)):
        out[y, x] = value
    return out


def test_imputation_of_a_4x4_image_solves_the_papers_system():
    image = np.random.default_rng(3).integers(0, 256, (4, 4, 3)).astype(np.float64)
    removed = np.zeros((4, 4), bool)
    removed[[0, 1, 1, 2, 3], [3, 1, 2, 1, 0]] = True   # a corner, an inner group, an edge
    got = impute(image[None], removed[None], noise=0.0)[0]
    np.testing.assert_allclose(got, dense_imputation(image, removed), atol=1e-4)
    np.testing.assert_array_equal(got[~removed], image[~removed])


@pytest.mark.parametrize("max_band", [road_module._MAX_BAND, -1], ids=["banded", "sparse-lu"])
def test_both_solvers_impute_a_stack_of_images_like_the_papers_system(monkeypatch, max_band):
    # -1: every system goes to the sparse LU that wide bands (large inputs) use.
    monkeypatch.setattr(road_module, "_MAX_BAND", max_band)
    rng = np.random.default_rng(8)
    images = rng.integers(0, 256, (3, 9, 11, 3)).astype(np.float64)
    removed = rng.random((3, 9, 11)) < [[[0.0]], [[0.3]], [[0.8]]]   # none, scattered, most
    removed[:, 4, 5] = False
    got = impute(images, removed, noise=0.0)
    for image, mask, filled in zip(images, removed, got):
        np.testing.assert_allclose(filled, dense_imputation(image, mask), atol=1e-4)


def test_imputation_continues_a_linear_ramp_exactly():
    # Symmetric weights average a linear function to its own value: an inner hole is refilled
    # with the ramp, whatever its shape.
    yy, xx = np.mgrid[0:12, 0:12]
    image = np.repeat((10 + 7 * yy + 3 * xx)[..., None], 3, axis=-1).astype(np.float32)
    removed = np.zeros((12, 12), bool)
    removed[3:8, 2:9] = True
    removed[8, 5] = True
    np.testing.assert_allclose(impute(image[None], removed[None], noise=0.0)[0], image,
                               atol=1e-3)


def test_imputation_noise_has_the_requested_spread():
    image = np.full((1, 32, 32, 3), 128.0, np.float32)
    removed = np.zeros((1, 32, 32), bool)
    removed[0, 4:28, 4:28] = True
    got = impute(image, removed, noise=5.0, rng=np.random.default_rng(0))
    assert np.std(got[removed] - 128.0) == pytest.approx(5.0, rel=0.05)


def test_removal_masks_follow_the_map_and_nest():
    saliency = np.array([[0.9, 0.1], [0.5, 0.3]])
    most = removal_masks(saliency, [0.0, 0.25, 0.5, 0.75], "most")
    least = removal_masks(saliency, [0.25, 0.5], "least")
    np.testing.assert_array_equal(most[1], [[True, False], [False, False]])
    np.testing.assert_array_equal(most[2], [[True, False], [True, False]])
    np.testing.assert_array_equal(most[3], [[True, False], [True, True]])
    assert not most[0].any()
    np.testing.assert_array_equal(least[1], [[False, True], [False, True]])


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(5)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return ExplorableModel(keras.Model(inputs, outputs), name="tiny", class_names=list("abc"),
                           preprocessing="unit", input_size=(8, 8))


def test_road_curve_is_the_class_probability_of_the_imputed_images(tiny):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    maps = rng.random((2, 8, 8))
    fractions = [0.0, 0.25, 0.5]
    curve = road(tiny, images, maps, fractions=fractions, order="least", classes=[1, 2],
                 noise=0.0)
    for i, cls in enumerate([1, 2]):
        order = np.argsort(maps[i].ravel())            # least relevant first, no ties
        expected = []
        for fraction in fractions:
            removed = np.zeros(64, bool)
            removed[order[:int(fraction * 64)]] = True
            filled = dense_imputation(images[i].astype(np.float64), removed.reshape(8, 8))
            expected.append(tiny.keras_model(filled[None] / 255.0).numpy()[0, cls])
        np.testing.assert_allclose(curve.scores[i], expected, atol=1e-4)
        span_area = np.trapezoid(expected, fractions) / 0.5
        assert curve.aucs[i] == pytest.approx(span_area, abs=1e-4)
    np.testing.assert_allclose(curve.curve, curve.scores.mean(axis=0), atol=1e-6)
    assert curve.auc == pytest.approx(float(curve.aucs.mean()), abs=1e-5)  # linear in scores


@pytest.mark.parametrize("fractions, message", [([0.5, 1.0], "at 1 no pixel is left"),
                                                ([0.5, 0.2], "increasing")])
def test_road_refuses_fractions_it_cannot_score(tiny, fractions, message):
    images = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=message):
        road(tiny, images, np.zeros((1, 8, 8)), fractions=fractions)


@pytest.mark.skipif(not DEMO_MODEL_PATH.exists(), reason="demo model not built")
def test_morf_of_the_objects_silhouette_drops_faster_than_a_random_map():
    from engine.models import load_model

    demo = load_model("demo")
    seed = 4711   # neither the demo model's training nor its held-out seed
    shapes = make_shapes(6, seed=seed)
    perfect = np.stack([make_shape_mask(int(label), size=64, seed=(seed, i))
                        for i, label in enumerate(shapes.labels)])
    random = np.random.default_rng(0).random(perfect.shape)
    fractions = [0.0, 0.2, 0.4, 0.6]
    kept = road(demo, shapes.images, perfect, fractions=fractions, classes=list(shapes.labels))
    scattered = road(demo, shapes.images, random, fractions=fractions,
                     classes=list(shapes.labels))
    assert kept.auc < scattered.auc - 0.2, (kept.curve, scattered.curve)
    assert (kept.aucs < scattered.aucs).sum() >= 5
