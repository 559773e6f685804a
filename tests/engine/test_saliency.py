"""Saliency methods against independent references: tf-keras-vis 0.8.7, a GradientTape Grad-CAM
written from the paper, Integrated Gradients' completeness, a hand loop for occlusion, and the
same network flattened vs nested. Tiny models: the whole file runs in seconds."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from engine.errors import InvalidImageError, InvalidModelError
from engine.models.explorable import ExplorableModel
from engine.saliency import METHODS, explain
from engine.saliency.base import normalize, resize_map
from engine.saliency.cam import GradCAM
from engine.saliency.gradients import IntegratedGradients
from engine.saliency.graph import forward_graph
from engine.saliency.occlusion import Occlusion

SIZE = 24
CLASSES = ["a", "b", "c", "d"]


def _layers(prefix="", rescale=True):
    """The layers of the test network (fresh objects each call, fixed by the seed)."""
    return [keras.layers.Rescaling(1 / 255, name=f"{prefix}scale")] * rescale + [
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name=f"{prefix}conv1"),
        keras.layers.MaxPooling2D(2, name=f"{prefix}pool1"),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name=f"{prefix}conv2"),
    ]


def _head(activation="softmax"):
    return [keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(len(CLASSES), activation=activation, name="predictions")]


def _functional(layers):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


def _wrap(network, name="tiny", preprocessing="raw"):
    # "raw": the network rescales itself, the wrapper passes 0-255 through unchanged.
    return ExplorableModel(network, name=name, class_names=list(CLASSES),
                           preprocessing=preprocessing, input_size=(SIZE, SIZE))


@pytest.fixture(scope="module")
def net():
    """A network that takes [-1, 1] input, as MobileNet: preprocessing has an offset, so it
    matters whether a method works on the pixels or on the network input."""
    keras.utils.set_random_seed(3)
    return _functional(_layers(rescale=False) + _head())


@pytest.fixture(scope="module")
def model(net):
    return _wrap(net, preprocessing="tf")


def _network_input(images):
    """What tf-keras-vis is given: the network's own input (x / 127.5 - 1)."""
    return images.astype(np.float32) / 127.5 - 1.0


@pytest.fixture(scope="module")
def images():
    """Smooth random images with a bright blob: structure for the maps to find."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    out = []
    for cy, cx in [(6, 6), (16, 12), (10, 18)]:
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0)[..., None]
        base = rng.uniform(40, 120, (1, 1, 3)) + 20 * rng.standard_normal((SIZE, SIZE, 3))
        out.append(np.clip(base + 200 * blob * rng.uniform(0.5, 1, 3), 0, 255).astype(np.uint8))
    return np.stack(out)


def _pearson(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def _top_classes(model, images):
    return model.probabilities(images).argmax(axis=1)


# ------------------------------------------------------------------------- tf-keras-vis
def _tfkv(name, net, images, classes, expand):
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    score = CategoricalScore(list(classes))
    x = _network_input(images)
    if name == "scorecam":
        # Score-CAM's weights are softmax(model output): give it logits so that they are the
        # class probabilities, as in our implementation.
        linear = _logits_twin(net)
        return Scorecam(linear)(score, x, penultimate_layer="conv2", expand_cam=expand)
    cls = {"gradcam": Gradcam, "gradcam_plus_plus": GradcamPlusPlus, "layercam": Layercam}[name]
    return cls(net, model_modifier=ReplaceToLinear(), clone=True)(
        score, x, penultimate_layer="conv2", expand_cam=expand)


def _logits_twin(net):
    twin = keras.models.clone_model(net)
    twin.set_weights(net.get_weights())
    twin.get_layer("predictions").activation = keras.activations.linear
    return twin


@pytest.mark.parametrize("name", ["gradcam", "gradcam_plus_plus", "layercam", "scorecam"])
def test_cam_methods_match_tf_keras_vis(name, net, model, images):
    classes = _top_classes(model, images)
    method = METHODS[name](model, "conv2", precision="float32")
    ours_grid = method.attribute(model.prepare(images), classes)
    theirs_grid = np.asarray(_tfkv(name, net, images, classes, expand=False))
    theirs_full = np.asarray(_tfkv(name, net, images, classes, expand=True))
    ours_full = explain(model, images, name, list(classes), "conv2", precision="float32")
    assert ours_grid.shape == theirs_grid.shape == (3, 12, 12)
    for i in range(len(images)):
        # The bar is r >= 0.99; the same formula on the same grid gives equal maps up to
        # float rounding, and 0.999 also catches a Score-CAM that masks the pixels instead of
        # the network input (r ~ 0.998 here, 0.96 on a trained MobileNet).
        assert _pearson(normalize(ours_grid[i]), theirs_grid[i]) >= 0.999
        assert _pearson(ours_full[i], theirs_full[i]) >= 0.95


def test_vanilla_gradients_match_tf_keras_vis(net, model, images):
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    classes = _top_classes(model, images)
    theirs = Saliency(net, model_modifier=ReplaceToLinear(), clone=True)(
        CategoricalScore(list(classes)), _network_input(images))
    ours = explain(model, images, "vanilla", list(classes))
    for i in range(len(images)):
        assert _pearson(ours[i], theirs[i]) >= 0.99


def test_smoothgrad_matches_tf_keras_vis_with_the_same_noise_seed(net, model, images):
    """Our SmoothGrad draws its noise as tf-keras-vis does (NumPy's legacy generator, seeded):
    the same seed, the same 50 noisy copies."""
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    classes = _top_classes(model, images)
    np.random.seed(5)
    theirs = Saliency(net, model_modifier=ReplaceToLinear(), clone=True)(
        CategoricalScore(list(classes)), _network_input(images), smooth_samples=50,
        smooth_noise=0.2)
    ours = explain(model, images, "smoothgrad", list(classes), samples=50, noise=0.2, seed=5,
                   precision="float32")
    other_seed = explain(model, images, "smoothgrad", list(classes), samples=50, seed=6,
                         precision="float32")
    for i in range(len(images)):
        assert _pearson(ours[i], theirs[i]) >= 0.99
        assert _pearson(other_seed[i], theirs[i]) < 0.99   # the seed is what makes them agree


# ------------------------------------------------------------------------------- bfloat16
def test_bfloat16_smoothgrad_stays_faithful_to_tf_keras_vis(net, model, images):
    """With the same noise seed, bfloat16 SmoothGrad (50 samples) is tf-keras-vis' float32 map
    up to rounding; with another seed it is as close as our float32 map is (on this tiny
    network two 50-sample SmoothGrads differ: r 0.80-0.88). The bfloat16 map is not the
    float32 one: it did compute in bfloat16."""
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    classes = _top_classes(model, images)
    vis = Saliency(net, model_modifier=ReplaceToLinear(), clone=True)
    theirs = {}
    for seed in (5, 6):
        np.random.seed(seed)
        theirs[seed] = vis(CategoricalScore(list(classes)), _network_input(images),
                           smooth_samples=50, smooth_noise=0.2)
    low = explain(model, images, "smoothgrad", list(classes), samples=50, seed=5,
                  precision="bfloat16")
    full = explain(model, images, "smoothgrad", list(classes), samples=50, seed=5,
                   precision="float32")
    assert not np.array_equal(low, full)
    for i in range(len(images)):
        assert _pearson(low[i], theirs[5][i]) >= 0.99
        assert _pearson(low[i], theirs[6][i]) >= _pearson(full[i], theirs[6][i]) - 0.02


def test_bfloat16_score_cam_stays_faithful_to_tf_keras_vis(net, model, images):
    """The bar for Score-CAM: r >= 0.99 against tf-keras-vis at the layer's grid."""
    classes = _top_classes(model, images)
    theirs = np.asarray(_tfkv("scorecam", net, images, classes, expand=False))
    x = model.prepare(images)
    low = METHODS["scorecam"](model, "conv2", precision="bfloat16").attribute(x, classes)
    full = METHODS["scorecam"](model, "conv2", precision="float32").attribute(x, classes)
    assert not np.array_equal(low, full)
    for i in range(len(images)):
        assert _pearson(normalize(low[i]), theirs[i]) >= 0.99
        assert _pearson(low[i], full[i]) >= 0.99


def test_precision_auto_is_the_fast_precision_of_this_machine(model):
    from engine.actmax.optimize import fast_precision

    assert METHODS["smoothgrad"](model, precision="auto").precision == fast_precision()
    # Methods that read one pass, or sum a path (Integrated Gradients' completeness), stay exact.
    assert METHODS["gradcam"](model, precision="bfloat16").precision == "float32"
    assert METHODS["integrated_gradients"](model, precision="bfloat16").precision == "float32"
    with pytest.raises(ValueError):
        METHODS["smoothgrad"](model, precision="float16")


# ----------------------------------------------------------------- hand-written references
def _gradcam_reference(net, layer_name, images, classes):
    """Grad-CAM from Selvaraju et al., eq. 1-2, on the logits (pre-softmax scores)."""
    layer = net.get_layer(layer_name)
    head = net.get_layer("predictions")
    features = keras.Model(net.inputs, layer.output)
    maps = []
    for image, c in zip(_network_input(images), classes):
        with tf.GradientTape() as tape:
            a = features(image[None])
            tape.watch(a)
            pooled = tf.reduce_mean(a, axis=(1, 2))
            y_c = (tf.matmul(pooled, head.kernel) + head.bias)[0, c]   # logit of class c
        grads = tape.gradient(y_c, a)[0]                                # dy^c / dA^k_ij
        alpha = tf.reduce_mean(grads, axis=(0, 1))                      # eq. 1: alpha^c_k
        cam = tf.nn.relu(tf.reduce_sum(alpha * a[0], axis=-1))          # eq. 2
        maps.append(cam.numpy())
    return np.stack(maps)


def test_gradcam_matches_a_gradient_tape_reference(net, model, images):
    classes = _top_classes(model, images)
    reference = _gradcam_reference(net, "conv2", images, classes)
    ours = GradCAM(model, "conv2").attribute(model.prepare(images), classes)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-6)


def test_integrated_gradients_are_complete(images):
    keras.utils.set_random_seed(5)
    network = _functional(_layers() + _head(activation=None))   # logits out: f is the output
    model = _wrap(network, "logits")
    x = model.prepare(images)
    classes = np.array([0, 1, 2], np.int32)
    ig = IntegratedGradients(model, steps=64)
    attributions = ig.attributions(x, classes)
    logits_x = network(x).numpy()[np.arange(3), classes]
    logits_b = network(np.zeros_like(x)).numpy()[np.arange(3), classes]
    expected = logits_x - logits_b
    assert np.all(np.abs(expected) > 1e-3)
    np.testing.assert_allclose(attributions.sum(axis=(1, 2, 3)), expected, rtol=0.05)


@pytest.mark.parametrize("spacing", ["uniform", "adaptive"])
def test_integrated_gradients_report_their_completeness_gap(images, spacing):
    """One step (the midpoint rule) leaves a gap a hand computation gives exactly: the gradient
    at x/2 times x, summed, against logit(x) - logit(black); 64 steps close it. (tanh: a ReLU
    network without biases is linear along the path from black, where one step is exact.)"""
    keras.utils.set_random_seed(5)
    network = _functional([keras.layers.Rescaling(1 / 64),
                           keras.layers.Conv2D(8, 3, padding="same", activation="tanh"),
                           keras.layers.Conv2D(8, 3, padding="same", activation="tanh")]
                          + _head(activation=None))
    model = _wrap(network, "logits")
    x = model.prepare(images)
    classes = np.array([0, 1, 2], np.int32)
    rows = np.arange(3)
    half = tf.constant(x / 2)
    with tf.GradientTape() as tape:
        tape.watch(half)
        score = tf.gather(network(half), classes, axis=1, batch_dims=1)
    hand_sum = (x * tape.gradient(score, half).numpy()).sum(axis=(1, 2, 3))
    hand_difference = (network(x).numpy()[rows, classes]
                       - network(np.zeros_like(x)).numpy()[rows, classes])

    one = explain(model, images, "integrated_gradients", list(classes), steps=1,
                  spacing="uniform", details=True).completeness
    np.testing.assert_allclose(one.attribution_sum, hand_sum, rtol=1e-4)
    np.testing.assert_allclose(one.score_difference, hand_difference, rtol=1e-4)
    np.testing.assert_allclose(one.relative_gap,
                               np.abs(hand_sum - hand_difference) / np.abs(hand_difference),
                               rtol=1e-3)
    assert one.relative_gap.max() > 0.05           # one step is visibly not enough here
    many = explain(model, images, "integrated_gradients", list(classes), steps=64,
                   spacing=spacing, details=True)
    np.testing.assert_allclose(many.completeness.score_difference, hand_difference, rtol=1e-4)
    assert many.completeness.relative_gap.max() < 0.05
    assert many.maps.shape == (3, SIZE, SIZE)
    assert explain(model, images, "gradcam", details=True).completeness is None


def test_occlusion_matches_a_hand_loop(model, images):
    patch, stride = 8, 4
    classes = _top_classes(model, images)
    ours = Occlusion(model, patch=patch, stride=stride, fill="gray").attribute(
        model.prepare(images), classes)

    def net(image):   # softmax output on the network's input
        return model.keras_model(_network_input(image)).numpy()

    for image, c, our in zip(images.astype(np.float32), classes, ours):
        base = net(image[None])[0, c]
        drop = np.zeros((SIZE, SIZE))
        count = np.zeros((SIZE, SIZE))
        for y in range(0, SIZE - patch + 1, stride):
            for x in range(0, SIZE - patch + 1, stride):
                covered = image.copy()
                covered[y:y + patch, x:x + patch] = 127.5
                drop[y:y + patch, x:x + patch] += base - net(covered[None])[0, c]
                count[y:y + patch, x:x + patch] += 1
        np.testing.assert_allclose(our, np.maximum(drop / count, 0), atol=1e-5)


# -------------------------------------------------------------------------- nested models
@pytest.fixture(scope="module")
def twins():
    """One network three ways: flat, as a nested base model, and as a Sequential around it."""
    keras.utils.set_random_seed(11)
    base = _functional(_layers())
    base.name = "base"
    head = _head()
    inputs = keras.Input((SIZE, SIZE, 3))
    x = base(inputs)
    for layer in head:
        x = layer(x)
    nested = keras.Model(inputs, x, name="transfer")
    flat_inputs = keras.Input((SIZE, SIZE, 3))
    y = flat_inputs
    for layer in base.layers[1:] + head:
        y = layer(y)   # the same layer objects: the same weights
    flat = keras.Model(flat_inputs, y, name="flat")
    sequential = keras.Sequential([keras.Input((SIZE, SIZE, 3)), base] + head, name="seq")
    return _wrap(flat, "flat"), _wrap(nested, "nested"), _wrap(sequential, "sequential")


@pytest.mark.parametrize("name", list(METHODS))
def test_nested_model_gives_the_flat_model_map(name, twins, images):
    flat, nested, sequential = twins
    options = {"samples": 4} if name == "smoothgrad" else {"steps": 8} if (
        name == "integrated_gradients") else {}
    expected = explain(flat, images, name, layer="conv2", **options)
    for model in (nested, sequential):
        got = explain(model, images, name, layer="base/conv2", **options)
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_nested_keras_application_gives_its_flat_twin_map(images):
    """MobileNet (batch norm, depthwise convolutions) as one layer of a transfer model, against
    the same layers wired into one flat functional model."""
    keras.utils.set_random_seed(1)
    base = keras.applications.MobileNet(weights=None, alpha=0.25, include_top=False,
                                        input_shape=(64, 64, 3))
    pool, head = keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")
    flat = keras.Model(base.inputs, head(pool(base.outputs[0])))
    inputs = keras.Input((64, 64, 3))
    nested = keras.Model(inputs, head(pool(base(inputs))))
    wrap = dict(class_names=["a", "b", "c"], preprocessing="tf", input_size=(64, 64))
    flat = ExplorableModel(flat, name="flat_mobilenet", **wrap)
    nested = ExplorableModel(nested, name="nested_mobilenet", **wrap)
    assert METHODS["gradcam"](nested).layer == f"{base.name}/conv_pw_13_relu"
    for name, options in [("gradcam", {}), ("vanilla", {})]:  # the tiny twins run all nine
        expected = explain(flat, images, name, layer="conv_pw_13_relu", **options)
        got = explain(nested, images, name, **options)
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=name)


def test_default_layer_inside_a_nested_model(twins, images):
    _, nested, _ = twins
    assert METHODS["gradcam"](nested).layer == "base/conv2"


# --------------------------------------------------------------------- contract of explain
def test_maps_come_back_at_each_image_own_size(model, images):
    big = np.asarray(tf.image.resize(images[:1], (50, 70)).numpy(), np.uint8)[0]
    maps = explain(model, [images[0], big], "gradcam")
    assert [m.shape for m in maps] == [(SIZE, SIZE), (50, 70)]
    for m in maps:
        assert m.dtype == np.float32 and m.min() == 0.0 and m.max() == 1.0


def test_another_class_gives_another_map(model, images):
    """'Why not class B?': explaining another class is a different question."""
    top = _top_classes(model, images)[0]
    other = (top + 1) % len(CLASSES)
    by_index = explain(model, images[:1], "gradcam", target=int(other))
    by_name = explain(model, images[:1], "gradcam", target=CLASSES[other])
    np.testing.assert_array_equal(by_index, by_name)
    assert not np.allclose(by_index, explain(model, images[:1], "gradcam"))


def test_default_target_is_the_top_class(model, images):
    top = _top_classes(model, images)
    for name in ("gradcam", "smoothgrad"):
        np.testing.assert_allclose(explain(model, images, name),
                                   explain(model, images, name, target=list(top)), atol=1e-6)


def test_bad_requests_raise_errors_people_can_act_on(model, images):
    with pytest.raises(InvalidModelError, match="no class named 'zebra'"):
        explain(model, images, "gradcam", target="zebra")
    with pytest.raises(InvalidModelError, match="no layer"):
        explain(model, images, "gradcam", layer="nope")
    with pytest.raises(InvalidModelError, match="spatial grid"):
        explain(model, images, "gradcam", layer="gap")
    with pytest.raises(InvalidImageError):
        explain(model, np.zeros((4, 4)), "gradcam")
    with pytest.raises(KeyError):
        explain(model, images, "guided_backprop")


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", list(METHODS))
def test_the_user_model_is_not_modified(name, precision, images):
    keras.utils.set_random_seed(2)
    network = _functional(_layers() + _head())
    model = _wrap(network)
    weights = [w.copy() for w in network.get_weights()]
    nodes = {layer.name: len(layer._inbound_nodes) for layer in network.layers}
    before = model.probabilities(images)
    options = {"smoothgrad": {"samples": 2}, "integrated_gradients": {"steps": 4}}
    explain(model, images, name, precision=precision, **options.get(name, {}))
    for a, b in zip(weights, network.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert all(w.dtype == "float32" for w in network.weights)
    assert {layer.dtype_policy.name for layer in network.layers} == {"float32"}
    assert {layer.name: len(layer._inbound_nodes) for layer in network.layers} == nodes
    assert network.get_layer("predictions").activation is keras.activations.softmax
    np.testing.assert_array_equal(model.probabilities(images), before)


def test_samples_steps_and_masks_run_in_batches(model, images):
    calls = []
    explain(model, images[:1], "integrated_gradients", steps=64, batch_size=32,
            progress=lambda done, total, stage: calls.append((done, total, stage)))
    # 64 steps, two passes of 32
    assert calls == [(1, 2, "Integrated Gradients"), (2, 2, "Integrated Gradients")]
    calls.clear()
    explain(model, images, "smoothgrad", samples=10, batch_size=16,
            progress=lambda done, total, stage: calls.append((done, total)))
    assert calls[-1] == (2, 2)         # 3 images x 10 samples = 30 inputs, two passes


@pytest.mark.parametrize("name", ["smoothgrad", "scorecam", "occlusion"])
def test_batch_size_does_not_change_the_map(name, model, images):
    np.testing.assert_allclose(explain(model, images, name, batch_size=1, precision="float32"),
                               explain(model, images, name, batch_size=64, precision="float32"),
                               atol=1e-5)


def test_graph_functions_are_traced_once(model, images):
    explain(model, images, "gradcam")
    explain(model, images[:1], "gradcam")
    graph = forward_graph(model, "conv2")
    assert graph.layer_gradients.experimental_get_tracing_count() == 1


def test_score_cam_scores_constant_channels_once(model, images):
    """All-zero channels all give the same black mask: one forward pass serves them all. So do
    channels whose maps are equal up to scale (one mask, one pass)."""
    x = model.prepare(images[:1])
    method = METHODS["scorecam"](model, "conv2")
    activations = method.graph.activations(tf.constant(x)).numpy()[0]
    activations[..., :5] = 0.0
    activations[..., 6] = 0.0
    activations[3, 4, 6] = 2.0                      # active at one position only
    activations[..., 7] = 0.0
    activations[3, 4, 7] = 0.5                      # ... the same one
    varying = activations.max(axis=(0, 1)) > activations.min(axis=(0, 1))
    keep, masks, source = method._masks(x[0], activations)
    assert (source[:5] == -1).all() and (source[varying] >= 0).all()
    assert source[6] == source[7] and len(masks) == varying.sum() - 1
    np.testing.assert_allclose(masks[source[6]].max(), 1.0)


def test_resize_map_keeps_values_in_range():
    small = np.array([[0.0, 1.0], [0.5, 0.25]], np.float32)
    big = resize_map(small, (8, 8))
    assert big.shape == (8, 8) and big.min() >= 0.0 and big.max() <= 1.0


def test_targets_are_small_callables():
    from engine.saliency.targets import ClassTarget, TopClass

    outputs = np.array([[0.1, 2.0, -1.0], [3.0, 0.5, 0.2]], np.float32)
    np.testing.assert_allclose(ClassTarget(2)(outputs), [-1.0, 0.2])
    np.testing.assert_allclose(TopClass()(outputs), [2.0, 3.0])


# ------------------------------------------------------------------------ the default layer
def _block(kind):
    """Small networks whose last block ends in different ways."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="first")(inputs)
    if kind == "fused":
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="last")(x)
    elif kind == "bn_relu":
        x = keras.layers.Conv2D(4, 3, padding="same", name="last")(x)
        x = keras.layers.BatchNormalization(name="last_bn")(x)
        x = keras.layers.ReLU(name="last_relu")(x)
    elif kind == "residual":
        y = keras.layers.Conv2D(4, 3, padding="same", name="last")(x)
        y = keras.layers.BatchNormalization(name="last_bn")(y)
        x = keras.layers.Add(name="add")([x, y])
        x = keras.layers.Activation("relu", name="out")(x)
    elif kind == "one_by_one":   # a classifier conv on a 1x1 grid is not a CAM layer
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="last")(x)
        x = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
        x = keras.layers.Conv2D(3, 1, name="conv_preds")(x)
    x = keras.layers.GlobalAveragePooling2D()(x) if kind != "one_by_one" else \
        keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


@pytest.mark.parametrize("kind, expected", [("fused", "last"), ("bn_relu", "last_relu"),
                                            ("residual", "out"), ("one_by_one", "last")])
def test_default_cam_layer_is_the_last_block_output(kind, expected):
    from engine.saliency import default_cam_layer

    assert default_cam_layer(_block(kind)) == expected


def test_default_cam_layer_of_mobilenet_nested_in_a_transfer_model():
    from engine.saliency import default_cam_layer

    base = keras.applications.MobileNet(weights=None, alpha=0.25, include_top=False,
                                        input_shape=(64, 64, 3))
    assert default_cam_layer(base) == "conv_pw_13_relu"
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
    transfer = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    assert default_cam_layer(transfer) == f"{base.name}/conv_pw_13_relu"


@pytest.mark.slow
@pytest.mark.parametrize("app, expected", [("VGG16", "block5_conv3"),
                                           ("EfficientNetB0", "top_activation"),
                                           ("ResNet50", "conv5_block3_out"),
                                           ("MobileNetV2", "out_relu"),
                                           ("InceptionV3", "mixed10")])
def test_default_cam_layer_of_keras_applications(app, expected):
    from engine.saliency import default_cam_layer

    assert default_cam_layer(getattr(keras.applications, app)(weights=None)) == expected
