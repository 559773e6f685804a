"""Folding batch normalisation into the convolution (or Dense layer) before it.

In inference mode a batch normalisation layer is a per-channel affine map,
``y = gamma * (x - mean) / sqrt(var + eps) + beta``, so after a convolution it folds exactly into
that convolution's kernel and bias. Networks here train with it (a few epochs are then enough)
and are saved without it, so each convolution outputs its rectified feature map directly and
the explorer's layer pickers show only convolutions and pools. The convention: the batch
normalisation after the convolution ``<name>`` is called ``<name>_bn``.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from engine.errors import InvalidModelError

#: name suffix of the batch normalisation that follows a convolution
BN_SUFFIX = "_bn"


def _batch_norm_after(model: keras.Model, conv_name: str):
    try:
        layer = model.get_layer(conv_name + BN_SUFFIX)
    except ValueError:
        return None
    return layer if isinstance(layer, keras.layers.BatchNormalization) else None


def _scale_shift(bn) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, shift)`` per channel: inference-mode ``bn(x) == scale * x + shift``."""
    weights = {w.name: np.asarray(w.numpy(), np.float64) for w in bn.weights}
    gamma = weights.get("gamma", 1.0)
    beta = weights.get("beta", 0.0)
    scale = gamma / np.sqrt(weights["moving_variance"] + bn.epsilon)
    return scale, beta - weights["moving_mean"] * scale


def folded_kernel(model: keras.Model, conv: keras.layers.Layer) -> np.ndarray:
    """The kernel ``conv`` acts with once the batch normalisation after it (if any) is folded in:
    ``(kh, kw, c_in, n)`` float32, each filter scaled by its channel's ``gamma / sqrt(var +
    eps)``; the plain kernel when no ``<name>_bn`` follows it."""
    kernel = np.asarray(conv.weights[0].numpy(), np.float32)
    bn = _batch_norm_after(model, conv.name)
    if bn is None:
        return kernel
    scale, _ = _scale_shift(bn)
    return (kernel * scale).astype(np.float32)


def fold_batch_norm(trained: keras.Model) -> keras.Model:
    """The same network without batch normalisation, computing what ``trained`` computes in
    inference mode: its family's plain twin (``plain_twin``) with ``trained``'s weights, each
    batch norm folded into the convolution or Dense layer before it.

    Layers are matched by name; each convolution or Dense layer ``<name>`` of the twin whose
    ``trained`` counterpart is followed by ``<name>_bn`` gets the batch norm folded into its
    kernel and bias (a Dense kernel's last axis is its units, as a convolution's is its
    filters); every other layer with weights gets ``trained``'s as they are.

    Args:
        trained: a demo or scratch CNN built with ``batch_norm=True`` (convolutions, maybe
            without bias, each maybe followed by ``<name>_bn`` and an activation layer).

    Returns:
        A new model, the family's network built without batch normalisation (each
        convolution with a bias and its activation), computing in float32.

    Raises:
        InvalidModelError: a network of no family with a plain twin.
        ValueError: a layer of the twin with weights that ``trained`` lacks, or whose weights
            do not fit.
    """
    plain = plain_twin(trained)
    for layer in plain.layers:
        if not layer.weights:
            continue
        source = trained.get_layer(layer.name)
        bn = _batch_norm_after(trained, layer.name)
        if bn is None or not isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            layer.set_weights(source.get_weights())
            continue
        weights = source.get_weights()
        kernel = np.asarray(weights[0], np.float64)
        bias = np.asarray(weights[1], np.float64) if len(weights) > 1 else 0.0
        scale, shift = _scale_shift(bn)
        layer.set_weights([(kernel * scale).astype(np.float32),
                           (bias * scale + shift).astype(np.float32)])
    return plain


def plain_twin(trained: keras.Model) -> keras.Model:
    """A fresh, untrained network of ``trained``'s family (told by its name: the demo model,
    ``engine.models.demo``, or the scratch CNN, ``engine.models.scratch``) at its input size
    and number of classes, built without batch normalisation, its layers computing in float32
    whatever the global dtype policy (a mixed-precision run's model is saved in float32).

    Raises:
        InvalidModelError: ``trained`` is neither.
    """
    from engine.models import demo, scratch  # they name their batch norms after BN_SUFFIX
    from engine.models.layers import dtype_policy

    builders = {demo.MODEL_NAME: demo.build_demo_model,
                scratch.MODEL_NAME: functools.partial(scratch.build_scratch_cnn, seed=None)}
    if trained.name not in builders:
        raise InvalidModelError(
            f"Only the demo model and the scratch CNN have batch normalisation to fold; "
            f"'{trained.name}' is neither, so save it as it is.")
    size = tuple(int(v) for v in trained.inputs[0].shape[1:3])
    with dtype_policy("float32"):
        return builders[trained.name](size, int(trained.outputs[0].shape[-1]))
