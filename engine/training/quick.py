"""A short training run in this process: watch a network learn in seconds.

The guided tour trains the scratch CNN (``engine.models.scratch``) on a few hundred procedural
demo shapes for an epoch or two. A run of the Train page is a process with a folder,
checkpoints and a timeline that every visitor of the server sees (``runs.py``); a quick fit
keeps its curves in memory and belongs to whoever started it, so a class of visitors can each
watch a network learn without filling the server's list of runs and models. The page runs it
as a job of the server's queue (``engine.jobs``), which bounds how many train at once. It
trains as runs and the demo model do, through ``engine.training.loop.fit`` on ``tf.data``
batches (``engine.training.data.array_pipeline``), with Keras' plain recipe (``QUICK_RECIPE``).

    >>> result = quick_fit(QuickFitConfig(n_train=360, epochs=2), callback=print)
    0 90 tested on the unseen shapes before training
    1 90 practice batch 1 of 90 (epoch 1)
    ...
    >>> result.points[0]           # BatchPoint(step=1, epoch=1, loss=1.83, accuracy=0.12)
    >>> result.validation          # accuracy on unseen images before training, after each epoch

Plain Python and one Keras callback; the engine knows nothing of the page that polls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import keras
import numpy as np

from engine.data.shapes import CLASS_NAMES, make_shape_mask, make_shapes
from engine.errors import TrainingError
from engine.jobs import JobProgress
from engine.models.scratch import build_scratch_cnn
from engine.progress import Progress, publish, report, stop_requested
from engine.training.callbacks import BatchValues
from engine.training.data import array_pipeline
from engine.training.loop import Recipe, fit

#: Validation images come from another seed than the training images: never seen in training.
VALIDATION_SEED = 1000
#: Adam at a constant learning rate on one-hot targets: a handful of weight updates show
#: learning at once (a cosine schedule's warm-up would spend the first of 120 on nothing)
QUICK_RECIPE = Recipe(optimizer="adam", lr_schedule="constant", warmup=0.0, label_smoothing=0.0)
#: images per batch when measuring the unseen images (fewer, larger batches: faster)
VALIDATION_BATCH = 64


@dataclass(frozen=True)
class QuickFitConfig:
    """What a quick fit trains on and for how long.

    Attributes:
        n_train: demo shape images to train on (balanced over the six classes).
        n_validation: unseen images the accuracy is measured on after every epoch.
        size: image side in pixels (the scratch CNN needs at least 32).
        epochs: passes over the training images.
        batch_size: images per weight update.
        learning_rate: Adam's step size.
        seed: seed of the images, of their order in each epoch and of the initial weights:
            a configuration learns the same way every time.
        silhouettes: train on the shapes' silhouettes (white on black, ``make_shape_mask``)
            instead of the full demo images. The scratch CNN needs thousands of the full,
            cluttered images before it beats guessing (measured: still 17-22 % on unseen images
            after 3 epochs of 1,200 at 32 pixels); on silhouettes it learns in seconds.

    The defaults, measured on 120 unseen silhouettes: 17 % right before training, 40 % after
    one epoch, 72 % after two (seeds 0 and 2 reach 43 % and 52 %: learning from few images is
    bumpy, and seed 1 shows it most clearly); 120 weight updates, 6-10 s on 2 busy cores.
    """

    n_train: int = 480
    n_validation: int = 120
    size: int = 32
    epochs: int = 2
    batch_size: int = 8
    learning_rate: float = 1e-3
    seed: int = 1
    silhouettes: bool = True

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.batch_size)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclass(frozen=True)
class BatchPoint:
    """One weight update.

    Attributes:
        step: updates done so far, from 1.
        epoch: the epoch it belongs to, from 1.
        loss: the loss on this batch's images (lower is better).
        accuracy: the share of this batch's images classified right, in [0, 1].
    """

    step: int
    epoch: int
    loss: float
    accuracy: float


@dataclass(frozen=True)
class EpochPoint:
    """The network on unseen validation images after ``epoch`` epochs (0: before training)."""

    epoch: int
    loss: float
    accuracy: float


@dataclass
class QuickFitResult:
    """What a quick fit learned.

    Attributes:
        model: the trained network, taking (N, size, size, 3) RGB in [0, 1].
        points: one ``BatchPoint`` per weight update.
        validation: one ``EpochPoint`` before training and after every finished epoch.
        stopped: it was stopped before the planned end.
    """

    model: keras.Model
    points: list[BatchPoint] = field(default_factory=list)
    validation: list[EpochPoint] = field(default_factory=list)
    stopped: bool = False

    def predict(self, images: np.ndarray) -> np.ndarray:
        """(N, 6) class probabilities for (N, size, size, 3) uint8 images."""
        return np.asarray(self.model.predict(np.asarray(images, np.float32) / 255.0, verbose=0))


def quick_fit(config: QuickFitConfig | None = None,
              callback: Progress | None = None) -> QuickFitResult:
    """Train the scratch CNN on demo shapes, reporting every weight update as it happens.

    Args:
        config: what to train (default ``QuickFitConfig()``).
        callback: ``callback(done, total, stage)`` (``engine.progress``) from this thread, in
            weight updates of ``config.total_steps``, after each update and each test on the
            unseen shapes; its optional ``publish(point)`` gets each ``BatchPoint`` and
            ``EpochPoint`` as it is measured; when its ``stop_requested`` turns true,
            training stops after the current batch. ``None``: no reporting.

    Returns:
        ``QuickFitResult``.

    Raises:
        TrainingError: a configuration the scratch CNN cannot train (images under 32 pixels).
    """
    c = config or QuickFitConfig()
    images, labels = demo_data(c)
    val_images, val_labels = demo_data(c, validation=True)
    try:
        model = build_scratch_cnn((c.size, c.size), len(CLASS_NAMES), seed=c.seed)
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc
    result = QuickFitResult(model)
    # The images come in an order drawn from the seed epoch by epoch (``array_pipeline``), not
    # from TensorFlow's global seed, which other work of the server may set: the same
    # configuration learns the same way every time.
    fit(model, array_pipeline(images, labels, c.batch_size, seed=c.seed),
        array_pipeline(val_images, val_labels, VALIDATION_BATCH, shuffle=False),
        recipe=QUICK_RECIPE, learning_rate=c.learning_rate, epochs=c.epochs,
        callbacks=[_Recorder(c, result, callback)], validate_first=True)
    result.stopped = len(result.points) < c.total_steps
    return result


def demo_data(config: QuickFitConfig, validation: bool = False
              ) -> tuple[np.ndarray, np.ndarray]:
    """The training (or validation) images of ``config`` and their labels.

    Image ``i`` is the demo shape ``make_shapes(n, seed=s)`` draws as its image ``i`` (class
    ``i % 6``), or its silhouette, with ``s = seed`` for training and ``VALIDATION_SEED + seed``
    for validation: no validation image is a training image.

    Returns:
        ``(images, labels)``: (n, size, size, 3) uint8 RGB and (n,) int64 class indices.
    """
    n = config.n_validation if validation else config.n_train
    seed = VALIDATION_SEED + config.seed if validation else config.seed
    if not config.silhouettes:
        batch = make_shapes(n, size=config.size, seed=seed)
        return batch.images, batch.labels
    labels = np.arange(n, dtype=np.int64) % len(CLASS_NAMES)
    images = np.zeros((n, config.size, config.size, 3), np.uint8)
    for i, label in enumerate(labels):
        # make_shapes draws its image i from the seed (seed, i): the mask comes from the same.
        mask = make_shape_mask(int(label), size=config.size, seed=(seed, i))
        images[i] = np.round(mask * 255).astype(np.uint8)[..., None]
    return images, labels


class _Recorder(keras.callbacks.Callback):
    """Turns Keras' running means into one point per batch, records the unseen images'
    loss and accuracy before training and after each epoch, and stops on request."""

    def __init__(self, config: QuickFitConfig, result: QuickFitResult,
                 callback: Progress | None):
        super().__init__()
        self.config = config
        self.result = result
        self.callback = callback
        self._epoch = 0
        self._values = BatchValues(config.batch_size, config.n_train)
        self._training = False

    def on_test_end(self, logs=None):
        # before training (``fit(validate_first=True)``): the epoch-0 point
        if not self._training and logs and "loss" in logs:
            self._validated(EpochPoint(0, float(logs["loss"]), float(logs["accuracy"])))

    def on_train_begin(self, logs=None):
        self._training = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._values.start_epoch()

    def on_train_batch_end(self, batch, logs=None):
        c = self.config
        loss, accuracy = self._values.of_batch(batch, logs or {})
        point = BatchPoint(self._epoch * c.steps_per_epoch + batch + 1, self._epoch + 1, loss,
                           min(1.0, max(0.0, accuracy)))
        self.result.points.append(point)
        _tell(self.callback, point, point.step, c.total_steps)
        if stop_requested(self.callback):
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        # A stopped epoch is cut short: its validation would not be "after an epoch".
        if "val_loss" in logs and not stop_requested(self.callback):
            self._validated(EpochPoint(epoch + 1, float(logs["val_loss"]),
                                       float(logs["val_accuracy"])))

    def _validated(self, point: EpochPoint) -> None:
        self.result.validation.append(point)
        _tell(self.callback, point, len(self.result.points), self.config.total_steps)


def _tell(callback: Progress | None, point: BatchPoint | EpochPoint, done: int,
          total: int) -> None:
    """Publish ``point`` and say where the fit is, in words for people."""
    publish(callback, point)
    if isinstance(point, BatchPoint):
        stage = f"practice batch {point.step} of {total} (epoch {point.epoch})"
    else:
        when = f"after epoch {point.epoch}" if point.epoch else "before training"
        stage = f"tested on the unseen shapes {when}"
    report(callback, done, total, stage)


def quick_fit_work(config: QuickFitConfig | None = None):
    """The work of a queue job that runs ``quick_fit(config)``: ``work(job) -> QuickFitResult``;
    ``job.parts()`` holds the ``BatchPoint`` and ``EpochPoint`` measured so far."""
    c = config or QuickFitConfig()

    def work(job) -> QuickFitResult:
        job.report(0, c.total_steps, "drawing the shapes, building the network",
                   check=False)
        # Cancelling the job stops training after the current batch, keeping what it learned.
        return quick_fit(c, callback=JobProgress(job))

    return work
