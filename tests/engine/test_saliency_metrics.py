"""Faithfulness and localisation scores, the sanity check and the data set summary, on tiny
models with hand-computed expectations."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from engine.models.explorable import ExplorableModel
from engine.saliency.dataset import dataset_saliency
from engine.saliency.metrics import (box_area_share, deletion_insertion, pointing_game,
                                     rank_correlation, saliency_in_boxes)
from engine.saliency.occlusion import blurred
from engine.saliency.sanity import randomized_copy, sanity_check, weighted_layers

SIZE = 16


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(4)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    network = keras.Model(inputs, outputs)
    return ExplorableModel(network, name="tiny", class_names=["x", "y", "z"],
                           preprocessing="unit", input_size=(SIZE, SIZE))


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(1).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def test_deletion_and_insertion_curves_by_hand(model, image):
    rng = np.random.default_rng(0)
    saliency = rng.random((SIZE, SIZE)).astype(np.float32)   # distinct values: no ties
    curves = deletion_insertion(model, image, saliency, target=1, steps=4, random_orders=1)
    x = image.astype(np.float32)
    network = model.keras_model   # softmax output, "unit" preprocessing: probabilities of x / 255

    def p1(batch):
        return float(network(batch[None] / 255.0).numpy()[0, 1])

    order = np.argsort(-saliency.ravel(), kind="stable")
    n = SIZE * SIZE
    expected_del, expected_ins = [], []
    for count in [0, 64, 128, 192, 256]:
        gone = np.zeros(n, bool)
        gone[order[:count]] = True
        gone = gone.reshape(SIZE, SIZE, 1)
        expected_del.append(p1(np.where(gone, 0, x)))
        expected_ins.append(p1(np.where(gone, x, blurred(x))))
    np.testing.assert_allclose(curves.fractions, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(curves.deletion, expected_del, atol=1e-5)
    np.testing.assert_allclose(curves.insertion, expected_ins, atol=1e-5)
    trapezoid = 0.25 * (sum(expected_del) - (expected_del[0] + expected_del[-1]) / 2)
    assert curves.deletion_auc == pytest.approx(trapezoid, abs=1e-5)
    # Both ends of every curve are the same images whatever the order.
    assert curves.random_deletion[0] == pytest.approx(curves.deletion[0], abs=1e-6)
    assert curves.random_insertion[-1] == pytest.approx(curves.insertion[-1], abs=1e-6)
    assert curves.target == 1


def test_pointing_game_and_box_share_by_hand():
    maps = np.zeros((2, 10, 10), np.float32)
    maps[0, 2, 3] = 1.0          # peak at x=3, y=2
    maps[0, 8, 8] = 0.5
    maps[1, 9, 9] = 1.0          # peak at x=9, y=9
    boxes = np.array([[2, 1, 5, 4], [0, 0, 5, 5]])
    np.testing.assert_array_equal(pointing_game(maps, boxes), [True, False])
    np.testing.assert_array_equal(pointing_game(maps, boxes, tolerance=5), [True, True])
    np.testing.assert_allclose(saliency_in_boxes(maps, boxes), [1 / 1.5, 0.0])
    np.testing.assert_allclose(box_area_share(boxes, (10, 10)), [0.09, 0.25])


def test_rank_correlation_is_spearman():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(3)
    a = rng.random((12, 12))
    b = a + 0.3 * rng.random((12, 12))
    b[:3] = 0.0                   # ties
    assert rank_correlation(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel())[0], abs=1e-9)
    assert rank_correlation(a, a**3) == pytest.approx(1.0)
    assert np.isnan(rank_correlation(a, np.zeros_like(a)))


def test_randomized_copy_changes_only_the_top_layers_of_a_copy(model):
    before = [w.copy() for w in model.keras_model.get_weights()]
    copy = randomized_copy(model, n_layers=1, seed=0)
    for a, b in zip(before, model.keras_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert weighted_layers(model.keras_model) == ["conv1", "conv2", "predictions"]
    for path in ("conv1", "conv2"):
        for a, b in zip(model.keras_model.get_layer(path).get_weights(),
                        copy.keras_model.get_layer(path).get_weights()):
            np.testing.assert_array_equal(a, b)
    kernel = model.keras_model.get_layer("predictions").get_weights()[0]
    new_kernel = copy.keras_model.get_layer("predictions").get_weights()[0]
    assert not np.allclose(kernel, new_kernel)
    assert new_kernel.std() == pytest.approx(kernel.std(), rel=0.5)


def test_sanity_check_keeps_the_class_and_reports_correlations(model, image):
    result = sanity_check(model, [image, image[::-1]], "gradcam", n_layers=2)
    assert result.rank_correlation.shape == (2,)
    assert result.randomized_layers == ["predictions", "conv2"]
    assert result.flagged == (np.nanmean(result.rank_correlation) >= 0.5)
    # A map compared with itself is perfectly correlated: the randomisation is what differs.
    same = sanity_check(model, [image], "gradcam", randomized=model)
    assert same.rank_correlation[0] == pytest.approx(1.0) and same.flagged


def test_dataset_saliency_means_and_box_shares(model):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)
    labels = np.array([0, 1, 0, 2, 1])
    boxes = np.array([[0, 0, 8, 8]] * 5)
    from engine.saliency import explain

    maps = explain(model, images, "gradcam", target=list(labels))
    summary = dataset_saliency(model, images, labels, boxes, method="gradcam", batch_size=2)
    np.testing.assert_array_equal(summary.counts, [2, 2, 1])
    np.testing.assert_allclose(summary.mean_maps[0], maps[[0, 2]].mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(summary.box_share, saliency_in_boxes(maps, boxes), atol=1e-6)
    np.testing.assert_allclose(summary.box_area, [0.25] * 5)
    np.testing.assert_array_equal(summary.pointing, pointing_game(maps, boxes))
    np.testing.assert_array_equal(summary.predicted, model.probabilities(images).argmax(1))
