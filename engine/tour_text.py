"""What the guided tour says, built from the engine's numbers: the plain-words preprocessing,
the colours of an image's channels, the convolution's sum and activation rule, the window's box
in the image, the quick fit's before/after and the guesses on unseen shapes.

``engine.tour`` chooses what each step shows; this module words it. Plain text (no Markdown).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from engine.conv_arithmetic import ConvArithmetic, channel_colours  # noqa: F401 (the Tour uses it)
from engine.training.quick import BatchPoint, EpochPoint, QuickFitConfig, QuickFitResult

#: what a network does to the 0-255 numbers before its first layer, in plain words
PREPROCESSING = {
    "unit": "divides every number by 255, so they run from 0 to 1",
    "tf": "rescales every number to run from -1 to 1",
    "caffe": "swaps red and blue, then subtracts the average colour of the photos it learned "
             "from",
    "torch": "rescales the numbers to 0 to 1, subtracts the average colour of the photos it "
             "learned from and divides by their spread",
    "raw": "uses the 0 to 255 numbers as they are",
}


def preprocessing_words(mode: str) -> str:
    """What preprocessing ``mode`` does to the numbers, in plain words."""
    return PREPROCESSING.get(mode, "rescales them")


def window_box(arith: ConvArithmetic, height: int, width: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the kernel's window in an image of ``height`` x ``width``,
    without the part that hangs over the border (the zero padding)."""
    rows, cols = arith.input_rows, arith.input_cols
    return (max(0, int(cols.min())), max(0, int(rows.min())),
            min(width, int(cols.max()) + 1), min(height, int(rows.max()) + 1))


def channel_sums_text(arith: ConvArithmetic, colours: Sequence[str]) -> str:
    """``"red 0.1234 + green -0.0100 + blue 0.0001"``: the products summed per input channel
    (channels without a colour go by number)."""
    return " + ".join(f"{colours[i] if i < len(colours) else i} {s:.4f}"
                      for i, s in enumerate(arith.channel_sums))


def activation_rule(arith: ConvArithmetic) -> str:
    """What the layer's activation does to the sum, in words."""
    if arith.activation == "relu":
        return ("negative, so ReLU makes it 0" if arith.pre_activation < 0
                else "positive, so ReLU keeps it")
    if arith.activation == "linear":
        return "this network applies ReLU in a separate layer after this one, so it stays"
    return f"then the '{arith.activation}' rule gives {arith.value:.4f}"


def fit_points(parts: Sequence) -> tuple[list[BatchPoint], list[EpochPoint]]:
    """A quick fit's published parts split into its batches and its validation epochs."""
    return ([p for p in parts if isinstance(p, BatchPoint)],
            [p for p in parts if isinstance(p, EpochPoint)])


@dataclass(frozen=True)
class FitSummary:
    """A quick fit before and after, for a sentence.

    Attributes:
        before, after: validation accuracy before training and at the end, in [0, 1].
        epochs: epochs done at the end.
        how: ``"2 epochs in 8 s"``, or ``"stopped after 60 of 120 batches"``.
        loss_before, loss_after: validation loss before and at the end.
    """

    before: float
    after: float
    epochs: int
    how: str
    loss_before: float
    loss_after: float


def fit_summary(result: QuickFitResult, config: QuickFitConfig, seconds: float) -> FitSummary:
    """The before/after of ``result``, trained with ``config`` in ``seconds``."""
    first, last = result.validation[0], result.validation[-1]
    how = (f"stopped after {len(result.points)} of {config.total_steps} batches"
           if result.stopped else f"{config.epochs} epochs in {seconds:.0f} s")
    return FitSummary(first.accuracy, last.accuracy, last.epoch, how, first.loss, last.loss)


def guess_captions(probabilities: np.ndarray, labels: Sequence[int],
                   class_names: Sequence[str]) -> list[str]:
    """``"says star (91%): right"`` or ``"says circle (40%): wrong, it is a star"`` per image.

    Args:
        probabilities: (N, C) the network's probabilities.
        labels: (N,) the true classes.
        class_names: the classes.
    """
    captions = []
    for p, label in zip(probabilities, labels):
        guess, label = int(np.argmax(p)), int(label)
        mark = "right" if guess == label else f"wrong, it is a {class_names[label]}"
        captions.append(f"says {class_names[guess]} ({p[guess]:.0%}): {mark}")
    return captions


def layer_caption(when: str, position: int, n_layers: int, shape: tuple[int, int, int],
                  shown: int) -> str:
    """``"Early: layer 1 of 7, 16 maps of 64×64; the 8 that respond most"``.

    Args:
        when: ``"Early"`` or ``"Late"``.
        position: the layer's place among the layers with maps, from 1.
        n_layers: layers with maps.
        shape: (h, w, channels) of its maps.
        shown: maps shown.
    """
    h, w, c = shape
    return (f"{when}: layer {position} of {n_layers}, {c} maps of {h}×{w}; the {shown} that "
            "respond most")
