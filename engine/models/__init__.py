"""Models: the catalogue, loading (catalogue, ImageNet weights, users' files) and the wrapper.

    >>> from engine.models import load_model, predict
    >>> model = load_model("demo")
    >>> predict(model, [image], top=3)
"""

from __future__ import annotations

import numpy as np

from engine.models.catalogue import CATALOGUE, ModelSpec, get_spec, list_models
from engine.models.explorable import ExplorableModel
from engine.models.loading import is_online, keras_models_dir, load_model, load_model_file

__all__ = ["CATALOGUE", "ExplorableModel", "ModelSpec", "get_spec", "is_online",
           "keras_models_dir", "list_models", "load_model", "load_model_file", "predict",
           "top_classes"]


def predict(model: ExplorableModel, images, top: int = 5) -> list[list[tuple[str, float]]]:
    """The ``top`` most likely classes of each image.

    Args:
        model: a loaded model.
        images: one (H, W, 3) uint8 RGB image, a list of them, or an (N, H, W, 3) array.
        top: how many classes per image (capped at the number of classes).

    Returns:
        For each image, ``top`` (class name, probability) pairs, most likely first.
    """
    return top_classes(model.class_names, model.probabilities(images), top)


def top_classes(class_names: list[str], probs: np.ndarray,
                top: int = 5) -> list[list[tuple[str, float]]]:
    """For each row of ``probs`` (N, n_classes), the ``top`` (class name, probability) pairs,
    most likely first (ties: the lower class index first)."""
    top = min(top, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
    return [[(class_names[j], float(p[j])) for j in row] for p, row in zip(probs, order)]
