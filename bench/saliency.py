"""Benchmark: every saliency method vs tf-keras-vis 0.8.7, or vs the plain GradientTape way for
the methods tf-keras-vis lacks, on VGG16 (``weights=None``, 224x224, one image), in one run.

Both sides do the same work: the same network, image, class, layer and settings. tf-keras-vis
gets the Keras network on the preprocessed image and the ``ReplaceToLinear`` modifier its docs
recommend (Score-CAM: a logits copy of the network, so that its softmax weights are the class
probabilities, as ours); its visualiser objects are built before the clock starts, as our graph
is traced before it (first-call times, tracing included, are reported for Grad-CAM). The plain
ways are what a person writes first: an eager ``tf.GradientTape`` pass per integration step, a
``model(x)`` call per occlusion patch.

The two sides run alternately (reference, ours, reference, ours...), so that the load of other
processes on a shared machine falls on both alike; each time is the median of its calls.

Prints JSON: seconds per call for both sides, ``ratio`` = ours / reference (lower is better),
the goal where ``GOALS`` sets one, the Pearson correlation of the two maps (the same work gives
the same answer), and the load average before and after.

    python bench/saliency.py            # full settings: Score-CAM over all 512 channels
    python bench/saliency.py --quick    # Score-CAM over 64 channels, coarser occlusion
    python bench/saliency.py --only cams,smoothgrad --repeats 7
    python bench/saliency.py --only smoothgrad,scorecam --precisions float32,auto

SmoothGrad and Score-CAM, whose batched passes can run in bfloat16 (``explain(...,
precision=)``), are timed in each of ``--precisions`` (default float32 and auto) against the
same reference calls: one row per precision, with the Pearson r of its map to the float32 one.
Their rows also carry ``floors``, timed in the same loop: the least work any SmoothGrad of 20
samples must do (20 forward passes and 20 input gradients) done by plain Keras in float32 and
in bfloat16, and that many multiply-adds at the machine's bfloat16 matrix-multiply rate; each
with its ratio to tf-keras-vis. A goal below the floors' ratios cannot be met on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from engine.models import load_model  # noqa: E402
from engine.models.layers import dtype_policy  # noqa: E402
from engine.saliency import METHODS, explain  # noqa: E402
from engine.saliency.base import normalize, resize_map  # noqa: E402
from engine.saliency.graph import resolve_precision  # noqa: E402

LAYER = "block5_conv3"
GOALS = {"gradcam": 0.3, "smoothgrad": 0.2, "scorecam": 0.5, "integrated_gradients": 0.5}


def _seeded(seed, fn):
    """tf-keras-vis draws SmoothGrad's noise from NumPy's global generator; seeded like ours
    (seed 0), both sides average the very same noisy copies."""
    np.random.seed(seed)
    return fn()


def _pearson(ours, theirs) -> float:
    theirs = np.asarray(theirs, np.float32).reshape(np.shape(theirs)[-2:])
    ours = resize_map(np.asarray(ours, np.float32), theirs.shape)
    return round(float(np.corrcoef(normalize(ours).ravel(), normalize(theirs).ravel())[0, 1]), 4)


class Bench:
    def __init__(self, quick: bool, repeats: int, slow_repeats: int,
                 precisions: tuple[str, ...] = ("float32", "auto")):
        self.quick, self.repeats, self.slow_repeats = quick, repeats, slow_repeats
        self.precisions = precisions
        self.model = load_model("vgg16", weights=None)
        self.net = self.model.keras_model
        rng = np.random.default_rng(0)
        self.image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
        self.x = self.model.prepare(self.image)                          # (1, 224, 224, 3)
        self.x_net = self.model.preprocess(tf.constant(self.x)).numpy()  # what VGG16 takes
        self.target = int(np.argmax(self.model.probabilities(self.image)[0]))
        self.results = []
        self._linear = None

    # ------------------------------------------------------------------------------ helpers
    @property
    def linear(self) -> keras.Model:
        """A logits copy of the network (ours differentiates the logits too)."""
        if self._linear is None:
            self._linear = self._tfkv("saliency").model
        return self._linear

    def _tfkv(self, name):
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.layercam import Layercam
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

        cls = {"gradcam": Gradcam, "gradcam_plus_plus": GradcamPlusPlus, "layercam": Layercam,
               "saliency": Saliency}[name]
        return cls(self.net, model_modifier=ReplaceToLinear(), clone=True)

    def _score(self):
        from tf_keras_vis.utils.scores import CategoricalScore

        return CategoricalScore([self.target])

    def _ours(self, method, **options):
        return lambda: explain(self.model, self.image, method, self.target, **options)[0]

    def _compare(self, method, reference, ours, theirs, settings, slow=False, floors=None,
                 **extra):
        """Warm both up, then time them alternately; record medians and the ratio.

        ``ours`` is one callable, or ``{precision: callable}`` for the methods whose batched
        passes can run in bfloat16: each variant is timed in the same loop against the same
        reference calls, and gets a row of its own. ``floors`` (``{name: (what, callable)}``)
        are timed in the same loop too and reported in every row with their own ratio to the
        reference: the least work any implementation must do, at the speed plain Keras does
        it."""
        variants = ours if isinstance(ours, dict) else {None: ours}
        floors = floors or {}
        t_floor = {name: [] for name in floors}
        repeats = self.slow_repeats if slow else self.repeats
        if not slow:  # slow ones warm up on a smaller job of the same shapes (see callers)
            theirs()  # tracing, first allocations: what the app pays once
            for fn in variants.values():
                fn()
        t_ref, c_ref, map_ref = [], [], None
        t_ours = {key: [] for key in variants}
        c_ours = {key: [] for key in variants}
        maps = {}
        for _ in range(repeats):
            start, cpu = time.perf_counter(), time.process_time()
            map_ref = theirs()
            t_ref.append(time.perf_counter() - start)
            c_ref.append(time.process_time() - cpu)
            for key, fn in variants.items():
                start, cpu = time.perf_counter(), time.process_time()
                maps[key] = fn()
                t_ours[key].append(time.perf_counter() - start)
                c_ours[key].append(time.process_time() - cpu)
            for name, (_, fn) in floors.items():
                start = time.perf_counter()
                seconds = fn()  # a number: a computed time; else the call is timed
                t_floor[name].append(seconds if isinstance(seconds, float)
                                     else time.perf_counter() - start)
        if floors:
            reference_s = statistics.median(t_ref)
            extra["floors"] = {name: {
                "what": what, "s": round(statistics.median(t_floor[name]), 4),
                "ratio": round(statistics.median(t_floor[name]) / reference_s, 3)}
                for name, (what, _) in floors.items()}
        first = next(iter(variants))
        for key in variants:
            row_extra = dict(extra)
            if key is not None:
                row_extra = {"precision": key, "computes_in": resolve_precision(key), **extra}
                if key != first:  # the same method in float32, same run
                    row_extra["pearson_r_vs_float32"] = _pearson(maps[key], maps[first])
            self._row(method, reference, settings, repeats, t_ours[key], c_ours[key], t_ref,
                      c_ref, maps[key], map_ref, row_extra)

    def _row(self, method, reference, settings, repeats, t_ours, c_ours, t_ref, c_ref,
             map_ours, map_ref, extra):
        row = {"method": method, "reference": reference, "settings": settings,
               "calls": repeats, "ours_s": round(statistics.median(t_ours), 4),
               "reference_s": round(statistics.median(t_ref), 4)}
        row["ratio"] = round(row["ours_s"] / row["reference_s"], 3)
        # CPU seconds (all threads): on a machine shared with other work, the wall-clock
        # ratio moves with their load; the CPU-time ratio hardly does.
        row["ours_cpu_s"] = round(statistics.median(c_ours), 3)
        row["reference_cpu_s"] = round(statistics.median(c_ref), 3)
        row["ratio_cpu"] = round(row["ours_cpu_s"] / row["reference_cpu_s"], 3)
        if method in GOALS:
            row["goal"] = f"<= {GOALS[method]}"
            row["goal_met"] = row["ratio"] <= GOALS[method]
        row["pearson_r"] = _pearson(map_ours, map_ref)
        row.update(extra)
        self.results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    # ------------------------------------------------------------------------------ methods
    def cams(self):
        for method in ("gradcam", "gradcam_plus_plus", "layercam"):
            vis = self._tfkv(method)
            extra = {}
            if method == "gradcam":
                from engine.saliency.graph import _graphs

                _graphs.clear()  # a first call on this model: tracing included
                start = time.perf_counter()
                self._ours(method, layer=LAYER)()
                ours_first = time.perf_counter() - start
                start = time.perf_counter()
                vis(self._score(), self.x_net, penultimate_layer=LAYER)
                extra = {"ours_first_call_s": round(ours_first, 3),
                         "reference_first_call_s": round(time.perf_counter() - start, 3)}
            # The two maps at the layer's own 14 x 14 grid, before either side upsamples.
            grid = METHODS[method](self.model, LAYER).attribute(self.x, np.array([self.target]))
            theirs_grid = vis(self._score(), self.x_net, penultimate_layer=LAYER,
                              expand_cam=False)
            extra["pearson_r_grid"] = _pearson(grid[0], theirs_grid[0])
            self._compare(method, "tf-keras-vis", self._ours(method, layer=LAYER),
                          lambda: vis(self._score(), self.x_net, penultimate_layer=LAYER)[0],
                          {"layer": LAYER}, **extra)

    def vanilla(self):
        vis = self._tfkv("saliency")
        self._compare("vanilla", "tf-keras-vis", self._ours("vanilla"),
                      lambda: vis(self._score(), self.x_net)[0], {})

    def smoothgrad(self):
        vis = self._tfkv("saliency")
        samples = 20
        # tf-keras-vis scales the noise to the value range of the network input, ours to the
        # pixels'; VGG16's per-channel mean shift widens the former, so ours is scaled to the
        # same sigma. The draws still differ (VGG16's network input is BGR: the same numbers
        # land on other channels), so the maps agree as two SmoothGrads of 20 samples do.
        noise = 0.2 * float(np.ptp(self.x_net)) / float(np.ptp(self.x))
        ours = {p: self._ours("smoothgrad", samples=samples, noise=noise, precision=p)
                for p in self.precisions}
        for fn in ours.values():
            fn()  # the batch shapes of 20 samples, once per precision
        floors = {f"plain_keras_{dtype}": (
            f"a plain Keras VGG16 in {dtype} ({dtype} layer policy, the same weights): one "
            f"forward and backward pass of the {samples} noisy images in one batch, input "
            "gradients only; no SmoothGrad of 20 samples does less work", fn)
            for dtype, fn in self._gradient_floors(samples).items()}
        macs = 2 * samples * _forward_macs(self.net)
        floors["hardware_bfloat16"] = (
            f"{macs / 1e9:.0f} G multiply-adds ({samples} forward passes and as many input "
            "gradients, each as many as the forward) at the rate this machine multiplies "
            "4096x4096 bfloat16 matrices (timed in the same loop)",
            lambda: macs / _matmul_rate(tf.bfloat16))
        self._compare("smoothgrad", "tf-keras-vis", ours,
                      lambda: _seeded(0, lambda: vis(self._score(), self.x_net,
                                                     smooth_samples=samples,
                                                     smooth_noise=0.2)[0]),
                      {"samples": samples, "noise": 0.2, "ours_noise": round(noise, 4)},
                      slow=True, floors=floors)

    def _gradient_floors(self, samples: int) -> dict:
        """``{dtype: callable}``: input gradients of ``samples`` noisy copies of the image in
        one batch through a plain Keras copy of the network in float32 and bfloat16 (traced
        once here)."""
        noisy = tf.constant(self.x_net + np.random.default_rng(0).normal(
            0.0, 0.2 * float(np.ptp(self.x_net)), (samples,) + self.x_net.shape[1:]
        ).astype(np.float32))
        out = {}
        for dtype in ("float32", "bfloat16"):
            with dtype_policy(dtype):
                twin = keras.applications.VGG16(weights=None, classifier_activation=None)
            twin.set_weights(self.net.get_weights())

            @tf.function
            def gradients(x, _twin=twin):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    score = tf.reduce_sum(tf.cast(_twin(x, training=False)[:, self.target],
                                                  tf.float32))
                return tape.gradient(score, x)

            gradients(noisy)
            out[dtype] = lambda _fn=gradients: _fn(noisy).numpy()
        return out

    def scorecam(self):
        from tf_keras_vis.scorecam import Scorecam

        channels = 64 if self.quick else 0
        twin = keras.models.clone_model(self.net)
        twin.set_weights(self.net.get_weights())
        twin.layers[-1].activation = keras.activations.linear
        vis = Scorecam(twin)
        options = {"max_N": channels} if channels else {}
        for p in self.precisions:  # trace, once per precision
            self._ours("scorecam", layer=LAYER, max_channels=8, batch_size=32, precision=p)()
        self._compare("scorecam", "tf-keras-vis",
                      {p: self._ours("scorecam", layer=LAYER, max_channels=channels,
                                     batch_size=32, precision=p) for p in self.precisions},
                      lambda: vis(self._score(), self.x_net, penultimate_layer=LAYER,
                                  batch_size=32, **options)[0],
                      {"layer": LAYER, "channels": channels or 512, "batch_size": 32},
                      slow=True)

    def integrated_gradients(self):
        steps = 64
        x, target, preprocess, linear = self.x, self.target, self.model.preprocess, self.linear

        def per_step_loop():
            total = np.zeros_like(x[0])
            for k in range(steps):
                point = tf.constant(x * (k + 0.5) / steps)
                with tf.GradientTape() as tape:
                    tape.watch(point)
                    score = linear(preprocess(point), training=False)[0, target]
                total += tape.gradient(score, point).numpy()[0]
            return np.abs((x[0] * total / steps).sum(axis=-1))

        # The loop takes equal steps: ours too, for the same work. The default adaptive spacing
        # adds a forward-only pass of 17 points, timed apart.
        self._ours("integrated_gradients", steps=16)()  # trace, once
        ours = self._ours("integrated_gradients", steps=steps, spacing="uniform")
        start = time.perf_counter()
        self._ours("integrated_gradients", steps=steps)()
        adaptive = time.perf_counter() - start
        self._compare("integrated_gradients", "GradientTape loop, one pass per step", ours,
                      per_step_loop, {"steps": steps, "baseline": "black", "spacing": "uniform"},
                      slow=True, ours_adaptive_spacing_s=round(adaptive, 3))

    def gradient_x_input(self):
        x, target, preprocess, linear = self.x, self.target, self.model.preprocess, self.linear

        def one_tape():
            point = tf.constant(x)
            with tf.GradientTape() as tape:
                tape.watch(point)
                score = linear(preprocess(point), training=False)[0, target]
            return np.abs((x[0] * tape.gradient(score, point).numpy()[0]).sum(axis=-1))

        self._compare("gradxinput", "one eager GradientTape pass", self._ours("gradxinput"),
                      one_tape, {})

    def occlusion(self):
        patch, stride = (56, 28) if self.quick else (28, 14)
        net, x_net, target = self.net, self.x_net, self.target
        gray = self.model.preprocess(tf.fill((1, 224, 224, 3), 127.5)).numpy()

        def per_patch_loop():
            base = float(net(x_net, training=False)[0, target])  # VGG16 ends in a softmax
            drops, counts = np.zeros((224, 224)), np.zeros((224, 224))
            starts = list(range(0, 224 - patch + 1, stride))
            for y in starts:
                for xx in starts:
                    covered = x_net.copy()
                    covered[:, y:y + patch, xx:xx + patch] = gray[:, y:y + patch, xx:xx + patch]
                    score = float(net(covered, training=False)[0, target])
                    drops[y:y + patch, xx:xx + patch] += base - score
                    counts[y:y + patch, xx:xx + patch] += 1
            return np.maximum(drops / np.maximum(counts, 1), 0)

        self._ours("occlusion", patch=patch, stride=224)()  # trace, once
        self._compare("occlusion", "model(x) loop, one pass per patch",
                      self._ours("occlusion", patch=patch, stride=stride, fill="gray"),
                      per_patch_loop, {"patch": patch, "stride": stride}, slow=True)


def _forward_macs(net: keras.Model) -> int:
    """Multiply-adds of one forward pass of a plain convolution / dense network."""
    total = 0
    for layer in net.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, c_in, c_out = layer.kernel.shape
            h, w = layer.output.shape[1:3]
            total += kh * kw * c_in * c_out * h * w
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return total


def _matmul_rate(dtype, n: int = 4096, repeats: int = 3) -> float:
    """Multiply-adds per second of an (n, n) @ (n, n) product in ``dtype``: the arithmetic
    peak the convolutions can at best reach."""
    a = tf.cast(tf.random.stateless_uniform((n, n), (1, 2)), dtype)
    product = tf.function(lambda a: tf.matmul(a, a))
    product(a).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        product(a).numpy()
    return n ** 3 * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="Score-CAM over 64 channels and coarser occlusion patches")
    parser.add_argument("--repeats", type=int, default=5, help="calls timed per fast method")
    parser.add_argument("--slow-repeats", type=int, default=1,
                        help="calls timed per slow method (SmoothGrad, IG, occlusion, Score-CAM)")
    parser.add_argument("--only", default="", help="comma-separated parts: cams, vanilla, "
                        "smoothgrad, gxi, ig, occlusion, scorecam")
    parser.add_argument("--precisions", default="float32,auto",
                        help="comma-separated precisions timed for SmoothGrad and Score-CAM "
                        "(float32, bfloat16, auto), each against the same reference calls")
    args = parser.parse_args()
    keras.utils.disable_interactive_logging()  # tf-keras-vis' predict() would draw on stdout
    load_before = os.getloadavg()
    bench = Bench(args.quick, args.repeats, args.slow_repeats,
                  tuple(p for p in args.precisions.split(",") if p))
    parts = {"cams": bench.cams, "vanilla": bench.vanilla, "smoothgrad": bench.smoothgrad,
             "gxi": bench.gradient_x_input, "ig": bench.integrated_gradients,
             "occlusion": bench.occlusion, "scorecam": bench.scorecam}
    chosen = [p for p in args.only.split(",") if p] or list(parts)
    start = time.perf_counter()
    for name in chosen:
        parts[name]()
    import tf_keras_vis

    print(json.dumps({
        "benchmark": "saliency", "model": "vgg16 (weights=None)", "input": [224, 224],
        "images": 1, "quick": args.quick, "machine": platform.machine(), "cpus": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "tensorflow": tf.__version__, "keras": keras.__version__,
        "tf_keras_vis": tf_keras_vis.__version__, "auto_precision": resolve_precision("auto"),
        "total_s": round(time.perf_counter() - start, 1),
        "results": bench.results}, indent=2))


if __name__ == "__main__":
    main()
