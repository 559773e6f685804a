"""Occlusion sensitivity (Zeiler & Fergus 2014): cover one patch at a time and see how much the
class probability drops. Model-agnostic and easy to trust, but one forward pass per patch
position, so the occluded copies go through the model in batches."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from skimage.filters import gaussian

from engine.saliency.base import SaliencyMethod
from engine.saliency.graph import as_numpy, batches
from engine.saliency.targets import row_scores

FILLS = ("gray", "black", "mean", "blur")


def default_patch(side: int) -> int:
    """The patch side occlusion picks by itself for a model input of ``side`` pixels: an eighth."""
    return max(2, side // 8)


def default_stride(patch: int) -> int:
    """The step occlusion picks by itself for a ``patch``: half a patch."""
    return max(1, patch // 2)


class Occlusion(SaliencyMethod):
    """The drop of the class probability when a patch is covered, averaged over every patch
    covering a pixel; rises of the probability count as 0.

    Options (pixels at the model input size):
        patch: side of the square patch (default: 1/8 of the input side).
        stride: step between patch positions (default: half the patch).
        fill: what covers the patch: "gray" (127.5), "black", "mean" (the image's mean colour)
            or "blur" (a blurred copy of the image).
    """

    name, title = "occlusion", "Occlusion"
    summary = "How much the class probability drops when a square patch of the image is " \
              "covered: model-agnostic, slow."
    options = {"patch": None, "stride": None, "fill": "gray"}
    speed = "slow"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        side = min(self.model.input_size)
        self.patch = int(self.settings["patch"] or default_patch(side))
        self.stride = int(self.settings["stride"] or default_stride(self.patch))
        if not 1 <= self.patch <= side or self.stride < 1:
            raise ValueError(f"patch must be in [1, {side}] and stride >= 1, got "
                             f"{self.patch} and {self.stride}.")
        if self.settings["fill"] not in FILLS:
            raise ValueError(f"fill must be one of {FILLS}, got {self.settings['fill']!r}.")

    def positions(self) -> list[tuple[int, int]]:
        """Top-left corners of the patches; the last row and column touch the image edge."""
        h, w = self.model.input_size
        ys = _starts(h, self.patch, self.stride)
        xs = _starts(w, self.patch, self.stride)
        return [(y, x) for y in ys for x in xs]

    def filler(self, image: np.ndarray) -> np.ndarray:
        fill = self.settings["fill"]
        if fill == "blur":
            return blurred(image)
        if fill == "mean":
            return np.broadcast_to(image.mean(axis=(0, 1)), image.shape).astype(np.float32)
        return np.full_like(image, 127.5 if fill == "gray" else 0.0)

    def attribute(self, x, classes):
        corners = self.positions()
        p = self.patch
        parts = batches(len(corners), self.batch_size)
        total, done, maps = len(parts) * len(x), 0, []
        for i, image in enumerate(x):
            filler = self.filler(image)
            base = row_scores(as_numpy(self.graph.probabilities(tf.constant(image[None]))),
                              classes[i])[0]
            drops = np.zeros(image.shape[:2], np.float32)
            counts = np.zeros(image.shape[:2], np.float32)
            for s in parts:
                batch = np.repeat(image[None], s.stop - s.start, axis=0)
                for k, (y, xx) in enumerate(corners[s]):
                    batch[k, y:y + p, xx:xx + p] = filler[y:y + p, xx:xx + p]
                scores = row_scores(as_numpy(self.graph.probabilities(tf.constant(batch))),
                                    classes[i])
                for (y, xx), score in zip(corners[s], scores):
                    drops[y:y + p, xx:xx + p] += base - score
                    counts[y:y + p, xx:xx + p] += 1.0
                done += 1
                self.batch_done(done, total)
            maps.append(np.maximum(drops / np.maximum(counts, 1.0), 0.0))
        return np.stack(maps)


def _starts(size: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def blurred(image: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """A Gaussian-blurred copy of an (h, w, 3) 0-255 image (sigma: 1/20 of its side by default),
    the "nothing recognisable here" reference of occlusion, insertion and Integrated Gradients."""
    sigma = sigma if sigma is not None else max(image.shape[:2]) / 20.0
    out = gaussian(np.asarray(image, np.float32), sigma=sigma, channel_axis=-1,
                   preserve_range=True, mode="reflect")
    return out.astype(np.float32)
