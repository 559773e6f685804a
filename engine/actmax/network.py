"""The network cut at the layers an objective reads: 0-255 RGB in, those layers' values out.

Activation maximisation needs the forward pass only up to the deepest layer it looks at: for
VGG16's ``block3_conv1`` that is 5 of its 13 convolutions. ``LayerTaps`` runs the model's
functional graph node by node on real tensors and stops as soon as every requested layer has
been computed. It descends into nested models (``"vgg16/block3_conv1"`` inside a transfer model),
which ``keras.Model(model.inputs, layer.output)`` cannot do.

Each tapped layer gives two tensors:

* ``out``: what the layer outputs (after its activation), the number people call "the
  activation";
* ``pre``: the same layer before its non-linearity. A ``Conv2D(..., activation="relu")`` or a
  ``Dense(..., activation="softmax")`` is computed by a *copy* of the layer with a linear
  activation and the same weights (after tf-keras-vis' ``ReplaceToLinear``), and ``out`` is the
  activation applied to that. For a separate ``ReLU``/``Activation``/``Softmax`` layer, ``pre`` is
  its input. Optimising ``pre`` keeps a gradient where a ReLU is off (Lucid optimises
  ``..._pre_relu`` for the same reason) and gives class logits before the softmax.

**Precision.** With ``compute_dtype="bfloat16"`` every layer on the way is run by a copy
computing in bfloat16 (Keras' ``mixed_bfloat16`` policy: weights kept in float32, arithmetic in
bfloat16), which halves the time of a step on CPUs with bfloat16 instructions (AVX512-BF16,
AMX) and on GPUs. Gradient ascent does not need more precision; activations reported to people
are measured by a float32 ``LayerTaps``.

Calling layers on tensors adds no node to the user's model and the copies are separate layers:
the model is never mutated.
"""

from __future__ import annotations

import threading
from typing import NamedTuple, Sequence

import keras
import tensorflow as tf

from engine.errors import InvalidModelError
from engine.models.explorable import ExplorableModel
from engine.models.layers import (SEPARATOR, find_layer, functional_graph, inference_arguments,
                                  nested_call_inputs, ready_nodes)

L = keras.layers
#: The model's last layer, whatever its name (the class scores).
OUTPUT = "@output"
# Layers that only apply a non-linearity: their "pre-activation" is their input.
_ACTIVATION_LAYERS = (L.Activation, L.ReLU, L.Softmax, L.LeakyReLU, L.ELU, L.PReLU)


class Tap(NamedTuple):
    """One layer's values for a batch: ``pre`` before its non-linearity, ``out`` after it."""

    pre: tf.Tensor
    out: tf.Tensor


class LayerTaps:
    """``model`` as a differentiable function of its 0-255 RGB input, stopped at ``layers``.

    Args:
        model: the explored model (read only).
        layers: layer paths (``"block3_conv1"``, ``"vgg16/block3_conv1"``) or ``OUTPUT``.
        compute_dtype: ``"float32"`` (the model's own layers) or ``"bfloat16"`` (copies).

    Raises:
        InvalidModelError: a subclassed model (no graph to cut), an unknown layer, or a layer
            that is not on the path from the input to the output.
    """

    def __init__(self, model: ExplorableModel, layers: Sequence[str],
                 compute_dtype: str = "float32"):
        if compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"compute_dtype must be 'float32' or 'bfloat16', not {compute_dtype!r}.")
        self.model = model
        self.compute_dtype = compute_dtype
        self._policy = "mixed_bfloat16" if compute_dtype == "bfloat16" else None
        network = model.keras_model
        if functional_graph(network) is None:
            raise InvalidModelError(
                f"The model '{network.name}' is a subclassed Keras model whose layers cannot be "
                "reached; activation maximisation needs a Functional or Sequential model.")
        self.paths = {layer: self._resolve(layer) for layer in layers}
        self._linear: dict[int, keras.layers.Layer] = {}  # id(layer) -> its linear copy
        self._low: dict[int, keras.layers.Layer] = {}  # id(layer) -> its bfloat16 copy
        self._lock = threading.Lock()
        for path in set(self.paths.values()):
            layer = find_layer(network, path)
            if _activation_name(layer) != "linear" and not isinstance(layer, _ACTIVATION_LAYERS):
                self._linear[id(layer)] = _copy(layer, activation="linear", dtype=self._policy)

    def _resolve(self, layer: str) -> str:
        network = self.model.keras_model
        if layer == OUTPUT:
            return _output_path(network)
        try:
            find_layer(network, layer)
        except KeyError:
            raise InvalidModelError(
                f"The model has no layer '{layer}'; pick one of its convolution layers.") from None
        return layer

    def output_rank(self, layer: str) -> int:
        """Rank of the layer's output with the batch axis: 4 for a feature map, 2 for scores."""
        return len(find_layer(self.model.keras_model, self.paths[layer]).output.shape)

    def __call__(self, x: tf.Tensor) -> dict[str, Tap]:
        """(N, H, W, 3) float32 RGB 0-255 -> {layer: Tap} for the requested layers.

        H and W may differ from the model's input size when every requested layer is a feature
        map (convolutions and pooling take any size); a layer after ``Flatten`` needs the
        model's own input size.
        """
        wanted = set(self.paths.values())
        found: dict[str, Tap] = {}
        inputs = self.model.preprocess(tf.cast(x, tf.float32))
        self._run(self.model.keras_model, [inputs], "", wanted, found)
        missing = wanted - set(found)
        if missing:
            raise InvalidModelError(
                f"The layer '{sorted(missing)[0]}' is not on the path from the model's input to "
                "its output; pick another layer.")
        return {layer: found[path] for layer, path in self.paths.items()}

    def _run(self, model, inputs, prefix, wanted, found):
        """Run ``model``'s graph; returns its outputs, or None once everything wanted is found."""
        graph = functional_graph(model)
        tensors = {id(t): v for t, v in zip(graph.inputs, inputs)}
        for node in ready_nodes(graph, tensors):
            op = node.operation
            path = prefix + op.name
            if isinstance(op, keras.Model) and functional_graph(op) is not None:
                inner = nested_call_inputs(node)
                outputs = self._run(op, [tensors[id(t)] for t in inner], path + SEPARATOR,
                                    wanted, found)
                if outputs is None:
                    return None
            else:
                args, kwargs = inference_arguments(node, tensors)
                if path in wanted:
                    tap = self._tap(op, args, kwargs)
                    found[path] = tap
                    outputs = [tap.out]
                else:
                    outputs = keras.tree.flatten(self._op(op)(*args, **kwargs))
                if len(found) == len(wanted):
                    return None  # the rest of the network is not needed
            for t, value in zip(node.outputs, outputs):
                tensors[id(t)] = value
        return [tensors[id(t)] for t in graph.outputs]

    def _op(self, op):
        """The layer itself, or its bfloat16 copy (made on first use)."""
        if self._policy is None:
            return op
        with self._lock:
            if id(op) not in self._low:
                with tf.init_scope():  # made eagerly, even when first asked for while tracing
                    self._low[id(op)] = _copy(op, dtype=self._policy)
            return self._low[id(op)]

    def _tap(self, op, args, kwargs) -> Tap:
        linear = self._linear.get(id(op))
        if linear is not None:
            pre = linear(*args, **kwargs)
            return Tap(tf.cast(pre, tf.float32), tf.cast(op.activation(pre), tf.float32))
        out = tf.cast(self._op(op)(*args, **kwargs), tf.float32)
        if isinstance(op, _ACTIVATION_LAYERS):
            return Tap(tf.cast(keras.tree.flatten(args)[0], tf.float32), out)
        return Tap(out, out)




def _activation_name(layer) -> str:
    return getattr(getattr(layer, "activation", None), "__name__", "linear")


def _copy(layer, *, activation: str | None = None, dtype: str | None = None):
    """A new layer like ``layer`` with a copy of its weights, optionally another activation
    and dtype policy. The original is only read."""
    config = dict(layer.get_config())
    config["name"] = f"{layer.name}_copy"
    if activation is not None:
        config["activation"] = activation
    if dtype is not None:
        config["dtype"] = dtype
    try:
        copy = type(layer).from_config(config)
        if layer.weights:
            copy.build(layer.input.shape)
            copy.set_weights(layer.get_weights())
    except Exception as exc:  # custom or unusual layers: say which and why
        raise InvalidModelError(
            f"The layer '{layer.name}' ({type(layer).__name__}) could not be copied for "
            f"activation maximisation ({exc}); pick another layer or model.") from exc
    return copy


def _output_path(network: keras.Model) -> str:
    """Path of the layer that produces the model's output, inside nested models too."""
    graph = functional_graph(network)
    target = id(graph.outputs[0])
    for nodes in graph._nodes_by_depth.values():
        for node in nodes:
            op = node.operation
            if op is None or node.is_input or all(id(t) != target for t in node.outputs):
                continue
            if isinstance(op, keras.Model) and functional_graph(op) is not None:
                return op.name + SEPARATOR + _output_path(op)
            return op.name
    raise InvalidModelError(f"The output layer of '{network.name}' could not be found.")
