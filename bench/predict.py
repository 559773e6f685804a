"""Benchmark: the wrapped model's predict vs a plain ``model(x)`` on the same input.

The wrapper adds resizing checks, the model's preprocessing and the softmax handling inside a
``tf.function``; the plain way is calling the Keras model on an already preprocessed batch.
Prints JSON; the ratio is wrapped / plain (goal <= 1.1).

    python bench/predict.py [--model mobilenet_0.25] [--batch 8] [--repeats 20]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import emit, parser  # noqa: E402
from engine.models import load_model  # noqa: E402


def _time(fn, repeats: int) -> float:
    fn()  # warm-up: tracing and first allocation are not what we measure
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run(name: str, batch: int, repeats: int) -> dict:
    options = {} if name in ("demo", "scratch") else {"weights": None}
    model = load_model(name, **options)
    h, w = model.input_size
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
    x = model.preprocess(tf.constant(images, tf.float32)).numpy()  # plain path gets it ready-made

    wrapped = _time(lambda: model.probabilities(images), repeats)
    plain = _time(lambda: model.keras_model(x, training=False).numpy(), repeats)
    return {"model": name, "batch": batch, "input": [h, w], "repeats": repeats,
            "wrapped_s": round(wrapped, 5), "plain_model_call_s": round(plain, 5),
            "ratio_wrapped_over_plain": round(wrapped / plain, 3), "goal": "<= 1.1"}


def main() -> None:
    options = parser(__doc__, repeats=20)
    options.add_argument("--model", action="append", help="catalogue names (repeatable)")
    options.add_argument("--batch", type=int, default=8)
    args = options.parse_args()
    names = args.model or ["demo", "mobilenet_0.25", "vgg16"]
    emit("predict", tensorflow=tf.__version__,
         results=[run(name, args.batch, args.repeats) for name in names])


if __name__ == "__main__":
    main()
