"""The input preprocessing of each model family, as tensor functions.

Every model in CNN Explorer is called with RGB images in 0-255; the model's own preprocessing is
applied inside (``ExplorableModel.preprocess``), so that gradients are taken with respect to the
pixels a person sees. Each mode reproduces the matching ``keras.applications.*.preprocess_input``
(the tests compare against it) but as plain TensorFlow ops, so it can sit inside a ``tf.function``
and be differentiated.
"""

from __future__ import annotations

import tensorflow as tf

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
    raise ValueError(f"Unknown preprocessing {mode!r}; choose one of {sorted(PREPROCESSING_MODES)}.")
