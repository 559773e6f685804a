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

**Precision.** With ``compute_dtype="bfloat16"`` every layer on the way is run by its bfloat16
copy (``engine.models.graph.bfloat16_layer``: weights rounded to bfloat16 once, the same
arithmetic as Keras' ``mixed_bfloat16`` without a cast per step; copies shared with saliency),
which halves the time of a step on CPUs with bfloat16 instructions (AVX512-BF16, AMX) and on
GPUs. Gradient ascent does not need more precision; activations reported to people are
measured by a float32 ``LayerTaps``.

Calling layers on tensors adds no node to the user's model and the copies are separate layers:
the model is never mutated.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import keras
import tensorflow as tf

from engine.errors import InvalidModelError
from engine.models.explorable import ExplorableModel
from engine.models.graph import (PRECISIONS, functional_graph, layer_copy, output_op,
                                 run_graph)
from engine.models.layers import find_layer

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
        InvalidModelError: a subclassed model (no graph to cut), an unknown layer, a layer
            that is not on the path from the input to the output, or one whose linear copy
            cannot be made.
    """

    def __init__(self, model: ExplorableModel, layers: Sequence[str],
                 compute_dtype: str = "float32"):
        if compute_dtype not in PRECISIONS:
            raise ValueError("compute_dtype must be 'float32' or 'bfloat16', "
                             f"not {compute_dtype!r}.")
        self.model = model
        self.compute_dtype = compute_dtype
        network = model.keras_model
        if functional_graph(network) is None:
            raise InvalidModelError(
                f"The model '{network.name}' is a subclassed Keras model whose layers cannot be "
                "reached; activation maximisation needs a Functional or Sequential model.")
        self.paths = {layer: self._resolve(layer) for layer in layers}
        wanted = set(self.paths.values())
        # A layer with a fused non-linearity is run by its linear copy, the activation applied
        # after it: both values from one call (copies are made once per layer and precision).
        self._linear = {}
        for path in wanted:
            layer = find_layer(network, path)
            if _activation_name(layer) != "linear" and not isinstance(layer, _ACTIVATION_LAYERS):
                self._linear[path] = layer_copy(layer, activation="linear",
                                                precision=compute_dtype)
        self._activation_inputs = [p for p in wanted
                                   if isinstance(find_layer(network, p), _ACTIVATION_LAYERS)]

    def _resolve(self, layer: str) -> str:
        network = self.model.keras_model
        if layer == OUTPUT:
            found = output_op(network)
            if found is None:
                raise InvalidModelError(
                    f"The output layer of '{network.name}' could not be found.")
            return found[0]
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
        inputs = self.model.preprocess(tf.cast(x, tf.float32))
        pre: dict[str, tf.Tensor] = {}
        run = run_graph(self.model.keras_model, [inputs], capture=set(self.paths.values()),
                        capture_inputs=self._activation_inputs,
                        replace={path: self._pre_activation(path, linear, pre)
                                 for path, linear in self._linear.items()},
                        precision=self.compute_dtype, stop_when_captured=True)
        missing = set(self.paths.values()) - set(run.outputs_of)
        if missing:
            raise InvalidModelError(
                f"The layer '{sorted(missing)[0]}' is not on the path from the model's input to "
                "its output; pick another layer.")
        pre.update(run.inputs_of)
        return {layer: Tap(tf.cast(pre.get(path, run.outputs_of[path]), tf.float32),
                           tf.cast(run.outputs_of[path], tf.float32))
                for layer, path in self.paths.items()}

    @staticmethod
    def _pre_activation(path: str, linear, pre: dict):
        """The hook that runs a layer as its linear copy, keeping the value before the
        activation in ``pre[path]`` and returning the layer's output."""

        def run(op, args, kwargs):
            pre[path] = linear(*args, **kwargs)
            return op.activation(pre[path])

        return run


def _activation_name(layer) -> str:
    return getattr(getattr(layer, "activation", None), "__name__", "linear")
