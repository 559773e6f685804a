"""Activation maximisation: the image each filter (or class) of a CNN responds to most.

    >>> from engine.actmax import visualize
    >>> result = visualize(model, "block3_conv1", range(16), steps=128, size=96)
    >>> result.images.shape, result.activations.shape
    ((16, 96, 96, 3), (16,))

The pieces, after Lucid (Olah et al., "Feature Visualization", Distill 2017):

* ``objectives``: what is maximised, composable (``channel(layer) - 0.05 * total_variation()``);
* ``param``: how an image is described (pixels, or a decorrelated Fourier spectrum);
* ``transforms``: random jitter, scale and rotation at every step;
* ``optimize``: the batched optimiser, N filters as one batch, one traced step per iteration;
* ``cache``: finished images on disk per (model, layer, filter, settings);
* ``top_examples``: the real images (and the patches under a unit's receptive field) that
  excite a filter most;
* ``dream``: DeepDream, amplifying a layer's activations in a given image;
* ``jobs``: a whole layer as work for the server's job queue (``engine.jobs``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Iterable

import keras
import numpy as np
import tensorflow as tf

from engine.actmax import objectives
from engine.actmax.cache import ActMaxCache
from engine.actmax.dream import DreamSettings, deep_dream
from engine.actmax.network import OUTPUT
from engine.actmax.objectives import Objective
from engine.actmax.optimize import (COARSE_TO_FINE, ActMaxResult, Settings, fast_precision,
                                   optimizer_for)
from engine.errors import InvalidModelError
from engine.models.explorable import ExplorableModel
from engine.models.layers import find_layer
from engine.progress import Progress, publish, report

__all__ = ["ActMaxResult", "DreamSettings", "OUTPUT", "Objective", "Request",
           "Settings", "cached", "deep_dream", "default_batch_size", "default_size", "objectives",
           "plan", "run", "unit_count", "visualize"]

#: Largest image side of the default size (bigger models are shown at this size, for speed).
DEFAULT_MAX_SIDE = 128


def as_explorable(model: ExplorableModel | keras.Model) -> ExplorableModel:
    """``model`` itself, or a plain Keras model wrapped to take 0-255 RGB (divided by 255)."""
    if isinstance(model, ExplorableModel):
        return model
    h, w = model.inputs[0].shape[1:3]
    n = int(model.outputs[0].shape[-1])
    return ExplorableModel(model, name=model.name, class_names=[f"class {i}" for i in range(n)],
                           preprocessing="unit", input_size=(int(h or 224), int(w or 224)))


def default_size(model: ExplorableModel) -> tuple[int, int]:
    """The model's input size, shrunk to at most ``DEFAULT_MAX_SIDE`` on its longer side."""
    h, w = model.input_size
    factor = min(1.0, DEFAULT_MAX_SIDE / max(h, w))
    return int(round(h * factor)), int(round(w * factor))


def default_batch_size(size: tuple[int, int], n_units: int) -> int:
    """How many images one step optimises together (results do not depend on it).

    On a GPU a big batch fills the device (64 filters cost little more than one). On a CPU the
    gain shrinks as images grow: measured on 2 cores, a batch of 8 costs 2-3x less per filter
    than one image at 64x64 (demo model), while at 128x128 (VGG16 up to block3_conv1) batches
    of 2-4 gain at most 20 %. So CPU batches hold about 8 images of 64x64 worth of pixels; they
    also decide how often finished filters are reported.
    """
    if tf.config.list_physical_devices("GPU"):
        return max(1, min(n_units, 64))
    pixels = size[0] * size[1]
    return max(1, min(n_units, (64 * 64 * 8) // pixels))


def unit_count(model: ExplorableModel, layer: str | None, kind: str = "channel") -> int:
    """Channels of ``layer``, or classes for ``kind="class"``."""
    if kind == "class" or layer in (None, OUTPUT):
        return int(model.keras_model.outputs[0].shape[-1])
    try:
        return int(find_layer(model.keras_model, layer).output.shape[-1])
    except KeyError:
        raise InvalidModelError(
            f"The model has no layer '{layer}'; pick one of its convolution layers.") from None


@dataclass(frozen=True)
class Request:
    """A checked ``visualize`` call, before any computing: what ``run`` does and ``cached``
    finds on disk. ``key`` names it (for job registries and caches).

    Attributes:
        model: the model.
        layer: layer path (``OUTPUT`` for classes).
        units: the filters (or classes), in the order asked for.
        settings: see ``Settings``.
        objective: what is maximised.
        measure: what is reported as the activation.
    """

    model: ExplorableModel
    layer: str
    units: tuple[int, ...]
    settings: Settings
    objective: Objective
    measure: Objective

    def cache_settings(self) -> dict:
        """Everything that decides the images, as JSON values (the disk cache's key)."""
        return {**self.settings.key(), "objective": self.objective.description,
                "measure": self.measure.description}

    @property
    def key(self) -> tuple:
        return (self.model.key, self.layer, self.units,
                json.dumps(self.cache_settings(), sort_keys=True))

    @property
    def noun(self) -> str:
        """What the units are called: ``"classes"`` or ``"filters"``."""
        return "classes" if self.layer == OUTPUT else "filters"

    def cache(self, folder: str | os.PathLike) -> ActMaxCache:
        return ActMaxCache(folder, self.model.key, self.layer, self.cache_settings())


def plan(model: ExplorableModel | keras.Model, layer: str | None,
         filters: Iterable[int] | None = None, *, objective: str | Objective = "channel",
         steps: int = 128, size: int | tuple[int, int] | None = None, param: str = "fourier",
         seed: int = 0, learning_rate: float = 0.2, decorrelate: bool = True,
         jitter: int | None = None, scale: float = 0.1, rotate: float = 5.0, tv: float = 0.0,
         l2: float = 0.0, blur: float = 0.0, coarse_to_fine: bool = False,
         precision: str = "auto") -> Request:
    """Check the arguments of ``visualize`` (same meaning) and return the ``Request``."""
    model = as_explorable(model)
    kind = objective if isinstance(objective, str) else "custom"
    if kind == "class":
        layer = OUTPUT
    elif not isinstance(layer, str) or not layer:
        raise InvalidModelError(f"Choose a layer whose filters to visualise (got {layer!r}); "
                                "only the 'class' objective needs none.")
    n_units = unit_count(model, layer, kind)
    units = list(range(n_units)) if filters is None else [int(f) for f in filters]
    bad = [u for u in units if not 0 <= u < n_units]
    if bad:
        raise ValueError(f"Filter {bad[0]} does not exist: '{layer}' has {n_units} (0 to "
                         f"{n_units - 1}).")
    size = default_size(model) if size is None else size
    size = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    settings = Settings(
        steps=int(steps), size=size, learning_rate=float(learning_rate), param=param,
        decorrelate=bool(decorrelate),
        jitter=int(round(min(size) / 16)) if jitter is None else int(jitter),
        scale=float(scale), rotate=float(rotate), seed=int(seed),
        schedule=COARSE_TO_FINE if coarse_to_fine else ((1.0, 1.0),),
        precision=fast_precision() if precision == "auto" else precision)
    if isinstance(objective, Objective):
        main = measure = objective
    else:
        main, measure = objectives.build(kind, layer, tv=tv, l2_weight=l2, blur_weight=blur)
    return Request(model, layer, tuple(units), settings, main, measure)


def visualize(model: ExplorableModel | keras.Model, layer: str | None,
              filters: Iterable[int] | None = None, *, objective: str | Objective = "channel",
              steps: int = 128, size: int | tuple[int, int] | None = None,
              param: str = "fourier", seed: int = 0, learning_rate: float = 0.2,
              decorrelate: bool = True, jitter: int | None = None, scale: float = 0.1,
              rotate: float = 5.0, tv: float = 0.0, l2: float = 0.0, blur: float = 0.0,
              coarse_to_fine: bool = False, precision: str = "auto",
              batch_size: int | None = None, cache_dir: str | os.PathLike | None = None,
              callback: Progress | None = None) -> ActMaxResult:
    """The image that maximises each of ``filters`` in ``layer``.

    Args:
        model: the model (an ``ExplorableModel``, or a Keras model taking [0, 1] RGB); never
            mutated.
        layer: layer path; ignored for ``objective="class"`` (and may then be ``None``).
        filters: channel (or class) indices; ``None``: all of them.
        objective: ``"channel"`` (mean activation of the filter's map), ``"neuron"`` (the
            filter at the centre position), ``"class"`` (the logit before the softmax, from a
            linear copy of the output layer), or an ``Objective`` that reads each image's unit
            from ``Tensors.units`` (it is then also what is reported as the activation).
        steps: optimisation steps (0 gives the starting images).
        size: image side or (height, width); default ``default_size(model)``. Layers that need
            the model's input size (class scores) are fed the image resized to it.
        param: ``"fourier"`` or ``"pixels"``.
        seed: seed of the starting images and of the random transforms.
        learning_rate: Adam's step size (decayed along a cosine to a tenth of it).
        decorrelate: colour decorrelation.
        jitter: largest random shift in pixels; default 1/16 of the image side.
        scale: random zoom in ``[1 - scale, 1 + scale]``.
        rotate: largest random rotation in degrees.
        tv, l2, blur: weights of the total-variation, L2 and blur penalties subtracted from
            the objective (ignored for an ``Objective`` argument: build them into it).
        coarse_to_fine: run the first half of the steps at half resolution (see ``optimize``):
            faster, but trained networks respond to patterns at the scale they were trained
            on, so the images reach lower activations on them.
        precision: ``"float32"``, ``"bfloat16"`` or ``"auto"`` (``optimize.fast_precision``).
        batch_size: images per batch; default ``default_batch_size``. Does not change results.
        cache_dir: folder of the disk cache; units found there are not computed again and
            finished batches are written there.
        callback: ``callback(done, total, stage)`` (``engine.progress``), ``done`` counted
            in filters (fractional while a batch runs) of ``len(filters)``; its optional
            ``publish(part)`` gets each finished batch (and the filters found in the cache) as
            an ``ActMaxResult``; setting its ``stop_requested`` stops after the current step.

    Returns:
        ``ActMaxResult`` in the order of ``filters``; after a stop, only the finished ones.

    Raises:
        InvalidModelError: the layer is missing, not on the input-output path, or cannot be
            copied without its activation.
        ValueError: a filter index out of range or an invalid setting.
    """
    request = plan(model, layer, filters, objective=objective, steps=steps, size=size,
                   param=param, seed=seed, learning_rate=learning_rate, decorrelate=decorrelate,
                   jitter=jitter, scale=scale, rotate=rotate, tv=tv, l2=l2, blur=blur,
                   coarse_to_fine=coarse_to_fine, precision=precision)
    return run(request, batch_size=batch_size, cache_dir=cache_dir, callback=callback)


def run(request: Request, *, batch_size: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        callback: Progress | None = None) -> ActMaxResult:
    """Compute a ``Request`` (see ``visualize`` for the arguments and the result)."""
    settings, units = request.settings, list(request.units)
    cache = request.cache(cache_dir) if cache_dir is not None else None
    done: dict[int, ActMaxResult] = cache.load(units) if cache is not None else {}
    todo = [u for u in dict.fromkeys(units) if u not in done]
    batch_size = batch_size or default_batch_size(settings.size, len(todo) or 1)
    description = request.objective.description

    noun = request.noun
    if callback is not None and done:
        publish(callback, ActMaxResult.concatenate(list(done.values()), settings.steps,
                                                   settings.size, description))
        report(callback, len(done), len(units), "found in the cache")
    if todo:
        optimizer = optimizer_for(request.model, request.objective, request.measure, settings)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        result = optimizer.run(batch, steps=settings.steps, seed=settings.seed,
                               callback=callback, units_done=len(done), units_total=len(units),
                               noun=noun)
        if result is None:
            break
        if cache is not None:
            cache.save(result)
        for i, unit in enumerate(batch):
            done[unit] = result.select([i])
        publish(callback, result)
        report(callback, len(done), len(units), "batch finished")
    return _in_order(done, units, settings, description)


def cached(request: Request, cache_dir: str | os.PathLike) -> ActMaxResult:
    """The units of ``request`` already on disk, in its order (nothing is computed)."""
    done = request.cache(cache_dir).load(request.units)
    return _in_order(done, list(request.units), request.settings,
                     request.objective.description)


def _in_order(done: dict[int, ActMaxResult], units: list[int], settings: Settings,
              description: str) -> ActMaxResult:
    finished = [done[u] for u in units if u in done]
    return ActMaxResult.concatenate(finished, settings.steps, settings.size, description)
