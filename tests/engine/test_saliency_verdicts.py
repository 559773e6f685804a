"""The Saliency page's verdicts against hand computations: faithfulness against the random
orders, saliency inside the object boxes against the boxes' area, the completeness gap."""

from __future__ import annotations

import numpy as np
import pytest

from engine.saliency.dataset import DatasetSaliency
from engine.saliency.gradients import Completeness
from engine.saliency.metrics import FaithfulnessCurves
from engine.saliency.verdicts import (BACKGROUND_FACTOR, box_verdict, faithfulness_verdict,
                                      steps_too_few)


def _curves(deletion, random_deletion, insertion, random_insertion):
    flat = np.zeros(3)
    return FaithfulnessCurves(flat, flat, flat, flat, flat, deletion, insertion,
                              random_deletion, random_insertion, target=0)


@pytest.mark.parametrize("areas, sentence", [
    ((0.2, 0.3, 0.6, 0.5), "The map beats the random order on both curves."),
    ((0.4, 0.3, 0.6, 0.5), "The map beats the random order on one curve only."),
    ((0.3, 0.3, 0.5, 0.5), "The map does no better than a random order."),  # ties are no win
])
def test_faithfulness_counts_the_curves_that_beat_the_random_order(areas, sentence):
    assert faithfulness_verdict(_curves(*areas)).sentence == sentence


def _summary(box_share, box_area, pointing, explained, n_classes=3):
    explained = np.array(explained)
    counts = np.bincount(explained, minlength=n_classes)
    return DatasetSaliency(
        class_names=[f"c{k}" for k in range(n_classes)], explained=explained,
        predicted=explained, mean_maps=np.zeros((n_classes, 2, 2)),
        mean_images=np.zeros((n_classes, 2, 2, 3), np.uint8), counts=counts,
        box_share=np.array(box_share), box_area=np.array(box_area), pointing=np.array(pointing))


def test_box_numbers_overall_and_per_class():
    verdict = box_verdict(_summary([0.5, 0.7, 0.1, 0.2, 0.3], [0.2, 0.2, 0.4, 0.4, 0.1],
                                   [1, 0, 1, 1, 0], explained=[0, 0, 2, 2, 2]))
    assert verdict.share == pytest.approx(1.8 / 5)
    assert verdict.area == pytest.approx(1.3 / 5)
    assert verdict.pointing == pytest.approx(3 / 5)
    np.testing.assert_allclose(verdict.class_share, [0.6, 0.0, 0.2])   # class 1: no image
    np.testing.assert_allclose(verdict.class_area, [0.2, 0.0, 0.3])


def test_saliency_not_well_above_the_boxes_area_is_flagged_as_background():
    assert BACKGROUND_FACTOR == 1.5
    # 0.36 inside boxes that cover 0.26: below 1.5 * 0.26 = 0.39
    assert box_verdict(_summary([0.5, 0.7, 0.1, 0.2, 0.3], [0.2, 0.2, 0.4, 0.4, 0.1],
                                [1, 0, 1, 1, 0], [0, 0, 2, 2, 2])).background
    # 0.8 inside boxes that cover 0.3: well above 0.45
    assert not box_verdict(_summary([0.8, 0.8], [0.3, 0.3], [1, 1], [0, 1])).background


def test_no_boxes_no_verdict():
    summary = _summary([0.5], [0.2], [1], [0])
    bare = DatasetSaliency(summary.class_names, summary.explained, summary.predicted,
                           summary.mean_maps, summary.mean_images, summary.counts)
    assert box_verdict(bare) is None


def test_a_completeness_gap_over_five_percent_means_too_few_steps():
    completeness = Completeness(attribution_sum=np.array([1.0, 1.06, 0.0, 2.0, 1.04]),
                                score_difference=np.array([1.0, 1.0, 0.0, 1.9, 1.0]))
    # gaps: 0, 6 %, none to explain (nan), 0.1 / 1.9 = 5.3 %, 4 %
    assert steps_too_few(completeness).tolist() == [False, True, False, True, False]
