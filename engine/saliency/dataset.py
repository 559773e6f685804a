"""Saliency over a whole data set: the average map per class and, where the objects' boxes are
known, how much of the saliency falls on them (a model that looks at the background shows up
as a low share, whatever its accuracy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.models.explorable import ExplorableModel
from engine.progress import Progress, report
from engine.saliency import explain
from engine.saliency.base import resize_map
from engine.saliency.metrics import box_area_share, pointing_game, saliency_in_boxes


@dataclass(frozen=True)
class DatasetSaliency:
    """Maps of many images, summarised per class.

    Attributes:
        class_names: the model's class names.
        explained: (N,) class index explained per image (its label when labels were given and
            name the model's classes, else its top class).
        predicted: (N,) the model's top class per image.
        mean_maps: (n_classes, S, S') mean map of the images explained as each class (zeros
            for a class with no image), at the common size S x S'.
        mean_images: (n_classes, S, S', 3) uint8 mean image of those images, to draw under it.
        counts: (n_classes,) images per class.
        box_share: (N,) share of each map inside its box, or ``None`` without boxes.
        box_area: (N,) share of the image each box covers (what an even map would score).
        pointing: (N,) whether each map's peak lies in its box.
    """

    class_names: list[str]
    explained: np.ndarray
    predicted: np.ndarray
    mean_maps: np.ndarray
    mean_images: np.ndarray
    counts: np.ndarray
    box_share: np.ndarray | None = None
    box_area: np.ndarray | None = None
    pointing: np.ndarray | None = None


def dataset_saliency(model: ExplorableModel, images, labels=None, boxes=None, *,
                     method: str = "gradcam", layer: str | None = None,
                     size: tuple[int, int] | None = None, batch_size: int = 32,
                     progress: Progress | None = None, **options) -> DatasetSaliency:
    """Explain every image and summarise the maps per class.

    Args:
        model: the model.
        images: (N, H, W, 3) uint8 array or a list of images (sizes may differ).
        labels: (N,) class indices into ``model.class_names``, or ``None``: each image is then
            explained, and grouped, as its top class.
        boxes: (N, 4) ``(x0, y0, x1, y1)`` object boxes in each image's pixels, or ``None``.
        method, layer, **options: as for ``explain``.
        size: the common size of the mean maps; default: the model's input size.
        batch_size: images per pass.
        progress: ``progress(done, total, "explaining images")`` over the images
            (``engine.progress``).

    Returns:
        ``DatasetSaliency``.
    """
    images = list(images) if not isinstance(images, np.ndarray) else images
    n = len(images)
    probabilities = model.probabilities(images)
    predicted = probabilities.argmax(axis=1)
    explained = predicted if labels is None else np.asarray(labels, np.int64)
    size = tuple(size or model.input_size)
    n_classes = model.n_classes
    sums = np.zeros((n_classes,) + size, np.float64)
    image_sums = np.zeros((n_classes,) + size + (3,), np.float64)
    counts = np.zeros(n_classes, np.int64)
    shares, hits, areas = [], [], []
    prepared = model.prepare(images) if size == tuple(model.input_size) else None
    for start in range(0, n, batch_size):
        part = images[start:start + batch_size]
        classes = explained[start:start + batch_size]
        maps = explain(model, part, method, [int(c) for c in classes], layer,
                       batch_size=batch_size, **options)
        if boxes is not None:
            part_boxes = np.asarray(boxes)[start:start + batch_size]
            shares.append(saliency_in_boxes(maps, part_boxes))
            hits.append(pointing_game(maps, part_boxes))
            areas.extend(box_area_share(b[None], np.shape(im)[:2])[0]
                         for b, im in zip(part_boxes, part))
        for k, (saliency, c) in enumerate(zip(maps, classes)):
            sums[c] += resize_map(saliency, size)
            image = prepared[start + k] if prepared is not None else _resized(part[k], size)
            image_sums[c] += image
            counts[c] += 1
        report(progress, min(start + batch_size, n), n, "explaining images")
    safe = np.maximum(counts, 1)
    return DatasetSaliency(
        class_names=list(model.class_names), explained=explained, predicted=predicted,
        mean_maps=(sums / safe[:, None, None]).astype(np.float32),
        mean_images=np.clip(image_sums / safe[:, None, None, None], 0, 255).astype(np.uint8),
        counts=counts,
        box_share=np.concatenate(shares) if boxes is not None else None,
        box_area=np.array(areas, np.float32) if boxes is not None else None,
        pointing=np.concatenate(hits) if boxes is not None else None)


def _resized(image, size):
    from engine.images import resize_image

    return resize_image(np.asarray(image, np.uint8), size).astype(np.float64)
