"""The model report: planted label errors and outliers found, each part against an independent
computation (brute-force neighbours, refitted folds, sklearn's PCA, Keras' own sub-model for the
features, hand counts), the feature cache, and the data sets that are not the model's."""

from __future__ import annotations

import importlib

import keras
import numpy as np
import pytest
from PIL import Image

from engine.data import (
    CLASS_NAMES,
    ModelReportConfig,
    embedding_pca,
    export_demo,
    import_folder,
    make_shape_image,
    model_report,
    nearest,
    nearest_to_index,
)
from engine.errors import InvalidDatasetError, InvalidModelError
from engine.images import load_image
from engine.models import load_model
from tests.engine.dataset_helpers import write_tree

# the module (``engine.data.model_report`` is also the function's name in ``engine.data``)
mr = importlib.import_module("engine.data.model_report")
FAST = ModelReportConfig(use_umap=False)
#: shapes seeds no other set of the project uses (the demo model trained on seed 0)
SEED = 4711


@pytest.fixture(scope="module")
def demo():
    return load_model("demo")


def _draw_tree(root, per_class: int, *, seed: int = SEED):
    """``per_class`` shapes of each class, in class folders (``circle/00012.png``)."""
    for i in range(per_class * len(CLASS_NAMES)):
        label = i % len(CLASS_NAMES)
        image, _ = make_shape_image(label, size=64, seed=(seed, i))
        (root / CLASS_NAMES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / CLASS_NAMES[label] / f"{i:05d}.png")


def _flip(root, share: float, seed: int = SEED) -> set[str]:
    """Move ``round(share * n)`` images, chosen by ``seed``, into another class's folder;
    returns their new relative paths."""
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    rng = np.random.default_rng(seed)
    moved = set()
    for i in sorted(rng.choice(len(files), round(share * len(files)), replace=False)):
        cls, name = files[i].split("/")
        other = CLASS_NAMES[(CLASS_NAMES.index(cls) + 1 + int(rng.integers(5))) % 6]
        (root / cls / name).rename(root / other / name)
        moved.add(f"{other}/{name}")
    return moved


def _precision_recall(found: set, truth: set) -> tuple[float, float]:
    hits = len(found & truth)
    return hits / max(len(found), 1), hits / max(len(truth), 1)


# ---------------------------------------------------------------------- planted errors
# The acceptance checks at 1,200 images run in the default suite: 5-30 s each on two shared
# CPU cores (drawing the images is half of it).
def _planted_check(tmp_path, demo, per_class: int):
    _draw_tree(tmp_path / "set", per_class)
    clean = model_report(import_folder(tmp_path / "set"), demo, config=FAST)
    assert len(clean.label_issues) < 0.01 * len(clean.files)
    flipped = _flip(tmp_path / "set", 0.05)
    report = model_report(import_folder(tmp_path / "set"), demo, config=FAST)
    precision, recall = _precision_recall({r.file for r in report.label_issues}, flipped)
    assert precision >= 0.8 and recall >= 0.8, (precision, recall)


def test_planted_label_errors_are_found_1200(tmp_path, demo):
    _planted_check(tmp_path, demo, per_class=200)  # 1,200 images, 60 flipped


def _outlier_check(tmp_path, demo, per_class: int, novel_per_class: int):
    _draw_tree(tmp_path / "set", per_class)
    # Every novel shape slipped into the star folder. (Into the folder of a shape it looks
    # like to the model, it is typical there: hexagons among circles rank near 15 %.)
    for i in range(novel_per_class * 6):
        image, _ = make_shape_image(i % 6, size=64, seed=(SEED + 1, i), family="novel")
        Image.fromarray(image).save(tmp_path / "set" / "star" / f"novel_{i:03d}.png")
    report = model_report(import_folder(tmp_path / "set"), demo, config=FAST)
    top = {r.file for r in report.outliers[:int(0.05 * len(report.files))]}
    novel = {f.path for f in report.files if "novel_" in f.path}
    ranks = {r.file: i for i, r in enumerate(report.outliers)}
    assert novel <= top, sorted((ranks[f], f) for f in novel)


def test_novel_shapes_in_a_class_folder_are_the_top_outliers_1200(tmp_path, demo):
    _outlier_check(tmp_path, demo, per_class=200, novel_per_class=4)  # 1,224 images, 24 novel


# ---------------------------------------------------------------------- parts vs references
@pytest.fixture(scope="module")
def small_report(tmp_path_factory, demo):
    root = tmp_path_factory.mktemp("small")
    _draw_tree(root / "set", 8, seed=SEED + 2)
    dataset = import_folder(root / "set")
    return dataset, model_report(dataset, demo, config=FAST, cache_dir=root / "cache")


def test_neighbours_match_brute_force_distances(small_report, demo):
    dataset, report = small_report
    x = report.features.astype(np.float64)
    for i in (0, 7, 30):
        brute = np.linalg.norm(x - x[i], axis=1)
        brute[i] = np.inf
        rows = nearest_to_index(report, i, k=5)
        assert [r.index for r in rows] == list(np.argsort(brute, kind="stable")[:5])
        np.testing.assert_allclose([r.distance for r in rows], np.sort(brute)[:5], rtol=1e-4)
        assert [r.label for r in rows] == [report.class_names[report.labels[r.index]]
                                           for r in rows]
    # A query image that is one of the files finds itself first, at distance 0.
    image = load_image(dataset.path_of(report.files[11]))
    rows = nearest(report, image, k=3, model=demo)
    assert rows[0].index == 11 and rows[0].distance < 1e-3 * max(rows[1].distance, 1e-6)
    assert nearest(report, image, k=3)[0].index == 11  # the report's own model by default


def test_features_are_the_pooled_input_of_the_classifier_head(small_report, demo):
    dataset, report = small_report
    assert report.feature_layer == "predictions"
    network = demo.keras_model
    head = network.get_layer("predictions")
    sub = keras.Model(network.inputs, head.input)  # Keras' own way, independent of the walker
    images = np.stack([load_image(dataset.path_of(f)) for f in report.files[:6]]).astype(
        np.float32)
    expected = sub.predict(demo.preprocess(images), verbose=0)
    np.testing.assert_allclose(report.features[:6], expected, rtol=1e-4, atol=1e-4)


def test_out_of_fold_probabilities_never_come_from_a_classifier_that_saw_the_row():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 200))
    y = rng.integers(0, 3, 60)  # pure noise: only a classifier that saw a row can know it
    probs, fold = mr.out_of_fold_probabilities(x, y, 3, folds=5, seed=1)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    seen = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    assert seen.predict_proba(x)[np.arange(60), y].mean() > 0.9
    assert probs[np.arange(60), y].mean() < 0.6
    # Each fold's rows again, from a classifier fitted on the other rows only.
    for f in np.unique(fold):
        out = fold == f
        ref = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
            x[~out], y[~out])
        np.testing.assert_allclose(probs[out], ref.predict_proba(x[out]), atol=1e-5)
    assert len(np.unique(fold)) == 5
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)


def test_a_one_image_class_works_and_is_never_flagged(tmp_path, demo):
    _draw_tree(tmp_path / "set", 6, seed=SEED + 3)
    single = tmp_path / "set" / "circle"
    for extra in sorted(single.iterdir())[1:]:
        extra.unlink()
    report = model_report(import_folder(tmp_path / "set"), demo, config=FAST)
    alone = [i for i, f in enumerate(report.files) if f.path.startswith("circle/")]
    assert len(alone) == 1 and report.probabilities.shape == (31, 6)
    # No training fold held the class: it gets probability 0, and the image is not judged.
    assert report.probabilities[alone[0], 0] == 0
    assert all(r.index != alone[0] for r in report.label_issues)
    np.testing.assert_allclose(report.probabilities.sum(1), 1, atol=1e-5)


def test_a_data_set_whose_classes_are_not_the_models(tmp_path, demo):
    for cls in ("apples", "pears", "plums"):
        (tmp_path / "set" / cls).mkdir(parents=True)
    for i in range(18):  # novel shapes 0, 1, 2 under fruit names
        image, _ = make_shape_image(i % 3, size=64, seed=(SEED + 4, i), family="novel")
        Image.fromarray(image).save(tmp_path / "set" / ("apples", "pears", "plums")[i % 3]
                                    / f"{i}.png")
    report = model_report(import_folder(tmp_path / "set"), demo, config=FAST)
    assert not report.model_classes_match and report.model_probabilities is None
    assert report.class_names == ("apples", "pears", "plums")
    assert report.probabilities.shape == (18, 3)
    np.testing.assert_array_equal(report.predictions, report.probabilities.argmax(1))
    assert sorted(report.labels.tolist()) == sorted([i % 3 for i in range(18)])


def test_the_models_own_classes_give_its_predictions_and_confusion(small_report, demo):
    dataset, report = small_report
    assert report.model_classes_match and report.probability_source == "out_of_fold"
    images = [load_image(dataset.path_of(f)) for f in report.files]
    # The folder's classes are sorted by name; the model's columns follow its own order.
    assert report.class_names != tuple(demo.class_names)
    own = demo.probabilities(images)[:, [demo.class_names.index(c) for c in report.class_names]]
    np.testing.assert_allclose(report.model_probabilities, own, atol=2e-3)
    np.testing.assert_array_equal(report.predictions, own.argmax(1))
    hand = np.zeros((6, 6), int)
    for given, predicted in zip(report.labels, report.predictions):
        hand[given, predicted] += 1
    np.testing.assert_array_equal(report.confusion, hand)


def test_the_models_own_probabilities_when_asked_for(small_report, demo):
    dataset, out_of_fold = small_report
    config = ModelReportConfig(use_umap=False, probabilities="model")
    report = model_report(dataset, demo, config=config)
    assert report.probability_source == "model"
    np.testing.assert_array_equal(report.probabilities, out_of_fold.model_probabilities)
    assert not np.allclose(report.probabilities, out_of_fold.probabilities)


def test_an_unreadable_file_is_skipped_and_listed(tmp_path, demo):
    _draw_tree(tmp_path / "set", 4, seed=SEED + 5)
    (tmp_path / "set" / "star" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    dataset = import_folder(tmp_path / "set")
    # One more goes bad after the import: the feature pass finds it, lists it and goes on.
    later = dataset.files[5]
    dataset.path_of(later).write_bytes(b"garbage")
    report = model_report(dataset, demo, config=FAST)
    skipped = {s.path for s in report.skipped}
    assert {"star/broken.png", later.path} <= skipped
    assert len(report.files) == len(dataset.files) - 1
    assert later not in report.files and report.features.shape[0] == len(report.files)
    assert "1 unreadable file was skipped" in report.summary
    # The images after the bad one keep their own features (nothing shifted).
    again = mr.dataset_features(dataset, demo, files=[dataset.files[6]], use_cache=False)
    np.testing.assert_allclose(report.features[5], again.features[0], rtol=1e-5, atol=1e-5)


def test_features_are_cached_on_disk_and_recomputed_when_the_set_changes(tmp_path, demo,
                                                                          monkeypatch):
    _draw_tree(tmp_path / "set", 3, seed=SEED + 6)
    dataset = import_folder(tmp_path / "set")
    first = mr.dataset_features(dataset, demo, cache_dir=tmp_path / "cache")
    assert not first.from_cache and list((tmp_path / "cache").glob("features-*.npz"))
    calls = []
    real = mr._compute_features
    monkeypatch.setattr(mr, "_compute_features", lambda *a: calls.append(1) or real(*a))
    mr._memory.clear()  # a new process: only the disk cache is left
    second = mr.dataset_features(dataset, demo, cache_dir=tmp_path / "cache")
    assert second.from_cache and calls == []
    np.testing.assert_array_equal(second.features, first.features)
    image, _ = make_shape_image(2, size=64, seed=(SEED + 7, 0))
    Image.fromarray(image).save(tmp_path / "set" / "triangle" / "new.png")
    changed = mr.dataset_features(import_folder(tmp_path / "set"), demo,
                                  cache_dir=tmp_path / "cache")
    assert calls == [1] and not changed.from_cache and len(changed.files) == 19


def test_feature_near_duplicates_match_brute_force(tmp_path, demo):
    _draw_tree(tmp_path / "set", 5, seed=SEED + 8)
    copy = tmp_path / "set" / "ring" / "copy.png"
    copy.write_bytes((tmp_path / "set" / "ring" / "00005.png").read_bytes())
    report = model_report(import_folder(tmp_path / "set"), demo, config=FAST)
    x = report.features.astype(np.float64)
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    radius = FAST.duplicate_ratio * np.median(d.min(1))
    brute = {(a, b) for a, b in zip(*np.nonzero(d <= radius)) if a < b}
    assert {(p.index_a, p.index_b) for p in report.feature_duplicates} == brute
    assert ("ring/00005.png", "ring/copy.png") in {(p.a, p.b) for p in
                                                    report.feature_duplicates}


def test_pca_map_matches_sklearn():
    from sklearn.decomposition import PCA

    x = np.random.default_rng(3).normal(size=(40, 7)) * np.arange(1, 8)
    ours, ref = embedding_pca(x), PCA(2).fit_transform(x)
    np.testing.assert_allclose(np.abs(ours), np.abs(ref), rtol=1e-4, atol=1e-4)


def test_a_classifier_head_behind_a_nested_base_and_a_conv_head():
    base_in = keras.Input((8, 8, 3))
    base = keras.Model(base_in, keras.layers.Conv2D(5, 3, name="c")(base_in), name="base")
    inp = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True)(base(inp))
    x = keras.layers.Dropout(0.2)(pooled)
    x = keras.layers.Conv2D(4, 1, name="conv_preds")(x)
    out = keras.layers.Activation("softmax")(keras.layers.Reshape((4,))(x))
    model = keras.Model(inp, out)
    assert mr.feature_layer(model) == "conv_preds"
    images = np.random.default_rng(0).uniform(0, 255, (3, 8, 8, 3)).astype(np.float32)
    from engine.features import _extractor, input_key

    explorable = mr.as_explorable(model)
    extractor = _extractor(explorable, (), ("conv_preds",), (8, 8, 3))
    got = mr._pooled(extractor.assemble([extractor(images)])[input_key("conv_preds")])
    expected = np.asarray(base(images)).mean(axis=(1, 2))  # the base's pooled output
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    nested = keras.Sequential([keras.Input((8, 8, 3)), base,
                               keras.layers.GlobalAveragePooling2D(),
                               keras.layers.Dense(3, activation="softmax", name="head")])
    assert mr.feature_layer(nested) == "head"


def test_errors_say_what_to_do(tmp_path, demo):
    _draw_tree(tmp_path / "set", 2, seed=SEED + 9)
    dataset = import_folder(tmp_path / "set")
    with pytest.raises(InvalidDatasetError, match="no 'test' split"):
        model_report(dataset, demo, config=ModelReportConfig(split="test", use_umap=False))
    inp = keras.Input((8, 8, 3))
    weightless = keras.Model(inp, keras.layers.Activation("softmax")(
        keras.layers.GlobalAveragePooling2D()(inp)))
    with pytest.raises(InvalidModelError, match="no classifier layer"):
        model_report(dataset, weightless, config=FAST)
    first = {c: next((tmp_path / "set" / c).iterdir()).read_bytes() for c in ("circle", "ring")}
    one_each = import_folder(write_tree(tmp_path / "tiny", {f"{c}/0.png": data
                                                            for c, data in first.items()}))
    headless = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.GlobalAveragePooling2D(),
                                 keras.layers.Dense(5)])  # classes "0".."4": not the set's
    with pytest.raises(InvalidDatasetError, match="two or more images"):
        model_report(one_each, headless, config=FAST)


def test_summary_sentence():
    assert mr.summary_sentence(1534, 23) == "23 of 1,534 images (1.5 %) look mislabelled."
    assert mr.summary_sentence(10, 1, 2) == ("1 of 10 images (10.0 %) looks mislabelled. "
                                            "2 unreadable files were skipped.")


@pytest.mark.slow
def test_umap_map_is_seeded_and_keeps_the_classes_apart():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 10
    x = np.concatenate([c + rng.normal(size=(40, 16)) for c in centres])
    a, b = mr.embedding_umap(x, seed=1), mr.embedding_umap(x, seed=1)
    np.testing.assert_array_equal(a, b)
    labels = np.repeat(np.arange(3), 40)
    from sklearn.neighbors import KNeighborsClassifier

    assert KNeighborsClassifier(5).fit(a, labels).score(a, labels) > 0.95


def test_export_demo_sets_are_not_mixed_up_in_the_cache(tmp_path, demo):
    """Two demo sets of other seeds share their file list (and key): never their features."""
    a = export_demo(tmp_path / "data", 36, seed=SEED)
    b = export_demo(tmp_path / "data", 36, seed=SEED + 10)
    fa = mr.dataset_features(a, demo, cache_dir=tmp_path / "cache")
    fb = mr.dataset_features(b, demo, cache_dir=tmp_path / "cache")
    assert not fb.from_cache and not np.allclose(fa.features, fb.features)


def test_the_shared_neighbour_graph_is_brute_force():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(90, 24)).astype(np.float32)
    x[7] = x[3]  # an exact duplicate
    x[11] = 0  # an all-zero row: cosine distance 1 to every row
    x64 = x.astype(np.float64)
    d = np.linalg.norm(x64[:, None] - x64[None], axis=-1)
    unit = x64 / np.maximum(np.linalg.norm(x64, axis=1, keepdims=True), 1e-300)
    cos = 1 - unit @ unit.T
    for metric, brute in (("euclidean", d), ("cosine", cos)):
        np.fill_diagonal(brute, np.inf)
        graph = mr.neighbour_graph(x, 6, metric)
        assert graph.k == 6 and graph.metric == metric
        assert not (graph.indices == np.arange(90)[:, None]).any()  # never the row itself
        np.testing.assert_allclose(graph.distances, np.sort(brute, 1)[:, :6], atol=1e-6)
        np.testing.assert_allclose(np.take_along_axis(brute, graph.indices, 1),
                                   graph.distances, atol=1e-6)
    assert mr.neighbour_graph(x[:4], 10).k == 3  # clipped to the other rows


def test_outlier_scores_are_cleanlabs_own():
    from cleanlab.outlier import OutOfDistribution

    rng = np.random.default_rng(6)
    x = np.abs(rng.normal(size=(120, 16))).astype(np.float32)
    x[5] = x[9] = x[40]  # exact duplicates: cleanlab puts them at distance 0
    ours = mr._ood_scores(x, 10)
    theirs = OutOfDistribution({"k": 10}).fit_score(features=x, verbose=False)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)  # theirs: float32 cosines


def test_the_report_shares_one_graph_for_neighbours_and_duplicates(small_report):
    _, report = small_report
    graph = report.graph
    assert graph is not None and graph.k >= mr.NEAREST_KEPT
    rows = nearest_to_index(report, 4, k=graph.k + 3)  # more than the graph holds: searched
    assert [r.index for r in rows[:graph.k]] == graph.indices[4].tolist()
    np.testing.assert_allclose([r.distance for r in rows[:graph.k]], graph.distances[4],
                               rtol=1e-5)
    x = report.features
    # A radius that holds more than the graph's k neighbours of some images: those are
    # searched again; the pairs are brute force's.
    d = np.linalg.norm(x.astype(np.float64)[:, None] - x[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    ratio = np.median(np.sort(d, 1)[:, graph.k - 1]) / np.median(d.min(1))
    radius = ratio * np.median(d.min(1))  # about half the images have k neighbours within
    brute = {(a, b) for a, b in zip(*np.nonzero(d <= radius)) if a < b}
    shared = mr.feature_duplicates(x, [f.path for f in report.files], ratio=ratio, graph=graph,
                                   max_pairs=10**6)
    assert {(p.index_a, p.index_b) for p in shared} == brute


def test_an_imagenet_network_on_a_users_set_is_a_feature_extractor(tmp_path, mobilenet_weights):
    """MobileNet 0.25 with its real ImageNet weights on a set of three fruit-named classes: the
    features are its pooled last block (the input of its 1x1 classifier), computed here by a
    cut Keras model on the same images; the labels and classes are the data set's."""
    import tensorflow as tf

    model = load_model("mobilenet_0.25", weights=mobilenet_weights)
    names = ("apples", "pears", "plums")
    for cls in names:
        (tmp_path / "set" / cls).mkdir(parents=True)
    for i in range(12):
        image, _ = make_shape_image(i % 3, size=64, seed=(SEED + 9, i), family="novel")
        Image.fromarray(image).save(tmp_path / "set" / names[i % 3] / f"{i}.png")
    dataset = import_folder(tmp_path / "set")
    report = model_report(dataset, model, config=FAST)
    assert not report.model_classes_match and report.class_names == names
    assert report.probabilities.shape == (12, 3)
    net = model.keras_model
    (pool,) = [layer for layer in net.layers
               if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    cut = keras.Model(net.inputs, pool.output)
    images = np.stack([load_image(dataset.path_of(f)) for f in report.files])
    # resized as the data pipeline resizes for training (tf.image.resize, bilinear, antialiased)
    x = tf.clip_by_value(tf.image.resize(images, model.input_size, antialias=True), 0.0, 255.0)
    expected = cut(model.preprocess(x)).numpy()
    np.testing.assert_allclose(report.features, expected.reshape(12, -1), rtol=1e-3, atol=1e-4)
    assert report.features.shape == (12, 256)
