"""Concepts by non-negative matrix factorisation of a layer's activations.

References: the object masks of the shapes generator (a concept's peak on the object), the
bundled demo model's head (global average pooling then Dense), from which each concept's
importance and the part of the logit the concepts explain are computed by hand, and the
resized images from which a concept's patches must be cut."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from engine.data.shapes import make_shape_mask, make_shapes
from engine.errors import InvalidImageError, InvalidModelError
from engine.features import concept_patches, concepts
from engine.models.explorable import ExplorableModel
from engine.saliency.base import resize_map

# Training used seed 0, the held-out accuracy seed 1000, the bundled samples 4242.
FRESH_SEED = 271828
LAYER = "block4_conv2"  # the demo's CAM layer, then global_pool, then predictions


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(48, seed=FRESH_SEED)


def _masks(shapes, seed=FRESH_SEED):
    return np.stack([make_shape_mask(int(label), seed=(seed, i))
                     for i, label in enumerate(shapes.labels)])


def _peak_on(concept_map, mask) -> bool:
    up = resize_map(concept_map, mask.shape)
    return bool(mask[np.unravel_index(up.argmax(), up.shape)] > 0)


def test_one_concept_of_each_image_peaks_on_the_object(demo, shapes):
    masks = _masks(shapes)
    any_hit, top_hit, top_elsewhere = [], [], []
    for i, image in enumerate(shapes.images):
        found = concepts(demo, image, k=6)
        assert found.maps.shape == (1, 8, 8, 6) and found.components.shape == (6, 128)
        any_hit.append(any(_peak_on(found.maps[0, ..., j], masks[i]) for j in range(6)))
        top_hit.append(_peak_on(found.maps[0, ..., 0], masks[i]))
        # control: the most important concept's peak against another image's object
        top_elsewhere.append(_peak_on(found.maps[0, ..., 0], masks[(i + 1) % len(masks)]))
    assert np.mean(any_hit) >= 0.9, f"a peak on the object in {np.mean(any_hit):.0%} of images"
    # Six peaks on an 8x8 grid often touch some object by chance (objects sit near the middle),
    # so the most important concept alone must find its own image's object far more often.
    assert np.mean(top_hit) >= 0.7, f"top concept on the object in {np.mean(top_hit):.0%}"
    assert np.mean(top_elsewhere) <= np.mean(top_hit) - 0.25


def _by_hand(demo, images, classes):
    """The layer's activations and the class's Dense column, by plain Keras."""
    net = demo.keras_model
    layer = keras.Model(net.inputs, net.get_layer(LAYER).output)
    activations = layer(demo.preprocess(tf.constant(demo.prepare(images)))).numpy()
    kernel, bias = net.get_layer("predictions").get_weights()
    return activations.astype(np.float64), kernel[:, classes].T, bias[classes]


def test_importances_add_up_to_the_logit_the_concepts_explain(demo, shapes):
    cls = 2
    images = shapes.images[shapes.labels == cls]
    found = concepts(demo, images, LAYER, k=4, target=shapes.class_names[cls])
    assert (found.classes == cls).all()
    activations, columns, biases = _by_hand(demo, images, found.classes)
    n, h, w, c = activations.shape
    maps = found.maps.astype(np.float64)
    components = found.components.astype(np.float64)
    # GAP then Dense: d logit / d A[p, c] = kernel[c] / (h w) at every position
    per_image = np.einsum("nhwk,kc,nc->nk", maps, components, columns) / (h * w)
    np.testing.assert_allclose(found.importance, per_image.mean(axis=0), rtol=1e-4, atol=1e-6)
    logits = activations.mean(axis=(1, 2)) @ columns.T
    logits = np.diagonal(logits) + biases
    reconstruction = np.einsum("nhwk,kc->nhwc", maps, components)
    residual = np.einsum("nhwc,nc->n", activations - reconstruction, columns) / (h * w)
    explained = np.mean(logits - biases - residual)
    np.testing.assert_allclose(found.scores, logits, rtol=1e-4)
    np.testing.assert_allclose(found.bias, biases, atol=1e-4 * np.abs(logits).max())
    assert found.importance.sum() == pytest.approx(explained, rel=1e-4)
    assert found.explained == pytest.approx(explained, rel=1e-4)
    assert np.all(np.diff(found.importance) <= 0)  # most important first
    # the factorisation keeps most of the score: the concepts explain >= 90 % of the logit
    assert explained >= 0.9 * logits.mean()


def test_factors_are_non_negative_and_rebuild_the_activations(demo, shapes):
    images = shapes.images[:6]
    found = concepts(demo, images, LAYER, k=6, seed=1)
    activations = _by_hand(demo, images, found.classes)[0]
    assert found.maps.min() >= 0 and found.components.min() >= 0
    np.testing.assert_allclose(np.linalg.norm(found.components, axis=1), 1.0, rtol=1e-5)
    rebuilt = np.einsum("nhwk,kc->nhwc", found.maps, found.components)
    error = np.linalg.norm(rebuilt - activations) / np.linalg.norm(activations)
    assert error < 0.6, f"relative reconstruction error {error:.2f}"
    again = concepts(demo, images, LAYER, k=6, seed=1)
    np.testing.assert_array_equal(found.maps, again.maps)


def test_concept_patches_are_the_receptive_fields_of_the_strongest_images(demo, shapes):
    images = shapes.images[shapes.labels == 0]
    found = concepts(demo, images, LAYER, k=3, target=0)
    examples = concept_patches(demo, found, images, concept=0, n=3)
    strength = found.maps[..., 0].reshape(len(images), -1).max(axis=1)
    assert [e.index for e in examples] == np.argsort(-strength, kind="stable")[:3].tolist()
    prepared = demo.prepare(images)
    for example in examples:
        x0, y0, x1, y1 = example.box
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        assert max(x1 - x0, y1 - y0) <= found.rf_size
        np.testing.assert_array_equal(example.patch,
                                      prepared[example.index][y0:y1, x0:x1].astype(np.uint8))
    with pytest.raises(InvalidImageError, match="same images"):
        concept_patches(demo, found, images[:2], concept=0)


def test_progress_reports_each_batch_then_the_factorisation(demo, shapes):
    calls = []
    concepts(demo, shapes.images[:3], LAYER, k=2, batch_size=2,
             progress=lambda done, total, stage: calls.append((done, total, stage)))
    assert [(d, t) for d, t, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    assert all(isinstance(stage, str) and stage for _, _, stage in calls)


@pytest.fixture(scope="module")
def dead():
    """A network whose convolution never fires (zero kernel, negative bias, ReLU)."""
    inputs = keras.Input((16, 16, 3))
    conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")
    x = keras.layers.GlobalAveragePooling2D()(conv(inputs))
    net = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    conv.set_weights([np.zeros((3, 3, 3, 4), np.float32), -np.ones(4, np.float32)])
    return ExplorableModel(net, name="dead", class_names=["p", "q"], preprocessing="raw",
                           input_size=(16, 16))


def test_bad_requests_are_refused_in_plain_words(dead):
    image = np.full((16, 16, 3), 100, np.uint8)
    with pytest.raises(InvalidModelError, match="fires"):
        concepts(dead, image, "conv", k=2)
    with pytest.raises(ValueError, match="k must be between 1 and 4"):
        concepts(dead, image, "conv", k=5)
