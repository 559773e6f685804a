"""Folding batch normalisation into the convolution (or Dense layer) before it.

In inference mode a batch normalisation layer is a per-channel affine map,
``y = gamma * (x - mean) / sqrt(var + eps) + beta``, so after a convolution it folds exactly into
that convolution's kernel and bias. Networks here train with it (a few epochs are then enough)
and are saved without it, so each convolution outputs its rectified feature map directly and
the explorer's layer pickers show only convolutions and pools. The convention: the batch
normalisation after the convolution ``<name>`` is called ``<name>_bn``.
"""

from __future__ import annotations

import keras
import numpy as np

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


def fold_batch_norm(trained: keras.Model, plain: keras.Model) -> keras.Model:
    """Copy ``trained``'s weights into ``plain``, the same network without batch normalisation:
    layers are matched by name; each convolution or Dense layer ``<name>`` of ``plain`` whose
    ``trained`` counterpart is followed by ``<name>_bn`` gets the batch norm folded into its
    kernel and bias (a Dense kernel's last axis is its units, as a convolution's is its filters).

    Args:
        trained: the network as trained (convolutions, maybe without bias, each maybe followed
            by ``<name>_bn`` and an activation layer).
        plain: the same network built without batch normalisation (each convolution with a
            bias and its activation); its weights are overwritten.

    Returns:
        ``plain``, computing what ``trained`` computes in inference mode.

    Raises:
        ValueError: a layer of ``plain`` with weights that ``trained`` lacks, or whose weights
            do not fit.
    """
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
