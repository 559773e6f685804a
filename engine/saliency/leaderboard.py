"""The trust table: every saliency method scored on the same images of a data set.

For one model and a sample of a data set, each method's maps (for each image's top class) get:

* **deletion / insertion AUC** (``metrics.deletion_insertion``): deletion low, insertion high;
* **ROAD** MoRF and LeRF (``road.road``): MoRF low, LeRF high;
* **pointing game** (where the data set has object boxes): the share of maps whose peak lies
  on the object, high is good;
* **model randomisation** (``sanity.py``) and **random logit** (``randomisation.py``): the mean
  rank correlation of the maps with those of a model whose top layers are random, and with
  those of a random other class; low is good (a map that stays the same explains the image);
* **seconds per image** of the method alone.

    >>> board = leaderboard(model, dataset, methods=["gradcam", "vanilla"], n=20)
    >>> board.to_csv()
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from dataclasses import asdict, dataclass, fields

import numpy as np

from engine.errors import CNNExplorerError, InvalidDatasetError
from engine.models.explorable import ExplorableModel
from engine.progress import Progress, report, stop_requested
from engine.saliency import METHODS, explain
from engine.saliency.metrics import deletion_insertion, map_similarity, pointing_game
from engine.saliency.randomisation import random_other_classes
from engine.saliency.road import ROAD_NOISE, road
from engine.saliency.sanity import randomized_copy
from engine.saliency.targets import resolve_classes

log = logging.getLogger("cnn_explorer")


@dataclass(frozen=True)
class LeaderboardConfig:
    """How thoroughly each method is scored.

    Attributes:
        deletion_steps: points on each deletion / insertion curve after the first.
        road_fractions: shares of the pixels ROAD removes (pytorch-grad-cam's ``ROADCombined``
            takes the same four): the imputation's cost grows with their sum, and 0.1 to 0.9
            cost 2.25 times as much for the same ranking.
        road_noise: ROAD's imputation noise, in pixel levels.
        sanity_images: the model randomisation and random logit scores are means over the
            first this many images (each costs two more maps per image; their mean settles
            within about 0.05 after 25 images).
        randomised_layers: weighted layers, from the output, the model randomisation redraws.
        layer: the CAM methods' layer (``None``: their default).
        batch_size: images per forward pass.
        seed: seed of the random weights, the random other classes, the tie breaks and noise.
    """

    deletion_steps: int = 16
    road_fractions: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8)
    road_noise: float = ROAD_NOISE
    sanity_images: int = 25
    randomised_layers: int = 3
    layer: str | None = None
    batch_size: int = 32
    seed: int = 0


#: (field, column header, which way is better) of every score, in the table's order
COLUMNS = (
    ("deletion_auc", "deletion AUC", "lower"),
    ("insertion_auc", "insertion AUC", "higher"),
    ("road_morf", "ROAD MoRF", "lower"),
    ("road_lerf", "ROAD LeRF", "higher"),
    ("pointing_game", "pointing game", "higher"),
    ("model_randomisation", "model randomisation r", "lower"),
    ("random_logit", "random logit r", "lower"),
    ("seconds_per_image", "seconds per image", "lower"),
)


@dataclass(frozen=True)
class LeaderboardRow:
    """One method's scores (``nan`` where a score does not apply or the method failed).

    Attributes:
        method: a key of ``METHODS``; ``title``: its name for people.
        deletion_auc, insertion_auc: mean areas under the deletion / insertion curves.
        road_morf, road_lerf: ROAD's areas, most / least relevant pixels removed first.
        pointing_game: share of maps whose peak lies in the object's box (``nan`` without
            boxes).
        model_randomisation, random_logit: mean rank correlation with the maps of the
            randomised model / of a random other class, over the first
            ``LeaderboardConfig.sanity_images`` images.
        seconds_per_image: the method's own time per image (maps only, no scoring).
        error: why the method failed, a sentence for people, or ``None``.
    """

    method: str
    title: str
    deletion_auc: float = math.nan
    insertion_auc: float = math.nan
    road_morf: float = math.nan
    road_lerf: float = math.nan
    pointing_game: float = math.nan
    model_randomisation: float = math.nan
    random_logit: float = math.nan
    seconds_per_image: float = math.nan
    error: str | None = None


@dataclass(frozen=True)
class Leaderboard:
    """The trust table of a model on a sample of a data set.

    Attributes:
        rows: one ``LeaderboardRow`` per method, in the order run (fewer after a stop).
        n_images: images every method was scored on.
        has_boxes: the pointing game was played (the data set has object boxes).
        seconds: wall time of the whole table.
    """

    rows: list[LeaderboardRow]
    n_images: int
    has_boxes: bool
    seconds: float

    def records(self) -> list[dict]:
        """One dict per row: ``method``, ``title``, every ``COLUMNS`` field and ``error``."""
        return [asdict(row) for row in self.rows]

    def to_csv(self) -> str:
        """The table as CSV text, a header line first (empty cells for ``nan``)."""
        out = io.StringIO()
        writer = csv.DictWriter(out, [f.name for f in fields(LeaderboardRow)],
                                lineterminator="\n")
        writer.writeheader()
        for record in self.records():
            writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v
                             for k, v in record.items()})
        return out.getvalue()


def leaderboard(model: ExplorableModel, dataset, methods=None, n: int = 100,
                callback: Progress | None = None,
                config: LeaderboardConfig = LeaderboardConfig()) -> Leaderboard:
    """Score every method on ``n`` images of ``dataset``.

    Args:
        model: the model (never modified).
        dataset: an ``engine.data.dataset.Dataset`` (``n`` images spread over it, with the demo
            set's boxes), or anything with ``images`` and ``boxes`` (``None`` or (N, 4)), such as
            ``sampling.ImageSample`` or ``shapes.ShapesBatch`` (its first ``n`` images).
        methods: keys of ``METHODS``; default: all of them.
        n: how many images.
        callback: ``callback(done, total, stage)`` counted in methods (fractional while one
            is scored), the stage naming it (``engine.progress``); once its
            ``stop_requested`` is true, no further method starts.
        config: ``LeaderboardConfig``.

    Returns:
        ``Leaderboard``.

    Raises:
        KeyError: an unknown method.
        InvalidDatasetError: no image to score.
    """
    started = time.perf_counter()
    names = list(METHODS if methods is None else methods)
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise KeyError(f"Unknown saliency method {unknown[0]!r}; choose from {list(METHODS)}.")
    images, boxes = _sample(dataset, n)
    classes = resolve_classes(model.class_names, None, model.probabilities(images))
    others = list(random_other_classes(classes, model.n_classes, config.seed))
    randomised = randomized_copy(model, config.randomised_layers, config.seed)
    rows = []
    for i, name in enumerate(names):
        if stop_requested(callback):
            break

        def step(done, total, stage, i=i):
            report(callback, i + min(done / max(total, 1), 1.0), len(names), stage)

        rows.append(_scored(model, randomised, images, boxes, name, list(classes), others,
                            config, step))
    report(callback, len(names), len(names), f"All {len(rows)} methods scored.")
    return Leaderboard(rows, len(images), boxes is not None, time.perf_counter() - started)


def _sample(dataset, n: int):
    """``(images, boxes)`` of up to ``n`` images of ``dataset``."""
    from engine.data.dataset import Dataset
    from engine.data.sampling import sample_dataset

    if isinstance(dataset, Dataset):
        sample = sample_dataset(dataset, n)
        return sample.images, sample.boxes
    images = dataset.images[:n]
    if len(images) == 0:
        raise InvalidDatasetError("The data set has no images to score the methods on; choose "
                                  "another one.")
    boxes = getattr(dataset, "boxes", None)
    return images, None if boxes is None else np.asarray(boxes)[:n]


def _scored(model, randomised, images, boxes, name, classes, others, config, step):
    """One method's row; a method that fails gets a row saying why."""
    title = METHODS[name].title
    try:
        return _row(model, randomised, images, boxes, name, classes, others, config, step)
    except CNNExplorerError as exc:
        return LeaderboardRow(name, title, error=f"{title}: {exc}")
    except Exception:  # a bug in one method: the others are still scored
        log.exception("leaderboard: %s failed", name)
        return LeaderboardRow(name, title, error=f"{title}: something went wrong inside CNN "
                                                 "Explorer; the details were written to the "
                                                 "server log.")


def _row(model, randomised, images, boxes, name, classes, others, config, step):
    title, n, c = METHODS[name].title, len(images), config
    layer = c.layer if METHODS[name].uses_layer else None

    def maps_of(network, targets, stage, share, count=n):
        return explain(network, images[:count], name, targets[:count], layer,
                       batch_size=c.batch_size,
                       progress=lambda d, t, _s: step(share[0] + share[1] * d / max(t, 1), 1,
                                                      f"{title}: {stage}"))

    clock = time.perf_counter()
    maps = maps_of(model, classes, "maps", (0.0, 0.3))
    seconds = (time.perf_counter() - clock) / n
    step(0.3, 1, f"{title}: deletion and insertion")
    curves = [deletion_insertion(model, image, saliency, cls, steps=c.deletion_steps,
                                 random_orders=0, seed=c.seed, batch_size=c.batch_size)
              for image, saliency, cls in zip(images, maps, classes)]
    step(0.4, 1, f"{title}: ROAD")
    morf, lerf = (road(model, images, maps, fractions=c.road_fractions, order=order,
                       classes=classes, noise=c.road_noise, seed=c.seed,
                       batch_size=c.batch_size).auc for order in ("most", "least"))
    few = max(1, min(n, c.sanity_images))
    randomised_maps = maps_of(randomised, classes, "randomised model", (0.6, 0.2), few)
    other_maps = maps_of(model, others, "random other class", (0.8, 0.2), few)
    return LeaderboardRow(
        name, title,
        deletion_auc=float(np.mean([k.deletion_auc for k in curves])),
        insertion_auc=float(np.mean([k.insertion_auc for k in curves])),
        road_morf=morf, road_lerf=lerf,
        pointing_game=math.nan if boxes is None else float(pointing_game(maps, boxes).mean()),
        model_randomisation=_mean_similarity(maps, randomised_maps),
        random_logit=_mean_similarity(maps, other_maps), seconds_per_image=seconds)


def _mean_similarity(maps, others) -> float:
    return float(np.mean([map_similarity(a, b) for a, b in zip(maps, others)]))
