"""After a run: the confusion matrix, per-class precision and recall, and the misclassified
images with the Grad-CAM maps of the class the model wrongly chose."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.models.explorable import ExplorableModel

EVALUATION_JSON, EVALUATION_NPZ = "evaluation.json", "evaluation.npz"
MAX_MISCLASSIFIED_MAPS = 24


@dataclass(frozen=True)
class Evaluation:
    """How a classifier does on one split.

    Attributes:
        split: the split evaluated.
        class_names: the classes.
        confusion: (C, C) int, rows = true class, columns = predicted class.
        precision: (C,) of the images predicted as each class, the share that are it (NaN
            when none was predicted as it).
        recall: (C,) of the images of each class, the share predicted as it (NaN without
            images of it).
        accuracy: share of all images predicted right.
        misclassified: ``(path, true, predicted, confidence)`` of every wrong prediction, most
            confident first (``confidence`` is the probability of the predicted class).
    """

    split: str
    class_names: list[str]
    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    accuracy: float
    misclassified: list[tuple[str, int, int, float]]

    @property
    def support(self) -> np.ndarray:
        """(C,) images of each class."""
        return self.confusion.sum(axis=1)

    def to_dict(self) -> dict:
        return {"split": self.split, "class_names": self.class_names,
                "confusion": self.confusion.tolist(),
                "precision": [_json_number(v) for v in self.precision],
                "recall": [_json_number(v) for v in self.recall],
                "accuracy": self.accuracy,
                "misclassified": [list(m) for m in self.misclassified]}

    @classmethod
    def from_dict(cls, data: dict) -> "Evaluation":
        return cls(split=data["split"], class_names=list(data["class_names"]),
                   confusion=np.array(data["confusion"], np.int64),
                   precision=np.array([np.nan if v is None else v for v in data["precision"]]),
                   recall=np.array([np.nan if v is None else v for v in data["recall"]]),
                   accuracy=float(data["accuracy"]),
                   misclassified=[(str(p), int(t), int(q), float(c))
                                  for p, t, q, c in data["misclassified"]])


def confusion_report(labels: np.ndarray, probabilities: np.ndarray, paths: list[str],
                     class_names: list[str], split: str = "") -> Evaluation:
    """The evaluation of predictions.

    Args:
        labels: (N,) true classes.
        probabilities: (N, C) predicted probabilities.
        paths: (N,) the images' files.
        class_names: (C,) names.
        split: which split these are.
    """
    labels = np.asarray(labels, np.int64)
    probabilities = np.asarray(probabilities, np.float64)
    n_classes = len(class_names)
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    diagonal = np.diag(confusion).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = diagonal / confusion.sum(axis=0)
        recall = diagonal / confusion.sum(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")]
    misclassified = [(paths[i], int(labels[i]), int(predicted[i]),
                      float(probabilities[i, predicted[i]])) for i in order]
    accuracy = float(diagonal.sum() / max(1, len(labels)))
    return Evaluation(split, list(class_names), confusion, precision, recall, accuracy,
                      misclassified)


def evaluate_model(model: ExplorableModel, data, split: str, *, batch_size: int = 64):
    """Predict every image of a split and report.

    Args:
        model: the trained model (takes RGB 0-255 images at its input size).
        data: ``TrainingData`` of the run.
        split: the split to evaluate.
        batch_size: images per forward pass.

    Returns:
        (``Evaluation``, the mistakes' images (M, h, w, 3) uint8, their Grad-CAM maps
        (M, h, w) float32 for the predicted class), M <= ``MAX_MISCLASSIFIED_MAPS``.
    """
    from engine.data.pipeline import tf_dataset
    from engine.saliency import explain
    from engine.training.data import input_pipeline

    files = data.dataset.files_in(split)
    batches = input_pipeline(data, split, model.input_size, batch_size, model.preprocessing,
                             channels=model.channels, shuffle=False)
    outputs, labels = [], []
    for x, y in batches:  # the network on exactly what validation fed it during training
        outputs.append(np.asarray(model.keras_model(x, training=False), np.float64))
        labels.append(np.asarray(y))
    probabilities = np.concatenate(outputs)
    if model.output_activation != "softmax":
        shifted = np.exp(probabilities - probabilities.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    report = confusion_report(np.concatenate(labels), probabilities,
                              [f.path for f in files], data.class_names, split)
    worst = report.misclassified[:MAX_MISCLASSIFIED_MAPS]
    h, w = model.input_size
    if not worst:
        return report, np.zeros((0, h, w, 3), np.uint8), np.zeros((0, h, w), np.float32)
    by_path = {f.path: f for f in files}
    subset = dataclasses.replace(data.dataset, files=tuple(by_path[p] for p, *_ in worst))
    batch = tf_dataset(subset, None, (h, w), len(worst), shuffle=False)
    mistakes = np.concatenate([np.asarray(x) for x, _ in batch])
    mistakes = np.clip(np.rint(mistakes), 0, 255).astype(np.uint8)
    maps = explain(model, mistakes, "gradcam", target=[q for _, _, q, _ in worst])
    return report, mistakes, np.asarray(maps, np.float32)


def save_evaluation(run_dir: str | os.PathLike, report: Evaluation, images: np.ndarray,
                    maps: np.ndarray) -> None:
    run_dir = Path(run_dir)
    np.savez_compressed(run_dir / EVALUATION_NPZ, images=images, maps=maps.astype(np.float16))
    tmp = run_dir / f".{EVALUATION_JSON}.tmp"
    tmp.write_text(json.dumps(report.to_dict()))
    os.replace(tmp, run_dir / EVALUATION_JSON)


def load_evaluation(run_dir: str | os.PathLike) -> tuple[Evaluation, np.ndarray, np.ndarray] | None:
    """``(report, mistakes' images, their maps)`` of a run, or None before it was evaluated."""
    run_dir = Path(run_dir)
    try:
        report = Evaluation.from_dict(json.loads((run_dir / EVALUATION_JSON).read_text()))
        with np.load(run_dir / EVALUATION_NPZ) as data:
            return report, data["images"], data["maps"].astype(np.float32)
    except (OSError, ValueError, KeyError):
        return None


def _json_number(value: float):
    return None if not np.isfinite(value) else float(value)
