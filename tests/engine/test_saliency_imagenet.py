"""Saliency on a real trained ImageNet network (MobileNet v1 0.25 with its ImageNet weights, from
the test-only SHARED_WEIGHTS folder of tests/conftest.py) and real photos, against tf-keras-vis
0.8.7 and known properties.

The tiny-model tests check the arithmetic; these check it where it matters: batch norm, depthwise
convolutions, a softmax head behind a reshape, a 7x7 last block, real images."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from engine.models.explorable import ExplorableModel
from engine.saliency import METHODS, explain
from engine.saliency.base import normalize, resize_map
from engine.saliency.gradients import IntegratedGradients
from engine.saliency.sanity import sanity_check
from ui.images import PHOTOS

LAYER = "conv_pw_13_relu"


@pytest.fixture(scope="module")
def model(mobilenet_weights):
    """Every test here uses it: without the weights file they all skip (or fail under
    REQUIRE_WEIGHTS=1)."""
    network = keras.applications.MobileNet(alpha=0.25, input_shape=(224, 224, 3),
                                           weights=str(mobilenet_weights))
    return ExplorableModel(network, name="mobilenet_0.25", preprocessing="tf",
                           class_names=[f"class {i}" for i in range(1000)],
                           input_size=(224, 224))


@pytest.fixture(scope="module")
def photos(model):
    """The cat and the espresso (the photos this network gets right), at 224 x 224."""
    import skimage.data

    assert {"chelsea", "coffee"} <= set(PHOTOS)
    images = [getattr(skimage.data, name)() for name in ("chelsea", "coffee")]
    return model.prepare(images).astype(np.uint8)


@pytest.fixture(scope="module")
def network_input(model, photos):
    return model.preprocess(tf.constant(photos, tf.float32)).numpy()


def _pearson(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_the_network_sees_a_cat_and_an_espresso(model, photos):
    top = model.probabilities(photos).argmax(axis=1)
    assert 281 <= top[0] <= 287 and top[1] == 967   # a cat class; espresso


@pytest.mark.parametrize("name", ["gradcam", "gradcam_plus_plus", "layercam",
                                  pytest.param("scorecam", marks=pytest.mark.slow)])
def test_cam_methods_match_tf_keras_vis_on_a_trained_network(name, model, photos, network_input):
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    if name == "scorecam":  # 256 masked forward passes per image and side: the cat only
        photos, network_input = photos[:1], network_input[:1]
    classes = model.probabilities(photos).argmax(axis=1)
    score = CategoricalScore(list(classes))
    kwargs = dict(penultimate_layer=LAYER, seek_penultimate_conv_layer=False)
    if name == "scorecam":
        # Softmax weights of the logits are the class probabilities, as ours.
        vis = Scorecam(model.keras_model, model_modifier=ReplaceToLinear(), clone=True)
    else:
        cls = {"gradcam": Gradcam, "gradcam_plus_plus": GradcamPlusPlus,
               "layercam": Layercam}[name]
        vis = cls(model.keras_model, model_modifier=ReplaceToLinear(), clone=True)
    theirs_grid = np.asarray(vis(score, network_input, expand_cam=False, **kwargs))
    theirs_full = np.asarray(vis(score, network_input, **kwargs))
    ours_grid = METHODS[name](model, LAYER, precision="float32").attribute(
        photos.astype(np.float32), classes)
    ours_full = explain(model, photos, name, list(classes), LAYER, precision="float32")
    assert ours_grid.shape == theirs_grid.shape == (len(photos), 7, 7)
    for i in range(len(photos)):
        assert _pearson(normalize(ours_grid[i]), theirs_grid[i]) >= 0.99
        # Upsampled, the maps differ by the resize convention alone: ours puts each of the 7
        # cells at the centre of its 32-pixel patch (half-pixel centres), tf-keras-vis'
        # scipy zoom stretches the grid corner to corner, up to 16 pixels apart at the edges.
        assert _pearson(ours_full[i], theirs_full[i]) >= 0.9
        assert _pearson(ours_full[i], resize_map(theirs_grid[i], (224, 224))) >= 0.99


def test_vanilla_and_smoothgrad_match_tf_keras_vis_on_a_trained_network(model, photos,
                                                                        network_input):
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    classes = model.probabilities(photos).argmax(axis=1)
    vis = Saliency(model.keras_model, model_modifier=ReplaceToLinear(), clone=True)
    score = CategoricalScore(list(classes))
    # tf-keras-vis differentiates the preprocessed input, we the 0-255 pixels: "tf"
    # preprocessing is x / 127.5 - 1, so the gradients differ by a constant factor only.
    theirs = vis(score, network_input)
    ours = explain(model, photos, "vanilla", list(classes))
    np.random.seed(3)
    theirs_smooth = vis(score, network_input, smooth_samples=8, smooth_noise=0.2)
    ours_smooth = explain(model, photos, "smoothgrad", list(classes), samples=8, seed=3,
                          precision="float32")
    for i in range(2):
        assert _pearson(ours[i], theirs[i]) >= 0.99
        assert _pearson(ours_smooth[i], theirs_smooth[i]) >= 0.99


def test_bfloat16_smoothgrad_matches_tf_keras_vis_on_a_trained_network(model, photos,
                                                                      network_input):
    """The bar: SmoothGrad with 50 samples, r >= 0.9 against tf-keras-vis (float32),
    here computed in bfloat16. With the same noise seed the bfloat16 map clears it (0.99 and
    0.95); with another seed two 50-sample SmoothGrads differ by their noise already (our
    float32 map: r 0.95 and 0.88), so there the bfloat16 map must be as close as that one."""
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    classes = model.probabilities(photos).argmax(axis=1)
    vis = Saliency(model.keras_model, model_modifier=ReplaceToLinear(), clone=True)
    theirs = {}
    for seed in (3, 4):
        np.random.seed(seed)
        theirs[seed] = vis(CategoricalScore(list(classes)), network_input, smooth_samples=50,
                           smooth_noise=0.2)
    ours = explain(model, photos, "smoothgrad", list(classes), samples=50, seed=3,
                   precision="bfloat16")
    full = explain(model, photos, "smoothgrad", list(classes), samples=50, seed=3,
                   precision="float32")
    for i in range(2):
        assert _pearson(ours[i], theirs[3][i]) >= 0.9
        assert _pearson(ours[i], theirs[4][i]) >= min(0.9, _pearson(full[i], theirs[4][i]) - 0.03)


@pytest.mark.slow
def test_bfloat16_score_cam_matches_tf_keras_vis_on_a_trained_network(model, photos,
                                                                     network_input):
    """The bar for Score-CAM, r >= 0.99 at the layer's 7x7 grid, computed in bfloat16."""
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    classes = model.probabilities(photos[:1]).argmax(axis=1)
    vis = Scorecam(model.keras_model, model_modifier=ReplaceToLinear(), clone=True)
    theirs = np.asarray(vis(CategoricalScore(list(classes)), network_input[:1],
                            penultimate_layer=LAYER, seek_penultimate_conv_layer=False,
                            expand_cam=False))
    ours = METHODS["scorecam"](model, LAYER, precision="bfloat16").attribute(
        photos[:1].astype(np.float32), classes)
    assert _pearson(normalize(ours[0]), theirs[0]) >= 0.99


def test_integrated_gradients_complete_on_a_trained_network(model, photos):
    logits = keras.Model(model.keras_model.inputs,
                         model.keras_model.get_layer("reshape_2").output)  # before the softmax
    classes = model.probabilities(photos).argmax(axis=1).astype(np.int32)
    x = photos.astype(np.float32)
    attributions = IntegratedGradients(model, steps=64).attributions(x, classes)
    f = logits(model.preprocess(tf.constant(x))).numpy()[np.arange(2), classes]
    f0 = logits(model.preprocess(tf.zeros_like(x))).numpy()[np.arange(2), classes]
    np.testing.assert_allclose(attributions.sum(axis=(1, 2, 3)), f - f0, rtol=0.05)


def test_randomising_the_top_blocks_changes_gradcam(model, photos):
    """The head and the last depthwise-separable block (its two convolutions and their batch
    norms) re-drawn at random: the map of the trained network is gone."""
    result = sanity_check(model, photos, "gradcam", layer=LAYER, n_layers=5)
    assert result.randomized_layers == ["conv_preds", "conv_pw_13_bn", "conv_pw_13",
                                        "conv_dw_13_bn", "conv_dw_13"]
    assert result.rank_correlation.max() < 0.5 and not result.flagged
