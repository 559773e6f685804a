"""A few images drawn from a data set, for views that look at examples rather than at the whole
set: the Saliency page's average map per class, the Filters page's real images that excite a
filter most.

Both draw the same way: ``count`` files spread evenly over the data set's file list (sorted by
split, then path, so every split and class folder gets its share), or procedural shapes drawn
now from a seed the demo model never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.data.dataset import Dataset
from engine.data.shapes import CLASS_NAMES, make_shapes
from engine.errors import CNNExplorerError, InvalidDatasetError
from engine.images import load_image

#: shapes seed of the examples: neither the demo model's training seed nor its held-out one
#: (``engine.models.demo``), so its maps and top examples are on images it never saw
HELD_OUT_SEED = 31337


@dataclass(frozen=True)
class ImageSample:
    """Images with what is known about them.

    Attributes:
        images: (N, H, W, 3) uint8 array, or a list of (H_i, W_i, 3) uint8 images.
        labels: (N,) int64 indices into ``class_names``.
        boxes: (N, 4) int64 ``(x0, y0, x1, y1)`` object boxes (inclusive-exclusive, in each
            image's pixels), or ``None`` when some image has none.
        class_names: the data set's classes.
    """

    images: np.ndarray | list
    labels: np.ndarray
    boxes: np.ndarray | None
    class_names: list[str]


def spread(n: int, count: int) -> np.ndarray:
    """``min(count, n)`` distinct indices into ``n`` items, evenly spaced, the first and the last
    included (just the first for ``count`` 1)."""
    if n <= 0 or count <= 0:
        return np.zeros(0, np.int64)
    return np.linspace(0, n - 1, min(count, n)).round().astype(np.int64)


def sample_dataset(dataset: Dataset, count: int) -> ImageSample:
    """``count`` images spread evenly over every file of ``dataset`` (``spread``); a file that
    no longer loads (changed since the import) is left out.

    Raises:
        InvalidDatasetError: none of the chosen files can be read.
    """
    files = dataset.files_in(None)
    known = dataset.boxes()
    images, labels, boxes = [], [], []
    for i in spread(len(files), count):
        try:
            images.append(load_image(dataset.path_of(files[i])))
        except CNNExplorerError:
            continue
        labels.append(files[i].label)
        boxes.append(known.get(files[i].path))
    if not images:
        raise InvalidDatasetError(f"None of the images of '{dataset.name}' could be read; "
                                  "import the data set again or choose another one.")
    has_boxes = all(box is not None for box in boxes)
    return ImageSample(images, np.array(labels, np.int64),
                       np.array(boxes, np.int64) if has_boxes else None,
                       list(dataset.class_names))


def sample_shapes(count: int, *, size: int | None = None, seed: int = HELD_OUT_SEED
                  ) -> ImageSample:
    """``count`` demo shapes drawn now, with their boxes; ``size``: their side (default:
    ``make_shapes``')."""
    batch = make_shapes(count, seed=seed) if size is None else make_shapes(count, size=size,
                                                                           seed=seed)
    return ImageSample(batch.images, batch.labels, batch.boxes, list(CLASS_NAMES))
