"""Running a Keras model's graph op by op: the one runner behind every view that looks inside.

Feature maps, saliency, activation maximisation and the architecture table all need what
``keras.Model(model.inputs, inner_layer.output)`` cannot give in Keras 3: the tensors of layers
*inside* a nested model (``"vgg16/block5_conv3"`` when VGG16 is one layer of a transfer model).
``GraphWalk`` runs the Functional graph Keras keeps for a model node by node, as
``Functional._run_through_graph`` does, and descends into nested Functional and Sequential
models, naming every op by its layer path. Calling layers on values, never on symbolic tensors,
adds no node: the explored model is never changed.

``GraphRun`` walks real tensors, with hooks:

* **capture** the output (or the input) of layers by path, and stop once all are found;
* **replace** an op by a function of its arguments (the final softmax by a linear copy, a
  ReLU by a copy with another activation);
* run in **bfloat16**: each layer is run by its bfloat16 copy (``bfloat16_layer``).

Copies (``layer_copy``) hold the layer's weights, are made once per layer and variant however
many threads ask at the same time, eagerly even when first asked for while a ``tf.function``
traces, and go with their layer. The architecture table walks the same graph on shapes and
receptive fields instead of tensors (a ``GraphWalk`` subclass in ``architecture.py``).

    >>> run = run_graph(model, [x], capture=["vgg16/block5_conv3"], precision="bfloat16")
    >>> run.outputs[0], run.outputs_of["vgg16/block5_conv3"]
"""

from __future__ import annotations

import collections
from typing import Callable, Iterator, Mapping, Sequence

import keras
import tensorflow as tf

from engine.cache import PerModelCache
from engine.errors import InvalidModelError
from engine.models.layers import SEPARATOR

L = keras.layers
#: What a layer is computed in by ``GraphRun`` / ``layer_copy``.
PRECISIONS = ("float32", "bfloat16")
#: ``replace`` hooks: ``hook(op, args, kwargs)`` returns what the op would (any structure).
Replacement = Callable[[object, tuple, dict], object]

# Normalisation keeps float32 statistics in bfloat16 runs (Keras computes them in float32
# anyway); preprocessing inside the model stays float32 like the preprocessing before it.
_NORMALIZATION_TYPES = (L.BatchNormalization, L.LayerNormalization, L.GroupNormalization)
_FLOAT32_TYPES = (L.Rescaling, L.Normalization, L.Resizing, L.CenterCrop)


# ------------------------------------------------------------------------------ reading graphs
def functional_graph(model):
    """The Functional graph Keras runs for ``model`` (a Sequential's inner one), or None for a
    subclassed model, a plain layer or a Sequential that was never given an input shape."""
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    return model if hasattr(model, "_nodes_by_depth") else None


def is_graph_model(op) -> bool:
    """True for a nested model whose graph can be walked (Functional, or a built Sequential)."""
    return isinstance(op, keras.Model) and functional_graph(op) is not None


def computing_nodes(graph) -> Iterator:
    """Every node of ``graph`` that computes (input nodes skipped), in execution order."""
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if node.operation is not None and not node.is_input:
                yield node


def ready_nodes(graph, values: dict) -> Iterator:
    """``computing_nodes`` reachable from the values computed so far.

    Args:
        graph: a ``functional_graph``.
        values: ``id(symbolic tensor) -> value``; the caller adds each node's outputs before
            asking for the next node.
    """
    for node in computing_nodes(graph):
        if all(id(t) in values for t in node.input_tensors):
            yield node  # else not reachable from these inputs (Keras skips it too)


def consumers(graph) -> dict[int, list]:
    """``id(symbolic tensor) -> the nodes that take it`` (a tensor used twice by one node is
    listed twice)."""
    taken_by = collections.defaultdict(list)
    for node in computing_nodes(graph):
        for tensor in node.input_tensors:
            taken_by[id(tensor)].append(node)
    return taken_by


def nested_call_inputs(node) -> list:
    """The symbolic tensors a call of a nested model passes to it, flattened (they line up with
    the nested model's inputs, as in Keras' own ``Function._run_through_graph``)."""
    args, kwargs = node.arguments.args, node.arguments.kwargs
    return keras.tree.flatten(args[0] if args else kwargs["inputs"])


def inference_arguments(node, values: dict) -> tuple[tuple, dict]:
    """The arguments of ``node``'s call filled in from ``values``, in inference mode (Dropout
    off, BatchNorm on its moving statistics)."""
    args, kwargs = node.arguments.fill_in(values)
    if "training" in getattr(node.operation, "_call_context_args", {}):
        kwargs = {**kwargs, "training": False}
    return args, kwargs


def output_op(model) -> tuple[str, object] | None:
    """``(path, op)`` of the op that produces ``model``'s (first) output, inside nested models
    too; None when ``model`` has no readable graph."""
    graph = functional_graph(model)
    if graph is None:
        return None
    target = id(graph.outputs[0])
    for node in computing_nodes(graph):
        if any(id(t) == target for t in node.outputs):
            op = node.operation
            inner = output_op(op) if is_graph_model(op) else None
            return (f"{op.name}{SEPARATOR}{inner[0]}", inner[1]) if inner else (op.name, op)
    return None


# ------------------------------------------------------------------------------ walking graphs
class GraphWalk:
    """Walks a model's graph carrying one value per tensor; subclasses say what a value is.

    ``run`` feeds the model's inputs, visits every node reachable from them in execution order
    and returns the values of the outputs. A nested model with a graph is walked in turn
    (its ops' paths get its own path and ``"/"`` in front); anything else, a layer, a
    ``keras.ops`` operation or a subclassed model, is one op for ``call``.
    """

    def run(self, model, inputs: Sequence, prefix: str = "") -> list | None:
        """The values of ``model``'s outputs, or None once ``visit`` stopped the walk."""
        graph = functional_graph(model)
        values = {id(t): v for t, v in zip(graph.inputs, inputs)}
        for node in ready_nodes(graph, values):
            outputs = self.visit(node, prefix + node.operation.name, values)
            if outputs is None:
                return None
            for t, value in zip(node.outputs, outputs):
                values[id(t)] = value
        return [values[id(t)] for t in graph.outputs]

    def visit(self, node, path: str, values: dict) -> list | None:
        """The values of ``node``'s outputs (a list), or None to stop the whole walk."""
        op = node.operation
        if is_graph_model(op):
            inner = [values[id(t)] for t in nested_call_inputs(node)]
            return self.run(op, inner, path + SEPARATOR)
        return self.call(node, path, values)

    def call(self, node, path: str, values: dict) -> list:
        """The values of the outputs of one op (not a nested graph)."""
        raise NotImplementedError


class GraphRun(GraphWalk):
    """A walk on real tensors, in inference mode, with hooks.

    Args:
        capture: layer paths whose (first) output is kept in ``outputs_of``.
        capture_inputs: layer paths whose (first) input is kept in ``inputs_of``.
        replace: path -> ``hook(op, args, kwargs)`` computing that op's outputs instead of it.
        precision: ``"float32"`` (the layers themselves) or ``"bfloat16"`` (``bfloat16_layer``
            copies; a replaced op is its hook's business).
        stop_when_captured: stop as soon as everything asked for is captured (``run`` then
            returns None): the rest of the network is not computed.

    A layer called more than once is captured at its first call.
    """

    def __init__(self, *, capture: Sequence[str] = (), capture_inputs: Sequence[str] = (),
                 replace: Mapping[str, Replacement] | None = None, precision: str = "float32",
                 stop_when_captured: bool = False):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}.")
        self.capture = frozenset(capture)
        self.capture_inputs = frozenset(capture_inputs)
        self.replace = dict(replace or {})
        self.precision = precision
        self.stop_when_captured = stop_when_captured
        self.outputs_of: dict[str, tf.Tensor] = {}
        self.inputs_of: dict[str, tf.Tensor] = {}
        self.outputs: list | None = None  # set by ``run_graph``

    @property
    def complete(self) -> bool:
        """Everything asked for has been captured."""
        return (len(self.outputs_of) == len(self.capture)
                and len(self.inputs_of) == len(self.capture_inputs))

    def visit(self, node, path, values):
        if path in self.capture_inputs and path not in self.inputs_of:
            self.inputs_of[path] = values[id(node.input_tensors[0])]
        outputs = super().visit(node, path, values)
        if outputs is None:
            return None
        if path in self.capture and path not in self.outputs_of:
            self.outputs_of[path] = outputs[0]
        if self.stop_when_captured and self.complete:
            return None
        return outputs

    def call(self, node, path, values):
        op = node.operation
        args, kwargs = inference_arguments(node, values)
        hook = self.replace.get(path)
        if hook is not None:
            outputs = hook(op, args, kwargs)
        elif self.precision == "bfloat16":
            outputs = bfloat16_layer(op)(*args, **kwargs)
        else:
            outputs = op(*args, **kwargs)
        return keras.tree.flatten(outputs)


def run_graph(model, inputs: Sequence, **hooks) -> GraphRun:
    """Run ``model``'s graph on ``inputs`` (one tensor per model input) with ``GraphRun``'s
    hooks; the returned run holds ``outputs`` (None when it stopped early), ``outputs_of`` and
    ``inputs_of``.

    Raises:
        InvalidModelError: ``model`` has no graph to run (a subclassed model).
    """
    if functional_graph(model) is None:
        raise InvalidModelError(
            f"The model '{model.name}' is a subclassed model, whose layer graph cannot be read; "
            "rebuild it as a Functional or Sequential model.")
    walk = GraphRun(**hooks)
    walk.outputs = walk.run(model, list(inputs))
    return walk


# ------------------------------------------------------------------------------ layer copies
# Per layer, held weakly: a copy goes with its layer. A value is the copy, or the sentence
# saying why none could be made (so a layer that cannot be copied is tried once).
_copies: "PerModelCache[object]" = PerModelCache(max_per_model=4)


def layer_copy(layer: keras.layers.Layer, *, activation: str | None = None,
               precision: str = "float32") -> keras.layers.Layer:
    """A new layer like ``layer`` with its weights, optionally another activation, computing
    in ``precision``; ``layer`` is only read.

    A bfloat16 copy holds its weights rounded to bfloat16 (no cast per call); a normalisation
    layer's copy keeps float32 statistics (``mixed_bfloat16``). Copies are cached per layer:
    made once, however many threads ask at once, and shared by every graph that runs the layer.
    A copy holds the weights of the moment it was made.

    Raises:
        InvalidModelError: the layer cannot be rebuilt from its config (a custom layer).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}.")
    copy = _copies.get_or_build(layer, (activation, precision),
                                lambda: _new_copy(layer, activation, precision))
    if isinstance(copy, str):
        raise InvalidModelError(copy)
    return copy


def bfloat16_layer(op):
    """What runs ``op`` in a bfloat16 pass: its bfloat16 ``layer_copy``, or ``op`` itself for a
    ``keras.ops`` operation, a nested model, preprocessing inside the model and a layer that
    cannot be copied (Keras runs those in their own dtype, casting their inputs)."""
    if not isinstance(op, keras.layers.Layer) or isinstance(op, (keras.Model,) + _FLOAT32_TYPES):
        return op
    try:
        return layer_copy(op, precision="bfloat16")
    except InvalidModelError:
        return op


def _new_copy(layer, activation: str | None, precision: str):
    config = dict(layer.get_config())
    suffix = "_".join(part for part in (activation, precision) if part and part != "float32")
    config["name"] = f"{layer.name}_{suffix or 'copy'}"
    if activation is not None:
        config["activation"] = activation
    if precision == "bfloat16":
        config["dtype"] = ("mixed_bfloat16" if isinstance(layer, _NORMALIZATION_TYPES)
                           else "bfloat16")
    try:
        with tf.init_scope():  # eager variables, even when first asked for inside a trace
            copy = type(layer).from_config(config)
            build_config = layer.get_build_config() if layer.built else None
            if build_config:
                copy.build_from_config(build_config)
            copy.set_weights(layer.get_weights())
            if hasattr(copy, "finalize_state"):  # Normalization: constants from its weights
                copy.finalize_state()
    except Exception as exc:  # noqa: BLE001 - custom or unusual layers fail in many ways
        return (f"The layer '{layer.name}' ({type(layer).__name__}) could not be copied "
                f"({exc}); pick another layer or model.")
    return copy
