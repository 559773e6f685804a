"""The one training loop: compile a network for a recipe and fit it on ``tf.data`` batches.

Every network this project trains goes through ``fit``: a run of the Train page (``run.py``,
stage by stage, in its own process, ``RunMonitor`` watching), the Tour's quick fit
(``quick.py``, in the server's process, a callback publishing every batch) and the bundled demo
model (``engine.models.demo``). They differ in their data, their network, their ``Recipe`` and
their callbacks, never in how the weights are updated.

    >>> history = fit(model, train_batches, validation_batches, recipe=Recipe(warmup=0.05),
    ...               learning_rate=3e-3, epochs=6, callbacks=[monitor])

The batches are ``(x, labels)`` with integer class labels (``engine.training.data``'s
pipelines); ``fit`` turns them into the one-hot targets the label-smoothing cross-entropy
takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass
class Recipe:
    """How the weights are updated: the project's recipe by default, the one training runs
    use (``RunConfig`` is a ``Recipe`` with the rest of a run's settings).

    Attributes:
        optimizer: one of ``config.OPTIMIZERS``.
        lr_schedule: a key of ``config.LR_SCHEDULES``. Cosine decay (Loshchilov & Hutter 2017,
            without restarts) ends each stage at a learning rate near 0, where the weights
            settle; reduce-LR-on-plateau, when on, replaces it (the learning rate is constant
            until a plateau).
        warmup: cosine schedule only: the share of each stage's steps over which the learning
            rate rises linearly from 0 to ``learning_rate`` before the cosine decay (Goyal et
            al. 2017): the first steps, with untrained batch statistics and large gradients,
            then do not throw the weights far off. A quarter: from scratch, Adam's steps at the
            full rate swing every image's prediction from class to class while the features
            are still random (each weight of the classifier moves by about the learning rate
            whatever its gradient, so a logit moves by up to lr x 512 inputs); on the 3,000-image
            demo set upscaled to 128 pixels, 4 epochs reached 0.68 and 0.66 validation
            accuracy (seeds 0 and 1) with it, 0.61 and 0.36 with 5 %; at 64 pixels 0.85 and
            0.82 either way (``bench/training.py --scratch-sizes``).
        label_smoothing: train towards ``1 - label_smoothing`` for the true class and the rest
            shared by the others (Szegedy et al. 2016), instead of one-hot targets: the
            network stops pushing confident logits further, and generalises better. The loss
            curves then level off above 0 (at about 0.45 for 6 classes and 0.1).
        momentum: SGD's momentum.
        early_stopping: stop after this many epochs without a better validation loss (0: off).
        reduce_lr: divide the learning rate by ``1 / reduce_lr_factor`` after this many epochs
            without a better validation loss (0: off).
        reduce_lr_factor: see ``reduce_lr``.
    """

    optimizer: str = "adam"
    lr_schedule: str = "cosine"
    warmup: float = 0.25
    label_smoothing: float = 0.1
    momentum: float = 0.9
    early_stopping: int = 0
    reduce_lr: int = 0
    reduce_lr_factor: float = 0.2


def fit(model, train, validation=None, *, recipe: Recipe, learning_rate: float, epochs: int,
        initial_epoch: int = 0, schedule_steps: int | None = None, callbacks: Sequence = (),
        final_callbacks: Sequence = (), compile: bool = True, validate_first: bool = False,
        strategy=None, verbose: int = 0):
    """Compile ``model`` for ``recipe`` and fit it from ``initial_epoch`` to ``epochs``.

    Args:
        model: the Keras network, ending in a softmax (or logits).
        train: ``tf.data.Dataset`` of ``(x, labels)`` batches, ``labels`` ``(B,)`` integer
            class indices; one pass is one epoch (its length must be known).
        validation: the same for the images measured after every epoch, or None.
        recipe: the optimizer, schedule, loss and callbacks (a ``RunConfig`` is a ``Recipe``).
        learning_rate: the peak learning rate.
        epochs: the epoch to end at (counted from 0, as Keras' ``fit``).
        initial_epoch: the epoch to start at.
        schedule_steps: the steps the learning-rate schedule spans (default: this fit's);
            a stage resumed halfway passes the whole stage's.
        callbacks: Keras callbacks (``RunMonitor``, the quick fit's recorder, ...); the
            recipe's early stopping and reduce-LR-on-plateau are added after them.
        final_callbacks: callbacks that run after all the others, e.g. one that makes the
            workers of a cluster agree on stopping, whichever callback stopped.
        compile: compile first; False keeps the optimizer (and its state) the model has,
            as a run resumed inside a stage needs.
        validate_first: measure ``validation`` before training too: the callbacks see it as
            ``on_test_end(logs)`` before ``on_train_begin``.
        strategy: the ``tf.distribute`` strategy whose scope the optimizer is made in.
        verbose: Keras' verbosity.

    Returns:
        Keras' ``History``.
    """
    import keras
    import tensorflow as tf

    steps = int(train.cardinality())
    if steps < 0:
        raise ValueError("fit needs a training data set of known length (one pass per epoch).")
    if compile:
        with (strategy or tf.distribute.get_strategy()).scope():
            compile_model(model, recipe, learning_rate,
                          schedule_steps or (epochs - initial_epoch) * steps)
    n_classes = int(model.outputs[0].shape[-1])
    train = _one_hot(train, n_classes)
    validation = None if validation is None else _one_hot(validation, n_classes)
    if validate_first and validation is not None:
        model.evaluate(validation, callbacks=list(callbacks), verbose=0)
    monitor = "loss" if validation is None else "val_loss"
    extra = []
    if recipe.early_stopping:
        extra.append(keras.callbacks.EarlyStopping(monitor=monitor,
                                                   patience=recipe.early_stopping))
    if recipe.reduce_lr:
        extra.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, patience=recipe.reduce_lr, factor=recipe.reduce_lr_factor,
            verbose=0))
    return model.fit(train, validation_data=validation, epochs=epochs,
                     initial_epoch=initial_epoch,
                     callbacks=[*callbacks, *extra, *final_callbacks],
                     verbose=verbose, shuffle=False)  # the pipelines shuffle


def compile_model(model, recipe: Recipe, learning_rate: float, steps: int) -> None:
    """Compile for ``steps`` training batches (a cosine schedule spans them): ``recipe``'s
    optimizer at ``learning_rate``, the (label-smoothing) categorical cross-entropy on
    one-hot targets, and accuracy. Call it in the strategy's scope."""
    import keras

    from engine.models.explorable import _output_activation

    if recipe.lr_schedule == "cosine" and not recipe.reduce_lr:
        warmup = min(int(round(recipe.warmup * steps)), steps - 1)
        learning_rate = (keras.optimizers.schedules.CosineDecay(
            0.0, steps - warmup, warmup_target=learning_rate, warmup_steps=warmup)
            if warmup > 0 else keras.optimizers.schedules.CosineDecay(learning_rate, steps))
    optimizers = {
        "adam": lambda: keras.optimizers.Adam(learning_rate),
        "adamw": lambda: keras.optimizers.AdamW(learning_rate),
        "rmsprop": lambda: keras.optimizers.RMSprop(learning_rate),
        "sgd": lambda: keras.optimizers.SGD(learning_rate, momentum=recipe.momentum),
    }
    from_logits = _output_activation(model) != "softmax"
    model.compile(optimizer=optimizers[recipe.optimizer](),
                  loss=keras.losses.CategoricalCrossentropy(
                      from_logits=from_logits, label_smoothing=recipe.label_smoothing),
                  metrics=["accuracy"])


def _one_hot(batches, n_classes: int):
    """``(x, labels)`` batches with the integer labels as one-hot rows of ``n_classes``."""
    import tensorflow as tf

    return batches.map(lambda x, y: (x, tf.one_hot(tf.cast(y, tf.int32), n_classes)),
                       num_parallel_calls=tf.data.AUTOTUNE)
