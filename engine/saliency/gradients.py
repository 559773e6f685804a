"""Methods that differentiate the class score with respect to the input pixels.

All four share ``InputGradientMethod``: the inputs to differentiate at (the image, noisy copies,
points on a path) go through one ``tf.function`` in batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from engine.saliency.base import InputGradientMethod
from engine.saliency.graph import as_numpy
from engine.saliency.occlusion import blurred
from engine.saliency.targets import row_scores


class VanillaGradients(InputGradientMethod):
    """Simonyan et al. 2014: ``max over RGB of |d score / d pixel|``."""

    name, title = "vanilla", "Vanilla gradients"
    summary = "How much a tiny change of each pixel would change the class score."
    top_class_in_graph = True

    def combine(self, image, mean, index):
        return np.abs(mean).max(axis=-1)


class GradientXInput(InputGradientMethod):
    """Shrikumar et al. 2016: ``|sum over RGB of gradient * pixel|`` (one step from black)."""

    name, title = "gradxinput", "Gradient x input"
    summary = "The gradient weighted by the pixel itself: bright pixels the score is sensitive to."
    top_class_in_graph = True

    def combine(self, image, mean, index):
        return np.abs((mean * image).sum(axis=-1))


class SmoothGrad(InputGradientMethod):
    """Smilkov et al. 2017: vanilla gradients averaged over noisy copies of the image.

    As in tf-keras-vis, the noise's standard deviation is ``noise`` times each image's value
    range, the absolute gradients are averaged, then the largest RGB channel is kept. The noise
    is drawn exactly as tf-keras-vis draws it (NumPy's legacy generator, one (images, h, w, 3)
    block per sample), so the same seed gives the same map.

    Options:
        samples: noisy copies per image (default 20).
        noise: noise level, fraction of the image's value range (default 0.2).
        seed: seed of the noise (default 0: the same map every time).
    """

    name, title = "smoothgrad", "SmoothGrad"
    summary = "Vanilla gradients averaged over noisy copies of the image: less speckle."
    options = {"samples": 20, "noise": 0.2, "seed": 0}
    speed = "slow"
    reduced_precision = True  # an average of many passes: bfloat16 keeps the map

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        samples = int(self.settings["samples"])
        if samples < 1:
            raise ValueError(f"SmoothGrad needs at least 1 sample, got {samples}.")

    def attribute(self, x, classes):
        n = int(self.settings["samples"])
        generator = np.random.RandomState(self.settings["seed"])
        self._noise = np.empty((len(x), n) + x.shape[1:], np.float32)
        for s in range(n):
            self._noise[:, s] = generator.standard_normal(x.shape)
        try:
            return super().attribute(x, classes)
        finally:
            del self._noise

    def samples(self, image, index, cls):
        sigma = float(self.settings["noise"]) * float(image.max() - image.min())
        n = len(self._noise[index])
        return image[None] + (sigma * self._noise[index]).astype(np.float32), np.full(n, 1 / n)

    def reduce(self, gradients):
        return np.abs(gradients)

    def combine(self, image, mean, index):
        return mean.max(axis=-1)


@dataclass(frozen=True)
class Completeness:
    """How closely Integrated Gradients' attributions add up to what they explain: per image,
    the sum of the attributions against ``score(image) - score(baseline)`` (the class logit).
    The two are equal for the exact integral; the gap is the error of the Riemann sum, so a
    large one means the steps are too few.

    Attributes:
        attribution_sum: (N,) float64, the sum of each image's signed attributions.
        score_difference: (N,) float64, ``logit(image) - logit(baseline)`` of the class.
    """

    attribution_sum: np.ndarray
    score_difference: np.ndarray

    @property
    def gap(self) -> np.ndarray:
        """(N,) ``attribution_sum - score_difference``."""
        return self.attribution_sum - self.score_difference

    @property
    def relative_gap(self) -> np.ndarray:
        """(N,) ``|gap| / |score_difference|`` (0.05: 5 %); ``nan`` where the difference is 0."""
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.abs(self.gap) / np.abs(self.score_difference)
        return np.where(self.score_difference == 0.0, np.nan, out)


class IntegratedGradients(InputGradientMethod):
    """Sundararajan et al. 2017: the gradient averaged along the straight path from a baseline
    to the image, times (image - baseline); the attributions add up to
    ``score(image) - score(baseline)`` (completeness).

    The path integral is a Riemann sum over ``steps`` points, each the midpoint of its piece of
    the path, weighted by the piece's length. With ``spacing="uniform"`` the pieces are equal.
    With ``spacing="adaptive"`` (default), a forward-only pass over 17 evenly spaced points
    first measures where on the path the class score changes, and half of the pieces go where
    it changes most: real networks change most near the baseline, where equal pieces miss
    much of the integral (on an ImageNet MobileNet, 64 equal steps leave completeness errors of
    up to 16 %, 64 adaptive ones under 4 %).

    After each call, ``completeness`` compares each image's sum of attributions with
    ``score(image) - score(baseline)`` (from the same passes, or two extra forward passes with
    uniform spacing): the check a user needs to trust the number of steps.

    Options:
        steps: gradient evaluations on the path (default 64).
        baseline: "black" (all zeros), "white", "gray" or "blur" (a blurred copy of the image).
        spacing: "adaptive" or "uniform".
    """

    name, title = "integrated_gradients", "Integrated Gradients"
    summary = "Gradients summed along a path from a blank image to this one: each pixel's share " \
              "of the score."
    options = {"steps": 64, "baseline": "black", "spacing": "adaptive"}
    speed = "slow"
    BASELINES = ("black", "white", "gray", "blur")
    SPACINGS = ("adaptive", "uniform")
    PROBES = 16  # pieces of the forward-only pass that places the adaptive steps

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if int(self.settings["steps"]) < 1:
            raise ValueError(f"Integrated Gradients needs at least 1 step, got "
                             f"{self.settings['steps']}.")
        for option, allowed in (("baseline", self.BASELINES), ("spacing", self.SPACINGS)):
            if self.settings[option] not in allowed:
                raise ValueError(f"{option} must be one of {allowed}, got "
                                 f"{self.settings[option]!r}.")
        self.completeness: Completeness | None = None  # set by each call

    def baseline(self, image: np.ndarray) -> np.ndarray:
        kind = self.settings["baseline"]
        if kind == "blur":
            return blurred(image)
        return np.full_like(image, {"black": 0.0, "white": 255.0, "gray": 127.5}[kind])

    def path(self, image: np.ndarray, base: np.ndarray, cls: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(steps,) positions in [0, 1] on the path from ``base`` to ``image``, the (steps,)
        lengths of their pieces (summing to 1), and the class logit at both ends (baseline,
        image)."""
        steps = int(self.settings["steps"])
        if self.settings["spacing"] == "uniform":
            edges = np.linspace(0.0, 1.0, steps + 1)
            ends = row_scores(as_numpy(self.graph.logits(
                tf.constant(np.stack([base, image]).astype(np.float32)))), cls)
        else:
            probes = np.linspace(0.0, 1.0, self.PROBES + 1)
            points = base[None] + probes[:, None, None, None] * (image - base)[None]
            scores = row_scores(as_numpy(self.graph.logits(
                tf.constant(points.astype(np.float32)))), cls)
            ends = scores[[0, -1]]  # the probes start at the baseline, end at the image
            change = np.abs(np.diff(scores)) + 1e-12
            # Half the steps evenly, half where the score changes, piecewise uniformly.
            mass = 0.5 / self.PROBES + 0.5 * change / change.sum()
            cumulative = np.concatenate([[0.0], np.cumsum(mass)])
            edges = np.interp(np.linspace(0.0, 1.0, steps + 1), cumulative / cumulative[-1],
                              probes)
        return ((edges[:-1] + edges[1:]) / 2).astype(np.float32), np.diff(edges), ends

    def samples(self, image, index, cls):
        base = self.baseline(image)
        alphas, weights, ends = self.path(image, base, cls)
        self._score_difference[index] = ends[1] - ends[0]
        return base[None] + alphas[:, None, None, None] * (image - base)[None], weights

    def attributions(self, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """(N, h, w, 3) signed attributions of prepared images: per pixel and channel,
        ``(x - baseline) * mean gradient on the path``; each image's sum approximates
        ``logit(x) - logit(baseline)`` of its class (``self.completeness`` says how closely,
        once this has run)."""
        self._score_difference = np.zeros(len(x), np.float64)
        mean = self.average_gradients(x, classes)
        signed = np.stack([(x[i] - self.baseline(x[i])) * mean[i] for i in range(len(x))])
        self.completeness = Completeness(signed.sum(axis=(1, 2, 3), dtype=np.float64),
                                         self._score_difference)
        return signed

    def attribute(self, x, classes):
        return np.abs(self.attributions(x, classes).sum(axis=-1))
