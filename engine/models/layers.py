"""Walking the layers of a Keras model, nested models included.

A transfer model often holds a whole ImageNet network as one layer ("vgg16" inside
"sequential"). Layer pickers, the architecture table, feature maps and Grad-CAM all need the
layers *inside* it, so every walk goes through ``iter_layers``, which names a nested layer by its
path: ``"vgg16/block5_conv3"``. Running the graph itself, op by op: ``engine.models.graph``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import keras

SEPARATOR = "/"

CONV_TYPES = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.Conv2DTranspose,
)


@dataclass(frozen=True)
class LayerRef:
    """One layer of a (possibly nested) model.

    Attributes:
        path: ``"outer/inner"`` for a layer inside a nested model, the plain name otherwise.
        layer: the Keras layer object.
        depth: 0 for a top-level layer, 1 inside one nested model, ...
    """

    path: str
    layer: keras.layers.Layer
    depth: int


def is_nested_model(layer: keras.layers.Layer) -> bool:
    """True for a model used as a layer (Functional or Sequential with layers of its own)."""
    return isinstance(layer, keras.Model)


def iter_layers(model: keras.Model, *, expand_nested: bool = True) -> Iterator[LayerRef]:
    """Yield every layer of ``model`` in order, descending into nested models.

    A nested model is yielded itself first, then its own layers with ``depth + 1``. Input layers
    are skipped: they compute nothing.
    """
    yield from _walk(model, prefix="", depth=0, expand_nested=expand_nested)


def _walk(model: keras.Model, prefix: str, depth: int, expand_nested: bool) -> Iterator[LayerRef]:
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        path = f"{prefix}{layer.name}"
        yield LayerRef(path, layer, depth)
        if expand_nested and is_nested_model(layer):
            yield from _walk(layer, prefix=path + SEPARATOR, depth=depth + 1,
                             expand_nested=expand_nested)


def find_layer(model: keras.Model, path: str) -> keras.layers.Layer:
    """The layer at ``path`` (``"vgg16/block5_conv3"`` or a plain name).

    Raises:
        KeyError: no layer has that path.
    """
    current: keras.layers.Layer = model
    for part in path.split(SEPARATOR):
        if not isinstance(current, keras.Model):
            raise KeyError(path)
        try:
            current = current.get_layer(part)
        except ValueError as exc:
            raise KeyError(path) from exc
    return current


def conv_layer_paths(model: keras.Model) -> list[str]:
    """Paths of every convolution layer, nested ones included, in forward order."""
    return [ref.path for ref in iter_layers(model) if isinstance(ref.layer, CONV_TYPES)]


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Keras' global dtype policy is ``name`` ("float32", "bfloat16", "mixed_float16", ...) for
    the layers built inside the block, and what it was before after it."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
