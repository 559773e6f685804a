"""Predictions remembered per model and image.

Home predicts every chosen image on every rerun: each widget change, each new session (and every
session opens with the same default images), each image added to the selection. A forward pass
of an ImageNet network takes a second per few images on a small server, so each image's class
probabilities are computed once per model and kept (a few kilobytes each); only the images a
model has not seen yet go through the network, in one batch.

    >>> from engine.predictions import cached_predict
    >>> cached_predict(model, [image_a, image_b], top=5)   # both computed
    >>> cached_predict(model, [image_a, image_c], top=5)   # only image_c computed
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

from engine.cache import PerModelCache
from engine.models import top_classes

if TYPE_CHECKING:
    from engine.models import ExplorableModel

#: probability rows kept per model (1,000 classes: 4 kB a row)
ROWS_PER_MODEL = 256
_rows: "PerModelCache[np.ndarray]" = PerModelCache(max_per_model=ROWS_PER_MODEL)


def image_key(image) -> str:
    """A digest of an image's pixels, shape and type: equal images get equal keys."""
    array = np.ascontiguousarray(image)
    digest = hashlib.blake2b(f"{array.shape}{array.dtype}".encode(), digest_size=16)
    digest.update(array.data)
    return digest.hexdigest()


def cached_probabilities(model: ExplorableModel, images) -> np.ndarray:
    """``model.probabilities(images)``, computing only the images this model has not seen.

    Args:
        model: a loaded model (its rows go when the model goes).
        images: as for ``ExplorableModel.probabilities``.

    Returns:
        (N, n_classes) float32, one row per image in order.

    Raises:
        InvalidImageError: no images, or an image that is not (H, W, 3).
    """
    batch = [images] if isinstance(images, np.ndarray) and images.ndim == 3 else list(images)
    if not batch:
        return model.probabilities(batch)  # raises the engine's "no images" error
    keys = [image_key(image) for image in batch]
    cache = _rows.of(model)
    rows = {key: cache.get(key) for key in keys}
    missing = {key: image for key, image in zip(keys, batch) if rows[key] is None}
    if missing:
        computed = model.probabilities(list(missing.values()))
        for key, row in zip(missing, computed):
            row.setflags(write=False)  # shared by every session asking for this image
            cache.put(key, row)
            rows[key] = row
    return np.stack([rows[key] for key in keys])


def cached_predict(model: ExplorableModel, images, top: int = 5) -> list[list[tuple[str, float]]]:
    """``engine.models.predict`` from ``cached_probabilities``: the ``top`` most likely
    classes of each image, most likely first."""
    return top_classes(model.class_names, cached_probabilities(model, images), top)
