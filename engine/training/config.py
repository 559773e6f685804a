"""What a training run does: one small dataclass, saved as ``config.json`` in the run folder.

The Start button and the command line both write a ``RunConfig`` and hand it to the same
training function, so a run started either way leaves the same folder behind.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.errors import TrainingError
from engine.training.loop import Recipe

#: mode -> what people read
MODES = {
    "scratch": "Train from scratch (the classic CNN, sized to the data set's classes)",
    "feature_extraction": "Feature extraction (frozen pretrained base + a new head)",
    "fine_tuning": "Fine-tuning (feature extraction, then unfreeze the top of the base)",
    "continue": "Continue training a model trained earlier or uploaded",
}
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw")
#: learning-rate schedule -> what people read (cosine: from the learning rate down to 0 over
#: each stage)
LR_SCHEDULES = {"cosine": "Cosine decay", "constant": "Constant"}
STRATEGIES = {
    "default": "one device (the default)",
    "mirrored": "MirroredStrategy: every GPU of this machine",
    "multi_worker": "MultiWorkerMirroredStrategy: several machines (set TF_CONFIG)",
}
CONFIG_FILE = "config.json"
#: mode -> the learning rate a run gets when none is given. From scratch: on the demo shapes
#: (6 epochs, batch norm, warm-up, label smoothing) 2e-3 made 32 errors in 3,000 held-out
#: images after 2 epochs and 1 after 6, 1e-3 made 103 after 2.
DEFAULT_LEARNING_RATES = {"scratch": 2e-3}
DEFAULT_LEARNING_RATE = 1e-3


@dataclass(kw_only=True)
class RunConfig(Recipe):
    """The settings of one training run (good defaults; only ``dataset`` is required): how the
    weights are updated (the fields of ``Recipe``: optimizer, learning-rate schedule, warm-up,
    label smoothing, momentum, early stopping, reduce-LR-on-plateau) and the rest.

    Attributes:
        dataset: the data set folder (``engine.data.open_dataset`` opens it).
        mode: a key of ``MODES``.
        name: what people call the run (default: made from the mode and the data set).
        base_model: the trained network under the new head of ``feature_extraction`` /
            ``fine_tuning``: ``"demo"`` (the bundled shapes model: no download), ``"run:<run
            id>"`` (a model trained earlier), the path of a ``.keras`` / ``.h5`` file, or a
            catalogue ImageNet name such as ``"mobilenet_0.25"`` (``engine.training.bases``).
        base_layer: where the base is cut (a layer path such as ``"block4_conv2"`` or
            ``"mobilenet/conv_pw_13_relu"``); ``None``: the output of its last convolution
            block, the layer Grad-CAM uses by default.
        weights: an ImageNet base's weights: ``"imagenet"`` (Keras' cache or a download), the
            path of a weights file (with or without the classifier top), or ``None`` for random
            weights (tests only: a frozen random base learns little).
        init_model: the ``.keras`` file ``continue`` starts from.
        preprocessing: ``continue`` only: the input preprocessing of ``init_model``
            (``None``: the one recorded with it when it comes from a run, else ``"unit"``).
        image_size: (height, width) the images are resized to (``None``: from scratch, the
            data set's own, at most 128x128 (``engine.training.data.default_image_size``); the
            base's own size for ImageNet models, the model's own when continuing).
        epochs: epochs of training (of stage 1 when fine-tuning).
        batch_size: images per step (across all devices).
        learning_rate: of the optimizer (of stage 1 when fine-tuning); ``None``: the mode's
            ``DEFAULT_LEARNING_RATES`` (2e-3 from scratch, where batch norm, warm-up and label
            smoothing let Adam take larger steps; 1e-3 otherwise).
        batch_norm: scratch only: train the classic CNN with batch normalisation after each
            convolution (Ioffe & Szegedy 2015); the saved model has it folded into the
            convolutions, so it is the classic network, computing the same.
        augment: augment training images with the settings saved with the data set.
        validation_split: share of the training images held out for validation when the data
            set has no validation split.
        fine_tune_layers: stage 2 unfreezes this many of the base's top layers with weights.
        fine_tune_epochs: epochs of stage 2.
        fine_tune_learning_rate: learning rate of stage 2 (low, so the pretrained features are
            adjusted, not destroyed).
        seed: seed of weights, shuffling, augmentation and the validation split.
        strategy: a key of ``STRATEGIES``.
        mixed_precision: compute in float16 on a GPU (ignored without one).
        probe_images: validation images whose Grad-CAM maps and predictions the learning
            timeline stores at every epoch (0: no timeline).
        evaluate: after training, compute the confusion matrix and the misclassified images.
    """

    dataset: str
    mode: str = "scratch"
    name: str = ""
    base_model: str = "demo"
    base_layer: str | None = None
    weights: str | None = "imagenet"
    init_model: str | None = None
    preprocessing: str | None = None
    image_size: tuple[int, int] | None = None
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float | None = None
    batch_norm: bool = True
    augment: bool = True
    validation_split: float = 0.2
    fine_tune_layers: int = 20
    fine_tune_epochs: int = 5
    fine_tune_learning_rate: float = 1e-5
    seed: int = 0
    strategy: str = "default"
    mixed_precision: bool = False
    probe_images: int = 12
    evaluate: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # free notes (kept, never read)

    def __post_init__(self) -> None:
        if self.image_size is not None:
            self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.dataset = os.fspath(self.dataset)
        if self.learning_rate is None:
            self.learning_rate = default_learning_rate(self.mode)
        if self.init_model is not None:
            self.init_model = os.fspath(self.init_model)

    # ----------------------------------------------------------------------- checks
    def validate(self) -> "RunConfig":
        """Refuse settings that cannot train; returns ``self``.

        Raises:
            TrainingError: with a sentence saying which setting to change.
        """
        for what, value, allowed in (("training mode", self.mode, MODES),
                                     ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("learning-rate schedule", self.lr_schedule, LR_SCHEDULES),
                                     ("distribution strategy", self.strategy, STRATEGIES)):
            if value not in allowed:
                raise TrainingError(f"Unknown {what} '{value}'; choose one of "
                                    f"{', '.join(allowed)}.")
        _positive_int("epochs", self.epochs, 10_000)
        _positive_int("batch size", self.batch_size, 65_536)
        _rate("learning rate", self.learning_rate)
        if self.mode == "fine_tuning":
            _positive_int("fine-tuning epochs", self.fine_tune_epochs, 10_000)
            _positive_int("layers to unfreeze", self.fine_tune_layers, 100_000)
            _rate("fine-tuning learning rate", self.fine_tune_learning_rate)
        if not 0 <= self.warmup < 1:
            raise TrainingError(f"The warm-up share must be in [0, 1) (e.g. 0.05 for 5 % of the "
                                f"steps), got {self.warmup}.")
        if not 0 <= self.label_smoothing < 1:
            raise TrainingError(f"The label smoothing must be in [0, 1) (e.g. 0.1), got "
                                f"{self.label_smoothing}.")
        if not 0 <= self.momentum < 1:
            raise TrainingError(f"The momentum must be in [0, 1), got {self.momentum}.")
        if not 0 < self.validation_split < 1:
            raise TrainingError("The validation split must be between 0 and 1 (e.g. 0.2), "
                                f"got {self.validation_split}.")
        if not 0 < self.reduce_lr_factor < 1:
            raise TrainingError("The factor of reduce-LR-on-plateau must be between 0 and 1, "
                                f"got {self.reduce_lr_factor}.")
        for label, value in (("early stopping patience", self.early_stopping),
                             ("reduce-LR patience", self.reduce_lr),
                             ("number of probe images", self.probe_images)):
            if not isinstance(value, int) or value < 0:
                raise TrainingError(f"The {label} must be a whole number >= 0, got {value!r}.")
        if self.image_size is not None and min(self.image_size) < 32:
            raise TrainingError(f"Images must be at least 32x32 pixels for training, not "
                                f"{self.image_size[0]}x{self.image_size[1]}.")
        if self.mode in ("feature_extraction", "fine_tuning"):
            from engine.training.bases import base_kind

            base_kind(self.base_model)
        if self.mode == "continue" and not self.init_model:
            raise TrainingError("To continue training, choose the model to start from.")
        if not Path(self.dataset).is_dir():
            raise TrainingError(f"There is no data set at '{self.dataset}'; import it first or "
                                "pick another one.")
        return self

    @property
    def total_epochs(self) -> int:
        """Epochs of all stages together."""
        return self.epochs + (self.fine_tune_epochs if self.mode == "fine_tuning" else 0)

    @property
    def stages(self) -> list[tuple[int, int, float]]:
        """``(first epoch, end epoch, learning rate)`` of each stage: one, or two when
        fine-tuning (stage 2 starts where stage 1 ends)."""
        first = [(0, self.epochs, self.learning_rate)]
        if self.mode != "fine_tuning":
            return first
        return first + [(self.epochs, self.total_epochs, self.fine_tune_learning_rate)]

    # ---------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.image_size is not None:
            data["image_size"] = list(self.image_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """A config from a dict (unknown keys are refused, so a typo is not silently ignored).

        Raises:
            TrainingError: unknown keys, or ``dataset`` missing.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainingError(f"Unknown training settings {unknown}; the settings are "
                                f"{sorted(known)}.")
        if "dataset" not in data:
            raise TrainingError("The training settings need 'dataset': the data set folder.")
        return cls(**data)


def default_learning_rate(mode: str) -> float:
    """The learning rate of a ``mode`` run when the settings give none."""
    return DEFAULT_LEARNING_RATES.get(mode, DEFAULT_LEARNING_RATE)


def save_config(config: RunConfig, path: str | os.PathLike) -> None:
    """Write ``config`` as JSON (atomically: a reader never sees half a file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(config.to_dict(), indent=2))
    os.replace(tmp, path)


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read a config written by ``save_config`` (or by hand).

    Raises:
        TrainingError: the file is missing or not a valid config.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise TrainingError(f"Cannot read the training settings '{path}' ({exc}).") from exc
    if not isinstance(data, dict):
        raise TrainingError(f"The training settings '{path}' are not a JSON object.")
    return RunConfig.from_dict(data)


def _positive_int(label: str, value, top: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
        raise TrainingError(f"The {label} must be a whole number from 1 to {top:,}, "
                            f"got {value!r}.")


def _rate(label: str, value) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= 1e6:
        raise TrainingError(f"The {label} must be a number above 0 "
                            f"(typically 1e-4 to 1e-2), got {value!r}.")
