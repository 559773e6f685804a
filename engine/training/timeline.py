"""The learning timeline: what the model looks at, and its first filters, epoch after epoch.

Before training and after every epoch a run stores, for a fixed *probe set* of validation
images, the Grad-CAM map of each image's true class and the predicted probabilities, and the
weights of the first convolution layer::

    timeline/probe.npz        images (P, h, w, 3) uint8, labels (P,), paths (P,), class_names
    timeline/epoch_0000.npz   before training; epoch_0003.npz after 3 epochs...
                              cams (P, h, w) float16 in [0, 1], probs (P, C) float32,
                              filters (kh, kw, c_in, n) float32 (absent without a conv layer)

A slider over these files shows the maps sharpen onto the objects and the filters turn from
noise into edge and colour detectors.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from engine.data.dataset import Dataset, DatasetFile
from engine.models.explorable import ExplorableModel
from engine.models.folding import folded_kernel
from engine.models.layers import CONV_TYPES, iter_layers

TIMELINE = "timeline"
PROBE_FILE = "probe.npz"
MAX_FILTERS = 64
_EPOCH_FILE = re.compile(r"epoch_(\d{4})\.npz$")


def pick_probes(files: list[DatasetFile], n: int) -> list[DatasetFile]:
    """Up to ``n`` files, taking each class in turn (so every class shows), in file order."""
    by_class: dict[int, list[DatasetFile]] = {}
    for f in files:
        by_class.setdefault(f.label, []).append(f)
    out, depth = [], 0
    while len(out) < n and any(depth < len(v) for v in by_class.values()):
        for label in sorted(by_class):
            if depth < len(by_class[label]) and len(out) < n:
                out.append(by_class[label][depth])
        depth += 1
    return out


def first_layer_filters(model: keras.Model) -> np.ndarray | None:
    """The kernel of the first convolution (nested models included), at most ``MAX_FILTERS``
    filters: (kh, kw, c_in, n) float32, or None without a convolution."""
    for ref in iter_layers(model):
        if isinstance(ref.layer, CONV_TYPES) and ref.layer.weights:
            # batch norm after it (a scratch CNN while training) folded in: the filters the
            # saved model will have
            kernel = folded_kernel(model, ref.layer)
            return kernel[..., :MAX_FILTERS] if kernel.ndim == 4 else None
    return None


class TimelineRecorder:
    """Writes the timeline of one run (used by the run's callback)."""

    def __init__(self, run_dir: str | os.PathLike, model: keras.Model, *, preprocessing: str,
                 class_names: list[str], images: np.ndarray, labels: np.ndarray,
                 paths: list[str]):
        self.folder = Path(run_dir) / TIMELINE
        self.folder.mkdir(exist_ok=True)
        self.images = np.asarray(images, np.uint8)
        self.labels = np.asarray(labels, np.int32)
        self.explorable = ExplorableModel(model, name="training", class_names=list(class_names),
                                          preprocessing=preprocessing,
                                          input_size=tuple(self.images.shape[1:3]))
        probe = self.folder / PROBE_FILE
        if not probe.is_file():
            _save(probe, images=self.images, labels=self.labels,
                  paths=np.array(paths, dtype=str), class_names=np.array(class_names, dtype=str))

    def has(self, epoch: int) -> bool:
        return (self.folder / f"epoch_{epoch:04d}.npz").is_file()

    def snapshot(self, epoch: int) -> None:
        """Store the maps, predictions and filters after ``epoch`` epochs (0: before any)."""
        from engine.saliency import explain

        probs = self.explorable.probabilities(self.images)
        arrays = {"probs": probs.astype(np.float32)}
        if np.isfinite(probs).all():
            cams = explain(self.explorable, self.images, "gradcam",
                           target=[int(v) for v in self.labels])
            arrays["cams"] = np.nan_to_num(np.asarray(cams)).astype(np.float16)
        filters = first_layer_filters(self.explorable.keras_model)
        if filters is not None:
            arrays["filters"] = filters
        _save(self.folder / f"epoch_{epoch:04d}.npz", **arrays)


@dataclass(frozen=True)
class Timeline:
    """A run's stored timeline.

    Attributes:
        images: (P, h, w, 3) uint8 probe images.
        labels: (P,) their classes.
        paths: their files in the data set.
        class_names: the classes.
        epochs: the epochs with a snapshot (0 = before training), ascending.
    """

    folder: Path
    images: np.ndarray
    labels: np.ndarray
    paths: list[str]
    class_names: list[str]
    epochs: list[int]

    def at(self, epoch: int) -> dict[str, np.ndarray]:
        """``{"cams": (P, h, w) float32, "probs": (P, C), "filters": (kh, kw, c, n)}`` after
        ``epoch`` epochs (keys missing where nothing was stored)."""
        with np.load(self.folder / f"epoch_{epoch:04d}.npz") as data:
            return {k: np.asarray(data[k], np.float32) for k in data.files}


def read_timeline(run_dir: str | os.PathLike) -> Timeline | None:
    """The timeline of a run, or None when it stored none."""
    folder = Path(run_dir) / TIMELINE
    try:
        with np.load(folder / PROBE_FILE) as probe:
            images, labels = probe["images"], probe["labels"]
            paths, names = [str(p) for p in probe["paths"]], [str(c) for c in probe["class_names"]]
    except (OSError, ValueError, KeyError):
        return None
    epochs = sorted(int(m.group(1)) for p in folder.iterdir()
                    if (m := _EPOCH_FILE.match(p.name)))
    if not epochs:
        return None
    return Timeline(folder, images, labels, paths, names, epochs)


def probe_images(dataset: Dataset, files: list[DatasetFile],
                 image_size: tuple[int, int]) -> np.ndarray:
    """The probe files as the pipeline reads them: (P, h, w, 3) uint8 at ``image_size``."""
    import dataclasses

    from engine.data.pipeline import tf_dataset

    subset = dataclasses.replace(dataset, files=tuple(files))
    batches = tf_dataset(subset, None, image_size, max(1, len(files)), shuffle=False)
    x = np.concatenate([np.asarray(images) for images, _ in batches])
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _save(path: Path, **arrays) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
