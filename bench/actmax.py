"""Benchmark: activation maximisation per filter, ours vs tf-keras-vis, in the same run.

Both maximise the mean activation of each filter of VGG16 ``block3_conv1`` (random weights:
the cost does not depend on them) at the same number of steps, image size and transforms
(jitter, rotation, scale). tf-keras-vis' ``ActivationMaximization`` runs one filter at a time,
as it is used, with its own default optimiser and regularisers, on the network cut at the same
layer (what its ``ExtractIntermediateLayer`` does) with the same VGG preprocessing in front. Ours
runs ``engine.actmax.visualize`` on all filters, batched as it chooses.

Both get one warm-up run first (graph tracing, first allocations), then take turns on the same
chunks of filters (our batch size), so that the load of a shared machine falls on both alike.
The achieved activation of
every final image is measured by one independent reference, ``keras.Model(vgg.inputs,
vgg.get_layer(layer).output)`` on the preprocessed uint8 image, so neither tool grades itself.
Prints JSON: seconds per filter of each, the ratio (theirs / ours, goal >= 3 on a CPU) and the
achieved activations.

    python bench/actmax.py                       # 64 filters, 200 steps, 128x128 (long on a CPU)
    python bench/actmax.py --filters 8 --steps 50 --size 96
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from engine.actmax import default_batch_size, fast_precision, visualize  # noqa: E402
from engine.models.explorable import ExplorableModel  # noqa: E402
from engine.models.preprocessing import preprocess  # noqa: E402


def _networks(size: int, layer: str):
    vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    ours = ExplorableModel(vgg, name="vgg16_random", class_names=["-"], preprocessing="caffe",
                           input_size=(size, size))
    cut = keras.Model(vgg.inputs, vgg.get_layer(layer).output)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Lambda(lambda t: preprocess(t, "caffe"))(inputs)
    reference = keras.Model(inputs, cut(x))  # 0-255 RGB -> the layer's output
    return ours, reference


def _achieved(reference: keras.Model, images: np.ndarray, filters: list[int]) -> np.ndarray:
    out = reference.predict(np.asarray(images, np.float32), batch_size=8, verbose=0)
    return out.mean(axis=(1, 2))[np.arange(len(filters)), filters]


class Ours:
    """``visualize`` with the benchmark's settings; one warm-up call traces its graphs."""

    def __init__(self, model, layer, args):
        self.model, self.layer = model, layer
        self.options = dict(steps=args.steps, size=args.size, jitter=args.jitter,
                            rotate=args.rotate, scale=args.scale, param=args.param,
                            coarse_to_fine=args.coarse_to_fine, precision=args.precision)
        self.batch = args.batch or default_batch_size((args.size, args.size), args.filters)
        visualize(model, layer, [0], **{**self.options, "steps": 2, "batch_size": self.batch})

    def __call__(self, filters: list[int]) -> np.ndarray:
        return visualize(self.model, self.layer, filters, batch_size=self.batch,
                         **self.options).images


class TfKerasVis:
    """tf-keras-vis' ``ActivationMaximization``, one filter at a time, as it is used."""

    def __init__(self, reference, args):
        from tf_keras_vis.activation_maximization import ActivationMaximization
        from tf_keras_vis.activation_maximization.input_modifiers import Jitter, Rotate2D, Scale

        self.args = args
        self.modifiers = [Jitter(jitter=args.jitter)] if args.jitter else []
        if args.rotate:
            self.modifiers.append(Rotate2D(degree=args.rotate))
        if args.scale:
            self.modifiers.append(Scale(low=1 - args.scale, high=1 + args.scale))
        self.maximizer = ActivationMaximization(reference, clone=True)
        self.one(0, 2)  # warm-up

    def one(self, f: int, steps: int) -> np.ndarray:
        size = self.args.size
        seed = tf.random.stateless_uniform((1, size, size, 3), (0, f), 0, 255)
        x = self.maximizer(lambda out: tf.reduce_mean(out[..., f], axis=(1, 2)),
                           seed_input=seed, input_range=(0, 255),
                           input_modifiers=self.modifiers, steps=steps)
        return np.clip(np.round(np.asarray(x)[0]), 0, 255).astype(np.uint8)

    def __call__(self, filters: list[int]) -> np.ndarray:
        return np.stack([self.one(f, self.args.steps) for f in filters])


def run_interleaved(tools: dict, filters: list[int], chunk: int) -> dict:
    """Each tool on the same chunks of filters, taking turns chunk by chunk, so that a change
    in the load of a shared machine falls on both alike. Returns {name: (seconds per filter,
    images)}."""
    seconds = {name: 0.0 for name in tools}
    images = {name: [] for name in tools}
    for start in range(0, len(filters), chunk):
        part = filters[start:start + chunk]
        for name, tool in tools.items():
            began = time.perf_counter()
            images[name].append(tool(part))
            seconds[name] += time.perf_counter() - began
    return {name: (seconds[name] / len(filters), np.concatenate(images[name]))
            for name in tools}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filters", type=int, default=64, help="filters 0..N-1 of the layer")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--layer", default="block3_conv1")
    parser.add_argument("--jitter", type=int, default=4, help="pixels (tf-keras-vis default 4)")
    parser.add_argument("--rotate", type=float, default=1.0, help="degrees (its default 1)")
    parser.add_argument("--scale", type=float, default=0.0, help="zoom +- (its default: none)")
    parser.add_argument("--param", default="fourier", help="our parameterisation")
    parser.add_argument("--batch", type=int, default=0, help="our batch size (0: automatic)")
    parser.add_argument("--coarse-to-fine", action="store_true", help="our coarse-to-fine schedule")
    parser.add_argument("--precision", default="auto", help="ours: auto, float32 or bfloat16")
    parser.add_argument("--skip-theirs", action="store_true", help="time ours only")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)  # the same random VGG16 in every run
    model, reference = _networks(args.size, args.layer)
    filters = list(range(args.filters))
    ours = Ours(model, args.layer, args)
    tools = {"ours": ours} if args.skip_theirs else {"ours": ours,
                                                     "theirs": TfKerasVis(reference, args)}
    timed = run_interleaved(tools, filters, ours.batch)
    ours_s, ours_images = timed["ours"]
    ours_act = _achieved(reference, ours_images, filters)
    report = {
        "layer": f"vgg16(weights=None)/{args.layer}", "filters": args.filters,
        "steps": args.steps, "size": args.size,
        "transforms": {"jitter": args.jitter, "rotate": args.rotate, "scale": args.scale},
        "our_param": args.param, "our_coarse_to_fine": args.coarse_to_fine,
        "our_batch_size": ours.batch,
        "our_precision": args.precision if args.precision != "auto" else fast_precision(),
        "device": "GPU" if tf.config.list_physical_devices("GPU")
        else f"CPU ({os.cpu_count()} cores, shared)", "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "ours_s_per_filter": round(ours_s, 3),
        "ours_activation_mean": round(float(ours_act.mean()), 4),
    }
    if not args.skip_theirs:
        theirs_s, their_images = timed["theirs"]
        their_act = _achieved(reference, their_images, filters)
        report.update({
            "tf_keras_vis_s_per_filter": round(theirs_s, 3),
            "speedup_theirs_over_ours": round(theirs_s / ours_s, 2),
            "tf_keras_vis_activation_mean": round(float(their_act.mean()), 4),
            "activation_ratio_ours_over_theirs": round(float(ours_act.mean() / their_act.mean()),
                                                      3),
            "filters_where_ours_is_at_least_theirs": int((ours_act >= their_act).sum()),
            "per_filter": [{"filter": f, "ours": round(float(a), 4), "theirs": round(float(b), 4)}
                           for f, a, b in zip(filters, ours_act, their_act)],
            "goal": "speedup >= 3 on CPU, activation ratio >= 1",
        })
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
