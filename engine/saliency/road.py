"""ROAD, remove and debias (Rong et al., "A Consistent and Efficient Evaluation Strategy for
Attribution Methods", ICML 2022).

Deletion blackens the removed pixels; the black holes themselves carry information (their
shape is the map's outline), so a model can react to *where* pixels were removed rather than to
what it lost. ROAD fills each removed pixel instead with the weighted mean of its eight
neighbours (direct ones weigh 1/6, diagonal ones 1/12), solving for all removed pixels of an
image at once, and adds a little noise: the filled region is a smooth, featureless continuation
of its surroundings, and the outline leaks nothing.

For each removed pixel ``p`` with in-image neighbours ``N(p)`` (weights ``w``)::

    sum_{q in N(p)} w_q x_p - sum_{q in N(p), removed} w_q x_q = sum_{q in N(p), kept} w_q v_q

one sparse, symmetric, diagonally dominant (so positive definite) system per image and removal
fraction, nonsingular as long as some pixel of the image is kept; the colour channels share it
(one factorisation, a three-column right-hand side). With the removed pixels numbered in raster
order a pixel's neighbours are at most one image row (``w + 1`` unknowns) away, so the matrix is
banded: a banded Cholesky solve (LAPACK ``pbsv``, on one BLAS thread: many small calls) costs
``unknowns * band**2`` and beats a general sparse LU for the usual working sizes. Wider bands
(large inputs) go to SuperLU with a minimum-degree ordering of ``A + A^T``, whose cost grows more
slowly with the image size. Everything else (the neighbour sums, the band) is array arithmetic.

* **MoRF** (most relevant first): the class probability should fall fast (a low area is good).
* **LeRF** (least relevant first): it should stay up (a high area is good).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from scipy.linalg import solveh_banded
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import splu
from threadpoolctl import threadpool_limits

from engine.models.explorable import ExplorableModel
from engine.progress import Progress, report
from engine.saliency.base import resize_map
from engine.saliency.graph import as_numpy, batches, forward_graph
from engine.saliency.targets import resolve_classes

#: ``((dy, dx), weight)`` of the paper's imputation: direct neighbours 1/6, diagonal ones 1/12
NEIGHBOUR_WEIGHTS = (((-1, -1), 1 / 12), ((-1, 0), 1 / 6), ((-1, 1), 1 / 12), ((0, -1), 1 / 6),
                     ((0, 1), 1 / 6), ((1, -1), 1 / 12), ((1, 0), 1 / 6), ((1, 1), 1 / 12))
#: shares of the pixels removed: 0 (the image itself) to 90 % (at 100 % nothing is left to
#: impute from)
ROAD_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: standard deviation of the imputation noise, in 0-255 pixel levels (the paper's 0.01 of the
#: value range of normalised images)
ROAD_NOISE = 2.55
#: the neighbours that come later in raster order: each coupling of two removed pixels once
_LATER_NEIGHBOURS = tuple((offset, weight) for offset, weight in NEIGHBOUR_WEIGHTS
                          if offset > (0, 0))
#: widest band (in unknowns) solved as a banded Cholesky; wider systems use a sparse LU
#: (measured: banded takes half the sparse LU's time at 64 x 64, 0.7 of it at 128 x 128; they
#: tie near a band of 225, i.e. 224 x 224 inputs)
_MAX_BAND = 160
#: most pixels (images x fractions x height x width) imputed at once: bounds the memory of the
#: neighbour sums (about 25 MB each) and of the imputed images
_MAX_PIXELS = 1_000_000
ORDERS = {"most": "most relevant first (MoRF)", "least": "least relevant first (LeRF)"}


@dataclass(frozen=True)
class RoadCurve:
    """ROAD scores of many images in one removal order.

    Attributes:
        fractions: (F,) share of pixels removed and imputed.
        scores: (N, F) the class probability of each image at each fraction.
        curve: (F,) their mean over the images.
        auc: the area under ``curve`` divided by the span of ``fractions``: the mean
            probability over the removal range, in [0, 1]. MoRF: lower is better; LeRF: higher.
        aucs: (N,) the same per image.
        order: ``"most"`` (MoRF) or ``"least"`` (LeRF).
        classes: (N,) the class explained per image.
    """

    fractions: np.ndarray
    scores: np.ndarray
    curve: np.ndarray
    auc: float
    aucs: np.ndarray
    order: str
    classes: np.ndarray


def road(model: ExplorableModel, images, maps, *, fractions=ROAD_FRACTIONS,
         order: str = "most", classes=None, noise: float = ROAD_NOISE, seed: int = 0,
         batch_size: int = 32, callback: Progress | None = None) -> RoadCurve:
    """Remove each image's pixels in its map's order, impute them, and score the class.

    Everything happens at the model's input size; the maps are resized to it. Pixels with equal
    saliency are taken in a random order.

    Args:
        model: the model the maps explain.
        images: (N, H, W, 3) uint8 RGB, or a list of them (sizes may differ).
        maps: one (H', W') map per image, larger = more important (any size; resized).
        fractions: increasing shares of the pixels to remove, each in [0, 1).
        order: ``"most"``: most relevant first (MoRF); ``"least"``: least relevant first (LeRF).
        classes: the class per image (see ``targets.resolve_classes``); ``None``: top class.
        noise: standard deviation of the imputation noise in pixel levels (0: none).
        seed: seed of the noise and of the tie breaks.
        batch_size: images per forward pass.
        callback: ``callback(done, total, stage)`` counted in images (``engine.progress``).

    Returns:
        ``RoadCurve``.

    Raises:
        ValueError: an unknown order, fractions not increasing or outside [0, 1), or not one
            map per image.
        InvalidImageError, InvalidModelError: as for ``explain``.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {list(ORDERS)}, not {order!r}.")
    fractions = np.asarray(fractions, np.float64)
    if fractions.ndim != 1 or not len(fractions) or np.any(np.diff(fractions) <= 0):
        raise ValueError("ROAD fractions must be increasing shares of the pixels.")
    if fractions[0] < 0 or fractions[-1] >= 1:
        raise ValueError("ROAD fractions must be shares in [0, 1): at 1 no pixel is left to "
                         "impute the image from.")
    x = model.prepare(images)
    if len(maps) != len(x):
        raise ValueError(f"{len(maps)} maps were given for {len(x)} images; give one each.")
    maps = list(maps)
    graph = forward_graph(model)
    rng = np.random.default_rng(seed)
    n, (h, w) = len(x), x.shape[1:3]
    chosen = resolve_classes(model.class_names, classes, _probabilities(graph, x, batch_size))
    per_chunk = max(1, _MAX_PIXELS // (h * w * len(fractions)))
    scores = []
    for part in batches(n, per_chunk):
        removed = np.concatenate([removal_masks(resize_map(m, (h, w)), fractions, order, rng)
                                  for m in maps[part]])
        filled = impute(np.repeat(x[part], len(fractions), axis=0), removed, noise=noise, rng=rng)
        p = _probabilities(graph, filled, batch_size).reshape(-1, len(fractions), model.n_classes)
        scores.append(np.take_along_axis(p, chosen[part, None, None].astype(np.int64), 2)[..., 0])
        report(callback, part.stop, n, f"ROAD, {ORDERS[order]}")
    return _curve(fractions, np.concatenate(scores), order, chosen)


def _probabilities(graph, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([as_numpy(graph.probabilities(tf.constant(x[s])))
                           for s in batches(len(x), batch_size)])


def _curve(fractions: np.ndarray, scores: np.ndarray, order: str, classes) -> RoadCurve:
    span = fractions[-1] - fractions[0]

    def area(values) -> np.ndarray:
        if span <= 0:
            return np.asarray(values)[..., 0]
        return np.trapezoid(values, fractions, axis=-1) / span

    curve = scores.mean(axis=0)
    return RoadCurve(fractions=fractions.astype(np.float32), scores=scores.astype(np.float32),
                     curve=curve.astype(np.float32), auc=float(area(curve)),
                     aucs=area(scores).astype(np.float32), order=order,
                     classes=np.asarray(classes, np.int32))


def removal_masks(saliency: np.ndarray, fractions, order: str = "most",
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Which pixels each fraction removes, in the map's order.

    Args:
        saliency: (h, w) map at the working size.
        fractions: (F,) shares of the pixels to remove.
        order: ``"most"`` (the largest values first) or ``"least"``.
        rng: tie breaks (``None``: the first pixel in raster order first).

    Returns:
        (F, h, w) bool, true where the pixel is removed; each mask holds the previous one.
    """
    values = np.asarray(saliency, np.float64).ravel()
    ties = rng.random(values.size) if rng is not None else np.arange(values.size)
    ranked = np.lexsort((ties, -values if order == "most" else values))
    rank = np.empty(values.size, np.int64)
    rank[ranked] = np.arange(values.size)
    counts = np.round(np.asarray(fractions, np.float64) * values.size).astype(np.int64)
    return (rank[None] < counts[:, None]).reshape((len(counts),) + np.shape(saliency))


def impute(images: np.ndarray, removed: np.ndarray, *, noise: float = ROAD_NOISE,
           rng: np.random.Generator | None = None) -> np.ndarray:
    """Noisy linear imputation: each removed pixel becomes the weighted mean of its neighbours.

    Args:
        images: (K, h, w, C) values (0-255).
        removed: (K, h, w) bool, true for the pixels to replace; every image keeps some pixel.
        noise: standard deviation of the Gaussian noise added to the imputed values.
        rng: the noise's generator (``None``: seed 0).

    Returns:
        (K, h, w, C) float32: the kept pixels as they were, the removed ones imputed (clipped
        to [0, 255] once the noise is added).
    """
    images = np.asarray(images, np.float64)
    removed = np.asarray(removed, bool)
    out = images.copy()
    diagonal, known = neighbour_sums(images, removed)
    with threadpool_limits(1, user_api="blas"):   # hundreds of small solves: threads only wait
        solved = [_solve(mask, diagonal, rhs) for mask, rhs in zip(removed, known)]
    solved = np.concatenate(solved)
    if len(solved):
        if noise:
            solved = solved + noise * (rng or np.random.default_rng(0)).standard_normal(
                solved.shape)
        out[removed] = np.clip(solved, 0, 255)
    return out.astype(np.float32)


def neighbour_sums(images: np.ndarray, removed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the weights of its in-image neighbours and the weighted sum of the kept ones.

    Returns:
        ``(diagonal, known)``: (h, w) the diagonal of the system (1 inside, less on the
        border), (K, h, w, C) the right-hand side (meaningful at the removed pixels).
    """
    kept = images * ~removed[..., None]
    inside = np.ones((1,) + removed.shape[1:])
    diagonal, known = np.zeros(removed.shape[1:]), np.zeros(images.shape)
    for (dy, dx), weight in NEIGHBOUR_WEIGHTS:   # eight shifted, weighted sums
        diagonal += weight * _shifted(inside, dy, dx)[0]
        known += weight * _shifted(kept, dy, dx)
    return diagonal, known


def _shifted(values: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``values[:, y + dy, x + dx]`` at ``(y, x)``, zero where that falls outside the image."""
    out = np.zeros_like(values)
    h, w = values.shape[1:3]
    out[:, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] = \
        values[:, max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
    return out


def _solve(mask: np.ndarray, diagonal: np.ndarray, known: np.ndarray) -> np.ndarray:
    """The removed pixels of one image (raster order): (M, C), one system for all channels."""
    unknown = np.flatnonzero(mask)
    rhs = known.reshape(-1, known.shape[-1])[unknown]
    if not len(unknown):
        return rhs
    couplings = removed_couplings(mask)
    band = max((int((later - earlier).max()) for earlier, later, _ in couplings
                if len(earlier)), default=0)
    if band <= _MAX_BAND:
        bands = np.zeros((band + 1, len(unknown)))   # upper form: A[i, j] at [band + i - j, j]
        bands[band] = diagonal.ravel()[unknown]
        for earlier, later, weight in couplings:
            bands[band - (later - earlier), later] = -weight
        return solveh_banded(bands, rhs, overwrite_ab=True, overwrite_b=True,
                             check_finite=False)
    earlier, later, weights = (np.concatenate(parts) for parts in zip(*(
        (i, j, np.full(len(i), -weight)) for i, j, weight in couplings)))
    index = np.arange(len(unknown))
    system = coo_matrix((np.concatenate([weights, weights, diagonal.ravel()[unknown]]),
                         (np.concatenate([earlier, later, index]),
                          np.concatenate([later, earlier, index]))),
                        shape=(len(unknown),) * 2).tocsc()
    return splu(system, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                options={"SymmetricMode": True}).solve(rhs)


def removed_couplings(mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """The pairs of neighbouring removed pixels of one (h, w) mask.

    Returns:
        Per later neighbour offset ``(earlier, later, weight)``: the unknowns' indices (removed
        pixels numbered in raster order), ``later > earlier``; the system holds ``-weight`` at
        ``[earlier, later]`` and ``[later, earlier]``.
    """
    h, w = mask.shape
    unknown = np.flatnonzero(mask)
    variable = np.cumsum(mask.ravel()) - 1   # the unknown's number, where removed
    y, x = np.divmod(unknown, w)
    couplings = []
    for (dy, dx), weight in _LATER_NEIGHBOURS:
        inside = np.flatnonzero((y + dy < h) & (x + dx >= 0) & (x + dx < w))
        neighbour = unknown[inside] + dy * w + dx
        both = mask.ravel()[neighbour]
        couplings.append((inside[both], variable[neighbour[both]], weight))
    return couplings
