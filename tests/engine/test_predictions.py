"""Predictions remembered per model and image (engine/predictions.py)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InvalidImageError
from engine.models import top_classes
from engine.models.explorable import ExplorableModel
from engine.predictions import cached_predict, cached_probabilities, image_key

TOL = dict(rtol=1e-5, atol=1e-6)


def _counting(model: ExplorableModel) -> list[int]:
    """Record how many images each call of ``model.probabilities`` gets."""
    calls: list[int] = []
    plain = model.probabilities

    def probabilities(images, batch_size=32):
        calls.append(len(images))
        return plain(images, batch_size)

    model.probabilities = probabilities
    return calls


@pytest.fixture
def tiny(tiny_cnn):
    """A fresh wrapper per test: its remembered rows start empty."""
    return ExplorableModel(tiny_cnn, name="tiny", class_names=["a", "b", "c"],
                           preprocessing="unit", input_size=(8, 8))


@pytest.fixture
def images(rng):
    return list(rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8))


def test_rows_are_the_networks_and_each_image_goes_through_it_once(tiny, tiny_cnn, images):
    expected = tiny_cnn.predict(np.stack(images).astype("float32") / 255.0, verbose=0)
    calls = _counting(tiny)
    np.testing.assert_allclose(cached_probabilities(tiny, images[:2]), expected[:2], **TOL)
    # Images 0 and 1 are known: only 2 and 3 are computed, in one batch, and the order holds.
    got = cached_probabilities(tiny, [images[3], images[0], images[2], images[1]])
    np.testing.assert_allclose(got, expected[[3, 0, 2, 1]], **TOL)
    assert calls == [2, 2]
    np.testing.assert_allclose(cached_probabilities(tiny, images), expected, **TOL)
    assert calls == [2, 2]


def test_an_image_twice_in_one_call_is_computed_once(tiny, images):
    calls = _counting(tiny)
    got = cached_probabilities(tiny, [images[0], images[1], images[0].copy()])
    assert calls == [2]
    np.testing.assert_array_equal(got[0], got[2])


def test_models_do_not_share_rows(tiny, tiny_cnn, images):
    other = ExplorableModel(tiny_cnn, name="tiny", class_names=["a", "b", "c"],
                            preprocessing="raw", input_size=(8, 8))
    cached_probabilities(tiny, images)
    calls = _counting(other)
    raw = tiny_cnn.predict(np.stack(images).astype("float32"), verbose=0)
    np.testing.assert_allclose(cached_probabilities(other, images), raw, **TOL)
    assert calls == [4]


def test_a_caller_cannot_change_the_remembered_rows(tiny, images):
    first = cached_probabilities(tiny, images[:1])
    first[:] = 0
    assert cached_probabilities(tiny, images[:1]).sum() == pytest.approx(1.0, abs=1e-5)


def test_one_image_array_and_errors_like_the_model(tiny, images):
    assert cached_probabilities(tiny, images[0]).shape == (1, 3)
    with pytest.raises(InvalidImageError):
        cached_probabilities(tiny, [])
    with pytest.raises(InvalidImageError):
        cached_probabilities(tiny, [np.zeros((8, 8), np.uint8)])


def test_image_key_follows_pixels_shape_and_type():
    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert image_key(image) == image_key(image.copy())
    assert image_key(image) != image_key(image[::-1])
    assert image_key(image) != image_key(image.reshape(2, 8, 3))
    assert image_key(image) != image_key(image.astype(np.float32))


def test_top_classes_by_hand():
    probs = np.array([[0.1, 0.6, 0.3], [0.4, 0.2, 0.4]], np.float32)
    got = top_classes(["a", "b", "c"], probs, top=2)
    assert [[name for name, _ in row] for row in got] == [["b", "c"], ["a", "c"]]
    assert got[0][0][1] == pytest.approx(0.6)
    assert len(top_classes(["a", "b", "c"], probs, top=10)[0]) == 3


def test_cached_predict_ranks_the_networks_probabilities(tiny, tiny_cnn, images):
    expected = tiny_cnn.predict(np.stack(images).astype("float32") / 255.0, verbose=0)
    top = cached_predict(tiny, images, top=1)
    assert [row[0][0] for row in top] == [["a", "b", "c"][i] for i in expected.argmax(1)]
