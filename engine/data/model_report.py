"""What a model sees in a data set: features, an embedding map, likely label errors, outliers,
near-duplicates by features, confusion and nearest neighbours.

``model_report(dataset, model)`` runs the model once over every image (streamed in batches with
``tf_dataset``; never all images in memory) and keeps the *penultimate features*: the input of
the classifier head, found by walking back from the model's output through activations,
reshapes and dropout to the last layer with weights (``feature_layer``); a 4-D input there (a
nested base without pooling) is average-pooled. The features are cached on disk per (model,
data set content) as ``.npz`` and reused by everything else:

* **out-of-fold probabilities** (``out_of_fold_probabilities``): a standardised logistic
  regression on the features, cross-validated (stratified folds, clipped by the smallest class),
  so that no image's probabilities come from a classifier fitted on it. The model's own
  probabilities are *not* the default even when its classes are the data set's: the bundled
  demo model was trained on the demo set's training images, so its probabilities there come
  from a model that saw them (``ModelReportConfig.probabilities = "model"`` asks for them);
  ``ModelReport.model_probabilities`` holds them whenever the classes match.
* **label issues**: cleanlab's ``find_label_issues`` on those probabilities, ranked by
  self-confidence (the probability of the given label; low first);
* **outliers**: cleanlab's ``OutOfDistribution`` on the features (mean cosine distance to the
  nearest neighbours, as a score in [0, 1]; low first), against the whole set and against the
  image's own class, whichever is lower;
* **embedding**: PCA (instant) and UMAP (``umap-learn``; its first call in a process compiles
  with numba for several seconds, so a UI shows ``embedding_pca`` first);
* **neighbours** (``nearest``, ``nearest_to_index``) and feature near-duplicates
  (scikit-learn ``NearestNeighbors``).

The k nearest neighbours of every image are searched once (``neighbour_graph``: exact, by
scikit-learn's chunked brute force, which on these 100-2,000-dimensional features is faster
than its trees and than PCA + a tree, and is not approximate) and shared by the near-duplicates,
UMAP and ``nearest_to_index``; the outlier score's cosine neighbours come from the same search on
unit-length features. The analysis after the feature pass runs its BLAS / OpenMP kernels on one
thread: they are small, and on shared cores their threads only wait for one another (on two
busy cores, the cross-validation of 5,000 images took 0.5-4 s with two threads, 0.1 s with one).

    >>> report = model_report(dataset, model, cache_dir=folder)
    >>> report.summary
    '23 of 1,534 images (1.5 %) look mislabelled.'
    >>> nearest(report, image, k=8)[0]
    Neighbour(index=12, file='train/circle/circle_000012.png', label='circle', distance=0.8)
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import warnings
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from engine.cache import BoundedCache, PerModelCache
from engine.data.dataset import Dataset, DatasetFile, SkippedFile
from engine.data.pipeline import tf_dataset
from engine.errors import InvalidDatasetError, InvalidImageError, InvalidModelError
from engine.progress import Progress, report

#: what ``probabilities`` may be: out-of-fold logistic regression, or the model's own softmax
PROBABILITY_SOURCES = ("out_of_fold", "model")
#: the sub-folder of a data set's folder the features are cached in when no ``cache_dir`` is given
CACHE_FOLDER = "model_report"
CACHE_VERSION = 1

#: neighbours kept per image in the report's graph at least (``nearest_to_index``'s default k)
NEAREST_KEPT = 8

#: layers between the classifier head and the output that compute no features of their own
_PASS_THROUGH = ("Activation", "Softmax", "Reshape", "Flatten", "Dropout", "SpatialDropout2D",
                 "GaussianNoise", "GaussianDropout", "AlphaDropout", "Identity")


@dataclass(frozen=True)
class ModelReportConfig:
    """Every setting of ``model_report`` (the defaults are what the pages use).

    Attributes:
        split: ``"train"``, ``"validation"``, ``"test"``, or None / ``"all"`` for every split.
        max_images: at most this many images (a seeded random choice, in file order); None: all.
        batch_size: images per forward pass of the feature pass.
        folds: cross-validation folds (clipped to the smallest class with two or more images).
        regularisation: the logistic regression's ``C`` (smaller: stronger regularisation).
        max_iter: the logistic regression's iteration limit.
        probabilities: ``"out_of_fold"`` (default) or ``"model"`` (the model's own softmax; only
            when its classes are the data set's, else the out-of-fold ones are used).
        outlier_neighbours: neighbours averaged by the outlier score.
        duplicate_ratio: two images are near-duplicates by features when their distance is at
            most this share of the median nearest-neighbour distance of the set.
        max_duplicate_pairs: most feature near-duplicate pairs listed (closest first).
        use_umap: compute the UMAP embedding (else ``embedding`` is the PCA one).
        umap_neighbours: UMAP's ``n_neighbors``.
        umap_min_dist: UMAP's ``min_dist``.
        umap_epochs: UMAP's ``n_epochs`` (its own default for large sets; 500 for small ones
            costs 2.5 times as long for a map that looks the same).
        seed: the seed of the image choice, the folds and UMAP.
        use_cache: reuse features cached on disk or in memory (False: compute them again).
    """

    split: str | None = None
    max_images: int | None = 20_000
    batch_size: int = 64
    folds: int = 5
    regularisation: float = 1.0
    max_iter: int = 1000
    probabilities: str = "out_of_fold"
    outlier_neighbours: int = 10
    duplicate_ratio: float = 0.1
    max_duplicate_pairs: int = 500
    use_umap: bool = True
    umap_neighbours: int = 15
    umap_min_dist: float = 0.1
    umap_epochs: int = 200
    seed: int = 0
    use_cache: bool = True

    def __post_init__(self):
        if self.probabilities not in PROBABILITY_SOURCES:
            raise ValueError(f"probabilities must be one of {PROBABILITY_SOURCES}, "
                             f"not {self.probabilities!r}.")
        if self.batch_size < 1 or self.folds < 2:
            raise ValueError("batch_size must be >= 1 and folds >= 2.")


# ------------------------------------------------------------------------------------ rows
@dataclass(frozen=True)
class LabelIssue:
    """An image whose given label is probably wrong.

    Attributes:
        index: its row in the report's arrays.
        file: its path relative to the data set's image root.
        given: the label in the data set (class name).
        suggested: the most probable class (out of fold).
        score: the probability of the given label (self-confidence) in [0, 1]; low: suspect.
    """

    index: int
    file: str
    given: str
    suggested: str
    score: float


@dataclass(frozen=True)
class Outlier:
    """An image and how typical it is: ``score`` in [0, 1], low: unlike the rest."""

    index: int
    file: str
    score: float


@dataclass(frozen=True)
class Neighbour:
    """An image of the report near a query, at ``distance`` (Euclidean, in feature space)."""

    index: int
    file: str
    label: str
    distance: float


@dataclass(frozen=True)
class FeaturePair:
    """Two images whose features are nearly the same (``a`` before ``b`` in file order)."""

    index_a: int
    index_b: int
    a: str
    b: str
    distance: float


@dataclass(eq=False)
class ModelReport:
    """What ``model_report`` found (N images, d features, k classes of the data set).

    Attributes:
        files: the images used, in data set order.
        labels: (N,) int, indices into ``class_names``.
        class_names: the data set's classes.
        features: (N, d) float32 penultimate features.
        probabilities: (N, k) float32, out of fold (see ``probability_source``); rows sum to 1,
            a class no training fold held gets 0.
        predictions: (N,) int: the model's own predictions when ``model_classes_match``, else
            the argmax of ``probabilities``.
        model_classes_match: the model's classes are the data set's (by name, any order).
        model_probabilities: (N, k) the model's softmax in the data set's class order, or None.
        probability_source: ``"out_of_fold"`` or ``"model"``.
        embedding: (N, 2) float32, UMAP (or PCA when ``embedding_method`` says so).
        embedding_method: ``"umap"`` or ``"pca"``.
        pca: (N, 2) float32.
        label_issues: likely label errors, most likely first.
        outliers: every image, least typical first.
        confusion: (k, k) int counts, rows: given label, columns: ``predictions``.
        feature_duplicates: near-duplicate pairs by features, closest first.
        skipped: files that could not be read (and files of the set left out before).
        summary: one sentence for the top of the page.
        feature_layer: the path of the layer whose input the features are.
        model_key: the identity of the model the features come from.
        graph: every image's nearest neighbours (``NeighbourGraph``, Euclidean, exact, at
            least ``NEAREST_KEPT`` each), searched once and shared by the near-duplicates,
            UMAP and ``nearest_to_index``; pass it to ``embedding_umap(..., graph=...)``.
    """

    files: list[DatasetFile]
    labels: np.ndarray
    class_names: tuple[str, ...]
    features: np.ndarray
    probabilities: np.ndarray
    predictions: np.ndarray
    model_classes_match: bool
    model_probabilities: np.ndarray | None
    probability_source: str
    embedding: np.ndarray
    embedding_method: str
    pca: np.ndarray
    label_issues: list[LabelIssue]
    outliers: list[Outlier]
    confusion: np.ndarray
    feature_duplicates: list[FeaturePair]
    skipped: list[SkippedFile]
    summary: str
    feature_layer: str
    model_key: str
    _model: Callable | None = field(default=None, repr=False)
    graph: NeighbourGraph | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Features:
    """The feature pass's result (``dataset_features``).

    Attributes:
        files: the images read, in order.
        features: (N, d) float32.
        model_probabilities: (N, k_model) float32 of the model's outputs, when asked for.
        skipped: files that could not be read.
        layer: the path of the layer whose input the features are.
        from_cache: True when read from the disk or memory cache (no forward pass).
    """

    files: list[DatasetFile]
    features: np.ndarray
    model_probabilities: np.ndarray | None
    skipped: list[SkippedFile]
    layer: str
    from_cache: bool = False


# ------------------------------------------------------------------------------ the report
def model_report(dataset: Dataset, model, *, callback: Progress | None = None,
                 config: ModelReportConfig = ModelReportConfig(),
                 cache_dir: str | os.PathLike | None = None) -> ModelReport:
    """Features, embedding, label issues, outliers, confusion and duplicates of a data set.

    Args:
        dataset: the data set (``config.split`` chooses the split).
        model: an ``ExplorableModel`` or a Keras classifier (which then gets the images as
            RGB 0-255 at its input size, unprocessed).
        callback: ``callback(done, total, stage)`` per batch of the feature pass, then per stage.
        config: every setting.
        cache_dir: where the features are cached (``.npz``); default the data set's own folder
            (``<folder>/model_report``), no disk cache for a folder read in place.

    Returns:
        The ``ModelReport``.

    Raises:
        InvalidDatasetError: no readable image in the split, or too few images per class to
            cross-validate (and the model's classes are not the data set's).
        InvalidModelError: the model has no classifier head whose input could be read.
    """
    model = as_explorable(model)
    matched = _class_order(model.class_names, dataset.class_names)
    files = _chosen_files(dataset, config)
    feats = dataset_features(dataset, model, files=files, batch_size=config.batch_size,
                             callback=callback, cache_dir=_cache_dir(dataset, cache_dir),
                             with_probabilities=matched is not None,
                             use_cache=config.use_cache)
    x, files = feats.features, feats.files
    labels = np.array([f.label for f in files], np.int64)
    k = len(dataset.class_names)
    model_probs = None if matched is None else feats.model_probabilities[:, matched]
    source = config.probabilities if model_probs is not None else "out_of_fold"
    report(callback, 0, 4, "cross-validating a classifier on the features")
    paths = [f.path for f in files]
    with one_thread():
        if source == "model":
            probs = model_probs
        else:
            probs = _out_of_fold_or_explain(x, labels, k, config, dataset.name)
        predictions = (model_probs if model_probs is not None else probs).argmax(1)
        report(callback, 1, 4, "finding label issues, outliers and near-duplicates")
        issues = label_issues(labels, probs, paths, dataset.class_names)
        outliers = outlier_rows(x, labels, paths, config.outlier_neighbours)
        graph = neighbour_graph(x, max(config.umap_neighbours - 1, NEAREST_KEPT))
        pairs = feature_duplicates(x, paths, config.duplicate_ratio, config.max_duplicate_pairs,
                                   graph=graph)
        report(callback, 2, 4, "drawing the map")
        pca, embedding, method = _maps(x, config, graph)
    report(callback, 4, 4, "done")
    return ModelReport(
        files=files, labels=labels, class_names=dataset.class_names, features=x,
        probabilities=probs.astype(np.float32), predictions=predictions,
        model_classes_match=matched is not None, model_probabilities=model_probs,
        probability_source=source, embedding=embedding, embedding_method=method, pca=pca,
        label_issues=issues, outliers=outliers, confusion=confusion_matrix(labels, predictions, k),
        feature_duplicates=pairs, skipped=[*dataset.skipped, *feats.skipped],
        summary=summary_sentence(len(files), len(issues), len(feats.skipped)),
        feature_layer=feats.layer, model_key=model.key, _model=weakref.ref(model), graph=graph)


def _maps(x: np.ndarray, config: ModelReportConfig,
          graph: NeighbourGraph | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """``(pca, embedding, "umap" or "pca")``."""
    pca = embedding_pca(x)
    if not config.use_umap:
        return pca, pca, "pca"
    return pca, embedding_umap(x, n_neighbors=config.umap_neighbours,
                               min_dist=config.umap_min_dist, n_epochs=config.umap_epochs,
                               seed=config.seed, graph=graph), "umap"


def summary_sentence(n: int, n_issues: int, n_unreadable: int = 0) -> str:
    """``"23 of 1,534 images (1.5 %) look mislabelled."`` (and the unreadable files, if any)."""
    verb = "looks" if n_issues == 1 else "look"
    text = (f"{n_issues:,} of {n:,} {'image' if n == 1 else 'images'} "
            f"({100 * n_issues / max(n, 1):.1f} %) {verb} mislabelled.")
    if n_unreadable:
        text += f" {n_unreadable:,} unreadable {'file was' if n_unreadable == 1 else 'files were'}"
        text += " skipped."
    return text


def _chosen_files(dataset: Dataset, config: ModelReportConfig) -> list[DatasetFile]:
    files = dataset.files_in(config.split)
    if not files:
        raise InvalidDatasetError(f"The data set '{dataset.name}' has no images in this split; "
                                  "choose another split.")
    if config.max_images is not None and len(files) > config.max_images:
        keep = np.random.default_rng(config.seed).choice(len(files), config.max_images,
                                                         replace=False)
        files = [files[i] for i in sorted(keep)]
    return files


def _cache_dir(dataset: Dataset, cache_dir) -> Path | None:
    if cache_dir is not None:
        return Path(cache_dir)
    return dataset.folder / CACHE_FOLDER if dataset.folder is not None else None


def _class_order(model_classes, dataset_classes) -> list[int] | None:
    """For each data set class, the model's output column; None when the classes differ."""
    model_classes = [str(c) for c in model_classes]
    if sorted(model_classes) != sorted(dataset_classes):
        return None
    return [model_classes.index(c) for c in dataset_classes]


def _out_of_fold_or_explain(x, labels, k, config, name) -> np.ndarray:
    counts = np.bincount(labels, minlength=k)
    if (counts >= 2).sum() < 2:
        raise InvalidDatasetError(
            f"'{name}' needs at least two classes with two or more images each in this split to "
            "check its labels; choose all splits or add images.")
    probs, _ = out_of_fold_probabilities(x, labels, k, folds=config.folds, seed=config.seed,
                                         regularisation=config.regularisation,
                                         max_iter=config.max_iter)
    return probs


# ------------------------------------------------------------------------------ features
def as_explorable(model):
    """``model`` as an ``ExplorableModel`` (a Keras model gets raw 0-255 input at its size).

    Raises:
        InvalidModelError: neither a Keras model nor an ``ExplorableModel``.
    """
    import keras

    from engine.models.explorable import ExplorableModel

    if isinstance(model, ExplorableModel):
        return model
    if not isinstance(model, keras.Model) or not model.inputs:
        raise InvalidModelError("The model report needs a loaded image classifier; load a "
                                "model first.")
    shape = model.inputs[0].shape
    if len(shape) != 4 or None in tuple(shape[1:3]):
        raise InvalidModelError(f"The model '{model.name}' does not say its input size; load it "
                                "with an input size or as a model file.")
    units = int(model.outputs[0].shape[-1])
    return ExplorableModel(model, name=model.name, class_names=[str(i) for i in range(units)],
                           preprocessing="raw", input_size=(int(shape[1]), int(shape[2])))


def feature_layer(network) -> str:
    """The path of the classifier head: the last layer with weights on the way back from the
    output past activations, reshapes and dropout (``"dense"``, ``"mobilenet/conv_preds"``).

    Raises:
        InvalidModelError: no such layer (a model with no weights before its output).
    """
    from engine.models.graph import computing_nodes, functional_graph, is_graph_model
    from engine.models.layers import SEPARATOR

    def walk(graph, tensor, prefix):
        producer = {id(t): node for node in computing_nodes(graph) for t in node.outputs}
        while id(tensor) in producer:
            node = producer[id(tensor)]
            op = node.operation
            if is_graph_model(op):
                inner = functional_graph(op)
                return walk(inner, inner.outputs[0], prefix + op.name + SEPARATOR)
            if type(op).__name__ not in _PASS_THROUGH and getattr(op, "weights", None):
                return prefix + op.name
            if not node.input_tensors:
                return None
            tensor = node.input_tensors[0]
        return None

    graph = functional_graph(network)
    path = walk(graph, graph.outputs[0], "") if graph is not None else None
    if path is None:
        raise InvalidModelError(
            f"The model '{network.name}' has no classifier layer (a dense or convolution layer "
            "with weights) before its output, so it has no features to compare images by.")
    return path


def dataset_features(dataset: Dataset, model, *, files: list[DatasetFile] | None = None,
                     batch_size: int = 64, callback: Progress | None = None,
                     cache_dir: str | os.PathLike | None = None,
                     with_probabilities: bool = False, use_cache: bool = True) -> Features:
    """The penultimate features of the data set's images, streamed through ``tf.data``.

    Args:
        dataset: the data set.
        model: an ``ExplorableModel`` (or a Keras model, see ``model_report``).
        files: the images (default: every file of the data set).
        batch_size: images per forward pass.
        callback: ``callback(done, total, "computing features")`` per batch.
        cache_dir: folder of the ``.npz`` cache (None: memory only); the cache key is the
            model's identity, the data set's content key and the files.
        with_probabilities: also keep the model's own output probabilities (same pass).
        use_cache: False computes them again (and refreshes both caches).

    Returns:
        ``Features``; files that could not be read are left out and listed in ``skipped``.

    Raises:
        InvalidModelError: no classifier head (``feature_layer``).
        InvalidDatasetError: not one file could be read.
    """
    model = as_explorable(model)
    files = list(dataset.files if files is None else files)
    layer = feature_layer(model.keras_model)
    key = _features_key(model, dataset, files, layer, with_probabilities)
    path = None if cache_dir is None else Path(cache_dir) / f"features-{key}.npz"

    def build() -> Features:
        cached = _read_cache(path, files, layer) if use_cache else None
        if cached is not None:
            return cached
        computed = _compute_features(dataset, model, files, layer, batch_size, callback,
                                     with_probabilities)
        _write_cache(path, computed, files)
        return computed

    result = _memory.get(key) if use_cache else None
    if result is not None:
        result = replace(result, from_cache=True)
    elif not use_cache:
        result = build()
        _memory.put(key, result)
    else:
        result = _memory.get_or_build(key, build)
    # The cache holds paths; the labels are the data set's of now (relabelling keeps features).
    kept = {f.path for f in result.files}
    return replace(result, files=[f for f in files if f.path in kept])


# The features of the last few (model, files) asked for; the disk cache holds the rest.
_memory: "BoundedCache[Features]" = BoundedCache(4)


def _features_key(model, dataset, files, layer, with_probabilities) -> str:
    # The image root too: two demo sets of other seeds have the same file list and key.
    digest = hashlib.sha1(f"{CACHE_VERSION}\0{model.key}\0{dataset.key}\0{dataset.image_root}\0"
                          f"{layer}\0"
                          f"{tuple(model.input_size)}\0{with_probabilities}".encode())
    digest.update("\0".join(f.path for f in files).encode())
    return digest.hexdigest()[:20]


def _compute_features(dataset, model, files, layer, batch_size, callback,
                      with_probabilities) -> Features:
    """Stream the files in batches; a file that fails to decode is found, listed and left out,
    and the stream goes on after it."""
    import tensorflow as tf

    from engine.features import _extractor, input_key
    from engine.models.graph import output_op

    out_path = output_op(model.keras_model)[0] if with_probabilities else None
    keys = (out_path,) if out_path else ()
    h, w = model.input_size
    extractor = _extractor(model, keys, (layer,), (h, w, 3))
    total = math.ceil(len(files) / batch_size)
    feats, outs, skipped, kept, todo = [], [], [], [], list(files)
    while todo:
        stream = tf_dataset(replace(dataset, files=tuple(todo)), None, (h, w), batch_size,
                            shuffle=False)
        done = 0
        try:
            for images, _ in stream:
                arrays = extractor.assemble([extractor(images)])
                feats.append(_pooled(arrays[input_key(layer)]))
                if out_path:
                    outs.append(_probabilities(arrays[out_path], model.output_activation))
                kept.extend(todo[done:done + len(images)])
                done += len(images)
                report(callback, min(len(kept) // batch_size, total), total,
                       "computing features")
            todo = []
        except (tf.errors.OpError, InvalidImageError):
            bad = _unreadable(dataset, todo[done:done + batch_size])
            skipped.extend(bad)
            gone = {s.path for s in bad}
            todo = [f for f in todo[done:] if f.path not in gone]
    if not kept:
        raise InvalidDatasetError(f"No image of '{dataset.name}' could be read; check the "
                                  "files (the skipped ones are listed with the reason).")
    report(callback, total, total, "computing features")
    return Features(files=kept, features=np.concatenate(feats).astype(np.float32),
                    model_probabilities=np.concatenate(outs) if outs else None,
                    skipped=skipped, layer=layer)


def _pooled(x: np.ndarray) -> np.ndarray:
    """(B, d) features; a (B, h, w, c) head input is averaged over its positions."""
    x = np.asarray(x, np.float32)
    return x.reshape(len(x), -1, x.shape[-1]).mean(1) if x.ndim > 2 else x


def _probabilities(out: np.ndarray, activation: str) -> np.ndarray:
    from engine.models.explorable import _to_probabilities

    return np.asarray(_to_probabilities(out.reshape(len(out), -1), activation), np.float32)


def _unreadable(dataset: Dataset, files: list[DatasetFile]) -> list[SkippedFile]:
    """The files of a batch that failed to stream: each is decoded alone, as ``load_image``
    and as ``tf_dataset`` would.

    Raises:
        InvalidDatasetError: every file reads alone (the failure was not the files').
    """
    import tensorflow as tf

    from engine.images import load_image

    bad = []
    for f in files:
        try:
            load_image(dataset.path_of(f))
            for _ in tf_dataset(replace(dataset, files=(f,)), None, (8, 8), 1, shuffle=False):
                pass
        except (InvalidImageError, OSError, tf.errors.OpError) as exc:
            reason = str(exc) if isinstance(exc, InvalidImageError) else "it cannot be decoded"
            bad.append(SkippedFile(f.path, f"{reason} (left out of the model report)"))
    if not bad:
        raise InvalidDatasetError(f"Reading the images of '{dataset.name}' failed, though each "
                                  "reads alone; make the report again.")
    return bad


def _read_cache(path: Path | None, files, layer) -> Features | None:
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            kept = set(data["kept"].tolist())
            probs = data["model_probabilities"] if "model_probabilities" in data else None
            skipped = [SkippedFile(p, r) for p, r in zip(data["skipped_path"].tolist(),
                                                         data["skipped_reason"].tolist())]
            return Features(files=[f for f in files if f.path in kept],
                            features=data["features"], model_probabilities=probs,
                            skipped=skipped, layer=layer, from_cache=True)
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache file is computed again


def _write_cache(path: Path | None, result: Features, files) -> None:
    if path is None:
        return
    arrays = {"features": result.features, "kept": np.array([f.path for f in result.files]),
              "skipped_path": np.array([s.path for s in result.skipped], dtype=str),
              "skipped_reason": np.array([s.reason for s in result.skipped], dtype=str)}
    if result.model_probabilities is not None:
        arrays["model_probabilities"] = result.model_probabilities
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- the graph
@dataclass(frozen=True)
class NeighbourGraph:
    """Every image's ``k`` nearest other images, nearest first (``neighbour_graph``).

    Attributes:
        indices: (N, k) int64 rows of the features; never the row itself.
        distances: (N, k) float64, ascending per row: Euclidean, or the cosine distance
            ``1 - cos`` when ``metric`` is ``"cosine"``.
        metric: ``"euclidean"`` or ``"cosine"``.
    """

    indices: np.ndarray
    distances: np.ndarray
    metric: str = "euclidean"

    @property
    def k(self) -> int:
        return self.indices.shape[1]


def neighbour_graph(features: np.ndarray, k: int, metric: str = "euclidean") -> NeighbourGraph:
    """The exact ``k`` nearest neighbours of every row among the other rows.

    scikit-learn's brute-force search, in chunks (GEMM, a heap per row; memory ``O(chunk x N)``):
    on the penultimate features of a CNN (128 and more dimensions) it is several times faster
    than its ball or k-d tree, and than a tree on the first 32-64 principal components, which
    is also approximate. The cosine neighbours are the Euclidean ones of the unit-length rows
    (``|a - b|^2 = 2 (1 - cos)``); an all-zero row is at cosine distance 1 from every other
    row (as in scikit-learn's ``cosine_distances``), but for another all-zero row (0: the same).

    Args:
        features: (N, d), N >= 2.
        k: neighbours per row (clipped to N - 1).
        metric: ``"euclidean"`` or ``"cosine"``.

    Returns:
        The ``NeighbourGraph``.
    """
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(features, np.float64)  # as fast as float32 here, and exact to ~1e-12
    k = max(1, min(k, len(x) - 1))
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        # An all-zero row becomes a unit vector on an axis of its own: at cosine distance 1
        # (|a - b|^2 = 2) from every other row.
        x = np.hstack([x / np.where(norms > 0, norms, 1), norms == 0])
    with one_thread():
        distances, indices = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(
            x).kneighbors()
    distances = np.asarray(distances, np.float64)
    if metric == "cosine":
        distances = distances ** 2 / 2
    return NeighbourGraph(indices.astype(np.int64), distances, metric)


@contextlib.contextmanager
def one_thread():
    """BLAS and OpenMP kernels (numpy, scipy, scikit-learn) on one thread inside."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


# ------------------------------------------------------------------------ probabilities
def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, n_classes: int, *,
                              folds: int = 5, seed: int = 0, regularisation: float = 1.0,
                              max_iter: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Cross-validated class probabilities: each row's from a classifier fitted without it.

    A standardised multinomial logistic regression, ``cross_val_predict`` over stratified
    folds; the number of folds is clipped to the smallest class that has two or more images
    (a one-image class is allowed: the folds that do not train on it give it probability 0).

    Args:
        features: (N, d).
        labels: (N,) int in [0, n_classes).
        n_classes: k; classes without images get a column of zeros.
        folds: at most this many folds (>= 2).
        seed: the folds' shuffle.
        regularisation: ``C`` of the logistic regression.
        max_iter: its iteration limit.

    Returns:
        ``(probabilities (N, k) float32, fold (N,) int)``: row i's probabilities come from the
        classifier fitted on the rows whose fold is not ``fold[i]``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    present, compact = np.unique(labels, return_inverse=True)
    counts = np.bincount(compact)
    n_splits = int(max(2, min(folds, counts[counts >= 2].min())))
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a one-image class: sklearn warns, the result is right
        warnings.simplefilter("ignore")
        splits = list(splitter.split(features, compact))
        classifier = make_pipeline(StandardScaler(), LogisticRegression(
            C=regularisation, max_iter=max_iter))
        compact_probs = cross_val_predict(classifier, features, compact, cv=splits,
                                          method="predict_proba")
    fold = np.empty(len(labels), np.int64)
    for i, (_, test) in enumerate(splits):
        fold[test] = i
    probs = np.zeros((len(labels), n_classes), np.float32)
    probs[:, present] = compact_probs
    return probs, fold


def label_issues(labels: np.ndarray, probabilities: np.ndarray, files: list[str],
                 class_names) -> list[LabelIssue]:
    """cleanlab's ``find_label_issues``, ranked by self-confidence (most suspect first).

    Classes without images are left out of the search; an image that is the only one of its
    class cannot be checked against others and is never flagged.
    """
    from cleanlab.filter import find_label_issues

    labels = np.asarray(labels)
    present, compact = np.unique(labels, return_inverse=True)
    if len(present) < 2:
        return []
    probs = probabilities[:, present].astype(np.float64)
    probs = probs / np.clip(probs.sum(1, keepdims=True), 1e-12, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranked = find_label_issues(compact, probs, return_indices_ranked_by="self_confidence",
                                   n_jobs=1)
    alone = np.bincount(compact)[compact] < 2
    return [LabelIssue(int(i), files[i], class_names[labels[i]],
                       class_names[present[int(probs[i].argmax())]], float(probs[i, compact[i]]))
            for i in ranked if not alone[i]]


def outlier_rows(features: np.ndarray, labels: np.ndarray, files: list[str],
                 neighbours: int = 10) -> list[Outlier]:
    """cleanlab's out-of-distribution score of every image, least typical first.

    The score is the lower of two: against the whole set, and against the images of its own
    class (an image of a shape the model confuses with another class, slipped into a third
    class's folder, is typical of the set but not of that folder). Both are cleanlab's
    ``exp(-mean cosine distance to the k nearest / its median)``, in [0, 1], computed as
    cleanlab's ``OutOfDistribution`` does, on the neighbours of ``neighbour_graph`` (exact, as
    cleanlab's, and several times faster than its own cosine search).
    """
    labels = np.asarray(labels)
    scores = _ood_scores(features, neighbours)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) > 2:
            scores[members] = np.minimum(scores[members],
                                         _ood_scores(features[members], neighbours))
    order = np.argsort(scores, kind="stable")
    return [Outlier(int(i), files[i], float(scores[i])) for i in order]


def _ood_scores(features: np.ndarray, neighbours: int) -> np.ndarray:
    """cleanlab's ``OutOfDistribution().fit_score(features=...)`` (``k`` neighbours, cosine,
    exact duplicates at distance 0), its steps on a ``neighbour_graph``."""
    from cleanlab.internal.neighbor.knn_graph import correct_knn_distances_and_indices
    from cleanlab.internal.outlier import correct_precision_errors
    from cleanlab.outlier import transform_distances_to_scores

    if len(features) < 2:
        return np.ones(len(features))
    graph = neighbour_graph(features, neighbours, "cosine")
    distances, _ = correct_knn_distances_and_indices(features, graph.distances.copy(),
                                                     graph.indices.copy())
    mean = distances.mean(1)
    scale = float(max(np.median(mean), 100 * np.finfo(np.float64).eps))
    scores = transform_distances_to_scores(mean, t=1, scaling_factor=scale)
    return np.asarray(correct_precision_errors(scores, mean, "cosine"), np.float64)


def feature_duplicates(features: np.ndarray, files: list[str], ratio: float = 0.1,
                       max_pairs: int = 500, *,
                       graph: NeighbourGraph | None = None) -> list[FeaturePair]:
    """Pairs at most ``ratio`` x the median nearest-neighbour distance apart, closest first.

    ``graph``: the features' Euclidean ``neighbour_graph`` (searched here when None). The pairs
    are read from it; only an image whose k listed neighbours are all within the radius is
    searched again, for the rest of its pairs.
    """
    from sklearn.neighbors import NearestNeighbors

    if len(features) < 2:
        return []
    if graph is None or graph.metric != "euclidean":
        graph = neighbour_graph(features, 1)
    radius = ratio * float(np.median(graph.distances[:, 0]))
    rows, cols = np.nonzero(graph.distances <= radius)
    found = [(rows, graph.indices[rows, cols], graph.distances[rows, cols])]
    crowded = np.flatnonzero(graph.distances[:, -1] <= radius)
    if len(crowded):
        distances, indices = NearestNeighbors(algorithm="brute").fit(features).radius_neighbors(
            features[crowded], radius=radius)
        found += [(np.full(len(i), a), i, d) for a, i, d in zip(crowded, indices, distances)]
    pairs = {(int(min(a, b)), int(max(a, b))): float(d)
             for part in found for a, b, d in zip(*part) if a != b}
    ranked = sorted(pairs.items(), key=lambda item: (item[1], item[0]))[:max_pairs]
    return [FeaturePair(a, b, files[a], files[b], d) for (a, b), d in ranked]


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """(k, k) int counts: row the given label, column the prediction."""
    out = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(out, (np.asarray(labels), np.asarray(predictions)), 1)
    return out


# ------------------------------------------------------------------------------ embedding
def embedding_pca(features: np.ndarray) -> np.ndarray:
    """(N, 2) float32: the features on their first two principal components (instant)."""
    x = np.asarray(features, np.float64)
    x = x - x.mean(0)
    out = np.zeros((len(x), 2), np.float32)
    if len(x) < 2:
        return out
    # The eigenvectors of the (d, d) covariance: one pass over the rows, not an SVD of them.
    _, vectors = np.linalg.eigh(x.T @ x)
    top = vectors[:, ::-1][:, :2]
    out[:, :top.shape[1]] = x @ top
    return out


def embedding_umap(features: np.ndarray, *, n_neighbors: int = 15, min_dist: float = 0.1,
                   n_epochs: int = 200, seed: int = 0,
                   graph: NeighbourGraph | None = None) -> np.ndarray:
    """(N, 2) float32 UMAP of the features (one thread, seeded: the same input, the same map).

    The neighbours UMAP starts from are exact (``graph``, the features' Euclidean
    ``neighbour_graph`` with ``n_neighbors - 1`` or more neighbours; searched here when None or
    smaller): UMAP's own search is a Python loop over every pair below 4,096 images and, above,
    an approximate search that numba compiles for about 50 s on its first use. UMAP itself
    still compiles on its first call in a process (about 5 s). Very small sets (fewer than 4
    images) get the PCA map.
    """
    if len(features) < 4:
        return embedding_pca(features)
    import umap

    x = np.asarray(features, np.float32)
    k = max(2, min(n_neighbors, len(x) - 1))
    if graph is None or graph.metric != "euclidean" or graph.k < k - 1:
        graph = neighbour_graph(x, k - 1)
    itself = np.arange(len(x))[:, None]  # UMAP counts each point as its own first neighbour
    indices = np.hstack([itself, graph.indices[:, :k - 1]])
    distances = np.hstack([np.zeros((len(x), 1)), graph.distances[:, :k - 1]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(n_components=2, n_neighbors=k, min_dist=min_dist, n_epochs=n_epochs,
                            random_state=seed, n_jobs=1,
                            precomputed_knn=(indices, distances, None))
        return np.asarray(reducer.fit_transform(x), np.float32)


# ------------------------------------------------------------------------------ neighbours
# One NearestNeighbors index per report, gone with the report.
_indexes: "PerModelCache[object]" = PerModelCache(1)


def _index(report_: ModelReport):
    from sklearn.neighbors import NearestNeighbors

    return _indexes.get_or_build(report_, "index",
                                 lambda: NearestNeighbors().fit(report_.features))


def nearest_to_index(report_: ModelReport, i: int, k: int = 8) -> list[Neighbour]:
    """The ``k`` images nearest to image ``i`` of the report (itself left out)."""
    if not 0 <= i < len(report_.files):
        raise IndexError(f"The report has {len(report_.files)} images, not an image {i}.")
    graph = report_.graph
    if graph is not None and k <= graph.k:  # the report's own search
        return [Neighbour(int(j), report_.files[j].path,
                          report_.class_names[report_.labels[j]], float(d))
                for j, d in zip(graph.indices[i, :k], graph.distances[i, :k])]
    rows = _neighbours(report_, report_.features[i:i + 1], k + 1)
    return [r for r in rows if r.index != i][:k]


def nearest(report_: ModelReport, image, k: int = 8, model=None) -> list[Neighbour]:
    """The ``k`` images of the report most like ``image`` in feature space, nearest first.

    Args:
        report_: a ``model_report`` result.
        image: (H, W, 3) uint8 RGB of any size (an upload), resized as the feature pass does.
        k: how many.
        model: the model of the report (default: the one it was made with, if still loaded).

    Raises:
        InvalidModelError: the report's model is gone and none was given, or another model.
        InvalidImageError: not an (H, W, 3) image.
    """
    import tensorflow as tf

    from engine.features import _extractor, input_key

    model = as_explorable(model if model is not None else _report_model(report_))
    if model.key != report_.model_key:
        raise InvalidModelError("These features come from another model; open the model the "
                                "report was made with, or make the report again.")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise InvalidImageError(f"The image has shape {image.shape}; expected (height, width, "
                                "3) RGB.")
    h, w = model.input_size
    x = tf.clip_by_value(tf.image.resize(tf.constant(image, tf.uint8)[None], (h, w),
                                         antialias=True), 0.0, 255.0).numpy()
    extractor = _extractor(model, (), (report_.feature_layer,), (h, w, 3))
    query = _pooled(extractor.assemble([extractor(x)])[input_key(report_.feature_layer)])
    return _neighbours(report_, query, k)


def _report_model(report_: ModelReport):
    model = report_._model() if report_._model is not None else None
    if model is None:
        raise InvalidModelError("The model this report was made with is no longer loaded; "
                                "pass it to nearest(..., model=...).")
    return model


def _neighbours(report_: ModelReport, query: np.ndarray, k: int) -> list[Neighbour]:
    k = max(0, min(k, len(report_.files)))
    if k == 0:
        return []
    distances, indices = _index(report_).kneighbors(query, n_neighbors=k)
    return [Neighbour(int(i), report_.files[i].path,
                      report_.class_names[report_.labels[i]], float(d))
            for d, i in zip(distances[0], indices[0])]


__all__ = ["CACHE_FOLDER", "FeaturePair", "Features", "LabelIssue", "ModelReport",
           "ModelReportConfig", "NEAREST_KEPT", "Neighbour", "NeighbourGraph", "Outlier",
           "PROBABILITY_SOURCES", "as_explorable", "confusion_matrix", "dataset_features",
           "embedding_pca", "embedding_umap", "feature_duplicates", "feature_layer",
           "label_issues", "model_report", "nearest", "nearest_to_index", "neighbour_graph",
           "one_thread", "out_of_fold_probabilities", "outlier_rows", "summary_sentence"]
