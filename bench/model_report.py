"""Benchmark: the model report's feature pass and the whole report vs a plain Keras forward pass.

Writes a demo shapes set (``export_demo``, seed 4243: images the demo model
never trained on), loads the bundled demo model and times, in the same run:

- ``plain``: the plain Keras way over the same files: ``tf.data`` reads, decodes and batches
  them, ``keras_model.predict`` runs the network (to its output; nothing is kept but that);
- ``features``: ``engine.data.model_report.dataset_features`` (``tf_dataset`` streaming, the
  graph runner stopping at the classifier head's input), caches off;
- ``report``: ``model_report`` (features, out-of-fold logistic regression, cleanlab label
  issues and outliers, near-duplicates, PCA and UMAP), caches off; UMAP's one-off numba
  compilation is done before (``umap_first_call_s``) and not counted;
- ``report_small``: the same report on a fifth of the images (``max_images``), for how the
  time grows (linear: 5).

Goals: features / plain <= 1.3; report / features <= 3; report / report_small <= 5.5 (near
linear: 5; ``goals_met`` says which are). ``analysis_s`` splits the report's time after the feature
pass into its steps at both sizes (on the cached features, one thread, as ``model_report`` runs
them), so a step that grows faster than the images shows. Prints JSON. ``plain`` and
``features`` run in turns, and so do the two reports (medians): on shared cores the ratios are
what counts.

    python bench/model_report.py [--images 5000] [--repeats 3] [--keep /path]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import emit, parser  # noqa: E402
from engine.data import ModelReportConfig, export_demo, model_report  # noqa: E402
from engine.data.model_report import dataset_features, embedding_umap  # noqa: E402

mr = sys.modules["engine.data.model_report"]  # the module (``model_report`` is the function)
from engine.models import load_model  # noqa: E402

SEED = 4243
BATCH = ModelReportConfig().batch_size
GOALS = {"features_over_plain": 1.3, "report_over_features": 3.0, "growth_5x_images": 5.5}


def plain_forward(model, paths: list[str]) -> int:
    """The plain Keras way: tf.data decodes and batches the files, ``predict`` runs them."""
    import tensorflow as tf

    h, w = model.input_size

    def decode(path):
        image = tf.io.decode_png(tf.io.read_file(path), channels=3)
        return tf.image.resize(image, (h, w), antialias=True)

    ds = (tf.data.Dataset.from_tensor_slices(paths)
          .map(decode, num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH)
          .map(model.preprocess).prefetch(tf.data.AUTOTUNE))
    return len(model.keras_model.predict(ds, verbose=0))


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def analysis_steps(features: np.ndarray, labels: np.ndarray, config: ModelReportConfig) -> dict:
    """Seconds of each step of the report after the feature pass, as ``model_report`` runs it."""
    paths = [str(i) for i in range(len(features))]
    k = int(labels.max()) + 1
    out, graph = {}, None

    def step(name, fn):
        start = time.perf_counter()
        result = fn()
        out[name] = round(time.perf_counter() - start, 3)
        return result

    with mr.one_thread():
        probs = step("out_of_fold", lambda: mr.out_of_fold_probabilities(
            features, labels, k, folds=config.folds, seed=config.seed)[0])
        step("label_issues", lambda: mr.label_issues(labels, probs, paths, [str(i) for i in
                                                                            range(k)]))
        step("outliers", lambda: mr.outlier_rows(features, labels, paths,
                                                 config.outlier_neighbours))
        graph = step("neighbour_graph", lambda: mr.neighbour_graph(
            features, max(config.umap_neighbours - 1, mr.NEAREST_KEPT)))
        step("feature_duplicates", lambda: mr.feature_duplicates(features, paths, graph=graph))
        step("umap", lambda: mr.embedding_umap(features, graph=graph, seed=config.seed))
    return out


def run(n: int, repeats: int, keep: Path | None) -> dict:
    work = keep or Path(tempfile.mkdtemp(prefix="model_report_bench_"))
    try:
        start = time.perf_counter()
        dataset = export_demo(work / "data", n, seed=SEED)
        model = load_model("demo")
        setup_s = time.perf_counter() - start
        paths = [str(dataset.path_of(f)) for f in dataset.files]
        # numba compiles UMAP on its first call in a process.
        umap_first = _timed(lambda: embedding_umap(np.random.default_rng(0).normal(
            size=(200, 16)).astype(np.float32)))
        # Warm both: the file cache, tf.data, the traced graphs.
        plain_forward(model, paths[:BATCH])
        dataset_features(dataset, model, files=list(dataset.files[:BATCH]), use_cache=False)

        plain, feats = [], []
        for _ in range(repeats):
            plain.append(_timed(lambda: plain_forward(model, paths)))
            feats.append(_timed(lambda: dataset_features(dataset, model, use_cache=False,
                                                         with_probabilities=True)))
        plain_s, features_s = statistics.median(plain), statistics.median(feats)
        config = ModelReportConfig(use_cache=False, max_images=None)
        small = ModelReportConfig(use_cache=False, max_images=n // 5)
        full = model_report(dataset, model, config=config)  # also warms every step
        reports, smalls = [], []
        for _ in range(repeats):
            reports.append(_timed(lambda: model_report(dataset, model, config=config)))
            smalls.append(_timed(lambda: model_report(dataset, model, config=small)))
        report_s, report_small_s = statistics.median(reports), statistics.median(smalls)
        ratios = {"features_over_plain": features_s / plain_s,
                  "report_over_features": report_s / features_s,
                  "growth_5x_images": report_s / report_small_s}
        fifth = np.sort(np.random.default_rng(SEED).choice(len(full.files), len(full.files) // 5,
                                                            replace=False))
        return {
            "images": len(paths), "size": list(model.input_size), "repeats": repeats,
            "setup_s (export + load, not timed)": round(setup_s, 1),
            "umap_first_call_s (numba compilation, not counted)": round(umap_first, 1),
            "plain_keras_forward_s": round(plain_s, 3),
            "feature_pass_s": round(features_s, 3),
            "ratio_features_over_plain": round(features_s / plain_s, 3),
            "goal_features": "<= 1.3",
            "report_s": round(report_s, 3),
            "ratio_report_over_features": round(report_s / features_s, 3),
            "goal_report": "<= 3",
            f"report_{n // 5}_images_s": round(report_small_s, 3),
            "ratio_report_full_over_fifth": round(report_s / report_small_s, 2),
            "goal_growth": f"<= {GOALS['growth_5x_images']} (linear: 5)",
            "goals_met": {name: bool(ratios[name] <= goal) for name, goal in GOALS.items()},
            "analysis_s": {
                f"{len(fifth)}_images": analysis_steps(full.features[fifth], full.labels[fifth],
                                                       config),
                f"{len(full.files)}_images": analysis_steps(full.features, full.labels, config)},
            "label_issues": len(full.label_issues), "feature_duplicates":
                len(full.feature_duplicates), "summary": full.summary,
            "load_average_1min": round(os.getloadavg()[0], 2),
        }
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    args = parser(__doc__, images=5000, repeats=3, keep=True).parse_args()
    emit("model_report", result=run(args.images, args.repeats, args.keep))


if __name__ == "__main__":
    main()
