"""Saliency on the bundled demo model, against what is known about its images: where the object
is (boxes from the shapes generator, seeds never used in training), and that a model with random
top layers must give other maps."""

from __future__ import annotations

import numpy as np
import pytest

from engine.data.shapes import make_shapes
from engine.models.catalogue import DEMO_MODEL_PATH
from engine.saliency import explain
from engine.saliency.metrics import deletion_insertion, pointing_game
from engine.saliency.sanity import sanity_check

# Training used seed 0, the held-out accuracy seed 1000, the bundled samples 4242.
FRESH_SEED = 31337

pytestmark = pytest.mark.skipif(not DEMO_MODEL_PATH.exists(), reason="demo model not built")


@pytest.fixture(scope="module")
def demo():
    from engine.models import load_model

    return load_model("demo")


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(60, seed=FRESH_SEED)


def test_gradcam_points_inside_the_object_box(demo, shapes):
    maps = explain(demo, shapes.images, "gradcam", target=list(shapes.labels))
    hits = pointing_game(maps, shapes.boxes)
    assert hits.mean() >= 0.9, f"pointing game {hits.mean():.0%}"


def test_insertion_beats_a_random_order(demo, shapes):
    images, labels = shapes.images[:12], shapes.labels[:12]
    maps = explain(demo, images, "gradcam", target=list(labels))
    curves = [deletion_insertion(demo, image, saliency, int(label), steps=16)
              for image, saliency, label in zip(images, maps, labels)]
    insertion = np.mean([c.insertion_auc for c in curves])
    random_insertion = np.mean([c.random_insertion_auc for c in curves])
    deletion = np.mean([c.deletion_auc for c in curves])
    random_deletion = np.mean([c.random_deletion_auc for c in curves])
    assert insertion > random_insertion
    assert deletion < random_deletion


def test_randomised_top_layers_change_gradcam(demo, shapes):
    result = sanity_check(demo, shapes.images[:12], "gradcam", n_layers=3, seed=0)
    assert result.rank_correlation.mean() < 0.5
    assert not result.flagged
