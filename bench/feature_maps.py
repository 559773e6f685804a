"""Benchmark: every conv and pooling layer's maps of VGG16 vs one plain forward pass.

Same run, same machine, same preprocessed 224x224 image, VGG16 with ``weights=None``:

- ``plain_forward_s``: the plain way to run the network once, ``keras_model(x)`` traced into a
  ``tf.function`` (the fastest single pass Keras offers; the eager call is reported too);
- ``feature_maps_s``: ``engine.features.feature_maps`` for all 18 conv + pooling layers, from
  the RGB 0-255 image, results copied to NumPy (about 15 M floats). The walk stops after
  block5_pool, so the dense head (fc1 alone holds 103 M of the 138 M weights) is not run;
  ``feature_maps_every_layer_s`` adds fc1, fc2 and predictions, i.e. a full pass;
- ``keras_multi_output_s``: the plain Keras way to get the same maps in one pass, a
  ``keras.Model(inputs, [layer.output, ...])`` called on the image (it cannot reach layers of
  nested models, which ``feature_maps`` can);
- ``grid_render_s``: drawing the grid of the largest layer (block1_conv1, 64 maps of 224x224)
  as one image, then the PNG, then the Plotly figure around it.

The ratio ``feature_maps_s / plain_forward_s`` has the goal <= 1.3. The ways are timed in turn
within each round (medians), so load from other processes on a shared machine hits all alike.
Prints JSON.

    python bench/feature_maps.py [--repeats 15]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import emit, parser  # noqa: E402
from engine import features  # noqa: E402
from engine.models import load_model  # noqa: E402
from ui import feature_figures as ff  # noqa: E402


def _time(fn, repeats: int) -> float:
    return _interleaved({"fn": fn}, repeats)["fn"]


def _interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each function, timed in turn within every round, so that load from
    other processes on a shared machine hits all of them alike."""
    for fn in fns.values():  # warm-up: tracing and first allocations are not what we measure
        fn()
        fn()
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def run(repeats: int) -> dict:
    model = load_model("vgg16", weights=None)
    network = model.keras_model
    image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    x = model.preprocess(tf.constant(model.prepare(image))).numpy()
    layers = [m.path for m in features.map_layers(model) if m.kind in ("conv", "pool")]

    forward = tf.function(lambda t: network(t, training=False))
    every = [m.path for m in features.map_layers(model)]  # + fc1, fc2, predictions
    multi = keras.Model(network.inputs, [network.get_layer(p).output for p in layers])
    multi_forward = tf.function(lambda t: multi(t, training=False))
    maps = features.feature_maps(model, image, layers)
    times = _interleaved({
        "plain": lambda: forward(tf.constant(x)).numpy(),
        "eager": lambda: network(x, training=False).numpy(),
        "ours": lambda: features.feature_maps(model, image, layers),
        "ours_every": lambda: features.feature_maps(model, image, every),
        "keras_multi": lambda: [t.numpy() for t in multi_forward(tf.constant(x))],
    }, repeats)
    plain, eager, ours, ours_every, keras_multi = (
        times[k] for k in ("plain", "eager", "ours", "ours_every", "keras_multi"))

    largest = max(layers, key=lambda p: maps[p][0].size)
    values = maps[largest][0]
    stats = features.channel_stats(values)
    low, high = features.color_limits(maps, largest, "local")

    def render():
        grid = ff.channel_grid(values, low, high, "viridis", stats.order("index"), stats.dead)
        return grid, ff.png_bytes(grid.image), ff.grid_figure(grid, stats, selected=0)

    grid_only = _time(lambda: ff.channel_grid(values, low, high, "viridis",
                                              stats.order("index"), stats.dead), repeats)
    grid_all = _time(render, repeats)
    grid, png, _ = render()
    n_values = sum(maps[p].size for p in layers)
    return {
        "model": "vgg16 (weights=None)", "input": [224, 224], "images": 1,
        "layers": len(layers), "values_returned": int(n_values), "repeats": repeats,
        "plain_forward_s": round(plain, 4), "plain_forward_eager_s": round(eager, 4),
        "feature_maps_s": round(ours, 4), "keras_multi_output_s": round(keras_multi, 4),
        "ratio_feature_maps_over_plain_forward": round(ours / plain, 3),
        "feature_maps_every_layer_s": round(ours_every, 4),
        "ratio_every_layer_over_plain_forward": round(ours_every / plain, 3),
        "ratio_feature_maps_over_keras_multi_output": round(ours / keras_multi, 3),
        "goal": "ratio_feature_maps_over_plain_forward <= 1.3",
        "grid_layer": largest, "grid_layer_shape": list(values.shape),
        "grid_image_px": list(grid.image.shape[:2]), "grid_tile_px": list(grid.tile),
        "grid_render_s": round(grid_only, 4),
        "grid_render_png_and_figure_s": round(grid_all, 4), "grid_png_kb": len(png) // 1024,
    }


def main() -> None:
    args = parser(__doc__, repeats=15).parse_args()
    emit("feature_maps", tensorflow=tf.__version__, keras=keras.__version__,
         result=run(args.repeats))


if __name__ == "__main__":
    main()
