"""The Model page's numbers as text and rows (engine.models.summary)."""

from __future__ import annotations

import csv
import io

import keras

from engine.models.architecture import ModelTotals, layer_table
from engine.models.summary import flops_text, layer_records, records_csv, totals_metrics


def _tiny():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)  # valid: 6x6x4
    x = keras.layers.MaxPooling2D(name="pool")(x)  # 3x3x4
    x = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="dense")(x), name="tiny")


def test_flops_are_given_in_g_from_a_tenth_of_a_g():
    assert flops_text(1e8) == "0.10 G"
    assert flops_text(15.47e9) == "15.47 G"
    assert flops_text(2.3e6) == "2.3 M"


def test_totals_are_labelled_with_their_units():
    totals = ModelTotals(params=1234567, trainable_params=1000, non_trainable_params=1233567,
                         size_mb=4.71, flops=3e6, n_layers=7, input_shape=(8, 8, 3),
                         output_shape=(2,))
    assert totals_metrics(totals) == [("Parameters", "1,234,567"), ("Trainable", "1,000"),
                                      ("Size", "4.7 MB"), ("FLOPs per image", "3.0 M"),
                                      ("Layers", "7")]


def test_the_short_table_keeps_convolutions_pooling_and_dense_layers():
    rows = layer_table(_tiny())
    every = layer_records(rows)
    short = layer_records(rows, show_all=False)
    assert [r["layer"] for r in short] == ["conv", "pool", "dense"]
    assert len(every) > len(short) and "flat" in [r["layer"] for r in every]
    conv = short[0]
    # 3x3 kernels over 3 colours for 4 filters, plus 4 biases; a 6x6x4 output
    assert conv["parameters"] == 3 * 3 * 3 * 4 + 4 and conv["output shape"] == "6 x 6 x 4"
    assert conv["receptive field"] == 3 and short[1]["receptive field"] == 4


def test_the_csv_reads_back_as_the_records():
    records = layer_records(layer_table(_tiny()), show_all=False)
    back = list(csv.DictReader(io.StringIO(records_csv(records))))
    assert [r["layer"] for r in back] == ["conv", "pool", "dense"]
    assert back[0]["parameters"] == "112"
    assert records_csv([]).strip() == "layer"
