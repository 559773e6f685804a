"""The channels that drove a decision: each channel's share of a class score at one layer.

For a layer with activations ``A`` (h, w, C) and a target score ``s`` (a class logit, or a
``ClassDifference``), the contribution of channel ``c`` is

    contribution_c = sum over positions (i, j) of A[i, j, c] * d s / d A[i, j, c]

(activation times gradient, Lucid's channel attribution). When the rest of the network after
the layer is linear in ``A`` (the layer feeds a global average pooling and a Dense layer, as in
the demo model), ``s = sum_c contribution_c + bias`` holds exactly, with ``bias`` the Dense
layer's bias of the class. Elsewhere it is the first-order (Taylor) share of each channel and
``bias`` collects the rest. One forward and backward pass (``graph.ForwardGraph``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from engine.errors import InvalidImageError
from engine.models.explorable import ExplorableModel
from engine.saliency.base import _check_grid
from engine.saliency.graph import as_numpy, default_cam_layer, forward_graph
from engine.saliency.targets import TOP, TopClass, class_scores, resolve_classes


@dataclass(frozen=True)
class ChannelContributions:
    """Each channel's contribution to one image's target score at one layer.

    Attributes:
        layer: the layer's path.
        values: (C,) float64, activation times gradient summed over positions, per channel
            (in units of the score: logits).
        order: (C,) int64, channels by ``|values|``, largest first (ties: lower channel first).
        bias: the score minus the sum of ``values``: for a layer followed by global average
            pooling and a Dense layer, exactly that layer's bias for the class (for a
            ``ClassDifference``, the difference of the two biases); in general, whatever the
            first-order channel shares leave out.
        score: the target's score before the softmax (the class logit; for a
            ``ClassDifference(a, b)``, ``logit(a) - logit(b)``).
        target: the class code explained (``targets`` module docstring: a class index, or a
            pair's code for a ``ClassDifference``).
    """

    layer: str
    values: np.ndarray
    order: np.ndarray
    bias: float
    score: float
    target: int

    def top(self, k: int, sign: int = 0) -> np.ndarray:
        """The ``k`` channels with the largest contributions: ``sign`` +1 the most positive
        first, -1 the most negative first (only channels of that sign), 0 by ``|value|``."""
        if sign == 0:
            return self.order[:k]
        values = self.values * sign
        order = np.argsort(-values, kind="stable")
        return order[values[order] > 0][:k]


def channel_contributions(model: ExplorableModel, image, layer: str | None = None,
                          target=None) -> ChannelContributions:
    """How much each channel of ``layer`` adds to ``target``'s score on ``image``.

    Args:
        model: a loaded model (never modified).
        image: (H, W, 3) uint8 RGB (any size: resized to the model input).
        layer: a layer path with a spatial grid; ``None``: the CAM layer (``default_cam_layer``).
        target: ``None`` (the image's top class), a class index or name, a ``ClassTarget`` or
            a ``ClassDifference`` (``targets.resolve_classes``).

    Returns:
        ``ChannelContributions``.

    Raises:
        InvalidImageError: the image is not (H, W, 3).
        InvalidModelError: an unknown class or layer, a layer without a spatial grid, or a
            model without a convolution layer (for the default layer).
    """
    layer = layer or default_cam_layer(model.keras_model)
    graph = forward_graph(model, layer)
    image = np.asarray(image)
    if image.ndim != 3:
        raise InvalidImageError(f"The channels' contributions explain one (height, width, 3) "
                                f"image at a time, not an array of shape {image.shape}.")
    x = model.prepare(image)
    if target is None or isinstance(target, TopClass):
        code = TOP
    else:
        code = int(resolve_classes(model.class_names, target, np.zeros((1, model.n_classes)),
                                   differences=True)[0])
    activations, gradients, logits = graph.layer_gradients(tf.constant(x),
                                                           tf.constant([code], tf.int32))
    activations, gradients = as_numpy(activations), as_numpy(gradients)
    _check_grid(activations, layer)
    if code == TOP:
        code = int(np.argmax(as_numpy(logits)[0]))
    values = (activations[0].astype(np.float64) * gradients[0]).sum(axis=(0, 1))
    score = float(as_numpy(class_scores(logits, [code]))[0])
    order = np.argsort(-np.abs(values), kind="stable").astype(np.int64)
    return ChannelContributions(layer, values, order, score - float(values.sum()), score, code)
