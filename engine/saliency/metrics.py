"""How much to trust a saliency map: faithfulness to the model and agreement with known boxes.

* **Deletion / insertion** (Petsiuk et al., RISE, 2018): remove the pixels in the map's order,
  most salient first, and watch the class probability fall (deletion: a low area under the curve
  is good), or start from a blurred image and put the pixels back in that order (insertion: a
  high area is good). A random order of the pixels is the baseline a map has to beat.
* **Pointing game** (Zhang et al. 2016): does the map's peak fall inside the object's box?
* **Share inside the box**: the fraction of the map's mass on the object.
* **Rank correlation** (Spearman): how similar two maps are, used by the sanity checks
  (``map_similarity``: the same, with blank maps handled).
* **ROAD** (remove and debias, Rong et al. 2022): ``road.py``, re-exported here as ``road``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from engine.models.explorable import ExplorableModel
from engine.saliency.base import resize_map
from engine.saliency.graph import as_numpy, batches, forward_graph
from engine.saliency.occlusion import blurred
from engine.saliency.road import RoadCurve, road
from engine.saliency.targets import resolve_classes

__all__ = ["FaithfulnessCurves", "RoadCurve", "box_area_share", "deletion_insertion",
           "map_similarity", "pointing_game", "rank_correlation", "road", "saliency_in_boxes"]


@dataclass(frozen=True)
class FaithfulnessCurves:
    """Deletion and insertion curves of one map, with random-order baselines.

    Attributes:
        fractions: (steps + 1,) share of pixels removed (deletion) or put back (insertion).
        deletion: (steps + 1,) class probability as the most salient pixels turn black.
        insertion: (steps + 1,) class probability as the most salient pixels replace a blurred
            copy of the image.
        random_deletion, random_insertion: the same for random pixel orders (their mean).
        deletion_auc, insertion_auc, random_deletion_auc, random_insertion_auc: areas under
            the curves (trapezoid rule over ``fractions``), in [0, 1].
        target: the class index explained.
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    random_deletion: np.ndarray
    random_insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float
    random_deletion_auc: float
    random_insertion_auc: float
    target: int


def deletion_insertion(model: ExplorableModel, image: np.ndarray, saliency: np.ndarray,
                       target=None, *, steps: int = 32, random_orders: int = 2, seed: int = 0,
                       batch_size: int = 32) -> FaithfulnessCurves:
    """Deletion and insertion curves of ``saliency`` for ``image``, against random orders.

    Everything happens at the model's input size; the map is resized to it. Pixels with equal
    saliency are taken in a random order.

    Args:
        model: the model the map explains.
        image: (H, W, 3) uint8 RGB.
        saliency: (H', W') map, larger = more important (any size; resized).
        target: the class (see ``targets.resolve_classes``); ``None``: the image's top class.
        steps: points on each curve after the first.
        random_orders: random pixel orders averaged for the baseline.
        seed: seed of the random orders and tie breaks.
        batch_size: images per forward pass.

    Returns:
        ``FaithfulnessCurves``.
    """
    graph = forward_graph(model)
    x = model.prepare(image)[0]
    h, w = x.shape[:2]
    n = h * w
    rng = np.random.default_rng(seed)
    salience = resize_map(saliency, (h, w)).ravel()
    orders = [np.lexsort((rng.random(n), -salience))]
    orders += [rng.permutation(n) for _ in range(random_orders)]
    counts = np.round(np.linspace(0, n, steps + 1)).astype(np.int64)
    black, blur = np.zeros_like(x), blurred(x)

    def probabilities(images):
        parts = [as_numpy(graph.probabilities(tf.constant(images[s])))
                 for s in batches(len(images), batch_size)]
        return np.concatenate(parts)

    first = probabilities(x[None])
    index = int(resolve_classes(model.class_names, target, first)[0])
    curves = []
    for order in orders:
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n)
        done = (rank[None] < counts[:, None]).reshape(-1, h, w, 1)  # (steps + 1, h, w, 1)
        deleted = np.where(done, black[None], x[None])
        inserted = np.where(done, x[None], blur[None])
        p = probabilities(np.concatenate([deleted, inserted]))[:, index]
        curves.append((p[:steps + 1], p[steps + 1:]))
    fractions = counts / n
    deletion, insertion = curves[0]
    random_deletion = np.mean([c[0] for c in curves[1:]], axis=0) if random_orders else deletion
    random_insertion = np.mean([c[1] for c in curves[1:]], axis=0) if random_orders else insertion
    return FaithfulnessCurves(
        fractions=fractions.astype(np.float32), deletion=deletion, insertion=insertion,
        random_deletion=random_deletion, random_insertion=random_insertion,
        deletion_auc=_auc(deletion, fractions), insertion_auc=_auc(insertion, fractions),
        random_deletion_auc=_auc(random_deletion, fractions),
        random_insertion_auc=_auc(random_insertion, fractions), target=index)


def _auc(curve, fractions) -> float:
    return float(np.trapezoid(curve, fractions))


def pointing_game(maps, boxes, tolerance: int = 0) -> np.ndarray:
    """Whether each map's peak lies inside its box.

    Args:
        maps: (N, H, W) maps (or a list of (H_i, W_i)).
        boxes: (N, 4) ``(x0, y0, x1, y1)`` boxes, inclusive-exclusive, in the maps' pixels.
        tolerance: pixels the box is grown by on every side (the original game uses 15).

    Returns:
        (N,) bool.
    """
    hits = []
    for saliency, (x0, y0, x1, y1) in zip(maps, np.asarray(boxes)):
        y, x = np.unravel_index(int(np.argmax(saliency)), np.shape(saliency))
        hits.append(x0 - tolerance <= x < x1 + tolerance and y0 - tolerance <= y < y1 + tolerance)
    return np.array(hits, bool)


def saliency_in_boxes(maps, boxes) -> np.ndarray:
    """The share of each map's total inside its box (0 for an all-zero map).

    Returns:
        (N,) float32 in [0, 1]. A map spread evenly scores the box's share of the image area
        (``box_area_share``), the level a map has to beat.
    """
    shares = []
    for saliency, (x0, y0, x1, y1) in zip(maps, np.asarray(boxes)):
        saliency = np.asarray(saliency, np.float64)
        total = saliency.sum()
        shares.append(saliency[y0:y1, x0:x1].sum() / total if total > 0 else 0.0)
    return np.array(shares, np.float32)


def box_area_share(boxes, size: tuple[int, int]) -> np.ndarray:
    """(N,) share of an (H, W) image each ``(x0, y0, x1, y1)`` box covers."""
    boxes = np.asarray(boxes, np.float64)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return (area / (size[0] * size[1])).astype(np.float32)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps of the same shape (ties get their mean rank).

    Returns:
        A float in [-1, 1]; ``nan`` when a map is constant (its ranks carry no order).
    """
    ra, rb = _ranks(np.ravel(a)), _ranks(np.ravel(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


def map_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """``rank_correlation`` of two maps of one image, where a blank map (constant, e.g. every
    ReLU of a random layer dead) shares no order with a structured one (0) and is the same as
    another blank map (1): what the sanity checks compare."""
    rho = rank_correlation(a, b)
    if np.isnan(rho):
        return 1.0 if np.ptp(a) == np.ptp(b) == 0 else 0.0
    return rho


def _ranks(values: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    mean_rank = (ends - counts + ends - 1) / 2.0
    return mean_rank[inverse].astype(np.float64)
