"""The input preprocessing of each model family, as tensor functions, and reading it off a model.

Every model in CNN Explorer is called with RGB images in 0-255; the model's own preprocessing is
applied inside (``ExplorableModel.preprocess``), so that gradients are taken with respect to the
pixels a person sees. Each mode reproduces the matching ``keras.applications.*.preprocess_input``
(the tests compare against it) but as plain TensorFlow ops, so it can sit inside a ``tf.function``
and be differentiated.

A model that scales its input itself (a leading ``Rescaling`` or ``Normalization`` layer, as
EfficientNet, ConvNeXt and the Keras tutorials' models have) says so in its own layers:
``detect_preprocessing`` reads that, so a user's file needs no choice from its user.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from engine.models.graph import consumers, functional_graph
from engine.models.layers import SEPARATOR

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)

#: mode -> (short description shown to users)
PREPROCESSING_MODES = {
    "unit": "x / 255, values in [0, 1] (the demo model, the scratch CNN, most home-made models)",
    "tf": "x / 127.5 - 1, values in [-1, 1] (MobileNet, MobileNetV2, Inception, Xception)",
    "caffe": "RGB to BGR, minus the ImageNet mean (VGG16, VGG19, ResNet50)",
    "torch": "x / 255, minus the ImageNet mean, divided by its std (DenseNet)",
    "raw": "unchanged 0-255 (EfficientNet, models that rescale inside)",
}
#: what a model file gets when neither its user nor its layers say otherwise
DEFAULT_PREPROCESSING = "unit"

#: layers that scale pixel values: met first in a model, they are its preprocessing
_SCALING_LAYERS = (keras.layers.Rescaling, keras.layers.Normalization)
#: layers that may stand before them without changing the value range at inference (resizing,
#: cropping, and the augmentations of the Keras tutorials, which only act while training)
_RANGE_KEEPING_LAYERS = tuple(getattr(keras.layers, name) for name in (
    "Identity", "Resizing", "CenterCrop", "RandomCrop", "RandomFlip", "RandomRotation",
    "RandomZoom", "RandomTranslation", "RandomContrast", "RandomBrightness"))
#: leading layers that turn 0-255 into values within this bound take 0-255 pixels; a bound far
#: above any standardised or [-1, 1] input and far below 255 * the scale a [0, 1] model uses
_RAW_OUTPUT_BOUND = 20.0


def preprocess(x: tf.Tensor, mode: str) -> tf.Tensor:
    """Apply a model family's preprocessing to a batch of RGB images.

    Args:
        x: (N, H, W, 3) float32 RGB in [0, 255] (or (N, H, W, 1) for grayscale models with
            ``"unit"``/``"tf"``/``"raw"``).
        mode: one of ``PREPROCESSING_MODES``.

    Returns:
        (N, H, W, C) float32, what the network's first layer expects.

    Raises:
        ValueError: unknown mode.
    """
    x = tf.cast(x, tf.float32)
    if mode == "unit":
        return x / 255.0
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "caffe":
        return x[..., ::-1] - tf.constant(_CAFFE_MEAN_BGR, tf.float32)
    if mode == "torch":
        return (x / 255.0 - tf.constant(_TORCH_MEAN)) / tf.constant(_TORCH_STD)
    if mode == "raw":
        return x
    raise ValueError(f"Unknown preprocessing {mode!r}; "
                     f"choose one of {sorted(PREPROCESSING_MODES)}.")


@dataclass(frozen=True)
class DetectedPreprocessing:
    """What a model's first layers say about the pixel values it takes.

    Attributes:
        mode: the ``PREPROCESSING_MODES`` key that gives those layers what they expect
            (``"raw"`` for a model that scales 0-255 itself), or None when the model does not
            start with a Rescaling or Normalization layer.
        layer: path of the first such layer (``"rescaling"``, ``"mobilenet/rescaling"``), or
            None.
        reason: one sentence for people: what was found, and what it means for the pixels.
    """

    mode: str | None
    layer: str | None
    reason: str


def detect_preprocessing(network: keras.Model) -> DetectedPreprocessing:
    """Read the preprocessing a model carries inside from its leading layers.

    Walks from the input through layers that keep the value range (the input, the entry of a
    nested base model, resizing, cropping, inference-time no-op augmentations) and collects the
    ``Rescaling`` / ``Normalization`` layers met before any other layer. Those layers are then
    run on a black and a white (255) image: a model whose leading layers map 0-255 into a small
    range takes raw 0-255 pixels; one that would blow them up (``Rescaling(2, offset=-1)``)
    expects [0, 1]. A Rescaling layer deep inside the network is not preprocessing and is
    ignored.

    Args:
        network: a Keras model with one image input (Functional or Sequential, base models
            nested as layers included).

    Returns:
        The detection; ``mode`` is None when nothing was found.
    """
    walked, _ = _leading_layers(network, prefix="")
    scaling = [(path, layer) for path, layer in walked if isinstance(layer, _SCALING_LAYERS)]
    if not scaling:
        return DetectedPreprocessing(
            None, None, "The model does not start with a Rescaling or Normalization layer, so "
                        "its file does not say how pixels are scaled: choose the preprocessing "
                        "it was trained with.")
    kinds = [type(layer).__name__ for _, layer in scaling]
    what = f"a {kinds[0]} layer" if len(kinds) == 1 else \
        f"{', '.join(kinds[:-1])} and {kinds[-1]} layers"
    black, white = _run_on_black_and_white(network, [layer for _, layer in walked])
    scale, offset = (white - black) / 255.0, black
    if np.allclose(scale, scale.flat[0]) and np.allclose(offset, offset.flat[0]):
        sign = "-" if offset.flat[0] < 0 else "+"
        effect = f"x * {scale.flat[0]:.3g} {sign} {abs(offset.flat[0]):.3g}"
    else:
        effect = f"0-255 becomes {min(black.min(), white.min()):.3g} to " \
                 f"{max(black.max(), white.max()):.3g}"
    found = f"The model starts with {what} ({effect})"
    largest = max(np.abs(black).max(), np.abs(white).max())
    if largest <= _RAW_OUTPUT_BOUND:
        return DetectedPreprocessing("raw", scaling[0][0], f"{found}, so it takes 0-255 pixels.")
    return DetectedPreprocessing(
        "unit", scaling[0][0], f"{found}, which would turn 0-255 pixels into values up to "
                               f"{largest:.3g}, so it takes pixels in [0, 1].")


def _leading_layers(model: keras.Model, prefix: str) -> tuple[list[tuple[str, keras.Layer]], bool]:
    """The range-keeping and scaling layers met walking from ``model``'s input, as (path,
    layer), and whether the walk went through the whole model (an augmentation block)."""
    graph = functional_graph(model)
    if graph is None or len(graph.inputs) != 1:
        return [], False
    taken_by = consumers(graph)
    walked, tensor = [], graph.inputs[0]
    while not any(tensor is out for out in graph.outputs):
        following = taken_by.get(id(tensor), [])
        if len(following) != 1 or len(following[0].input_tensors) != 1:
            return walked, False  # a branch (or a dead end): past here is the network itself
        node = following[0]
        layer, path = node.operation, prefix + node.operation.name
        if isinstance(layer, keras.Model):
            inner, through = _leading_layers(layer, path + SEPARATOR)
            walked += inner
            if not through:
                return walked, False
        elif isinstance(layer, _SCALING_LAYERS + _RANGE_KEEPING_LAYERS):
            walked.append((path, layer))
        else:
            return walked, False
        tensor = node.outputs[0]
    return walked, True


def _run_on_black_and_white(network: keras.Model, layers) -> tuple[np.ndarray, np.ndarray]:
    """What ``layers``, run in turn at inference, make of an all-0 and an all-255 image of the
    network's input shape (sides it leaves open: 32)."""
    _, h, w, c = network.inputs[0].shape
    x = np.zeros((2, h or 32, w or 32, c), np.float32)
    x[1] = 255.0
    for layer in layers:
        x = layer(x, training=False)
    x = keras.ops.convert_to_numpy(x)
    return x[0], x[1]
