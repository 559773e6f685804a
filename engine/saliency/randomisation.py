"""Two more sanity checks of saliency maps, beside the model randomisation of ``sanity.py``.

* **Random logit** (Sixt et al., "When Explanations Lie", 2020): explain a random *other* class
  of each image. A map that explains the decision must change with the class asked about; one
  that stays the same shows the image (its edges, its bright object), whatever the question.
* **Data randomisation** (Adebayo et al., "Sanity Checks for Saliency Maps", 2018): train the
  same architecture on the same images with their labels shuffled (nothing to learn but the
  images by heart) through the project's one training loop, then compare its maps with the real
  model's. A map that stays the same explains the image, not what the model learned from the
  labels.

Both compare two maps of an image by rank correlation (``metrics.map_similarity``); a mean at
or above ``sanity.UNCHANGED_CORRELATION`` means "the map hardly changed".
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from engine.errors import InvalidModelError, TrainingError
from engine.models.explorable import ExplorableModel
from engine.progress import Progress, report
from engine.saliency import METHODS, explain
from engine.saliency.metrics import map_similarity
from engine.saliency.sanity import UNCHANGED_CORRELATION
from engine.saliency.targets import resolve_classes


@dataclass(frozen=True)
class MapChange:
    """How much a method's maps changed between two questions or two models.

    Attributes:
        method: a key of ``METHODS``.
        original: the maps of the model for the class explained.
        changed: the maps of the changed question or model.
        rank_correlation: (N,) ``map_similarity`` of the two maps of each image.
        mean_correlation: their mean, in [-1, 1]: lower means the map depends more on what
            was changed (good).
        changes: the mean is below ``UNCHANGED_CORRELATION``.
        sentence: what that means, for people.
    """

    method: str
    original: object
    changed: object
    rank_correlation: np.ndarray
    mean_correlation: float
    changes: bool
    sentence: str


@dataclass(frozen=True)
class ShuffledTraining:
    """How the shuffled-label model of the data randomisation test is trained.

    Attributes:
        epochs: passes over the images (a short run: enough to move every weight away from
            its initial value; shuffled labels leave nothing real to learn).
        batch_size: images per weight update.
        learning_rate: the recipe's peak learning rate (Adam, cosine, warm-up).
        seed: seed of the shuffle, the initial weights (Keras' global seed is set) and the
            order of the batches.
    """

    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0


def random_other_classes(classes, n_classes: int, seed: int = 0) -> np.ndarray:
    """(N,) a class drawn uniformly from the others for each of ``classes``.

    Raises:
        InvalidModelError: a model with a single class has no other one.
    """
    if n_classes < 2:
        raise InvalidModelError("The random-logit test needs a model with at least two classes.")
    shift = np.random.default_rng(seed).integers(1, n_classes, len(classes))
    return ((np.asarray(classes, np.int64) + shift) % n_classes).astype(np.int32)


def random_logit_test(model: ExplorableModel, images, method: str = "gradcam", target=None,
                      layer: str | None = None, *, seed: int = 0, original=None,
                      **options) -> MapChange:
    """Compare each image's map for ``target`` with its map for a random other class.

    Args:
        model, images, method, target, layer, **options: as for ``explain``.
        seed: seed of the other classes.
        original: the maps for ``target`` when already computed (else computed here).

    Returns:
        ``MapChange``; ``changed`` holds the other classes' maps.
    """
    classes = resolve_classes(model.class_names, target, model.probabilities(images))
    original = explain(model, images, method, list(classes), layer, **options) \
        if original is None else original
    others = random_other_classes(classes, model.n_classes, seed)
    changed = explain(model, images, method, list(others), layer, **options)
    return _change(method, original, changed, "when asked about another class",
                   "it explains the class", "it shows the image whatever the class")


def shuffled_label_model(model: ExplorableModel, images, labels,
                         training: ShuffledTraining = ShuffledTraining(),
                         callback: Progress | None = None) -> ExplorableModel:
    """The architecture of ``model`` with fresh weights, trained on ``images`` whose labels
    have been shuffled, through the project's training loop (``engine.training.loop.fit``).

    Args:
        model: the model whose architecture is copied (never modified).
        images: (N, H, W, 3) uint8 RGB (any size; resized to the model's input).
        labels: (N,) class indices; their order is shuffled.
        training: epochs, batch size, learning rate and seed.
        callback: ``callback(done, total, "training on shuffled labels")`` per weight update.

    Returns:
        An ``ExplorableModel`` like ``model`` but for its weights.

    Raises:
        InvalidModelError: a model that cannot be copied (a subclassed model).
        TrainingError: no images, or labels that are not one per image.
    """
    from engine.training.data import array_pipeline, steps_per_epoch
    from engine.training.loop import Recipe, fit

    labels = np.asarray(labels, np.int64)
    if len(labels) == 0 or len(labels) != len(images):
        raise TrainingError("The data randomisation test needs images with one label each.")
    keras.utils.set_random_seed(training.seed)  # the fresh initial weights below
    try:
        network = keras.models.clone_model(model.keras_model)
    except Exception as exc:  # Keras raises several kinds for models it cannot clone
        raise InvalidModelError(f"This model cannot be copied for the data randomisation test "
                                f"({exc}); it needs a Functional or Sequential model.") from exc
    shuffled = np.random.default_rng(training.seed).permutation(labels)
    batches = array_pipeline(model.prepare(images), shuffled, training.batch_size,
                             model.preprocessing, seed=training.seed)
    total = training.epochs * steps_per_epoch(len(labels), training.batch_size)
    fit(network, batches, recipe=Recipe(), learning_rate=training.learning_rate,
        epochs=training.epochs, callbacks=[_BatchProgress(callback, total)])
    return ExplorableModel(network, name=f"{model.name} (shuffled labels)",
                           class_names=list(model.class_names), preprocessing=model.preprocessing,
                           input_size=model.input_size, title=f"{model.title}, shuffled labels",
                           source="trained on shuffled labels")


def data_randomisation_test(model: ExplorableModel, images, method: str = "gradcam",
                            target=None, layer: str | None = None, *,
                            shuffled: ExplorableModel, original=None,
                            **options) -> MapChange:
    """Compare the maps of ``model`` with those of ``shuffled`` (``shuffled_label_model``).

    Args:
        model, images, method, target, layer, **options: as for ``explain``; both models
            explain the same class (``model``'s top class by default).
        shuffled: the same architecture trained on shuffled labels.
        original: ``model``'s maps when already computed.

    Returns:
        ``MapChange``; ``changed`` holds the shuffled-label model's maps.
    """
    classes = resolve_classes(model.class_names, target, model.probabilities(images))
    original = explain(model, images, method, list(classes), layer, **options) \
        if original is None else original
    changed = explain(shuffled, images, method, list(classes), layer, **options)
    return _change(method, original, changed, "when the labels are shuffled",
                   "it explains the model", "it explains the image, not the model")


def _change(method: str, original, changed, when: str, good: str, bad: str) -> MapChange:
    correlations = np.array([map_similarity(a, b) for a, b in zip(original, changed)])
    mean = float(np.mean(correlations))
    changes = mean < UNCHANGED_CORRELATION
    title = METHODS[method].title
    sentence = (f"{title} changes {when}: {good}." if changes
                else f"{title} stays the same {when}: {bad}.")
    return MapChange(method, original, changed, correlations, mean, changes, sentence)


class _BatchProgress(keras.callbacks.Callback):
    """``callback(done, total, stage)`` after every weight update."""

    def __init__(self, callback: Progress | None, total: int):
        super().__init__()
        self.callback, self.total, self.done = callback, total, 0

    def on_train_batch_end(self, batch, logs=None):
        self.done += 1
        report(self.callback, min(self.done, self.total), self.total,
               "training on shuffled labels")
