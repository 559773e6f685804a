"""What the Saliency page concludes from its numbers: does a map beat a random pixel order
(faithfulness), do the maps of a data set fall on the objects or on the background, do
Integrated Gradients' attributions add up to what they explain. Plain text (no Markdown)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.saliency.dataset import DatasetSaliency
from engine.saliency.gradients import Completeness
from engine.saliency.metrics import FaithfulnessCurves

#: a data set's maps "look at the background" when the share of saliency inside the object
#: boxes is below this many times the share of the image the boxes cover (an even map's share)
BACKGROUND_FACTOR = 1.5
#: Integrated Gradients' relative completeness gap above which the steps are too few
COMPLETENESS_TOLERANCE = 0.05

_BEATEN = {2: "beats the random order on both curves",
           1: "beats the random order on one curve only",
           0: "does no better than a random order"}


@dataclass(frozen=True)
class FaithfulnessVerdict:
    """Whether a map's order beats the random orders.

    Attributes:
        deletion: deleting in the map's order lowers the probability faster (a lower area).
        insertion: inserting in the map's order raises it faster (a higher area).
    """

    deletion: bool
    insertion: bool

    @property
    def sentence(self) -> str:
        """``"The map beats the random order on both curves."`` (or one, or none)."""
        return f"The map {_BEATEN[int(self.deletion) + int(self.insertion)]}."


def faithfulness_verdict(curves: FaithfulnessCurves) -> FaithfulnessVerdict:
    """Compare the map's areas under the curves with the random orders' (a tie is no win)."""
    return FaithfulnessVerdict(deletion=curves.deletion_auc < curves.random_deletion_auc,
                               insertion=curves.insertion_auc > curves.random_insertion_auc)


@dataclass(frozen=True)
class BoxVerdict:
    """Where a data set's saliency falls, against the object boxes.

    Attributes:
        share: mean share of each map inside its box, in [0, 1].
        area: mean share of the image each box covers (what an even map would score).
        pointing: share of the maps whose peak lies in the box (the pointing game).
        class_share: (n_classes,) ``share`` over the images explained as each class (0 for a
            class without images).
        class_area: (n_classes,) ``area`` likewise.
    """

    share: float
    area: float
    pointing: float
    class_share: np.ndarray
    class_area: np.ndarray

    @property
    def background(self) -> bool:
        """True when the maps may be looking at the background: ``share`` below
        ``BACKGROUND_FACTOR`` times ``area``."""
        return self.share < BACKGROUND_FACTOR * self.area


def box_verdict(summary: DatasetSaliency) -> BoxVerdict | None:
    """The box numbers of ``summary`` (``None`` when its images had no boxes)."""
    if summary.box_share is None:
        return None
    n_classes = len(summary.counts)

    def per_class(values: np.ndarray) -> np.ndarray:
        return np.array([values[summary.explained == k].mean() if summary.counts[k] else 0.0
                         for k in range(n_classes)], np.float64)

    return BoxVerdict(share=float(summary.box_share.mean()), area=float(summary.box_area.mean()),
                      pointing=float(summary.pointing.mean()),
                      class_share=per_class(summary.box_share),
                      class_area=per_class(summary.box_area))


def steps_too_few(completeness: Completeness) -> np.ndarray:
    """(N,) bool: the images whose completeness gap is over ``COMPLETENESS_TOLERANCE`` (an
    image with no score change to explain, a ``nan`` gap, is not flagged)."""
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(completeness.relative_gap, nan=0.0) > COMPLETENESS_TOLERANCE
