"""The architecture table: shape, parameters, receptive field and cost of every layer.

Receptive fields follow the standard recurrence (Araujo et al., "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019), per spatial axis::

    rf_out   = rf_in + (kernel - 1) * dilation * jump_in
    jump_out = jump_in * stride

starting from ``rf = 1, jump = 1`` at the model input. ``jump`` is the distance, in input pixels,
between the centres of two adjacent output units (the "effective stride").

ResNet, Inception, DenseNet and friends branch and merge, so the recurrence runs over the Keras
functional *graph*, not over the layer list: a merge layer (``Add``, ``Concatenate``...) takes,
per axis, the largest field among its inputs, with that input's jump. A nested model (a whole
VGG16 used as one layer) is entered with the field of the tensor it is called on, and its own
layers carry the recurrence on.

FLOPs count multiply-adds of the layers that hold a weight matrix (convolutions of every kind and
``Dense``), two FLOPs per multiply-add, for one image; bias adds are left out. Element-wise layers
(activations, batch norm, pooling, ``Add``...) count 0: they are well under 1 % of the total of an
image CNN, batch norm folds into the convolution before it at inference, and this is the
convention of the published counts (VGG16: 15.5 G multiply-adds, i.e. 31 GFLOPs, at 224 x 224).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import keras

from engine.errors import InvalidModelError
from engine.models.graph import GraphWalk, functional_graph, is_graph_model
from engine.models.layers import SEPARATOR, iter_layers

L = keras.layers

# Layers whose field follows the recurrence with a kernel, a stride and a dilation.
_DEPTHWISE_TYPES = (L.DepthwiseConv1D, L.DepthwiseConv2D)
_SEPARABLE_TYPES = (L.SeparableConv1D, L.SeparableConv2D)
_PLAIN_CONV_TYPES = (L.Conv1D, L.Conv2D, L.Conv3D)
_KERNEL_TYPES = _DEPTHWISE_TYPES + _SEPARABLE_TYPES + _PLAIN_CONV_TYPES
_POOL_TYPES = (
    L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
    L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D,
)
# Padding and cropping move the grid but neither widen the field nor change the jump.
_SHIFT_TYPES = (
    L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D,
    L.Cropping1D, L.Cropping2D, L.Cropping3D,
)
_TRANSPOSED_CONV_TYPES = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
# After these an output unit no longer sits on an integer grid of input pixels (upsampling,
# resizing) or depends on every position (global pooling, flatten, recurrence, attention), so
# "receptive field side" has no meaning.
_NO_FIELD_TYPES = _TRANSPOSED_CONV_TYPES + (
    L.UpSampling1D, L.UpSampling2D, L.UpSampling3D, L.Resizing,
    L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
    L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
    L.Flatten, L.Reshape, L.Permute,
    L.RNN, L.Bidirectional, L.MultiHeadAttention, L.Attention, L.AdditiveAttention,
)


@dataclass(frozen=True)
class LayerInfo:
    """One row of the architecture table.

    Attributes:
        path: ``"vgg16/block5_conv3"`` inside a nested model, the plain name otherwise.
        name: the layer's own name.
        type: the layer's class name (``"Conv2D"``).
        depth: 0 for a top-level layer, 1 inside one nested model, ...
        output_shape: output shape without the batch axis, e.g. ``(112, 112, 64)``; the first
            output for a layer with several. ``None`` only inside a subclassed model, whose
            graph cannot be read.
        params: ``layer.count_params()``; for a nested model, the total of its layers.
        trainable: whether an optimiser updates this layer: its own flag and that of every
            model it sits in.
        rf_size: receptive field side in input pixels of one output unit (the larger side when
            the field is not square, as after Inception's 1x7 convolutions); ``None`` where the
            output is not a spatial grid (see ``_NO_FIELD_TYPES``).
        rf_shape: the receptive field per spatial axis, ``(height, width)`` for images;
            ``None`` when ``rf_size`` is.
        rf_stride: the jump: distance in input pixels between adjacent output units (the larger
            of the axes); ``None`` when ``rf_size`` is.
        flops: FLOPs for one image, 2 per multiply-add, bias adds excluded; 0 for element-wise
            layers or where a size is unknown (``None`` in the shape). For a nested model, the
            sum over its layers. A layer called several times (shared weights) counts every call.
    """

    path: str
    name: str
    type: str
    depth: int
    output_shape: tuple | None
    params: int
    trainable: bool
    rf_size: int | None
    rf_shape: tuple[int, ...] | None
    rf_stride: int | None
    flops: int


@dataclass(frozen=True)
class ModelTotals:
    """Whole-model figures for the summary header.

    Attributes:
        params: every weight, as ``model.count_params()``.
        trainable_params: weights the optimiser updates.
        non_trainable_params: frozen weights and batch-norm statistics.
        size_mb: bytes of all weights / 2**20, at their stored dtype.
        flops: FLOPs for one image at the model's input size (sum over leaf layers, see
            ``LayerInfo.flops``).
        n_layers: leaf layers (nested models are not counted themselves, their layers are).
        input_shape: shape of the (first) input without the batch axis, e.g. ``(224, 224, 3)``.
        output_shape: shape of the (first) output without the batch axis, e.g. ``(1000,)``.
    """

    params: int
    trainable_params: int
    non_trainable_params: int
    size_mb: float
    flops: int
    n_layers: int
    input_shape: tuple
    output_shape: tuple


def layer_table(model: keras.Model) -> list[LayerInfo]:
    """One row per layer of ``model`` in forward order, nested models expanded.

    A nested model gets a row of its own, followed by the rows of its layers with ``depth + 1``
    (the order of ``engine.models.layers.iter_layers``). Input layers get no row.

    Args:
        model: a Functional or Sequential Keras model with a known input shape. A Sequential
            model need not have been called: ``keras.Input`` as first layer or
            ``model.build(input_shape)`` is enough.

    Returns:
        List of ``LayerInfo``.

    Raises:
        InvalidModelError: the model has no input shape yet, or is a subclassed model whose
            graph cannot be read.
    """
    records = _ShapeWalk.of(model).records
    rows: list[LayerInfo] = []
    trainable_by_path: dict[str, bool] = {}
    for ref in iter_layers(model):
        parent = ref.path.rpartition(SEPARATOR)[0]
        trainable = bool(ref.layer.trainable) and trainable_by_path.get(parent, True)
        trainable_by_path[ref.path] = trainable
        record = records.get(ref.path)
        field = record.field if record else None
        rows.append(LayerInfo(
            path=ref.path,
            name=ref.layer.name,
            type=type(ref.layer).__name__,
            depth=ref.depth,
            output_shape=record.output_shape if record else None,
            params=_count_params(ref.layer),
            trainable=trainable,
            rf_size=max(field.size) if field else None,
            rf_shape=field.size if field else None,
            rf_stride=max(field.jump) if field else None,
            flops=record.flops if record else 0,
        ))
    return rows


def model_totals(model: keras.Model) -> ModelTotals:
    """Parameter counts, weight size and cost of the whole model.

    Args:
        model: as for ``layer_table``.

    Returns:
        ``ModelTotals``.

    Raises:
        InvalidModelError: as for ``layer_table``.
    """
    walk = _ShapeWalk.of(model)
    trainable = sum(_n_elements(w.shape) for w in model.trainable_weights)
    non_trainable = sum(_n_elements(w.shape) for w in model.non_trainable_weights)
    n_bytes = sum(_n_elements(w.shape) * _itemsize(w.dtype) for w in model.weights)
    n_layers = sum(1 for ref in iter_layers(model) if not isinstance(ref.layer, keras.Model))
    return ModelTotals(
        params=int(model.count_params()),
        trainable_params=int(trainable),
        non_trainable_params=int(non_trainable),
        size_mb=n_bytes / 2**20,
        flops=walk.total_flops,
        n_layers=n_layers,
        input_shape=tuple(walk.input_specs[0].shape[1:]),
        output_shape=tuple(walk.output_specs[0].shape[1:]),
    )


# --- the graph walk -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    """Receptive field of every unit of one tensor, per spatial axis, in input pixels."""

    size: tuple[int, ...]
    jump: tuple[int, ...]


@dataclass
class _Record:
    """What the walk learnt about one layer (its first call; flops of every call)."""

    output_shape: tuple
    field: _Field | None
    flops: int


class _ShapeWalk(GraphWalk):
    """Walks the model's graph on (shape, receptive field) pairs instead of tensors.

    Shapes are those Keras recorded when the graph was built, unless the walk feeds a node a
    different shape, which happens inside a nested model built for ``(None, None, 3)`` and
    called on ``(224, 224, 3)``: then the layer's ``compute_output_spec`` gives the real one, so
    the inner rows show concrete sizes and FLOPs.

    A nested subclassed model has no graph to read: it is walked as one opaque layer (a row with
    its output shape, no field, no FLOPs) and its own layers get no shape.
    """

    def __init__(self) -> None:
        self.records: dict[str, _Record] = {}
        self.total_flops = 0
        self.input_specs: list = []
        self.output_specs: list = []

    @classmethod
    def of(cls, model: keras.Model) -> "_ShapeWalk":
        graph = functional_graph(model)
        if graph is None:
            if isinstance(model, keras.Sequential):
                raise InvalidModelError(
                    f"The Sequential model '{model.name}' has no input shape yet: start it with "
                    "keras.Input(shape=...) or call model.build((None, height, width, channels))."
                )
            raise InvalidModelError(
                f"The model '{model.name}' is a subclassed model, whose layer graph cannot be "
                "read; rebuild it as a Functional or Sequential model."
            )
        walk = cls()
        walk.input_specs = list(graph.inputs)
        inputs = [(spec, _input_field(spec.shape)) for spec in walk.input_specs]
        walk.output_specs = [spec for spec, _ in walk.run(model, inputs)]
        return walk

    def visit(self, node, path, values):
        """A nested model's row gets the FLOPs of its layers."""
        if not is_graph_model(node.operation):
            return super().visit(node, path, values)
        flops_before = self.total_flops
        outputs = super().visit(node, path, values)
        spec, field = outputs[0]
        self._record(path, spec, field, self.total_flops - flops_before)
        return outputs

    def call(self, node, path, values):
        """One call of a layer, a ``keras.ops`` operation or an opaque (subclassed) model."""
        op = node.operation
        in_specs = [values[id(t)][0] for t in node.input_tensors]
        in_fields = [values[id(t)][1] for t in node.input_tensors]
        if all(_same_shape(s, t) for s, t in zip(in_specs, node.input_tensors)):
            out_specs = list(node.outputs)
        else:
            specs = {id(t): s for t, s in zip(node.input_tensors, in_specs)}
            args, kwargs = node.arguments.fill_in(specs)
            out_specs = keras.tree.flatten(op.compute_output_spec(*args, **kwargs))
        out_field = _output_field(op, in_fields, [s.shape for s in in_specs], out_specs[0].shape)
        # keras.ops calls in a functional graph are operations, not layers: no row, no weights.
        if isinstance(op, keras.layers.Layer):
            flops = _layer_flops(op, in_specs[0].shape, out_specs[0].shape)
            self.total_flops += flops
            self._record(path, out_specs[0], out_field, flops)
        return [(spec, out_field) for spec in out_specs]

    def _record(self, path, spec, field, flops):
        record = self.records.get(path)
        if record is None:
            self.records[path] = _Record(tuple(spec.shape[1:]), field, flops)
        else:
            record.flops += flops  # shared layer: shape and field of its first call


def _same_shape(spec, reference) -> bool:
    return tuple(spec.shape) == tuple(reference.shape)


# --- receptive field rules -------------------------------------------------------------------


def _input_field(shape) -> _Field | None:
    """``rf = 1, jump = 1`` on every spatial axis of a (batch, *spatial, channels) input."""
    n_spatial = len(shape) - 2
    if n_spatial < 1:
        return None
    return _Field((1,) * n_spatial, (1,) * n_spatial)


def _output_field(op, in_fields, in_shapes, out_shape) -> _Field | None:
    """Field of the output of ``op`` from the fields of its inputs."""
    if isinstance(op, _KERNEL_TYPES):
        return _apply_window(in_fields[0], op.kernel_size, op.strides, op.dilation_rate)
    if isinstance(op, _POOL_TYPES):
        return _apply_window(in_fields[0], op.pool_size, op.strides, (1,) * len(op.pool_size))
    if isinstance(op, _SHIFT_TYPES):
        return in_fields[0]
    if isinstance(op, (_NO_FIELD_TYPES, keras.Model)):
        return None
    # Anything else that keeps the grid (activations, batch norm, dropout, Add, Concatenate,
    # Multiply, custom element-wise layers) acts position by position: the output unit sees what
    # its inputs saw. Inputs that are not on the same grid do not count; in a squeeze-and-
    # excitation block the (1, 1, C) gate comes from global pooling and has no field, so the
    # local field of the feature-map path is reported.
    out_grid = _spatial_dims(out_shape)
    candidates = [f for f, s in zip(in_fields, in_shapes)
                  if f is not None and len(s) == len(out_shape) and _spatial_dims(s) == out_grid]
    if not candidates:
        return None
    size, jump = [], []
    for axis in range(len(candidates[0].size)):
        widest = max(candidates, key=lambda f: f.size[axis])
        size.append(widest.size[axis])
        jump.append(widest.jump[axis])
    return _Field(tuple(size), tuple(jump))


def _apply_window(field, kernel, strides, dilation) -> _Field | None:
    if field is None or len(kernel) != len(field.size):
        return None
    size = tuple(r + (k - 1) * d * j
                 for r, k, d, j in zip(field.size, kernel, dilation, field.jump))
    jump = tuple(j * s for j, s in zip(field.jump, strides))
    return _Field(size, jump)


def _spatial_dims(shape) -> tuple:
    if keras.config.image_data_format() == "channels_first":
        return tuple(shape[2:])
    return tuple(shape[1:-1])


# --- FLOPs -----------------------------------------------------------------------------------


def _layer_flops(layer, in_shape, out_shape) -> int:
    """FLOPs of one call on one image: 2 per multiply-add, bias adds excluded."""
    if isinstance(layer, L.Dense):
        positions = _n_elements(in_shape[1:-1])  # Dense on (..., features) acts per position
        return _product(2, positions, in_shape[-1], layer.units)
    if not isinstance(layer, _KERNEL_TYPES + _TRANSPOSED_CONV_TYPES):
        return 0
    channels_first = layer.data_format == "channels_first"
    c_in = in_shape[1] if channels_first else in_shape[-1]
    in_grid = in_shape[2:] if channels_first else in_shape[1:-1]
    out_grid = out_shape[2:] if channels_first else out_shape[1:-1]
    taps = math.prod(layer.kernel_size)
    if isinstance(layer, _DEPTHWISE_TYPES):
        return _product(2, *out_grid, taps, c_in, layer.depth_multiplier)
    if isinstance(layer, _SEPARABLE_TYPES):
        mid = None if c_in is None else c_in * layer.depth_multiplier
        return (_product(2, *out_grid, taps, mid)  # depthwise
                + _product(2, *out_grid, mid, layer.filters))  # pointwise 1x1
    if isinstance(layer, _TRANSPOSED_CONV_TYPES):
        # Every input position scatters one kernel per output channel.
        return _product(2, *in_grid, taps, c_in, layer.filters)
    groups = getattr(layer, "groups", 1)
    c_per_group = None if c_in is None else c_in // groups
    return _product(2, *out_grid, taps, c_per_group, layer.filters)


def _product(*factors) -> int:
    """Product of sizes, 0 when one is unknown (``None``) so totals stay honest lower bounds."""
    if any(f is None for f in factors):
        return 0
    return int(math.prod(factors))


def _n_elements(shape) -> int:
    return _product(*shape)


def _count_params(layer) -> int:
    # count_params() raises on a layer that was never built (unreachable from the inputs).
    return int(layer.count_params()) if layer.built else 0


def _itemsize(dtype) -> int:
    """Bytes per element of a Keras dtype name (``"float32"``, ``"bfloat16"``, ``"int8"``)."""
    name = str(getattr(dtype, "name", dtype))
    bits = re.search(r"\d+", name)
    return int(bits.group()) // 8 if bits else 1  # "bool" is stored as one byte
