"""Concepts: the parts a layer recognises, found by non-negative matrix factorisation.

A layer's activations at every position of every image form a non-negative matrix ``A``
(positions x channels). NMF writes it as ``A ~ W H``: ``k`` concepts, each a non-negative mix
of channels (a row of ``H``, ``components``), and at each position how much of each concept is
present (``W``, the concept ``maps``). Over one image this is deep feature factorisation
(Collins et al. 2018; pytorch-grad-cam's DFF): ``k`` heat maps of the parts of the image. Over
several images of one class it is CRAFT-style concept discovery (Fel et al. 2023; Xplique):
the ``k`` parts the class is recognised from, with their best examples (``concept_patches``).

**Importance.** Each concept's share of the target's score goes through the channel
contributions (``engine.saliency.contributions``): with ``G = d score / d A`` at the layer,
the score is ``sum(A * G) + bias``, and replacing ``A`` by the concepts' reconstruction splits
the sum by concept::

    importance_j = mean over images of  sum over positions p of  W[p, j] * (H[j] . G[p])

so the importances add up to the mean over images of ``score - bias - residual``, where
``residual = sum((A - W H) * G)`` is the part of the score the factorisation leaves out
(``Concepts.explained``). For a layer followed by global average pooling and a Dense layer
(the demo model), ``bias`` is the Dense layer's bias of the class and nothing else is lost.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from engine.actmax.top_examples import Responses, TopExample, top_examples
from engine.errors import InvalidImageError, InvalidModelError
from engine.models.architecture import layer_table
from engine.models.explorable import ExplorableModel
from engine.progress import Progress, report
from engine.saliency.base import _check_grid
from engine.saliency.graph import as_numpy, batches, default_cam_layer, forward_graph
from engine.saliency.targets import TOP, TopClass, class_scores, resolve_classes

#: concepts ``concepts`` finds by default
DEFAULT_CONCEPTS = 6
_MAX_ITER = 500  # NMF iterations (the demo's 8x8x128 maps converge in well under 200)


@dataclass(frozen=True)
class Concepts:
    """``k`` concepts of a layer over a set of images, most important first.

    Attributes:
        layer: the layer's path.
        maps: (N, h, w, k) float32 >= 0, how much of each concept each position of each image
            holds (the layer's grid; ``engine.saliency.base.resize_map`` enlarges one).
        components: (k, C) float32 >= 0, each concept as a mix of the layer's channels (unit
            length rows: the maps carry the activations' scale).
        importance: (k,) float64, each concept's contribution to the target's score, in
            logits, averaged over the images (module docstring); the order of the concepts.
        scores: (N,) float64, the target's score before the softmax on each image.
        bias: (N,) float64, the score minus the channels' contributions (the head's bias of
            the class for global average pooling then Dense).
        residual: (N,) float64, the contribution of what the factorisation leaves out,
            ``sum((A - W H) * G)``.
        classes: (N,) int32 class code explained per image (``engine.saliency.targets``).
        rf_size, rf_stride: the layer's receptive field and jump in input pixels
            (``engine.models.architecture``), ``None`` where unknown.
        input_size: (height, width) the images were resized to (the model's input).
    """

    layer: str
    maps: np.ndarray
    components: np.ndarray
    importance: np.ndarray
    scores: np.ndarray
    bias: np.ndarray
    residual: np.ndarray
    classes: np.ndarray
    rf_size: int | None
    rf_stride: int | None
    input_size: tuple[int, int]

    @property
    def explained(self) -> float:
        """The part of the score the concepts carry: the mean over images of
        ``score - bias - residual``, which ``importance`` adds up to."""
        return float(np.mean(self.scores - self.bias - self.residual))

    @property
    def shares(self) -> np.ndarray:
        """(k,) each concept's importance as a fraction of the mean score (0.4: 40 %)."""
        mean = float(np.mean(self.scores))
        return self.importance / mean if mean else np.zeros_like(self.importance)


def concepts(model: ExplorableModel, images, layer: str | None = None, k: int = DEFAULT_CONCEPTS,
             *, target=None, seed: int = 0, batch_size: int = 16,
             progress: Progress | None = None) -> Concepts:
    """Factorise ``layer``'s activations on ``images`` into ``k`` concepts.

    Args:
        model: a loaded model (never modified).
        images: one (H, W, 3) uint8 RGB image (deep feature factorisation), a list of them or
            an (N, H, W, 3) array (e.g. the images of one class: CRAFT-style concepts).
        layer: a layer path with a spatial grid; ``None``: the CAM layer.
        k: number of concepts, 1 to the layer's channels.
        target: what the importances explain: ``None`` (each image's top class), a class
            index or name, a ``ClassTarget`` or a ``ClassDifference``.
        seed: seed of the factorisation (the same seed, the same concepts).
        batch_size: images per forward pass.
        progress: ``progress(done, total, stage)`` after each batch and the factorisation.

    Returns:
        ``Concepts``.

    Raises:
        ValueError: ``k`` outside 1 to the number of channels or positions.
        InvalidImageError: an image is not (H, W, 3).
        InvalidModelError: an unknown class or layer, a layer without a spatial grid, or a
            layer that is zero everywhere on the images.
    """
    layer = layer or default_cam_layer(model.keras_model)
    x = model.prepare(images)
    activations, gradients, scores, classes = _layer_pass(model, x, layer, target, batch_size,
                                                          progress)
    n, h, w, c = activations.shape
    if not 1 <= k <= min(c, n * h * w):
        raise ValueError(f"k must be between 1 and {min(c, n * h * w)} (the layer's channels "
                         f"and positions), got {k}.")
    weights, components = _factorise(activations, layer, k, seed)
    steps = len(batches(n, batch_size)) + 1  # as _layer_pass counts them
    report(progress, steps, steps, "finding concepts")
    importance, residual, contributed = _split_score(activations, gradients, weights,
                                                     components)
    bias = scores - contributed
    order = np.argsort(-importance, kind="stable")
    size, stride = _receptive_field(model, layer)
    return Concepts(layer, weights.reshape(n, h, w, k)[..., order].astype(np.float32),
                    components[order].astype(np.float32), importance[order], scores, bias,
                    residual, classes, size, stride, tuple(model.input_size))


def _split_score(activations, gradients, weights, components):
    """(k,) importances (mean over images of each concept's share of ``sum(A * G)``), (N,)
    residuals ``sum((A - W H) * G)`` and (N,) channel contributions ``sum(A * G)``."""
    n, h, w, c = activations.shape
    g = gradients.reshape(n, h * w, c).astype(np.float64)
    a = activations.reshape(n, h * w, c).astype(np.float64)
    per_position = weights.reshape(n, h * w, -1)
    per_image = np.einsum("npk,kc,npc->nk", per_position, components, g)
    residual = ((a - per_position @ components) * g).sum(axis=(1, 2))
    return per_image.mean(axis=0), residual, (a * g).sum(axis=(1, 2))


def _layer_pass(model, x, layer, target, batch_size, progress):
    """Activations, gradients of the target score, the scores and the class codes, in
    batches."""
    graph = forward_graph(model, layer)
    if target is None or isinstance(target, TopClass):
        codes = np.full(len(x), TOP, np.int32)
    else:
        codes = resolve_classes(model.class_names, target, np.zeros((len(x), model.n_classes)),
                                differences=True)
    parts = batches(len(x), batch_size)
    found = []
    for done, s in enumerate(parts, 1):
        a, g, logits = graph.layer_gradients(tf.constant(x[s]), tf.constant(codes[s]))
        a = as_numpy(a)
        _check_grid(a, layer)
        found.append((a, as_numpy(g), as_numpy(class_scores(logits, codes[s])),
                      np.where(codes[s] == TOP, np.argmax(as_numpy(logits), axis=1), codes[s])))
        report(progress, done, len(parts) + 1, "reading the layer")
    a, g, scores, classes = (np.concatenate(column) for column in zip(*found))
    return a, g, scores.astype(np.float64), classes.astype(np.int32)


def _factorise(activations: np.ndarray, layer: str, k: int, seed: int):
    """NMF of the (positions, channels) matrix: (positions, k) weights and (k, C) unit-length
    components. Negative activations (after a swish, before a ReLU) count as 0, as in DFF."""
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    matrix = np.maximum(activations.reshape(-1, activations.shape[-1]), 0.0)
    if not matrix.any():
        raise InvalidModelError(f"No channel of the layer '{layer}' fires on these images, so "
                                "it holds no concepts; pick an earlier layer or other images.")
    nmf = NMF(n_components=k, init="nndsvda", max_iter=_MAX_ITER, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weights = nmf.fit_transform(matrix.astype(np.float64))
    components = nmf.components_
    norms = np.linalg.norm(components, axis=1)
    norms[norms == 0] = 1.0
    return weights * norms, components / norms[:, None]


def _receptive_field(model, layer):
    row = next((r for r in layer_table(model.keras_model) if r.path == layer), None)
    return (row.rf_size, row.rf_stride) if row is not None else (None, None)


def concept_patches(model: ExplorableModel, found: Concepts, images, concept: int,
                    n: int = 6) -> list[TopExample]:
    """The images where a concept is strongest, each with the patch under the layer's
    receptive field at the concept's peak (``engine.actmax.top_examples``).

    Args:
        model: the model ``found`` came from.
        found: ``concepts(model, images, ...)``.
        images: the same images, in the same order.
        concept: index into ``found``'s concepts (0: the most important).
        n: how many.

    Returns:
        Up to ``n`` ``TopExample`` (``.patch``: (h, w, 3) uint8), strongest first.

    Raises:
        InvalidImageError: ``images`` are not the ones the concepts were found on.
    """
    maps = found.maps
    images = [images] if isinstance(images, np.ndarray) and images.ndim == 3 else list(images)
    if len(maps) != len(images):
        raise InvalidImageError(f"The concepts were found on {len(maps)} images, but "
                                f"{len(images)} were given; pass the same images.")
    flat = maps.reshape(len(maps), -1, maps.shape[-1])
    best = flat.argmax(axis=1)
    where = np.stack(np.divmod(best, maps.shape[2]), axis=-1)
    responses = Responses(found.layer, flat.max(axis=1), where, maps.shape[1:3],
                          found.input_size, found.rf_size, found.rf_stride)
    return top_examples(model, responses, images, concept, n)
