"""The template every saliency method follows (after pytorch-grad-cam's ``BaseCAM``).

``SaliencyMethod.__call__`` owns the steps every method shares:

1. **forward**: resize the images to the model input (``ExplorableModel.prepare``); all work
   happens on RGB 0-255, the model's preprocessing inside the differentiated graph;
2. **pick the target**: one class per image (``targets.resolve_classes``), the top class by
   default;
3. **attribute**: the one step a method defines, ``attribute(x, classes)``: an ``(N, h, w)``
   map at its working resolution (the layer's grid for the CAM family, the model input for the
   others), in batches, with gradients from ``tf.function``s (``graph.ForwardGraph``);
4. **resize** each map to its own image's ``(H, W)`` (bilinear, half-pixel centres) and
   **normalise** it to [0, 1].

Two families share more than that and have a base of their own here: ``CamMethod`` (a weighted
sum of a layer's channels; a subclass defines the weights) and ``InputGradientMethod`` (input
gradients at a set of inputs derived from the image; a subclass defines the inputs and how to
reduce their gradients).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import tensorflow as tf

from engine.errors import InvalidModelError
from engine.models.explorable import ExplorableModel
from engine.progress import Progress, report
from engine.saliency.graph import (as_numpy, batches, default_cam_layer, forward_graph,
                                   resolve_precision)
from engine.saliency.targets import TopClass, resolve_classes


class SaliencyMethod:
    """A saliency method: images and a target in, one map per image out.

    Subclasses set the class attributes and implement ``attribute``.

    Attributes:
        name: the key in ``METHODS`` (``"gradcam"``).
        title: what people read (``"Grad-CAM"``).
        summary: one plain sentence on what the map shows.
        options: option name -> default value; ``explain(..., **options)`` overrides them.
        uses_layer: whether the method reads a layer's activations (the CAM family).
        top_class_in_graph: the top class can be picked in the same pass as the gradients
            (methods that differentiate the image itself); others need one forward first.
        speed: "fast" or "slow" (slow ones run many forward passes per image).
        reduced_precision: ``precision="bfloat16"`` (or ``"auto"`` where that means bfloat16)
            runs the method's batched passes in bfloat16 (``batch_graph``); the others always
            compute in float32.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    options: ClassVar[dict] = {}
    uses_layer: ClassVar[bool] = False
    top_class_in_graph: ClassVar[bool] = False
    speed: ClassVar[str] = "fast"
    reduced_precision: ClassVar[bool] = False

    def __init__(self, model: ExplorableModel, layer: str | None = None, *,
                 batch_size: int = 16, progress: Progress | None = None,
                 precision: str = "auto", **options):
        unknown = set(options) - set(self.options)
        if unknown:
            raise TypeError(f"{self.title} has no option {sorted(unknown)}; its options are "
                            f"{sorted(self.options)}.")
        self.model = model
        self.layer = (layer or default_cam_layer(model.keras_model)) if self.uses_layer else None
        self.batch_size = max(1, int(batch_size))
        self.progress = progress
        self.settings = {**self.options, **options}
        self.graph = forward_graph(model, self.layer)
        # The many-input passes of a method that averages over them (noisy samples, masks) may
        # run in bfloat16; passes that pick classes or read a layer stay float32.
        self.precision = resolve_precision(precision) if self.reduced_precision else "float32"
        self.batch_graph = (self.graph if self.precision == "float32"
                            else forward_graph(model, None, self.precision))

    def batch_done(self, done: int, total: int) -> None:
        """Tell the progress callback that ``done`` of the ``total`` batches are finished (the
        stage is the method's title)."""
        report(self.progress, done, total, self.title)

    # ------------------------------------------------------------------------- the template
    def __call__(self, images, target=None) -> np.ndarray:
        """Saliency maps.

        Args:
            images: one (H, W, 3) uint8 RGB image, a list of them (sizes may differ) or an
                (N, H, W, 3) array.
            target: see ``targets.resolve_classes`` (``None``: each image's top class).

        Returns:
            (N, H, W) float32 in [0, 1], each map at its own image's resolution; a list of
            (H_i, W_i) arrays when the images differ in size.

        Raises:
            InvalidImageError: an image is not (H, W, 3).
            InvalidModelError: an unknown class or layer, or a layer without a spatial grid.
        """
        sizes = _sizes(images)
        x = self.model.prepare(images)
        classes = self.classes(x, target)
        raw = self.attribute(x, classes)
        return finish(raw, sizes)

    def classes(self, x: np.ndarray, target=None) -> np.ndarray:
        """Class index per image; -1 (top class, picked inside the graph) when allowed."""
        if (target is None or isinstance(target, TopClass)) and self.top_class_in_graph:
            return np.full(len(x), -1, np.int32)
        if _is_explicit(target):  # no need to run the model to know the classes
            probabilities = np.zeros((len(x), self.model.n_classes), np.float32)
        else:
            probabilities = self.probabilities(x)
        return resolve_classes(self.model.class_names, target, probabilities, differences=True)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, n_classes) probabilities of prepared images, in batches."""
        parts = [as_numpy(self.graph.probabilities(tf.constant(x[s])))
                 for s in batches(len(x), self.batch_size)]
        return np.concatenate(parts)

    def attribute(self, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """The method itself: (N, h, w, 3) float32 RGB 0-255 at the model input and (N,) class
        indices (-1: top class) -> (N, h', w') float32 raw maps (any scale, larger = more
        important) at the method's working resolution."""
        raise NotImplementedError


# ------------------------------------------------------------------------------- CAM family
class CamMethod(SaliencyMethod):
    """Class activation maps: ``relu(sum_k weights_k * A_k)`` over the channels ``A_k`` of a
    layer. A subclass defines ``weights``: ``(n, 1, 1, C)`` per channel, or ``(n, h, w, C)`` per
    position (Layer-CAM)."""

    uses_layer = True
    top_class_in_graph = True

    def attribute(self, x, classes):
        maps = []
        parts = batches(len(x), self.batch_size)
        for done, s in enumerate(parts, 1):
            activations, gradients, logits = self.graph.layer_gradients(
                tf.constant(x[s]), tf.constant(classes[s], tf.int32))
            activations, gradients = as_numpy(activations), as_numpy(gradients)
            _check_grid(activations, self.layer)
            weights = self.weights(activations, gradients)
            maps.append(np.maximum((weights * activations).sum(axis=-1), 0.0))
            self.batch_done(done, len(parts))
        return np.concatenate(maps)

    def weights(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        """(n, h, w, C) activations and d(class score)/d(activations) -> channel weights."""
        raise NotImplementedError


# -------------------------------------------------------------------- input gradient family
class InputGradientMethod(SaliencyMethod):
    """Gradients of the class score with respect to the input pixels, at inputs derived from
    each image (the image itself, noisy copies, points on a path), all pushed through the graph
    in batches; ``reduce`` maps each gradient to what is averaged over an image's samples (with
    the samples' weights) and ``combine`` turns the average into a map."""

    def samples(self, image: np.ndarray, index: int, cls: int) -> tuple[np.ndarray, np.ndarray]:
        """(h, w, 3) image of class ``cls`` -> (S, h, w, 3) inputs to differentiate at and
        their (S,) weights in the average (summing to 1)."""
        return image[None], np.ones(1, np.float32)

    def reduce(self, gradients: np.ndarray) -> np.ndarray:
        """(n, h, w, 3) gradients -> what is averaged over the samples (default: themselves)."""
        return gradients

    def combine(self, image: np.ndarray, mean: np.ndarray, index: int) -> np.ndarray:
        """(h, w, 3) image and the sample average of ``reduce(gradients)`` -> (h, w) map."""
        raise NotImplementedError

    def average_gradients(self, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """(N, h, w, 3): per image, the weighted mean of ``reduce(gradient)`` over its samples."""
        inputs, weights, owners = [], [], []
        for i, image in enumerate(x):
            points, w = self.samples(image, i, int(classes[i]))
            inputs.append(points.astype(np.float32))
            weights.append(np.asarray(w, np.float32))
            owners.append(np.full(len(points), i))
        inputs, weights, owners = map(np.concatenate, (inputs, weights, owners))
        means = np.zeros(x.shape, np.float32)
        parts = batches(len(inputs), self.batch_size)
        for done, s in enumerate(parts, 1):
            gradients, _ = self.batch_graph.input_gradients(tf.constant(inputs[s]),
                                                      tf.constant(classes[owners[s]], tf.int32))
            weighted = self.reduce(as_numpy(gradients)) * weights[s][:, None, None, None]
            np.add.at(means, owners[s], weighted)
            self.batch_done(done, len(parts))
        return means

    def attribute(self, x, classes):
        mean = self.average_gradients(x, classes)
        return np.stack([self.combine(x[i], mean[i], i) for i in range(len(x))])


# --------------------------------------------------------------------------------- finishing
def finish(raw: np.ndarray, sizes: list[tuple[int, int]]):
    """Resize each raw map to its image's size and min-max normalise it to [0, 1].

    Returns:
        (N, H, W) float32 when every image has the same size, else a list of (H, W) arrays.
    """
    maps = [normalize(resize_map(m, size)) for m, size in zip(raw, sizes)]
    if len({m.shape for m in maps}) == 1:
        return np.stack(maps).astype(np.float32)
    return maps


def resize_map(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) -> (H, W) bilinear with half-pixel centres (each grid cell covers its patch)."""
    saliency = np.asarray(saliency, np.float32)
    if saliency.shape == tuple(size):
        return saliency
    out = tf.image.resize(saliency[None, :, :, None], size, method="bilinear")
    return out.numpy()[0, :, :, 0]


def normalize(saliency: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; a constant map becomes all zeros (it points nowhere)."""
    saliency = np.nan_to_num(np.asarray(saliency, np.float32))
    low, high = float(saliency.min()), float(saliency.max())
    if high - low <= 1e-12 * max(1.0, abs(high)):
        return np.zeros_like(saliency)
    return ((saliency - low) / (high - low)).astype(np.float32)


def _sizes(images) -> list[tuple[int, int]]:
    if isinstance(images, np.ndarray) and images.ndim == 3:
        return [images.shape[:2]]
    return [tuple(np.shape(image)[:2]) for image in images]


def _is_explicit(target) -> bool:
    """A target that names classes without looking at the predictions."""
    if isinstance(target, (list, tuple, np.ndarray)) and not isinstance(target, str):
        return all(t is not None and not isinstance(t, TopClass) for t in target)
    return target is not None and not isinstance(target, TopClass)


def _check_grid(activations: np.ndarray, layer: str) -> None:
    if activations.ndim != 4:
        raise InvalidModelError(f"The layer '{layer}' has no spatial grid (its output is not "
                                "height x width x channels); pick a convolution layer.")
