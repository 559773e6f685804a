"""The forward pass every saliency method differentiates: 0-255 RGB in, class logits out, with
the output of one inner layer exposed on the way, in ONE graph.

Two things make this more than ``keras.Model(model.inputs, [layer.output, model.output])``:

* **Nested models.** When an ImageNet base is one layer of a transfer model, its inner layers'
  ``.output`` belongs to the base's own graph, not the outer one, and Keras answers "Graph
  disconnected" (so do tf-keras-vis and the keras.io Grad-CAM example). Here the graph is run
  node by node on real tensors, nested models layer by layer (``engine.models.graph``), so the
  inner layer's output and the final output come from the same computation. Calling layers on
  real tensors adds no nodes: the user's model is left as it was.
* **Logits.** Gradients of a softmax output saturate and mix classes; the methods follow the
  papers (and tf-keras-vis' ``ReplaceToLinear``) and take the class score before the softmax.
  The output layer is swapped, in this graph only, for a copy with a linear activation (a
  separate ``Softmax`` layer is skipped). Where no copy can be made, ``log p`` stands in: the
  same softmax, the same order of classes.

**Precision.** ``ForwardGraph(..., precision="bfloat16")`` runs bfloat16 copies of the layers
(``engine.models.graph.bfloat16_layer``: weights rounded once, made on first use and shared by
every graph that runs the layer; the user's layers are only read): about twice as fast on CPUs
with AVX512-BF16/AMX and recent GPUs. The input, the preprocessing (also where the model does it
with its own layers), the logits and the softmax stay float32, and so do the gradients handed
back; SmoothGrad and Score-CAM average many such passes in float32.

Graph functions are ``tf.function``s with fixed input signatures (any batch size, no retracing),
built once per (model, layer, precision) and kept in a small cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from engine.cache import BoundedCache
from engine.errors import InvalidModelError
from engine.models.architecture import layer_table
from engine.models.explorable import ExplorableModel
from engine.models.graph import (PRECISIONS, computing_nodes, consumers, functional_graph,
                                 layer_copy, output_op, run_graph)
from engine.models.layers import CONV_TYPES, SEPARATOR, find_layer
from engine.saliency.targets import class_scores

L = keras.layers
# Layers that keep the grid and finish a convolution block: the map of the block is read after
# them (a raw convolution before its batch norm differs from what the next block sees).
_BLOCK_TAIL_TYPES = (
    L.BatchNormalization, L.LayerNormalization, L.GroupNormalization, L.Activation, L.ReLU,
    L.LeakyReLU, L.ELU, L.PReLU, L.Add, L.Concatenate,
)
_PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")
_CACHE_SIZE = 6  # (model, layer, precision); a graph holds its model (VGG16: 0.5 GB)


# --------------------------------------------------------------------------------- layer choice
def spatial_layer_paths(keras_model: keras.Model) -> list[str]:
    """Layers whose output is a grid with more than one position: what the CAM family can use.

    Returns:
        Paths in forward order (``"vgg16/block5_conv3"`` inside a nested model).
    """
    return [row.path for row in _table(keras_model) if _is_spatial(row.output_shape)
            and row.type not in ("Functional", "Sequential")]


def default_cam_layer(keras_model: keras.Model) -> str:
    """The output of the last convolution block with a spatial size above 1, after its
    normalisation and activation: ``conv_pw_13_relu`` in MobileNet, ``block5_conv3`` in VGG16
    (whose ReLU is fused), ``top_activation`` in EfficientNet, ``conv5_block3_out`` in ResNet50.

    Raises:
        InvalidModelError: the model has no convolution with a spatial output.
    """
    rows = _table(keras_model)
    convs = [r for r in rows if isinstance(find_layer(keras_model, r.path), CONV_TYPES)
             and _is_spatial(r.output_shape)]
    if not convs:
        raise InvalidModelError(
            f"The model '{keras_model.name}' has no convolution layer with a spatial output, so "
            "class activation maps cannot be computed; use vanilla gradients, SmoothGrad, "
            "Integrated Gradients or occlusion instead.")
    path = convs[-1].path
    parent_path, _, name = path.rpartition(SEPARATOR)
    parent = find_layer(keras_model, parent_path) if parent_path else keras_model
    tail = _block_tail(functional_graph(parent), parent.get_layer(name))
    return f"{parent_path}{SEPARATOR}{tail}" if parent_path else tail


def _table(keras_model):
    return layer_table(keras_model)


def _is_spatial(shape) -> bool:
    return (shape is not None and len(shape) == 3
            and any(side is None or side > 1 for side in shape[:2]))


def _block_tail(graph, conv) -> str:
    """Follow the conv's output through batch norm / activation / residual add while it has a
    single consumer that keeps the grid; the name of the last layer reached."""
    following_of = consumers(graph)
    node = next(n for n in computing_nodes(graph) if n.operation is conv)
    while True:
        out = node.outputs[0]
        following = following_of.get(id(out), [])
        if len(following) != 1 or not isinstance(following[0].operation, _BLOCK_TAIL_TYPES):
            return node.operation.name
        nxt = following[0]
        if tuple(nxt.outputs[0].shape[1:-1]) != tuple(out.shape[1:-1]):
            return node.operation.name
        node = nxt


# ---------------------------------------------------------------------------------- the graph
@dataclass(frozen=True)
class _OutputFix:
    """How the class logits are obtained from the model's last operation."""

    replace: dict  # path of the output op -> hook computing the logits instead (``GraphRun``)
    log_of: str | None  # "softmax"/"sigmoid": take the inverse of the output, no linear copy


class ForwardGraph:
    """``model`` as one differentiable function of the 0-255 input.

    ``forward(x)`` returns ``(activations, logits)``: the output of ``layer`` (``None`` when no
    layer was asked for) and the class logits, both from the same pass. The ``tf.function``s
    below batch any number of images at the model's input size.

    Attributes:
        model: the explored model (never mutated).
        layer: path of the exposed layer, or ``None``.
        multilabel: a sigmoid output with several units (each class its own probability).
    """

    def __init__(self, model: ExplorableModel, layer: str | None = None,
                 precision: str = "float32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}.")
        self.model = model
        self.layer = layer
        self.precision = precision
        keras_model = model.keras_model
        if functional_graph(keras_model) is None:
            if layer is not None:
                raise InvalidModelError(
                    f"The model '{keras_model.name}' is a subclassed model whose layers cannot be "
                    "reached; class activation maps need a Functional or Sequential model. "
                    "Gradient and occlusion methods still work.")
        if layer is not None:
            try:
                find_layer(keras_model, layer)
            except KeyError:
                raise InvalidModelError(
                    f"The model has no layer '{layer}'; pick one of its convolution layers."
                ) from None
        self.multilabel = (model.output_activation == "sigmoid"
                           and int(keras_model.outputs[0].shape[-1]) > 1)
        self._fix = _output_fix(keras_model)
        h, w = model.input_size
        images = tf.TensorSpec((None, h, w, 3), tf.float32)
        classes = tf.TensorSpec((None,), tf.int32)
        self.probabilities = tf.function(self._probabilities, input_signature=[images])
        self.logits = tf.function(self._logits, input_signature=[images])
        masks = tf.TensorSpec((None, h, w), tf.float32)
        self.masked_probabilities = tf.function(self._masked_probabilities,
                                                input_signature=[images, masks])
        self.input_gradients = tf.function(self._input_gradients,
                                           input_signature=[images, classes])
        if layer is not None:
            self.activations = tf.function(self._activations, input_signature=[images])
            self.layer_gradients = tf.function(self._layer_gradients,
                                               input_signature=[images, classes])

    # -- the pass
    def forward(self, x: tf.Tensor):
        """(N, h, w, 3) RGB 0-255 -> (activations of ``layer`` or None, (N, n_classes) logits)."""
        return self.forward_preprocessed(self.model.preprocess(x))

    def forward_preprocessed(self, inputs: tf.Tensor):
        """``forward`` from what the network's first layer takes (after preprocessing)."""
        keras_model = self.model.keras_model
        if functional_graph(keras_model) is None:
            out = keras_model(inputs, training=False)
            return None, self._to_logits(out, log_of=self.model.output_activation)
        run = run_graph(keras_model, [inputs], capture=[self.layer] if self.layer else [],
                        replace=self._fix.replace, precision=self.precision)
        logits = self._to_logits(run.outputs[0], log_of=self._fix.log_of)
        if self.layer and self.layer not in run.outputs_of:
            raise InvalidModelError(f"The layer '{self.layer}' is not on the path from the input "
                                    "to the output; pick another layer.")
        value = run.outputs_of.get(self.layer)
        return (None if value is None else tf.cast(value, tf.float32)), logits

    def _to_logits(self, out, log_of):
        out = tf.cast(out, tf.float32)
        if log_of == "softmax":
            out = tf.math.log(tf.maximum(out, 1e-12))
        elif log_of == "sigmoid":
            p = tf.clip_by_value(out, 1e-7, 1 - 1e-7)
            out = tf.math.log(p) - tf.math.log1p(-p)
        if out.shape[-1] == 1:
            # One unit is a binary classifier: softmax([-z/2, z/2]) = [1 - sigmoid(z), sigmoid(z)].
            out = tf.concat([-out / 2, out / 2], axis=-1)
        return out

    def to_probabilities(self, logits: tf.Tensor) -> tf.Tensor:
        """Logits -> the probabilities ``ExplorableModel.probabilities`` reports."""
        return tf.sigmoid(logits) if self.multilabel else tf.nn.softmax(logits, axis=-1)

    # -- graph functions
    def _probabilities(self, x):
        return self.to_probabilities(self.forward(x)[1])

    def _masked_probabilities(self, image, masks):
        """Probabilities of one (1, h, w, 3) image's network input times each (h, w) mask: a
        masked-out pixel becomes the network's zero (the mean colour for most models)."""
        inputs = self.model.preprocess(image) * masks[..., None]
        return self.to_probabilities(self.forward_preprocessed(inputs)[1])

    def _logits(self, x):
        return self.forward(x)[1]

    def _activations(self, x):
        return self.forward(x)[0]

    def _input_gradients(self, x, classes):
        with tf.GradientTape() as tape:
            tape.watch(x)
            _, logits = self.forward(x)
            score = class_scores(logits, classes)
        return tape.gradient(score, x), logits

    def _layer_gradients(self, x, classes):
        with tf.GradientTape() as tape:
            activations, logits = self.forward(x)
            score = class_scores(logits, classes)
        return activations, tape.gradient(score, activations), logits


def _output_fix(keras_model) -> _OutputFix:
    found = output_op(keras_model)
    if found is None:
        return _OutputFix({}, None)
    path, op = found
    name = _activation_name(op)
    if isinstance(op, L.Softmax) or (isinstance(op, L.Activation)
                                     and name in _PROBABILITY_ACTIVATIONS):
        return _OutputFix({path: _skip}, None)
    if name not in _PROBABILITY_ACTIVATIONS:
        return _OutputFix({}, None)  # already logits
    try:
        linear = layer_copy(op, activation="linear")
    except InvalidModelError:  # a custom layer that cannot be copied: invert the activation
        return _OutputFix({}, name)
    return _OutputFix({path: lambda _op, args, kwargs: linear(*args, **kwargs)}, None)


def _skip(op, args, kwargs):
    """Stands in for a separate softmax/sigmoid layer at the end of a model."""
    return args[0] if args else kwargs["inputs"]


def _activation_name(op) -> str:
    activation = getattr(op, "activation", None)
    return getattr(activation, "__name__", "linear")


def resolve_precision(precision: str) -> str:
    """``"auto"`` -> what is fast here (``fast_precision``: bfloat16 on CPUs with AVX512-BF16 or
    AMX and on recent GPUs, else float32); ``"float32"``/``"bfloat16"`` as they are.

    Raises:
        ValueError: another value.
    """
    if precision == "auto":
        from engine.actmax.optimize import fast_precision

        return fast_precision()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'auto' or one of {PRECISIONS}, not {precision!r}.")
    return precision


# ---------------------------------------------------------------------------------- the cache
_graphs: "BoundedCache[ForwardGraph]" = BoundedCache(_CACHE_SIZE)


def forward_graph(model: ExplorableModel, layer: str | None = None,
                  precision: str = "float32") -> ForwardGraph:
    """The cached ``ForwardGraph`` of ``model`` exposing ``layer``, computing in ``precision``
    (traced functions are reused by every later call on the same model, which is where the
    speed comes from)."""
    # id() is safe as a key: the entry holds the model, so the id cannot be reused meanwhile.
    return _graphs.get_or_build((id(model), layer, precision),
                                lambda: ForwardGraph(model, layer, precision))


def batches(n: int, size: int) -> list[slice]:
    """``slice`` objects covering ``range(n)``, at most ``size`` long and as even as possible
    (20 samples in batches of 16 run as 10 + 10: a batch of 4 wastes most of a pass on a CPU,
    whose convolution kernels are slow on small batches)."""
    if n <= 0:
        return []
    count = -(-n // max(1, int(size)))
    edges = [round(i * n / count) for i in range(count + 1)]
    return [slice(a, b) for a, b in zip(edges, edges[1:])]


def as_numpy(t) -> np.ndarray:
    return np.asarray(t.numpy() if hasattr(t, "numpy") else t, dtype=np.float32)
