"""Benchmark: the trust table (``engine.saliency.leaderboard``) of the demo model, and ROAD
against a hand loop of the same masks.

1. **Leaderboard**: every method (nine by default) scored on ``--images`` demo shapes from a seed
   the demo model never saw: total time and time per method (maps, deletion and insertion,
   ROAD both ways, pointing game, model randomisation and random logit), against the goal of
   ``GOAL_SECONDS`` for nine methods over 100 images on 2 CPU cores.
2. **ROAD vs a hand loop**: the same Grad-CAM maps, fractions and masks. The reference is
   pytorch-grad-cam's ROAD ported to NumPy: its ``NoisyLinearImputer`` (its own neighbour
   weights, a ``lil_matrix`` system and one ``spsolve`` per image and fraction) and, like its
   ``PerturbationConfidenceMetric``, one forward pass per fraction over all images (the same
   traced pass as ours, on the imputed float values). Ours builds the neighbour sums of all
   images with array operations, solves each image's system as a banded Cholesky (one
   factorisation for the three channels) and batches the forward passes. Both without noise,
   so their curves must agree. The two sides run alternately (reference, ours, ...), each time
   the median.

Prints JSON; ``ratio`` = ours / reference (lower is better, goal <= ``ROAD_GOAL``).

    python bench/leaderboard.py                       # 9 methods x 100 images
    python bench/leaderboard.py --images 12 --road-images 8 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from scipy.sparse import csc_matrix, lil_matrix  # noqa: E402
from scipy.sparse.linalg import spsolve  # noqa: E402

from engine.data.sampling import HELD_OUT_SEED  # noqa: E402
from engine.data.shapes import make_shapes  # noqa: E402
from engine.models import load_model  # noqa: E402
from engine.saliency import METHODS, explain, leaderboard  # noqa: E402
from engine.saliency.base import resize_map  # noqa: E402
from engine.saliency.graph import forward_graph  # noqa: E402
from engine.saliency.road import ROAD_FRACTIONS, removal_masks, road  # noqa: E402

GOAL_SECONDS = 600.0
ROAD_GOAL = 0.5
#: pytorch-grad-cam's ``neighbors_weights`` (pytorch_grad_cam/metrics/road.py), as written there
NEIGHBORS_WEIGHTS = [((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
                     ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="images of the leaderboard")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    parser.add_argument("--road-images", type=int, default=20, help="images of the ROAD race")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of each ROAD side")
    parser.add_argument("--skip-table", action="store_true", help="only the ROAD race")
    args = parser.parse_args(argv)
    model = load_model("demo")
    out = {"cpus": os.cpu_count(), "load_before": list(os.getloadavg())}
    if not args.skip_table:
        out["leaderboard"] = _table(model, args.images, args.methods.split(","))
    out["road"] = _road_race(model, args.road_images, args.repeats)
    out["load_after"] = list(os.getloadavg())
    print(json.dumps(out, indent=2))


def _table(model, n: int, methods: list[str]) -> dict:
    shapes = make_shapes(n, seed=HELD_OUT_SEED)
    marks = {}

    def callback(done, total, stage):
        marks.setdefault(int(done), time.perf_counter())

    started = time.perf_counter()
    board = leaderboard(model, shapes, methods=methods, n=n, callback=callback)
    total = time.perf_counter() - started
    ends = [marks.get(i + 1, started + total) for i in range(len(methods))]
    starts = [started] + ends[:-1]
    return {
        "images": n, "methods": len(methods), "seconds": round(total, 1),
        "goal_seconds": GOAL_SECONDS * len(methods) / 9 * n / 100,
        "seconds_per_method": {m: round(b - a, 1) for m, a, b in zip(methods, starts, ends)},
        "rows": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                 for r in board.records()],
    }


def _road_race(model, n: int, repeats: int) -> dict:
    shapes = make_shapes(n, seed=HELD_OUT_SEED + 1)
    classes = list(shapes.labels)
    maps = explain(model, shapes.images, "gradcam", classes)

    def ours():
        return road(model, shapes.images, maps, fractions=ROAD_FRACTIONS, classes=classes,
                    noise=0.0).scores

    def reference():
        return _hand_road(model, shapes.images, maps, classes)

    ours(), reference()  # traced and warm
    times = {"reference": [], "ours": []}
    results = {}
    for _ in range(repeats):
        for name, run in (("reference", reference), ("ours", ours)):
            clock = time.perf_counter()
            results[name] = run()
            times[name].append(time.perf_counter() - clock)
    ref, own = (statistics.median(times[k]) for k in ("reference", "ours"))
    return {"images": n, "fractions": list(ROAD_FRACTIONS), "reference_seconds": round(ref, 3),
            "ours_seconds": round(own, 3), "ratio": round(own / ref, 3), "goal": ROAD_GOAL,
            "max_curve_difference": float(np.abs(results["ours"] - results["reference"]).max())}


def _hand_road(model, images, maps, classes, seed: int = 0) -> np.ndarray:
    """pytorch-grad-cam's loop: per fraction, impute image after image, then one forward pass."""
    rng = np.random.default_rng(seed)
    h, w = model.input_size
    x = model.prepare(images)
    forward = forward_graph(model).probabilities   # the same traced pass as ours
    masks = [removal_masks(resize_map(saliency, (h, w)), ROAD_FRACTIONS, "most", rng)
             for saliency in maps]
    scores = np.zeros((len(x), len(ROAD_FRACTIONS)))
    for j in range(len(ROAD_FRACTIONS)):
        filled = np.stack([_hand_impute(image, ~removed[j]) for image, removed in zip(x, masks)])
        scores[:, j] = forward(tf.constant(filled)).numpy()[np.arange(len(x)), classes]
    return scores


def _hand_impute(image: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's ``NoisyLinearImputer`` (without noise), ported to NumPy."""
    img = np.moveaxis(image, -1, 0).astype(np.float64)   # (C, h, w) as there
    flat_mask = kept.reshape(-1).astype(np.float64)
    flat_img = img.reshape(img.shape[0], -1)
    indices = np.argwhere(flat_mask == 0).flatten()
    if not len(indices):
        return image
    to_variable = np.zeros(len(flat_mask), dtype=int)
    to_variable[indices] = np.arange(len(indices))
    a = lil_matrix((len(indices), len(indices)))
    b = np.zeros((len(indices), img.shape[0]))
    sum_neighbors = np.ones(len(indices))
    for offset, weight in NEIGHBORS_WEIGHTS:
        cord0, cord1 = indices // kept.shape[1] + offset[0], indices % kept.shape[1] + offset[1]
        valid = ~((cord0 < 0) | (cord1 < 0) | (cord0 >= kept.shape[0])
                  | (cord1 >= kept.shape[1]))
        new = (indices + offset[0] * kept.shape[1] + offset[1])[valid]
        ids = np.argwhere(valid).flatten()
        known = flat_mask[new] > 0.5
        b[ids[known], :] -= weight * flat_img[:, new[known]].T
        a[ids[~known], to_variable[new[~known]]] = weight
        sum_neighbors[np.argwhere(~valid).flatten()] -= weight
    a[np.arange(len(indices)), np.arange(len(indices))] = -sum_neighbors
    solved = spsolve(csc_matrix(a), b)
    flat_img[:, indices] = solved.reshape(len(indices), -1).T
    return np.moveaxis(flat_img.reshape(img.shape), 0, -1).astype(np.float32)


if __name__ == "__main__":
    main()
