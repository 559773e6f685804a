"""The model randomisation test (Adebayo et al., "Sanity Checks for Saliency Maps", 2018).

A map that explains the *model* must change when the model's learned weights are replaced by
random ones. Here the top layers (those nearest the output) of a copy are re-drawn at random and
the maps before and after are compared by rank correlation; a method whose map barely changes
is flagged: it shows the image (edges, bright spots) more than what the model learned.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from engine.errors import InvalidModelError
from engine.models.explorable import ExplorableModel
from engine.models.layers import iter_layers
from engine.saliency import explain
from engine.saliency.metrics import map_similarity
from engine.saliency.targets import resolve_classes

#: A mean rank correlation at or above this means "the map barely changed" (flagged).
UNCHANGED_CORRELATION = 0.5


@dataclass(frozen=True)
class SanityResult:
    """Maps of the model and of its randomised copy, and how alike they are.

    Attributes:
        original: (N, H, W) maps of the model (or a list of (H_i, W_i)).
        randomized: the same from the copy with its top layers randomised.
        rank_correlation: (N,) Spearman correlation between the two maps of each image (0 when
            exactly one of them is blank, 1 when both are).
        randomized_layers: paths of the layers that were re-drawn, output first.
        flagged: the mean correlation is at least ``UNCHANGED_CORRELATION``: the map hardly
            depends on the learned weights.
    """

    original: object
    randomized: object
    rank_correlation: np.ndarray
    randomized_layers: list[str]
    flagged: bool


def weighted_layers(keras_model: keras.Model) -> list[str]:
    """Paths of the layers that hold trainable weights, nested models expanded, input first."""
    return [ref.path for ref in iter_layers(keras_model)
            if not isinstance(ref.layer, keras.Model) and ref.layer.trainable_weights]


def randomized_copy(model: ExplorableModel, n_layers: int = 3, seed: int = 0) -> ExplorableModel:
    """A copy of ``model`` whose last ``n_layers`` weighted layers hold random weights.

    Each trainable weight of those layers is re-drawn from a normal distribution with the mean
    and standard deviation of the learned values (same scale, no learned structure). The model
    passed in is not touched: the copy is a ``keras.models.clone_model`` with copied weights.

    Raises:
        InvalidModelError: the model cannot be cloned (a subclassed model) or has no weights.
    """
    try:
        clone = keras.models.clone_model(model.keras_model)
        clone.set_weights(model.keras_model.get_weights())
    except Exception as exc:  # Keras raises several kinds for models it cannot clone
        raise InvalidModelError(f"This model cannot be copied for the sanity check ({exc}); "
                                "it needs a Functional or Sequential model.") from exc
    paths = weighted_layers(clone)
    if not paths:
        raise InvalidModelError("The model has no trainable weights to randomise.")
    rng = np.random.default_rng(seed)
    chosen = paths[-max(1, int(n_layers)):]
    by_path = {ref.path: ref.layer for ref in iter_layers(clone)}
    for path in chosen:
        for variable in by_path[path].trainable_weights:
            value = np.asarray(variable.numpy())
            variable.assign(rng.normal(value.mean(), value.std(), value.shape)
                            .astype(value.dtype))
    return ExplorableModel(clone, name=f"{model.name} (top {len(chosen)} layers randomised)",
                           class_names=list(model.class_names), preprocessing=model.preprocessing,
                           input_size=model.input_size, title=f"{model.title}, randomised top",
                           source="randomised copy")


def sanity_check(model: ExplorableModel, images, method: str = "gradcam", target=None,
                 layer: str | None = None, *, n_layers: int = 3, seed: int = 0,
                 randomized: ExplorableModel | None = None, **options) -> SanityResult:
    """Compare the maps of ``model`` with those of its randomised copy.

    Args:
        model, images, method, target, layer, **options: as for ``explain``; the class
            explained is the same for both models (the original's top class by default).
        n_layers: how many weighted layers, counted from the output, to randomise.
        seed: seed of the random weights.
        randomized: a ready ``randomized_copy`` (e.g. cached by the app); made here otherwise.

    Returns:
        ``SanityResult``.
    """
    copy = randomized or randomized_copy(model, n_layers, seed)
    classes = resolve_classes(model.class_names, target, model.probabilities(images))
    original = explain(model, images, method, list(classes), layer, **options)
    changed = explain(copy, images, method, list(classes), layer, **options)
    correlations = np.array([map_similarity(a, b) for a, b in zip(original, changed)])
    randomized_paths = weighted_layers(model.keras_model)[-max(1, int(n_layers)):]
    return SanityResult(original, changed, correlations, randomized_paths[::-1],
                        float(np.mean(correlations)) >= UNCHANGED_CORRELATION)
