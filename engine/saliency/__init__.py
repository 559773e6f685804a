"""Saliency: which pixels a model's decision depends on.

    >>> from engine.models import load_model
    >>> from engine.saliency import explain
    >>> model = load_model("demo")
    >>> maps = explain(model, images, method="gradcam")            # top class of each image
    >>> maps = explain(model, images, method="smoothgrad", target="star", samples=50)

Where things live:

- ``base.py``: the template (``SaliencyMethod``) and the two family bases;
- ``gradients.py``: vanilla gradients, gradient x input, SmoothGrad, Integrated Gradients;
- ``cam.py``: Grad-CAM, Grad-CAM++, Layer-CAM, Score-CAM;
- ``occlusion.py``: occlusion sensitivity;
- ``graph.py``: the one-graph forward pass (nested models, logits) and the default CAM layer;
- ``targets.py``: what to explain (a class, the top class, "A rather than B");
  ``metrics.py``: faithfulness and localisation scores;
- ``contributions.py``: each channel's share of a class score at one layer;
- ``sanity.py``: the model randomisation check; ``dataset.py``: maps over a data set;
- ``compare.py``: every method on one image; ``verdicts.py``: what the numbers conclude.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.models.explorable import ExplorableModel
from engine.progress import Progress
from engine.saliency.base import SaliencyMethod
from engine.saliency.cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
from engine.saliency.contributions import ChannelContributions, channel_contributions
from engine.saliency.gradients import (Completeness, GradientXInput, IntegratedGradients,
                                       SmoothGrad, VanillaGradients)
from engine.saliency.graph import default_cam_layer, spatial_layer_paths
from engine.saliency.occlusion import Occlusion
from engine.saliency.targets import ClassDifference, ClassTarget, TopClass, runner_up

#: method name -> class, fast methods first (the order of the comparison grid)
METHODS: dict[str, type[SaliencyMethod]] = {cls.name: cls for cls in (
    GradCAM, VanillaGradients, GradientXInput, GradCAMPlusPlus, LayerCAM, SmoothGrad,
    IntegratedGradients, Occlusion, ScoreCAM)}

__all__ = ["METHODS", "ChannelContributions", "ClassDifference", "ClassTarget", "Completeness",
           "Explanation", "SaliencyMethod", "TopClass", "channel_contributions",
           "default_cam_layer", "explain", "runner_up", "spatial_layer_paths"]


@dataclass(frozen=True)
class Explanation:
    """The maps and what a method measured on the way (``explain(..., details=True)``).

    Attributes:
        maps: what ``explain`` returns.
        completeness: Integrated Gradients only (else ``None``): per image, the sum of the
            attributions against ``f(image) - f(baseline)``.
    """

    maps: np.ndarray | list
    completeness: Completeness | None = None


def explain(model: ExplorableModel, images, method: str = "gradcam", target=None,
            layer: str | None = None, *, batch_size: int = 16, progress: Progress | None = None,
            details: bool = False, precision: str = "auto", **options):
    """Saliency maps of ``images`` for ``target`` by ``method``.

    Args:
        model: a loaded model (never modified).
        images: one (H, W, 3) uint8 RGB image, a list of them (sizes may differ) or an
            (N, H, W, 3) array.
        method: a key of ``METHODS``.
        target: ``None`` (each image's top class), a class index or name, a ``ClassTarget``,
            a ``ClassDifference(a, b)`` ("a rather than b"), or a list with one of those per
            image.
        layer: the layer of the CAM family (a path such as ``"vgg16/block5_conv3"``); ``None``
            picks ``default_cam_layer``. Ignored by the other methods.
        batch_size: inputs per forward pass (samples, steps, masks or patches).
        progress: ``progress(done, total, stage)`` after each batch (``engine.progress``; the
            stage is the method's title).
        details: return an ``Explanation`` (the maps and, for Integrated Gradients, its
            completeness) instead of the maps alone.
        precision: ``"auto"`` (bfloat16 where the hardware has fast bfloat16 arithmetic,
            else float32), ``"float32"`` or ``"bfloat16"``: the arithmetic of the batched
            passes of SmoothGrad and Score-CAM (``SaliencyMethod.reduced_precision``); their
            maps stay as close to tf-keras-vis' float32 ones (tests/engine/test_saliency*.py)
            at about half the time. The model is not changed (bfloat16 copies of its layers
            are made once and kept). Other methods ignore it.
        **options: the method's options (``METHODS[method].options`` lists them with their
            defaults), e.g. ``samples=``, ``noise=`` for SmoothGrad.

    Returns:
        (N, H, W) float32 in [0, 1] at the images' own resolution (a list of (H_i, W_i) maps
        when the images differ in size); with ``details=True`` an ``Explanation`` holding them.

    Raises:
        KeyError: an unknown method.
        ValueError: an unknown precision.
        InvalidImageError: an image that is not (H, W, 3).
        InvalidModelError: an unknown class or layer, or a CAM method on a model without a
            convolution layer.
    """
    if method not in METHODS:
        raise KeyError(f"Unknown saliency method {method!r}; choose one of {list(METHODS)}.")
    runner = METHODS[method](model, layer, batch_size=batch_size, progress=progress,
                             precision=precision, **options)
    maps = runner(images, target)
    if not details:
        return maps
    return Explanation(maps, getattr(runner, "completeness", None))


# The trust table needs ``explain`` above (its modules import it from here).
from engine.saliency.leaderboard import Leaderboard, LeaderboardConfig, leaderboard  # noqa: E402

__all__ += ["Leaderboard", "LeaderboardConfig", "leaderboard"]
