"""Each channel's contribution to a class score (activation x gradient summed over positions).

References: on the bundled demo model (global average pooling then Dense), the logit computed
by hand from the penultimate features and the Dense kernel, which the contributions plus the
bias must equal (completeness, 50 images of a seed never used in training); on a tiny network
with a non-linear head, a GradientTape written from the definition."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from engine.data.shapes import make_shapes
from engine.errors import InvalidImageError, InvalidModelError
from engine.saliency import ClassDifference, channel_contributions
from tests.engine.saliency_helpers import tiny_model

# Training used seed 0, the held-out accuracy seed 1000, the bundled samples 4242.
FRESH_SEED = 8675309
SIZE = 16


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(50, seed=FRESH_SEED)


@pytest.fixture(scope="module")
def by_hand(demo, shapes):
    """(N, n_classes) logits from the penultimate features and the Dense layer, by hand."""
    net = demo.keras_model
    features = keras.Model(net.inputs, net.get_layer("global_pool").output)
    pooled = features(demo.preprocess(tf.constant(demo.prepare(shapes.images)))).numpy()
    kernel, bias = net.get_layer("predictions").get_weights()
    return pooled.astype(np.float64) @ kernel + bias, bias


def _relative_gap(found, logit):
    return abs(found.values.sum() + found.bias - logit) / max(abs(logit), 1e-6)


def test_contributions_plus_bias_are_the_logit_of_the_top_and_another_class(demo, shapes,
                                                                             by_hand):
    logits, dense_bias = by_hand
    gaps = []
    for image, row in zip(shapes.images, logits):
        top = channel_contributions(demo, image)
        other_class = int(np.argsort(row)[0])  # the least likely class
        other = channel_contributions(demo, image, target=other_class)
        assert top.layer == "block4_conv2" and top.target == int(row.argmax())
        for found, cls in ((top, int(row.argmax())), (other, other_class)):
            gaps.append(_relative_gap(found, row[cls]))
            assert found.score == pytest.approx(row[cls], rel=1e-4, abs=1e-5)
            assert found.bias == pytest.approx(dense_bias[cls], abs=1e-4 * abs(row[cls]) + 1e-5)
    assert len(gaps) == 100 and max(gaps) <= 1e-4, f"largest relative gap {max(gaps):.2e}"


def test_contributions_of_a_difference_are_the_differences(demo, shapes, by_hand):
    logits, dense_bias = by_hand
    image, row = shapes.images[3], logits[3]
    a, b = (int(c) for c in np.argsort(-row)[:2])
    diff = channel_contributions(demo, image, target=ClassDifference(a, b))
    first = channel_contributions(demo, image, target=a)
    second = channel_contributions(demo, image, target=b)
    np.testing.assert_allclose(diff.values, first.values - second.values, atol=1e-5)
    assert diff.score == pytest.approx(row[a] - row[b], rel=1e-4)
    assert diff.bias == pytest.approx(dense_bias[a] - dense_bias[b], abs=1e-4)


@pytest.fixture(scope="module")
def tiny():
    """Conv -> conv -> GAP -> Dense: the first conv's channels reach the score non-linearly."""
    return tiny_model(SIZE, (4, 6), ["x", "y", "z"], seed=2, pool=False)


def test_contributions_are_activation_times_gradient_summed_over_positions(tiny):
    image = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    found = channel_contributions(tiny, image, layer="conv1", target="y")
    net = tiny.keras_model
    conv1 = net.get_layer("conv1")
    head = keras.Sequential([net.get_layer("conv2"), net.get_layer("gap")])
    kernel, bias = net.get_layer("predictions").get_weights()
    with tf.GradientTape() as tape:
        activations = conv1(image[None].astype(np.float32) / 255)
        tape.watch(activations)
        logit = tf.matmul(head(activations), kernel)[:, 1] + bias[1]
    gradients = tape.gradient(logit, activations).numpy()
    expected = (activations.numpy() * gradients)[0].sum(axis=(0, 1))
    np.testing.assert_allclose(found.values, expected, rtol=1e-4, atol=1e-6)
    assert found.score == pytest.approx(float(logit[0]), rel=1e-5)
    assert found.bias == pytest.approx(float(logit[0]) - expected.sum(), abs=1e-4)
    assert np.all(np.diff(np.abs(found.values[found.order])) <= 0)
    assert sorted(found.order.tolist()) == list(range(4))


def test_top_channels_of_each_sign():
    from engine.saliency import ChannelContributions

    values = np.array([0.5, -2.0, 1.5, 0.0, -0.1])
    found = ChannelContributions("l", values, np.argsort(-np.abs(values), kind="stable"),
                                 0.0, values.sum(), 0)
    assert found.top(2).tolist() == [1, 2]
    assert found.top(5, sign=1).tolist() == [2, 0]
    assert found.top(1, sign=-1).tolist() == [1]


def test_a_layer_without_a_grid_or_a_batch_is_refused_in_plain_words(tiny):
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    with pytest.raises(InvalidModelError, match="no spatial grid"):
        channel_contributions(tiny, image, layer="predictions")
    with pytest.raises(InvalidImageError, match="one"):
        channel_contributions(tiny, np.zeros((2, SIZE, SIZE, 3), np.uint8))
