"""The trust table (``engine.saliency.leaderboard``), the random-logit and data-randomisation
tests, and the table's section of the HTML report."""

from __future__ import annotations

import csv
import io
import math
from html.parser import HTMLParser

import keras
import numpy as np
import pytest

from engine.data.dataset import export_demo
from engine.data.sampling import ImageSample
from engine.data.shapes import make_shapes
from engine.models.catalogue import DEMO_MODEL_PATH
from engine.models.explorable import ExplorableModel
from engine.report import build_report
from engine.saliency import Leaderboard, LeaderboardConfig, leaderboard
from engine.saliency.leaderboard import COLUMNS, LeaderboardRow
from engine.saliency.randomisation import (ShuffledTraining, data_randomisation_test,
                                           random_logit_test, random_other_classes,
                                           shuffled_label_model)

needs_demo = pytest.mark.skipif(not DEMO_MODEL_PATH.exists(), reason="demo model not built")
FRESH_SEED = 4711   # neither the demo model's training (0) nor its held-out (1000) seed
SCORES = [name for name, _, _ in COLUMNS]


@pytest.fixture(scope="module")
def flat():
    """No convolution: the CAM methods cannot run on it, gradients can."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return ExplorableModel(keras.Model(inputs, outputs), name="flat", class_names=list("abc"),
                           preprocessing="unit", input_size=(8, 8))


@needs_demo
def test_rows_of_three_methods_on_six_images_of_a_demo_data_set(demo, tmp_path):
    dataset = export_demo(tmp_path / "data", n=36, seed=FRESH_SEED)
    board = leaderboard(demo, dataset, methods=["gradcam", "vanilla", "gradxinput"], n=6)
    assert board.n_images == 6 and board.has_boxes
    assert [row.method for row in board.rows] == ["gradcam", "vanilla", "gradxinput"]
    for row in board.rows:
        assert row.error is None
        values = [getattr(row, name) for name in SCORES]
        assert all(math.isfinite(v) for v in values), row
        assert all(0 <= getattr(row, name) <= 1 for name in SCORES[:5])
        assert all(-1 <= getattr(row, name) <= 1 for name in SCORES[5:7])
        assert row.seconds_per_image > 0
    gradcam = board.rows[0]
    assert gradcam.pointing_game >= 5 / 6              # the demo model looks at the object
    assert gradcam.insertion_auc > gradcam.deletion_auc
    assert gradcam.road_lerf > gradcam.road_morf
    table = list(csv.DictReader(io.StringIO(board.to_csv())))
    assert list(table[0]) == ["method", "title", *SCORES, "error"]
    assert [r["title"] for r in table] == ["Grad-CAM", "Vanilla gradients", "Gradient x input"]
    assert float(table[1]["road_morf"]) == pytest.approx(board.rows[1].road_morf)


def test_a_method_that_cannot_run_gets_a_row_that_says_why(flat):
    rng = np.random.default_rng(0)
    sample = ImageSample(rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8),
                         np.zeros(3, np.int64), None, list("abc"))
    seen = []
    board = leaderboard(flat, sample, methods=["gradcam", "vanilla"], n=3,
                        callback=lambda done, total, stage: seen.append((done, total)),
                        config=LeaderboardConfig(deletion_steps=4, road_fractions=(0.0, 0.5)))
    failed, ran = board.rows
    assert "convolution" in failed.error and math.isnan(failed.deletion_auc)
    assert ran.error is None and math.isfinite(ran.road_morf)
    assert not board.has_boxes and math.isnan(ran.pointing_game)
    assert seen[-1] == (2, 2)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))
    assert "convolution" in board.to_csv().splitlines()[1]


def test_a_stop_request_runs_no_further_method(flat):
    class Stop:
        stop_requested = True

        def __call__(self, done, total, stage):
            pass

    sample = ImageSample(np.zeros((2, 8, 8, 3), np.uint8), np.zeros(2, np.int64), None,
                         list("abc"))
    assert leaderboard(flat, sample, methods=["vanilla"], n=2, callback=Stop()).rows == []


def test_random_other_classes_are_never_the_class_and_cover_the_others():
    classes = np.repeat(np.arange(4), 200)
    others = random_other_classes(classes, 4, seed=1)
    assert not np.any(others == classes)
    for c in range(4):
        assert set(others[classes == c]) == set(range(4)) - {c}


@needs_demo
def test_gradcam_changes_with_a_random_other_class(demo):
    shapes = make_shapes(6, seed=FRESH_SEED)
    result = random_logit_test(demo, shapes.images, "gradcam", list(shapes.labels))
    assert result.mean_correlation < 0.5 and result.changes
    assert result.sentence == ("Grad-CAM changes when asked about another class: it explains "
                               "the class.")


def _shuffled_labels_check(demo, n_train, epochs, n_explained):
    train = make_shapes(n_train, seed=FRESH_SEED + 1)
    shown = make_shapes(n_explained, seed=FRESH_SEED)
    shuffled = shuffled_label_model(demo, train.images, train.labels,
                                    ShuffledTraining(epochs=epochs))
    assert not np.allclose(shuffled.keras_model.get_weights()[0],
                           demo.keras_model.get_weights()[0])
    return data_randomisation_test(demo, shown.images, "gradcam", list(shown.labels),
                                   shuffled=shuffled)


@needs_demo
def test_gradcam_of_a_shuffled_label_model_differs(demo):
    # 1,200 images, 3 epochs, 50 maps: about 11 s on 2 quiet cores
    result = _shuffled_labels_check(demo, n_train=1200, epochs=3, n_explained=50)
    assert result.mean_correlation < 0.5, result.rank_correlation
    assert result.sentence == ("Grad-CAM changes when the labels are shuffled: it explains "
                               "the model.")
    # Not only blank maps (no positive evidence for the class): the others differ as well.
    blank = np.array([np.ptp(m) == 0 for m in result.changed])
    assert (~blank).sum() >= 20
    assert result.rank_correlation[~blank].mean() < 0.5


class _Sections(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sections, self.scores = [], {}
        self._method = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "tr" and "data-method" in attrs:
            self._method = attrs["data-method"]
        if tag == "td" and "data-score" in attrs:
            self.scores.setdefault(self._method, []).append(attrs["data-score"])


def test_report_shows_a_leaderboard_passed_in(tiny_cnn):
    model = ExplorableModel(tiny_cnn, name="tiny", class_names=list("abc"),
                            preprocessing="unit", input_size=(8, 8))
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    board = Leaderboard([LeaderboardRow("gradcam", "Grad-CAM", 0.25, 0.75, 0.5, 0.875, 1.0,
                                        0.125, -0.5, 0.01),
                         LeaderboardRow("occlusion", "Occlusion", error="Occlusion: <b>no</b>")],
                        n_images=6, has_boxes=True, seconds=1.0)
    document = build_report(model, image, image_name="x.png", methods=["gradcam"],
                            n_filters=1, quick_steps=1, leaderboard=board)
    parsed = _Sections()
    parsed.feed(document)
    assert parsed.sections == ["prediction", "feature-maps", "saliency", "leaderboard",
                               "filters", "model-summary", "settings"]
    assert parsed.scores["gradcam"] == SCORES
    assert "0.875" in document and "-0.500" in document
    assert "Occlusion: &lt;b&gt;no&lt;/b&gt;" in document and "<b>no</b>" not in document
