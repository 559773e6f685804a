"""What the guided tour says (engine.tour_text), against hand-made convolution terms and fits."""

from __future__ import annotations

import numpy as np

from engine.conv_arithmetic import ConvArithmetic
from engine.tour_text import (activation_rule, channel_colours, channel_sums_text, fit_points,
                              fit_summary, guess_captions, layer_caption, preprocessing_words,
                              window_box)
from engine.training.quick import BatchPoint, EpochPoint, QuickFitConfig, QuickFitResult


def _arith(rows=(-1, 0, 1), cols=(4, 5, 6), sums=(0.5, -0.25, 0.125), bias=0.1,
           activation="relu") -> ConvArithmetic:
    total = float(sum(sums))
    pre = total + bias
    value = max(pre, 0.0) if activation == "relu" else pre
    zeros = np.zeros((3, 3, len(sums)))
    return ConvArithmetic(row=0, col=5, channel=2, input_rows=np.array(rows),
                          input_cols=np.array(cols), patch=zeros, inside=np.ones((3, 3), bool),
                          kernel=zeros, products=zeros, channel_sums=np.array(sums), total=total,
                          bias=bias, pre_activation=pre, activation=activation, value=value)


def test_preprocessing_in_words_with_a_fallback():
    assert "by 255" in preprocessing_words("unit")
    assert preprocessing_words("unknown") == "rescales them"


def test_the_channels_colours_follow_the_preprocessing():
    assert channel_colours(1, "unit") == ["grey"]
    assert channel_colours(3, "unit") == ["red", "green", "blue"]
    assert channel_colours(3, "caffe") == ["blue", "green", "red"]  # Caffe swaps red and blue


def test_the_window_box_leaves_out_the_padding():
    # rows -1..1 hang over the top; columns 4..6 of an 8-wide image are inside
    assert window_box(_arith(), 8, 8) == (4, 0, 7, 2)
    assert window_box(_arith(rows=(6, 7, 8), cols=(6, 7, 8)), 8, 8) == (6, 6, 8, 8)


def test_the_sum_per_channel_names_colours_then_numbers():
    arith = _arith(sums=(0.5, -0.25, 0.125, 1.0))
    assert channel_sums_text(arith, ["red", "green", "blue"]) == (
        "red 0.5000 + green -0.2500 + blue 0.1250 + 3 1.0000")


def test_the_activation_rule_in_words():
    assert activation_rule(_arith()) == "positive, so ReLU keeps it"  # 0.375 + 0.1
    assert activation_rule(_arith(bias=-1.0)) == "negative, so ReLU makes it 0"
    assert "separate layer" in activation_rule(_arith(activation="linear"))
    assert activation_rule(_arith(activation="tanh")) == "then the 'tanh' rule gives 0.4750"


def _result(stopped=False) -> QuickFitResult:
    points = [BatchPoint(step, 1, 1.0, 0.5) for step in range(1, 4)]
    validation = [EpochPoint(0, 1.79, 0.17), EpochPoint(1, 0.9, 0.72)]
    return QuickFitResult(model=None, points=points, validation=validation, stopped=stopped)


def test_the_parts_of_a_fit_split_into_batches_and_epochs():
    result = _result()
    parts = [result.validation[0], *result.points, result.validation[1]]
    assert fit_points(parts) == (result.points, result.validation)


def test_the_fit_summary_before_and_after():
    config = QuickFitConfig(n_train=16, batch_size=8, epochs=2)  # 4 batches in all
    summary = fit_summary(_result(), config, 7.6)
    assert (summary.before, summary.after, summary.epochs) == (0.17, 0.72, 1)
    assert (summary.loss_before, summary.loss_after) == (1.79, 0.9)
    assert summary.how == "2 epochs in 8 s"
    assert fit_summary(_result(stopped=True), config, 1).how == "stopped after 3 of 4 batches"


def test_guess_captions_say_right_or_what_it_really_is():
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4]])
    assert guess_captions(probabilities, [0, 1], ["star", "circle"]) == [
        "says star (90%): right", "says star (60%): wrong, it is a circle"]


def test_the_layer_caption():
    assert layer_caption("Late", 7, 7, (8, 8, 64), 8) == (
        "Late: layer 7 of 7, 64 maps of 8×8; the 8 that respond most")
