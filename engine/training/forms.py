"""The Train page's new-run form as data: the choices it offers, the demo data set it suggests,
and the ``RunConfig`` its values make.

The form's defaults are ``RunConfig``'s own (``RunConfig.epochs``, ...): a page reads them
from there, so a changed default changes the form too.
"""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any, Mapping

from engine.data.dataset import DEMO_SET_SIZE, Dataset
from engine.models.demo import TrainingConfig as DemoTraining
from engine.training.config import RunConfig
from engine.training.data import default_image_size
from engine.training.metrics import smooth

IMAGE_SIZES = (32, 48, 64, 96, 128, 160, 192, 224)
BATCH_SIZES = (8, 16, 32, 64, 128, 256)
#: the curves' moving-average weights offered; the default is ``smooth``'s own
SMOOTHINGS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99)
DEFAULT_SMOOTHING = inspect.signature(smooth).parameters["weight"].default

#: the demo set offered first (``DEMO_SET_SIZE`` says why this size)
DEMO_TRAINING_SIZE = DEMO_SET_SIZE
#: demo data set sizes offered for training, up to what the bundled demo model was trained on
#: (99.97 % on its test split)
TRAINING_DEMO_SIZES = (120, 600, DEMO_TRAINING_SIZE, DemoTraining.train_images)
TRAINING_DEMO_SIDES = (32, 64)

_TEXT_OR_NONE = ("base_layer", "init_model")


def nearest(value: float, choices) -> Any:
    """The choice closest to ``value`` (the first of two equally close)."""
    return min(choices, key=lambda c: abs(c - value))


def suggested_side(dataset: Dataset | None) -> int:
    """The image side the form suggests for training ``dataset`` from scratch: the engine's
    default (its images' median side, at most 128) as one of ``IMAGE_SIZES``; 128 without a
    data set."""
    side = default_image_size(dataset)[0] if dataset is not None else 128
    return nearest(side, IMAGE_SIZES)


def run_config(values: Mapping[str, Any]) -> RunConfig:
    """The ``RunConfig`` of the form's values, keyed by ``RunConfig`` field.

    Widget values come as widgets give them; this makes them settings:

    - ``image_side`` (an int) becomes ``image_size`` ``(side, side)``; 0 means the base's own
      size (``None``).
    - Texts are stripped; an empty ``base_layer`` or ``init_model`` is ``None``, an empty
      ``weights`` is ``RunConfig.weights`` (Keras' cache).
    - Numbers take the type of their field's default (a number box gives 10.0 for 10).

    Fields not given keep ``RunConfig``'s defaults.

    Raises:
        TrainingError: ``dataset`` missing or a key that is no setting (``RunConfig.from_dict``).
    """
    values = dict(values)
    if "image_side" in values:
        side = int(values.pop("image_side") or 0)
        values["image_size"] = (side, side) if side else None
    for key, value in values.items():
        if isinstance(value, str):
            values[key] = value.strip()
    for key in _TEXT_OR_NONE:
        if key in values:
            values[key] = values[key] or None
    if "weights" in values:
        values["weights"] = values["weights"] or RunConfig.weights
    defaults = {f.name: f.default for f in fields(RunConfig)}
    for key, value in values.items():
        values[key] = _as_default_type(value, defaults.get(key))
    return RunConfig.from_dict(values)


def gpu_available() -> bool:
    """Whether TensorFlow sees a GPU here (mixed precision needs one)."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _as_default_type(value, default):
    if value is None or default is None:
        return value
    for kind in (bool, int, float):  # bool first: it is an int too
        if isinstance(default, kind):
            return kind(value)
    return value
