"""'A rather than B': ClassDifference(a, b) flows through every gradient and CAM method.

References: hand computations of the class codes, the linearity of gradients (the gradient of
a difference is the difference of the gradients, before any absolute value), a GradientTape
Grad-CAM written from the paper on a plain Keras logits model, tf-keras-vis 0.8.7 with a
difference score, a hand occlusion loop and Integrated Gradients' completeness."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from engine.data.shapes import make_shapes
from engine.errors import InvalidModelError
from engine.saliency import METHODS, ClassDifference, ClassTarget, TopClass, explain, runner_up
from engine.saliency.gradients import IntegratedGradients, SmoothGrad, VanillaGradients
from engine.saliency.targets import class_scores, resolve_classes
from tests.engine.saliency_helpers import tiny_model

SIZE = 24
CLASSES = ["a", "b", "c", "d"]
A, B = 2, 0


@pytest.fixture(scope="module")
def model():
    return tiny_model(SIZE, (8, 16), list(CLASSES), seed=5)


@pytest.fixture(scope="module")
def net(model):
    return model.keras_model


@pytest.fixture(scope="module")
def logits_net(net):
    """The same network with a linear output, built by hand: the independent reference."""
    twin = keras.models.clone_model(net)
    twin.set_weights(net.get_weights())
    twin.get_layer("predictions").activation = keras.activations.linear
    return twin


@pytest.fixture(scope="module")
def images():
    """Three small shapes images: an object on a textured background."""
    return make_shapes(3, size=SIZE, seed=11).images


def _code(model, target):
    return resolve_classes(model.class_names, target, np.zeros((1, model.n_classes)),
                           differences=True)[0]


def _difference_and_parts(attribute, x):
    """``attribute(x, class codes)`` for "A rather than B", for A and for B."""
    n = len(x)
    pair = resolve_classes(CLASSES, ClassDifference(A, B), np.zeros((n, len(CLASSES))),
                           differences=True)
    return (attribute(x, pair), attribute(x, np.full(n, A, np.int32)),
            attribute(x, np.full(n, B, np.int32)))


def _pearson(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


# ----------------------------------------------------------------------------- the target
def test_class_codes_score_as_computed_by_hand():
    outputs = np.array([[0.1, 2.0, -1.0], [3.0, 0.5, 0.2]], np.float32)
    pair = resolve_classes(["x", "y", "z"], ClassDifference("z", "y"), np.zeros((2, 3)),
                           differences=True)
    codes = np.array([1, -1], np.int32)
    np.testing.assert_allclose(class_scores(outputs, codes), [2.0, 3.0])
    np.testing.assert_allclose(class_scores(outputs, pair), [-3.0, -0.3], rtol=1e-6)
    np.testing.assert_allclose(ClassDifference(2, 1)(outputs), [-3.0, -0.3], rtol=1e-6)
    np.testing.assert_allclose(ClassTarget(2)(outputs) - ClassTarget(1)(outputs), [-3.0, -0.3],
                               rtol=1e-6)
    np.testing.assert_allclose(TopClass()(outputs), [2.0, 3.0])


def test_runner_up_is_the_second_most_likely_class():
    p = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    assert runner_up(p).tolist() == [2, 2]
    assert runner_up(p[1]) == 2
    with pytest.raises(InvalidModelError, match="runner-up"):
        runner_up(np.ones((2, 1)))


def test_a_difference_of_one_class_or_unknown_classes_is_refused_in_plain_words():
    with pytest.raises(InvalidModelError, match="two different classes"):
        resolve_classes(CLASSES, ClassDifference("b", 1), np.zeros((1, 4)), differences=True)
    with pytest.raises(InvalidModelError, match="no class named 'e'"):
        resolve_classes(CLASSES, ClassDifference("a", "e"), np.zeros((1, 4)), differences=True)
    with pytest.raises(InvalidModelError, match="pick a single class"):
        resolve_classes(CLASSES, ClassDifference(0, 1), np.zeros((1, 4)))


# ------------------------------------------------------------------- gradient methods
def test_vanilla_gradient_of_a_difference_is_the_difference_of_gradients(model, images):
    diff, a, b = _difference_and_parts(VanillaGradients(model).average_gradients,
                                       model.prepare(images))
    scale = np.abs(a - b).max()
    assert scale > 0
    np.testing.assert_allclose(diff, a - b, atol=1e-5 * scale)
    # and the map the page shows is that signed difference's largest |RGB|
    shown = explain(model, images, "vanilla", ClassDifference("c", "a"))
    reference = np.abs(a - b).max(axis=-1)
    for i in range(len(images)):
        assert _pearson(shown[i], reference[i]) >= 0.999


class _SignedSmoothGrad(SmoothGrad):
    """SmoothGrad's noisy samples averaged before the absolute value and the RGB maximum."""

    def reduce(self, gradients):
        return gradients

    def combine(self, image, mean, index):
        return mean


def test_smoothgrad_of_a_difference_with_the_same_seed_is_the_difference(model, images):
    method = _SignedSmoothGrad(model, samples=6, seed=3, precision="float32")
    diff, a, b = _difference_and_parts(method.attribute, model.prepare(images))
    scale = np.abs(a - b).max()
    np.testing.assert_allclose(diff, a - b, atol=1e-5 * scale)


def test_integrated_gradients_of_a_difference_add_up_to_the_logit_difference(
        model, logits_net, images):
    method = IntegratedGradients(model, steps=32, spacing="uniform")
    x = model.prepare(images)
    method.attributions(x, np.full(len(x), _code(model, ClassDifference(A, B))))
    logits = logits_net(x).numpy()  # baseline black: all zeros
    at_zero = logits_net(np.zeros_like(x[:1])).numpy()[0]
    expected = (logits[:, A] - logits[:, B]) - (at_zero[A] - at_zero[B])
    np.testing.assert_allclose(method.completeness.score_difference, expected, rtol=1e-4,
                               atol=1e-5)
    assert np.nanmax(method.completeness.relative_gap) < 0.05


# ------------------------------------------------------------------------ CAM methods
def test_gradcam_of_a_difference_matches_a_gradient_tape_computation(model, logits_net, images):
    x = model.prepare(images)
    method = METHODS["gradcam"](model, "conv2")
    ours = method.attribute(x, np.full(len(x), _code(model, ClassDifference(A, B))))
    inner = keras.Model(logits_net.inputs, [logits_net.get_layer("conv2").output,
                                            logits_net.outputs[0]])
    with tf.GradientTape() as tape:
        activations, logits = inner(tf.constant(x))
        score = logits[:, A] - logits[:, B]
    gradients = tape.gradient(score, activations).numpy()
    weights = gradients.mean(axis=(1, 2), keepdims=True)
    reference = np.maximum((weights * activations.numpy()).sum(axis=-1), 0.0)
    assert ours.shape == reference.shape == (3, 12, 12)
    assert all(np.ptp(r) > 0 for r in reference)
    for i in range(len(x)):
        assert _pearson(ours[i], reference[i]) >= 0.99


@pytest.mark.parametrize("name", ["gradcam_plus_plus", "layercam", "scorecam"])
def test_cam_methods_of_a_difference_match_tf_keras_vis(name, net, logits_net, model, images):
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

    def score(output):  # Score-CAM gets softmax(logits): the probabilities' difference
        return output[:, A] - output[:, B]

    x = model.prepare(images).astype(np.float32)
    options = dict(penultimate_layer="conv2", expand_cam=False, normalize_cam=False)
    if name == "scorecam":
        theirs = Scorecam(logits_net)(score, x, **options)
    else:
        cls = {"gradcam_plus_plus": GradcamPlusPlus, "layercam": Layercam}[name]
        theirs = cls(net, model_modifier=ReplaceToLinear(), clone=True)(score, x, **options)
    method = METHODS[name](model, "conv2", precision="float32")
    ours = method.attribute(x, np.full(len(x), _code(model, ClassDifference(A, B))))
    theirs = np.asarray(theirs)
    compared = [i for i in range(len(x)) if np.ptp(theirs[i]) > 0]
    assert compared
    for i in compared:
        assert _pearson(ours[i], theirs[i]) >= 0.99
    if name != "gradcam_plus_plus":  # its exp(score) factor only scales the map (cam.py)
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3 * np.abs(theirs).max())


def test_occlusion_of_a_difference_matches_a_hand_loop(model, images):
    image = model.prepare(images[:1])[0]
    method = METHODS["occlusion"](model, patch=12, stride=12, fill="black")
    ours = method.attribute(image[None], np.full(1, _code(model, ClassDifference(A, B))))[0]

    def margin(batch):
        p = model.probabilities(np.clip(batch, 0, 255).astype(np.uint8))
        return p[:, A] - p[:, B]

    expected = np.zeros((SIZE, SIZE), np.float32)
    base = margin(image[None])[0]
    for y in (0, 12):
        for x in (0, 12):
            covered = image.copy()
            covered[y:y + 12, x:x + 12] = 0
            expected[y:y + 12, x:x + 12] = max(base - margin(covered[None])[0], 0.0)
    np.testing.assert_allclose(ours, expected, atol=1e-5)
