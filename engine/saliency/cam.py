"""Class activation maps: a weighted sum of one layer's channels, ``relu(sum_k w_k * A_k)``.

Every method here is a ``CamMethod`` and differs only in its weights: the mean gradient
(Grad-CAM), a weighted mean of positive gradients (Grad-CAM++), the positive gradient at each
position (Layer-CAM), or the class probability of the image masked by the channel (Score-CAM).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from engine.saliency.base import CamMethod
from engine.saliency.graph import as_numpy, batches
from engine.saliency.targets import row_scores

_SPATIAL = (1, 2)


class GradCAM(CamMethod):
    """Selvaraju et al. 2017: channel weight = mean over positions of d score / d A_k."""

    name, title = "gradcam", "Grad-CAM"
    summary = "Which regions of the last convolution block raise the class score."

    def weights(self, activations, gradients):
        return gradients.mean(axis=_SPATIAL, keepdims=True)


class GradCAMPlusPlus(CamMethod):
    """Chattopadhay et al. 2018, as in the authors' code and tf-keras-vis: positive gradients
    weighted per position by ``alpha = g^2 / (2 g^2 + sum(A) g^3)``, alphas normalised over
    positions. The paper's ``exp(score)`` factor cancels in alpha and only scales the map, so
    it is left out (it overflows for large logits)."""

    name, title = "gradcam_plus_plus", "Grad-CAM++"
    summary = "Grad-CAM that counts every positive region, not only the strongest: better " \
              "with several objects."

    def weights(self, activations, gradients):
        g2, g3 = gradients**2, gradients**3
        total = activations.sum(axis=_SPATIAL, keepdims=True)
        denominator = 2.0 * g2 + total * g3
        alphas = g2 / np.where(g2 == 0.0, 1.0, denominator + (denominator == 0.0))
        norm = alphas.sum(axis=_SPATIAL, keepdims=True)
        alphas = alphas / np.where(norm == 0.0, 1.0, norm)
        return (np.maximum(gradients, 0.0) * alphas).sum(axis=_SPATIAL, keepdims=True)


class LayerCAM(CamMethod):
    """Jiang et al. 2021: each position weighted by its own positive gradient; works on earlier
    layers too, where Grad-CAM's averaged weights blur."""

    name, title = "layercam", "Layer-CAM"
    summary = "Grad-CAM with a weight per position: sharper, and usable on earlier layers."

    def weights(self, activations, gradients):
        return np.maximum(gradients, 0.0)


class ScoreCAM(CamMethod):
    """Wang et al. 2020: no gradients. Each channel, upsampled to the input and scaled to
    [0, 1], masks the image; the channel's weight is the class probability of the masked image.
    As in the authors' code, pytorch-grad-cam and tf-keras-vis, a mask multiplies the network's
    input (after preprocessing: a masked-out pixel is the network's zero, usually the mean
    colour) and is upsampled with corners aligned (the border cells reach the image border);
    the final map, like every map here, is upsampled with half-pixel centres.

    Masked images go through the model in batches. Channels that are constant on this image
    (all zero after a ReLU, often many of them) give the same all-zero mask, so that one input
    is scored once for all of them; so is each set of channels whose scaled maps are equal
    (after a ReLU, e.g. channels active at one and the same position).

    Options:
        max_channels: 0 uses every channel; N > 0 only the N channels whose activations vary
            most (Faster Score-CAM, as tf-keras-vis' ``max_N``).
    """

    name, title = "scorecam", "Score-CAM"
    summary = "Masks the image with each channel of the layer and keeps the masks the model " \
              "still recognises the class in; gradient-free, slower."
    options = {"max_channels": 0}
    top_class_in_graph = False
    speed = "slow"
    reduced_precision = True  # an average of many passes: bfloat16 keeps the map

    def attribute(self, x, classes):
        activations = [as_numpy(self.graph.activations(tf.constant(x[s])))
                       for s in batches(len(x), self.batch_size)]
        activations = np.concatenate(activations)
        if activations.ndim != 4:
            return super().attribute(x, classes)  # raises the "no spatial grid" error
        jobs = [self._masks(x[i], activations[i]) for i in range(len(x))]
        total = sum(len(batches(len(masks), self.batch_size)) + 1 for _, masks, _ in jobs)
        done, maps = 0, []
        for i, (keep, masks, source) in enumerate(jobs):
            scores = np.zeros(len(masks) + 1, np.float32)  # the last one: the all-zero mask
            for s in batches(len(masks), self.batch_size):
                scores[s] = self._class_probability(x[i], masks[s], classes[i])
                done += 1
                self.batch_done(done, total)
            if (source < 0).any():
                blank = np.zeros((1,) + x.shape[1:3], np.float32)
                scores[-1] = self._class_probability(x[i], blank, classes[i])[0]
            done += 1
            self.batch_done(done, total)
            cam = (activations[i][..., keep] * scores[source]).sum(axis=-1)
            maps.append(np.maximum(cam, 0.0))
        return np.stack(maps)

    def _masks(self, image, activations):
        """Channels kept, (K, h, w) masks (one per distinct scaled map), and per kept channel
        the row of its mask, -1 for a constant channel (all-zero mask: one forward pass scores
        them all)."""
        n = int(self.settings["max_channels"])
        keep = np.arange(activations.shape[-1])
        if 0 < n < len(keep):
            keep = np.sort(np.argsort(-activations.std(axis=(0, 1)), kind="stable")[:n])
        grid = activations[..., keep]
        low, high = grid.min(axis=(0, 1)), grid.max(axis=(0, 1))
        constant = (high - low) <= 0.0
        # Bilinear upsampling with corners aligned keeps each map's minimum and maximum, so
        # equal scaled grids give equal masks: each distinct one is upsampled and scored once.
        scaled = (grid[..., ~constant] - low[~constant]) / (high - low)[~constant]
        _, first, rows = np.unique(np.moveaxis(scaled, -1, 0).reshape(len(scaled[0, 0]), -1),
                                   axis=0, return_index=True, return_inverse=True)
        source = np.full(len(keep), -1)
        source[~constant] = rows.ravel()
        distinct = keep[~constant][first]
        if not len(distinct):
            return keep, np.zeros((0,) + image.shape[:2], np.float32), source
        up = tf.compat.v1.image.resize_bilinear(activations[None][..., distinct],
                                                image.shape[:2], align_corners=True).numpy()[0]
        low, high = up.min(axis=(0, 1)), up.max(axis=(0, 1))
        masks = (up - low) / (high - low)
        return keep, np.moveaxis(masks, -1, 0).astype(np.float32), source

    def _class_probability(self, image, masks, index):
        probabilities = self.batch_graph.masked_probabilities(tf.constant(image[None]),
                                                        tf.constant(masks))
        return row_scores(as_numpy(probabilities), index)
