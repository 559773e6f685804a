"""The batched optimiser: N units (filters, classes) as one batch of N images, one traced step.

Every image of the batch has its own objective (its own unit, ``objectives.Tensors.units``) and
its own Adam state; the random transforms of a step are shared. The loss is the sum of the
per-image scores, so the gradient of image i is the gradient of its own score: optimising N
filters together gives what N single runs with the same seed give, in one graph call per step.

Cost per step is one forward pass up to the deepest layer the objective reads (the network is
cut there, ``network.LayerTaps``) and its backward pass to the input. A **coarse-to-fine
schedule** runs the first steps on a smaller copy of the image (``schedule``): the image is still
rendered and updated at full size, but the network sees it downsampled, which costs a quarter of
the arithmetic at half the side, and the broad layout settles before the details. Layers
that need the model's own input size (after ``Flatten``, the class scores) always get it.

Progress goes to the engine's one progress callback (``engine.progress``) after every step:
``callback(done, total, stage)`` with ``done`` counted in units (fractional while a batch
runs); setting its ``stop_requested`` stops after the current step. The engine knows nothing
about who listens.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import tensorflow as tf

from engine.actmax import transforms as tfm
from engine.actmax.network import LayerTaps
from engine.actmax.objectives import Objective, Tensors
from engine.actmax.param import PARAMETERISATIONS, make_parameterization
from engine.cache import BoundedCache
from engine.models.explorable import ExplorableModel
from engine.models.graph import PRECISIONS
from engine.progress import Progress, report, stop_requested

#: Bump when a change to the algorithm changes results, so old disk caches are not reused.
#: 2: bfloat16 runs keep a model's own preprocessing layers in float32 and its Normalization
#: statistics (the graph runner's copies, ``engine.models.graph``).
ALGORITHM_VERSION = 2
_ADAM_B1, _ADAM_B2, _ADAM_EPS = 0.9, 0.999, 1e-8
#: Half the steps at half resolution, then full resolution (``Settings.schedule``).
COARSE_TO_FINE = ((0.5, 0.5), (0.5, 1.0))
# Coarse stages never shrink the network's input below this side (or the full size if smaller).
_MIN_COARSE_SIDE = 32


@dataclass(frozen=True)
class Settings:
    """Everything that decides the images, apart from the model and the objective.

    Attributes:
        steps: optimisation steps per image.
        size: (height, width) of the images.
        learning_rate: Adam's step size on the parameterisation's numbers.
        param: ``"fourier"`` or ``"pixels"`` (``param.PARAMETERISATIONS``).
        decorrelate: colour decorrelation.
        jitter: largest random shift in pixels (0: none).
        scale: random zoom in ``[1 - scale, 1 + scale]`` (0: none).
        rotate: largest random rotation in degrees (0: none).
        schedule: ``(share of the steps, resolution factor)`` pairs, coarse first; the shares
            add up to 1. ``((1.0, 1.0),)`` switches coarse-to-fine off.
        seed: seed of the starting images and of the transforms.
        precision: ``"float32"`` or ``"bfloat16"``: the arithmetic of the optimisation steps
            (see ``network``; reported activations are always measured in float32).
    """

    steps: int = 128
    size: tuple[int, int] = (128, 128)
    learning_rate: float = 0.2
    param: str = "fourier"
    decorrelate: bool = True
    jitter: int = 4
    scale: float = 0.1
    rotate: float = 5.0
    schedule: tuple[tuple[float, float], ...] = ((1.0, 1.0),)
    seed: int = 0
    precision: str = "float32"

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError("steps must be 0 or more.")
        if min(self.size) < 8:
            raise ValueError(f"Images must be at least 8x8 pixels, not {self.size}.")
        if self.param not in PARAMETERISATIONS:
            raise ValueError(f"Unknown parameterisation {self.param!r}; choose one of "
                             f"{', '.join(PARAMETERISATIONS)}.")
        if not self.schedule or abs(sum(s for s, _ in self.schedule) - 1.0) > 1e-6 or any(
                not 0 < f <= 1 for _, f in self.schedule):
            raise ValueError("The schedule's shares must add up to 1, with factors in (0, 1].")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}.")
        if self.learning_rate <= 0 or self.seed < 0:
            raise ValueError("The learning rate must be positive and the seed 0 or more.")

    def learning_rate_at(self, step: int) -> float:
        """Cosine decay from ``learning_rate`` to a tenth of it over the steps: big moves
        first, then the image settles (it is judged as it ends)."""
        progress = step / max(self.steps - 1, 1)
        return self.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))

    def key(self) -> dict:
        """The settings as plain JSON values (for cache keys and people)."""
        return {k: (list(map(list, v)) if k == "schedule" else list(v) if k == "size" else v)
                for k, v in dataclasses.asdict(self).items()}

    def stages(self, fixed: bool) -> list[tuple[int, float]]:
        """``(steps, factor)`` per stage; ``fixed``: the network needs its own input size, so
        one full-resolution stage."""
        if fixed:
            return [(self.steps, 1.0)]
        counts = [int(round(share * self.steps)) for share, _ in self.schedule]
        counts[-1] = self.steps - sum(counts[:-1])
        return [(n, f) for n, (_, f) in zip(counts, self.schedule) if n > 0]


@dataclass(frozen=True)
class ActMaxResult:
    """The images that maximise each unit, and how strongly they do.

    Attributes:
        units: (N,) int, the filter (or class) of each image, in the order asked for.
        images: (N, h, w, 3) uint8 RGB.
        activations: (N,) float32, the reported activation of each unit on its final image
            (the layer's output after its ReLU, averaged over positions for a channel; the
            logit for a class), measured on the uint8 image without transforms.
        initial: (N,) float32, the same on the starting image (before any step).
        history: (N, steps) float32, the activation at every step (on that step's transformed,
            possibly downsampled image).
        objective: the description of what was maximised.
    """

    units: np.ndarray
    images: np.ndarray
    activations: np.ndarray
    initial: np.ndarray
    history: np.ndarray
    objective: str = ""

    def __len__(self) -> int:
        return len(self.units)

    def select(self, indices) -> "ActMaxResult":
        """The rows at ``indices``."""
        idx = np.asarray(indices, dtype=np.int64)
        return dataclasses.replace(self, units=self.units[idx], images=self.images[idx],
                                   activations=self.activations[idx], initial=self.initial[idx],
                                   history=self.history[idx])

    @staticmethod
    def concatenate(parts: Sequence["ActMaxResult"], steps: int, size: tuple[int, int],
                    objective: str = "") -> "ActMaxResult":
        """One result from several (an empty one when ``parts`` is empty)."""
        if not parts:
            return ActMaxResult(np.zeros(0, np.int64), np.zeros((0, *size, 3), np.uint8),
                                np.zeros(0, np.float32), np.zeros(0, np.float32),
                                np.zeros((0, steps), np.float32), objective)
        return ActMaxResult(np.concatenate([p.units for p in parts]),
                            np.concatenate([p.images for p in parts]),
                            np.concatenate([p.activations for p in parts]),
                            np.concatenate([p.initial for p in parts]),
                            np.concatenate([p.history for p in parts]), objective)


class BatchOptimizer:
    """Optimises batches of images for one model, objective and settings.

    Args:
        model: the explored model (never mutated).
        objective: what to maximise; reads each image's unit from ``Tensors.units``.
        measure: what to report as the activation (see ``objectives.build``).
        settings: see ``Settings``.
    """

    def __init__(self, model: ExplorableModel, objective: Objective, measure: Objective,
                 settings: Settings):
        self.model = model
        self.objective = objective
        self.measure = measure
        self.settings = settings
        layers = sorted(objective.layers | measure.layers)
        self.taps = LayerTaps(model, layers, compute_dtype=settings.precision)
        self.exact_taps = (self.taps if settings.precision == "float32"
                           else LayerTaps(model, layers))
        # Layers after Flatten or global pooling need the model's own input size.
        self.fixed = any(self.taps.output_rank(layer) != 4 for layer in self.taps.paths)
        self.param = make_parameterization(settings.param, settings.size, settings.decorrelate)
        self.transforms = tfm.standard_transforms(settings.jitter, settings.scale,
                                                  settings.rotate)
        self._steps: dict[tuple[int, int], tf.types.experimental.GenericFunction] = {}
        self._lock = threading.Lock()
        spec = tf.TensorSpec((None, *self.param.shape), tf.float32)
        self._evaluate = tf.function(self._evaluate_graph, input_signature=[
            tf.TensorSpec((None, *settings.size, 3), tf.float32)])
        self._render = tf.function(self.param.render, input_signature=[spec])

    # ----------------------------------------------------------------------------- graphs
    def network_size(self, factor: float) -> tuple[int, int]:
        """(h, w) the network sees at a resolution factor."""
        if self.fixed:
            return tuple(self.model.input_size)
        h, w = self.settings.size
        return tuple(max(int(round(side * factor)), min(side, _MIN_COARSE_SIDE))
                     for side in (h, w))

    def _step_function(self, factor: float):
        net_size = self.network_size(factor)
        if net_size not in self._steps:
            spec = tf.TensorSpec((None, *self.param.shape), tf.float32)
            self._steps[net_size] = tf.function(
                lambda *args: self._step_graph(net_size, *args),
                input_signature=[spec, spec, spec, tf.TensorSpec((), tf.float32),
                                 tf.TensorSpec((), tf.float32), tf.TensorSpec((None,), tf.int32),
                                 tf.TensorSpec((2,), tf.int32)])
        return self._steps[net_size]

    def _network_input(self, image: tf.Tensor, net_size: tuple[int, int]) -> tf.Tensor:
        if tuple(image.shape[1:3]) != tuple(net_size):
            image = tf.image.resize(image, net_size, antialias=True)
        return image * 255.0

    def _step_graph(self, net_size, params, m, v, t, lr, units, seed):
        """One Adam ascent step for the whole batch; returns the new state and the measure."""
        with tf.GradientTape() as tape:
            tape.watch(params)
            image = self.param.render(params)
            moved = tfm.apply(image, self.transforms, seed)
            tensors = Tensors(self.taps(self._network_input(moved, net_size)), image, units)
            total = tf.reduce_sum(self.objective(tensors))
        grad = tape.gradient(total, params)
        m = _ADAM_B1 * m + (1.0 - _ADAM_B1) * grad
        v = _ADAM_B2 * v + (1.0 - _ADAM_B2) * tf.square(grad)
        m_hat = m / (1.0 - _ADAM_B1 ** t)
        v_hat = v / (1.0 - _ADAM_B2 ** t)
        params = params + lr * m_hat / (tf.sqrt(v_hat) + _ADAM_EPS)
        return params, m, v, self.measure(tensors)

    def _evaluate_graph(self, images: tf.Tensor):
        return self.exact_taps(self._network_input(images / 255.0, self.network_size(1.0)))

    def evaluate(self, images: np.ndarray, units: Sequence[int]) -> np.ndarray:
        """The reported activation of ``units[i]`` on ``images[i]`` ((N, h, w, 3) uint8)."""
        if not len(units):
            return np.zeros(0, np.float32)
        x = tf.constant(np.asarray(images, np.float32))
        taps = self._evaluate(x)
        blank = tf.zeros_like(x[:, :1, :1, :])
        tensors = Tensors(taps, blank, tf.constant(np.asarray(units, np.int32)))
        return self.measure(tensors).numpy().astype(np.float32)

    # -------------------------------------------------------------------------------- run
    def run(self, units: Sequence[int], *, steps: int | None = None, seed: int | None = None,
            callback: Progress | None = None, units_done: int = 0,
            units_total: int | None = None, noun: str = "units") -> ActMaxResult | None:
        """Optimise one batch: image i maximises unit ``units[i]``.

        Args:
            units: the units of this batch.
            steps, seed: override ``settings.steps`` and ``settings.seed``.
            callback: see the module docstring; told every step.
            units_done, units_total: the job's counts: ``done`` goes from ``units_done`` to
                ``units_done + len(units)`` of ``units_total``.
            noun: what the units are called in the stage (``"filters"``).

        Returns:
            The batch's result, or ``None`` when the callback asked to stop.
        """
        s = dataclasses.replace(self.settings, steps=self.settings.steps if steps is None
                                else steps, seed=self.settings.seed if seed is None else seed)
        units = [int(u) for u in units]
        units_total = len(units) if units_total is None else units_total
        with self._lock:
            params = tf.constant(self.param.initial(units, s.seed))
            m = tf.zeros_like(params)
            v = tf.zeros_like(params)
            unit_tensor = tf.constant(units, tf.int32)
            start = _to_uint8(self._render(params).numpy())
            history = np.zeros((len(units), s.steps), np.float32)
            step = 0
            for n_steps, factor in s.stages(self.fixed):
                function = self._step_function(factor)
                for _ in range(n_steps):
                    params, m, v, measure = function(
                        params, m, v, tf.constant(step + 1, tf.float32),
                        tf.constant(s.learning_rate_at(step), tf.float32), unit_tensor,
                        tf.constant([s.seed, step], tf.int32))
                    history[:, step] = measure.numpy()
                    step += 1
                    report(callback, units_done + len(units) * step / s.steps, units_total,
                           f"current batch: {len(units)} {noun}, step {step}/{s.steps}")
                    if stop_requested(callback):
                        return None
            images = _to_uint8(self._render(params).numpy())
            return ActMaxResult(np.asarray(units, np.int64), images,
                                self.evaluate(images, units), self.evaluate(start, units),
                                history, self.objective.description)


def fast_precision() -> str:
    """``"bfloat16"`` where it is fast (GPUs from compute capability 8, CPUs with AVX512-BF16
    or AMX), else ``"float32"``."""
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability and capability >= (8, 0):
            return "bfloat16"
        return "float32"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as info:
            flags = next((line for line in info if line.startswith("flags")), "").split()
    except OSError:
        return "float32"
    return "bfloat16" if {"avx512_bf16", "amx_bf16"} & set(flags) else "float32"


def _to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------- optimiser cache
_MAX_OPTIMIZERS = 6
_optimizers: "BoundedCache[BatchOptimizer]" = BoundedCache(_MAX_OPTIMIZERS)


def optimizer_for(model: ExplorableModel, objective: Objective, measure: Objective,
                  settings: Settings) -> BatchOptimizer:
    """A cached ``BatchOptimizer``: its traced steps are reused by later calls with the same
    model, objective and settings. The steps count and the seed do not change the graphs, so
    an optimiser may come back with other values of those two: pass them to ``run``. (The
    key's ``id(model)`` is safe: the optimiser holds the model.)"""
    graph_settings = dataclasses.replace(settings, steps=0, seed=0)
    key = (id(model), objective.description, measure.description,
           json.dumps(graph_settings.key(), sort_keys=True))
    return _optimizers.get_or_build(
        key, lambda: BatchOptimizer(model, objective, measure, settings))
