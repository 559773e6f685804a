"""What activation maximisation maximises: small objectives that compose with ``+``, ``-``, ``*``.

After Lucid: ``channel("block3_conv1") - 0.05 * total_variation()`` is an objective. An objective
maps the values of one optimisation step (``Tensors``) to one score **per image** of the batch,
shape ``(N,)``. The optimiser maximises the sum over the batch; because no score mixes images,
each image follows its own gradient, so N filters optimised as one batch give what N separate
runs give.

Which unit (filter, class) an image maximises is data, not code: ``channel(layer)`` without a
unit reads each image's own unit from ``Tensors.units``, so one traced step serves any set of
filters. ``channel(layer, 12)`` pins unit 12 for every image.

Every objective has a ``description``: a canonical text that names it in cache keys and in the
user interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import tensorflow as tf

from engine.actmax.network import OUTPUT, Tap


@dataclass(frozen=True)
class Tensors:
    """The values an objective may read during one step.

    Attributes:
        taps: ``{layer: Tap}`` for every layer of the objective (see ``network.LayerTaps``).
        image: (N, H, W, 3) float32 in [0, 1], the image being optimised, before transforms.
        units: (N,) int32, the unit (filter or class) each image maximises.
    """

    taps: dict[str, Tap]
    image: tf.Tensor
    units: tf.Tensor


class Objective:
    """A differentiable score per image; compose with ``+``, ``-``, ``*`` and numbers.

    Args:
        fn: ``Tensors -> (N,) float32``.
        description: canonical text (``"channel(block3_conv1, pre)"``).
        layers: the layer paths ``fn`` reads (``network.OUTPUT`` for the class scores).
    """

    def __init__(self, fn: Callable[[Tensors], tf.Tensor], description: str,
                 layers: frozenset[str] = frozenset()):
        self.fn = fn
        self.description = description
        self.layers = frozenset(layers)

    def __call__(self, tensors: Tensors) -> tf.Tensor:
        return self.fn(tensors)

    def __repr__(self) -> str:
        return f"Objective({self.description})"

    # -- algebra
    def __add__(self, other):
        other = _as_objective(other)
        return Objective(lambda t: self(t) + other(t),
                         f"{self.description} + {other.description}", self.layers | other.layers)

    def __radd__(self, other):  # sum([...]) starts from 0
        return self if _is_zero(other) else _as_objective(other) + self

    def __neg__(self):
        return Objective(lambda t: -self(t), f"-({self.description})", self.layers)

    def __sub__(self, other):
        other = _as_objective(other)
        return Objective(lambda t: self(t) - other(t),
                         f"{self.description} - {_grouped(other)}", self.layers | other.layers)

    def __rsub__(self, other):
        return _as_objective(other) - self

    def __mul__(self, other):
        if isinstance(other, Objective):
            return Objective(lambda t: self(t) * other(t),
                             f"{_grouped(self)} * {_grouped(other)}", self.layers | other.layers)
        factor = float(other)
        return Objective(lambda t: factor * self(t), f"{factor!r}*{_grouped(self)}", self.layers)

    __rmul__ = __mul__

    def __truediv__(self, number):
        return self * (1.0 / float(number))


def _as_objective(value) -> Objective:
    if isinstance(value, Objective):
        return value
    number = float(value)
    return Objective(lambda t: tf.fill(tf.shape(t.units), number), repr(number))


def _is_zero(value) -> bool:
    return not isinstance(value, Objective) and float(value) == 0.0


def _grouped(objective: Objective) -> str:
    text = objective.description
    return f"({text})" if " + " in text or " - " in text else text


def _unit_values(values: tf.Tensor, unit: int | None, units: tf.Tensor) -> tf.Tensor:
    """(N, C) -> (N,): column ``unit`` of every row, or each row's own ``units[i]``."""
    if unit is None:
        return tf.gather(values, units, axis=1, batch_dims=1)
    return values[:, unit]


#: How much of the pre-activation a "leaky" read adds to the layer's output (see ``channel``).
LEAK = 0.1
STAGES = ("leaky", "out", "pre")


def _layer_values(tensors: Tensors, layer: str, stage: str) -> tf.Tensor:
    tap = tensors.taps[layer]
    if stage == "out":
        return tap.out
    if stage == "pre":
        return tap.pre
    return tap.out + LEAK * tap.pre


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"Unknown stage {stage!r}; choose one of {', '.join(STAGES)}.")


def _unit_text(unit: int | None) -> str:
    return "each" if unit is None else str(int(unit))


# ----------------------------------------------------------------------------- what to maximise
def channel(layer: str, unit: int | None = None, *, stage: str = "leaky") -> Objective:
    """The mean of one channel (a filter's whole feature map) over every position.

    Args:
        layer: layer path.
        unit: the channel; ``None``: each image's own unit (``Tensors.units``).
        stage: which values of the layer (see ``network.Tap``): ``"out"``, what the layer
            outputs; ``"pre"``, before its non-linearity; ``"leaky"`` (default), the output
            plus ``LEAK`` times the pre-activation. For a ReLU that is a leaky ReLU: it follows
            the output where the filter fires, and still has a gradient where the filter is off
            everywhere (maximising "out" alone leaves such filters at 0; maximising "pre" alone
            trades firing positions for less negative ones and ends lower, measured on the
            demo model).

    For a layer without spatial axes (``Dense``) this is the unit's value itself.
    """
    _check_stage(stage)

    def fn(t: Tensors) -> tf.Tensor:
        values = _layer_values(t, layer, stage)
        if values.shape.rank == 4:
            values = tf.reduce_mean(values, axis=[1, 2])
        return _unit_values(values, unit, t.units)

    return Objective(fn, f"channel({layer}, {_unit_text(unit)}, {stage})", frozenset([layer]))


def neuron(layer: str, unit: int | None = None, *, stage: str = "leaky") -> Objective:
    """One channel at one position only: the centre of the feature map.

    Args: as for ``channel``.
    """
    _check_stage(stage)

    def fn(t: Tensors) -> tf.Tensor:
        values = _layer_values(t, layer, stage)
        if values.shape.rank == 4:
            h, w = tf.shape(values)[1], tf.shape(values)[2]
            values = values[:, h // 2, w // 2, :]
        return _unit_values(values, unit, t.units)

    return Objective(fn, f"neuron({layer}, {_unit_text(unit)}, {stage})", frozenset([layer]))


def class_logit(unit: int | None = None) -> Objective:
    """A class score before the softmax (the logit), from a linear copy of the output layer.

    Maximising the probability instead can be reached by making every *other* class unlikely,
    which gives noise; the logit asks for evidence of this class (Simonyan et al., 2014).
    """
    def fn(t: Tensors) -> tf.Tensor:
        return _unit_values(t.taps[OUTPUT].pre, unit, t.units)

    return Objective(fn, f"class_logit({_unit_text(unit)})", frozenset([OUTPUT]))


# ------------------------------------------------------------------------------- regularisers
# Penalties are positive; subtract them: ``channel(layer) - 0.1 * total_variation()``.
def l2(centre: float = 0.5) -> Objective:
    """Mean squared distance of the pixels (in [0, 1]) from grey: keeps colours moderate."""
    def fn(t: Tensors) -> tf.Tensor:
        return tf.reduce_mean(tf.square(t.image - centre), axis=[1, 2, 3])

    return Objective(fn, f"l2({centre!r})")


def total_variation() -> Objective:
    """Mean absolute difference between neighbouring pixels: penalises high-frequency noise."""
    def fn(t: Tensors) -> tf.Tensor:
        x = t.image
        dy = tf.reduce_mean(tf.abs(x[:, 1:] - x[:, :-1]), axis=[1, 2, 3])
        dx = tf.reduce_mean(tf.abs(x[:, :, 1:] - x[:, :, :-1]), axis=[1, 2, 3])
        return dx + dy

    return Objective(fn, "tv()")


def blur() -> Objective:
    """Mean squared distance of the image from a blurred copy of itself (Lucid's
    ``blur_input_each_step``): pulls each step towards a smoother image."""
    kernel = tf.constant([1.0, 2.0, 1.0])
    kernel = tf.tensordot(kernel, kernel, axes=0) / 16.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])

    def fn(t: Tensors) -> tf.Tensor:
        x = t.image
        smooth = tf.nn.depthwise_conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], "SYMMETRIC"),
                                        kernel, [1, 1, 1, 1], "VALID")
        return tf.reduce_mean(tf.square(x - tf.stop_gradient(smooth)), axis=[1, 2, 3])

    return Objective(fn, "blur()")


KINDS = ("channel", "neuron", "class")


def build(kind: str, layer: str | None, *, tv: float = 0.0, l2_weight: float = 0.0,
          blur_weight: float = 0.0) -> tuple[Objective, Objective]:
    """The objective for a named kind with regularisers, and what to report as its activation.

    Args:
        kind: ``"channel"``, ``"neuron"`` or ``"class"``.
        layer: layer path (ignored for ``"class"``).
        tv, l2_weight, blur_weight: weights of the regularisers subtracted from the objective.

    Returns:
        ``(objective, measure)``: the optimiser maximises ``objective``; ``measure`` is the
        activation reported to people: the layer's own output (after its ReLU) for channel and
        neuron, the logit for a class.

    Raises:
        ValueError: an unknown kind or a negative weight.
    """
    if kind == "channel":
        main, measure = channel(layer), channel(layer, stage="out")
    elif kind == "neuron":
        main, measure = neuron(layer), neuron(layer, stage="out")
    elif kind == "class":
        main = measure = class_logit()
    else:
        raise ValueError(f"Unknown objective {kind!r}; choose one of {', '.join(KINDS)}.")
    objective = main
    for weight, penalty in ((tv, total_variation), (l2_weight, l2), (blur_weight, blur)):
        if weight < 0:
            raise ValueError("Regulariser weights must be 0 or more.")
        if weight:
            objective = objective - float(weight) * penalty()
    return objective, measure
