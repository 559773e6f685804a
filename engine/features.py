"""Feature maps: what every layer of a CNN computes for given images, in one forward pass.

``feature_maps`` runs the network's own graph once, node by node, inside one ``tf.function``
and keeps the output of every requested layer on the way: asking for thirty layers costs one
forward pass, not thirty. The walk descends into nested models (a VGG16 base inside a transfer
model), whose inner tensors a ``keras.Model(outer.inputs, inner_layer.output)`` cannot reach in
Keras 3. It calls the model's layers on real tensors, never on symbolic ones, so the shared
model gains no nodes and is not changed in any way. The traced function is kept per (model,
layer set), so a page that asks again does not trace again.

Everything here returns NumPy arrays and small dataclasses; pictures are drawn in ``ui/``.

    >>> maps = feature_maps(model, [image], layers=["block3_conv3", "block3_pool"])
    >>> maps["block3_conv3"].shape        # (N, h, w, channels)
    (1, 56, 56, 256)
    >>> channel_stats(maps["block3_conv3"][0]).dead    # (256,) bool: all-zero channels
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from engine.cache import PerModelCache
from engine.errors import InvalidModelError
from engine.models.architecture import layer_table
from engine.models.explorable import ExplorableModel
from engine.models.graph import functional_graph, run_graph
from engine.models.layers import CONV_TYPES, iter_layers
from engine.models.preprocessing import preprocess

L = keras.layers

#: Suffix of the keys under which ``feature_maps(..., inputs_of=[path])`` returns a layer's input.
INPUT_SUFFIX = ":input"

POOL_TYPES = (L.MaxPooling2D, L.AveragePooling2D, L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)
ACTIVATION_TYPES = (L.Activation, L.ReLU, L.LeakyReLU, L.PReLU, L.ELU, L.Softmax)
MERGE_TYPES = (L.Add, L.Concatenate)  # where branches meet (ResNet, Inception, DenseNet)
DENSE_TYPES = (L.Dense,)

#: Colour scales, after CNN Explainer: one range per map, per layer, or over every layer.
COLOR_SCALES = ("local", "module", "global")

_MAX_EXTRACTORS_PER_MODEL = 6


def input_key(path: str) -> str:
    """The key of a layer's *input* in the dict ``feature_maps(..., inputs_of=...)`` returns."""
    return path + INPUT_SUFFIX


# ------------------------------------------------------------------------------ which layers
@dataclass(frozen=True)
class MapLayer:
    """A layer whose output can be shown as feature maps (or, for dense layers, as units).

    Attributes:
        path: ``"vgg16/block3_conv3"`` inside a nested model, the plain name otherwise.
        type: the layer's class name (``"Conv2D"``).
        kind: ``"conv"``, ``"pool"``, ``"activation"``, ``"merge"`` or ``"dense"``.
        output_shape: without the batch axis: ``(h, w, channels)`` or ``(units,)``.
        block: the group the layer picker shows it in (``"Block 3 · 56×56"``, the size of
            its first maps): a block ends with a layer that halves the maps (pooling, a strided
            convolution), as VGG's blocks do; vector outputs are in ``"Dense"``.
        rf_size: receptive field side in input pixels, ``None`` for vectors.
    """

    path: str
    type: str
    kind: str
    output_shape: tuple
    block: str
    rf_size: int | None

    @property
    def is_spatial(self) -> bool:
        return len(self.output_shape) == 3

    @property
    def channels(self) -> int:
        return int(self.output_shape[-1])


def map_layers(model: ExplorableModel | keras.Model) -> list[MapLayer]:
    """Every convolution, pooling, activation, merge and dense layer, nested ones included.

    Args:
        model: an ``ExplorableModel`` or a built Keras model.

    Returns:
        ``MapLayer`` rows in forward order, grouped into blocks that each end where the maps
        shrink.

    Raises:
        InvalidModelError: the model's graph cannot be read (see ``layer_table``).
    """
    network = _network(model)
    rows = layer_table(network)
    out: list[MapLayer] = []
    block, block_size, previous = 0, None, None
    for row, ref in zip(rows, iter_layers(network)):
        kind = _kind(ref.layer)
        shape = row.output_shape
        if kind is None or shape is None or len(shape) not in (1, 3) or None in shape:
            continue
        if len(shape) == 3:
            size = (int(shape[0]), int(shape[1]))
            if block_size is None:
                block, block_size = block + 1, size
            name = f"Block {block} · {block_size[0]}×{block_size[1]}"
            # A layer that halves the maps (pooling, a strided convolution) closes its block.
            if previous and size[0] * size[1] * 2 <= previous[0] * previous[1]:
                block_size = None
            previous = size
        else:
            name = "Dense"
        out.append(MapLayer(row.path, row.type, kind, tuple(int(v) for v in shape), name,
                            row.rf_size))
    return out


def default_layer(layers: Sequence[MapLayer]) -> str:
    """A mid-depth convolution layer: past edges and colours, not yet too small to see."""
    convs = [layer.path for layer in layers if layer.kind == "conv" and layer.is_spatial]
    if convs:
        return convs[len(convs) // 2]
    if not layers:
        raise InvalidModelError("This model has no layer whose output can be shown as feature "
                                "maps.")
    return layers[len(layers) // 2].path


def _kind(layer) -> str | None:
    for kind, types in (("conv", CONV_TYPES), ("pool", POOL_TYPES),
                        ("activation", ACTIVATION_TYPES), ("merge", MERGE_TYPES),
                        ("dense", DENSE_TYPES)):
        if isinstance(layer, types):
            return kind
    return None


# ------------------------------------------------------------------------------ computing
def feature_maps(model: ExplorableModel | keras.Model, images, layers: Sequence[str] | None = None,
                 *, inputs_of: Sequence[str] = (), batch_size: int = 16) -> dict[str, np.ndarray]:
    """The outputs of many layers for a batch of images, from one forward pass.

    Args:
        model: an ``ExplorableModel`` (images are RGB 0-255 of any size: resized and
            preprocessed inside), or a plain Keras model, which gets ``images`` exactly as its
            input (already resized and preprocessed). A Sequential model that was never built is
            built for the images' shape first, as ``model.predict`` would.
        images: one (H, W, C) image, a list of them, or an (N, H, W, C) array.
        layers: layer paths (``"vgg16/block5_conv3"`` for a layer of a nested model); default
            every layer of ``map_layers``.
        inputs_of: layer paths whose *input* is wanted too (the teaching view of a convolution
            needs the values its kernel slides over); returned under ``input_key(path)``.
        batch_size: images per forward pass (bounds memory for long lists).

    Returns:
        Layer path -> (N, h, w, c) float32 (or (N, units) for dense layers), in the order asked.
        A layer's input that is also a requested output is the same array object.

    Raises:
        KeyError: a path names no layer of the model.
        InvalidModelError: the model's graph cannot be read.
        InvalidImageError: an image is not (H, W, 3) (``ExplorableModel.prepare``).
    """
    network = _network(model)
    x = _inputs(model, images)
    if layers is None:
        layers = [layer.path for layer in map_layers(model)]
    keys = tuple(dict.fromkeys(layers))
    inputs_of = tuple(dict.fromkeys(inputs_of))
    known = {ref.path for ref in iter_layers(network)}
    for path in keys + inputs_of:
        if path not in known:
            raise KeyError(f"The model '{network.name}' has no layer '{path}'.")
    extractor = _extractor(model, keys, inputs_of, x.shape[1:])
    parts = [extractor(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return extractor.assemble(parts)


class _Extractor:
    """One traced forward pass that returns the outputs (and inputs) of chosen layers."""

    def __init__(self, network: keras.Model, keys: tuple[str, ...], inputs_of: tuple[str, ...],
                 preprocess: Callable | None, input_shape: tuple):
        # Weak: the cache of extractors is keyed on the network and must not keep it alive.
        self.network_ref = weakref.ref(network)
        self.keys = keys
        self.inputs_of = inputs_of
        self.preprocess = preprocess
        self.order: list[str] = []  # requested keys, outputs first, then inputs
        self.slot: dict[str, int] = {}  # key -> index of its tensor in the traced outputs
        spec = tf.TensorSpec((None, *input_shape), tf.float32)
        self.function = tf.function(self._graph, input_signature=[spec])
        self.lock = threading.Lock()

    def _graph(self, x: tf.Tensor):
        network = self.network_ref()
        if self.preprocess is not None:
            x = self.preprocess(x)
        order = list(self.keys) + [input_key(p) for p in self.inputs_of]
        # The walk stops once every wanted tensor is found: the rest of the network is not run.
        run = run_graph(network, [x], capture=self.keys, capture_inputs=self.inputs_of,
                        stop_when_captured=True)
        found = {**run.outputs_of, **{input_key(p): t for p, t in run.inputs_of.items()}}
        missing = [key for key in order if key not in found]
        if missing:
            raise KeyError(f"These layers are not on the path from the input of "
                           f"'{network.name}' to its output: {', '.join(missing)}.")
        # The same tensor asked twice (a layer's output is the next one's input) comes back
        # once: one copy to NumPy, one array shared by both keys.
        unique: list[tf.Tensor] = []
        by_id: dict[int, int] = {}
        slot = {}
        for key in order:
            tensor = found[key]
            if id(tensor) not in by_id:
                by_id[id(tensor)] = len(unique)
                unique.append(tensor)
            slot[key] = by_id[id(tensor)]
        self.order, self.slot = order, slot
        return tuple(tf.cast(t, tf.float32) for t in unique)

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        with self.lock:  # tracing fills self.slot; sessions share this object
            outputs = self.function(tf.constant(x, tf.float32))
        return [t.numpy() for t in outputs]

    def assemble(self, parts: list[list[np.ndarray]]) -> dict[str, np.ndarray]:
        arrays = parts[0] if len(parts) == 1 else [np.concatenate(p) for p in zip(*parts)]
        return {key: arrays[self.slot[key]] for key in self.order}


# One extractor per (model, layer set), forgotten with the model.
_extractors: "PerModelCache[_Extractor]" = PerModelCache(_MAX_EXTRACTORS_PER_MODEL)


def _extractor(model, keys, inputs_of, input_shape) -> _Extractor:
    network = _network(model)
    explorable = isinstance(model, ExplorableModel)
    cache_key = (keys, inputs_of, tuple(input_shape),
                 (model.preprocessing, model.channels) if explorable else None)

    def build() -> _Extractor:
        prep = _preprocessing(model.preprocessing, model.channels) if explorable else None
        return _Extractor(network, keys, inputs_of, prep, tuple(input_shape))

    return _extractors.get_or_build(network, cache_key, build)


def _preprocessing(mode: str, channels: int) -> Callable[[tf.Tensor], tf.Tensor]:
    """``ExplorableModel.preprocess`` without a reference to the model (see ``_Extractor``)."""

    def run(x: tf.Tensor) -> tf.Tensor:
        if channels == 1:
            x = tf.image.rgb_to_grayscale(x)
        return preprocess(x, mode)

    return run


def _network(model) -> keras.Model:
    network = model.keras_model if isinstance(model, ExplorableModel) else model
    if not isinstance(network, keras.Model):
        raise InvalidModelError("Feature maps need a Keras model or an ExplorableModel.")
    if functional_graph(network) is None and not isinstance(network, keras.Sequential):
        raise InvalidModelError(
            f"The model '{network.name}' is a subclassed model, whose layer graph cannot be read; "
            "rebuild it as a Functional or Sequential model.")
    return network


def _inputs(model, images) -> np.ndarray:
    if isinstance(model, ExplorableModel):
        return model.prepare(images)
    x = np.asarray(images, np.float32) if isinstance(images, np.ndarray) else np.stack(
        [np.asarray(i, np.float32) for i in images])
    if x.ndim == 3:
        x = x[None]  # one image
    if functional_graph(model) is None:
        # A Sequential that was never called: build it for these images, as predict() would.
        model.build((None, *x.shape[1:]))
    return x


# ------------------------------------------------------------------------------ statistics
@dataclass(frozen=True)
class ChannelStats:
    """Per-channel statistics of one layer's maps.

    Attributes:
        mean, max, min: (C,) float32 over every image and position.
        zero_fraction: (C,) float32 in [0, 1], the share of exactly-zero values.
    """

    mean: np.ndarray
    max: np.ndarray
    min: np.ndarray
    zero_fraction: np.ndarray

    @property
    def dead(self) -> np.ndarray:
        """(C,) bool: channels that are zero everywhere (a ReLU that never fired here)."""
        return self.zero_fraction >= 1.0

    def order(self, by: str = "index") -> np.ndarray:
        """Channel indices sorted by ``"index"`` or by ``"mean"`` (largest first)."""
        if by == "mean":
            return np.argsort(-self.mean, kind="stable")
        if by == "index":
            return np.arange(len(self.mean))
        raise ValueError(f"Sort by 'index' or 'mean', not {by!r}.")


def channel_stats(maps: np.ndarray) -> ChannelStats:
    """Mean, max, min and fraction of zeros of every channel.

    Args:
        maps: (N, h, w, C), (h, w, C), (N, units) or (units,): channels (units) last.

    Returns:
        ``ChannelStats`` with (C,) arrays.
    """
    maps = np.asarray(maps, np.float32)
    flat = maps.reshape(-1, maps.shape[-1])
    return ChannelStats(mean=flat.mean(0), max=flat.max(0), min=flat.min(0),
                        zero_fraction=(flat == 0).mean(0).astype(np.float32))


def color_limits(maps: dict[str, np.ndarray] | Sequence[dict[str, np.ndarray]], layer: str,
                 scale: str = "local", symmetric: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The value range each channel of ``layer`` is coloured over (CNN Explainer's scales).

    Args:
        maps: layer path -> maps as ``feature_maps`` returns them, or a list of such dicts (one
            per image); every image counts, so two images compared side by side share one scale.
        layer: the layer shown.
        scale: ``"local"`` (each channel its own range: shapes, not magnitudes), ``"module"``
            (one range for the layer: channels comparable) or ``"global"`` (one range over every
            layer in ``maps``: layers comparable). Layer inputs (``input_key``) never count.
        symmetric: centre the range on 0 (for a diverging colormap).

    Returns:
        ``(low, high)``, each (C,) float32; ``high > low`` always.

    Raises:
        ValueError: unknown ``scale``.
    """
    dicts = [maps] if isinstance(maps, dict) else list(maps)
    flat = np.concatenate([np.asarray(d[layer]).reshape(-1, d[layer].shape[-1]) for d in dicts])
    n = flat.shape[-1]
    if scale == "local":
        low, high = flat.min(0), flat.max(0)
    elif scale == "module":
        low, high = np.full(n, flat.min()), np.full(n, flat.max())
    elif scale == "global":
        every = [v for d in dicts for k, v in d.items() if not k.endswith(INPUT_SUFFIX)]
        low = np.full(n, min(float(v.min()) for v in every))
        high = np.full(n, max(float(v.max()) for v in every))
    else:
        raise ValueError(f"Colour scale must be one of {COLOR_SCALES}, not {scale!r}.")
    low, high = low.astype(np.float32), high.astype(np.float32)
    if symmetric:
        high = np.maximum(np.abs(low), np.abs(high))
        low = -high
    high = np.where(high <= low, low + 1.0, high)  # a constant map gets one colour, no NaN
    return low, high


# ------------------------------------------------------------------------------ filters
@dataclass(frozen=True)
class FirstLayerFilters:
    """The kernels of the first convolution, ready to be seen as small images.

    Attributes:
        layer: its path.
        images: (C_out, kh, kw, 3) float32 in [0, 1], RGB order (channels of a BGR network
            swapped), grey repeated for one-channel input; 0.5 is a zero weight. One scale for
            all filters, so their contrasts compare.
        scale: the weight magnitude that maps to 0 or 1.
    """

    layer: str
    images: np.ndarray
    scale: float


def first_layer_filters(model: ExplorableModel) -> FirstLayerFilters:
    """The first convolution's kernels as RGB images (Krizhevsky et al. 2012, figure 3).

    Raises:
        InvalidModelError: the first convolution is not a plain Conv2D on the image (a
            depthwise one has one 2-D filter per colour, not colour filters).
    """
    ref = next((r for r in iter_layers(model.keras_model) if isinstance(r.layer, CONV_TYPES)), None)
    if ref is None or not isinstance(ref.layer, L.Conv2D):
        raise InvalidModelError("The first convolution of this model is not a plain Conv2D, so "
                                "its filters are not colour images.")
    kernel = np.asarray(ref.layer.kernel.numpy(), np.float32)  # (kh, kw, c_in, c_out)
    if kernel.shape[2] not in (1, 3):
        raise InvalidModelError(f"The first convolution ({ref.path}) sees {kernel.shape[2]} "
                                "channels, not the image's colours.")
    if kernel.shape[2] == 1:
        kernel = np.repeat(kernel, 3, axis=2)
    elif model.preprocessing == "caffe":
        kernel = kernel[:, :, ::-1]  # caffe networks read BGR
    scale = float(np.abs(kernel).max()) or 1.0
    images = np.transpose(kernel, (3, 0, 1, 2)) / (2 * scale) + 0.5
    return FirstLayerFilters(ref.path, np.clip(images, 0, 1).astype(np.float32), scale)


def overview_channels(maps: np.ndarray, k: int = 4) -> np.ndarray:
    """The ``k`` most active channels of one image's maps (largest mean first), the
    representatives the all-layers overview shows.

    Args:
        maps: (h, w, C) or (units,).
    """
    stats = channel_stats(maps)
    return stats.order("mean")[:k]


from engine.concepts import Concepts, concept_patches, concepts  # noqa: E402,F401  (NMF concepts)
