"""Benchmark: training throughput with live metrics on vs a plain ``model.fit``; and, with
``--full``, the scratch CNN trained on the demo data set against the demo model's accuracy.

Throughput: one compiled scratch CNN, the same ``tf.data`` pipeline (the data set pipeline
plus preprocessing, streamed from disk) and validation each epoch, fitted in turns:

- ``plain``: ``model.fit`` with nothing watching (a timing callback with epoch hooks only);
- ``live_metrics``: the same with ``RunMonitor`` writing ``metrics.jsonl`` (checkpoints and
  timeline off): the cost of live curves. Goal: plain / live_metrics time ratio >= 0.95;
- ``naive_per_batch_write``: a callback that opens the file and appends one JSON line per
  batch, the design the live metrics avoid (for reference);
- ``full_run_callback``: everything a run does per epoch: live metrics, the last and best
  checkpoints and the learning timeline (Grad-CAM of 12 probe images, first-layer filters).

Each timing is the wall time of a one-epoch ``fit`` of the same compiled model (no tracing
after the warm-up), validation included. Variants are interleaved and their order rotated
every round, and each ratio is the median over rounds of plain / variant, because the
machine's cores may be shared with other work. Prints JSON.

    python bench/training.py [--images 1200] [--size 64] [--batch 32] [--rounds 8]
    python bench/training.py --full     # + scratch CNN on the demo set, the card's epochs
    python bench/training.py --only-full --full-batch 32 --full-augment   # the best setting seen
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from engine.data import Augmentation, export_demo, save_augmentation  # noqa: E402
from engine.models.catalogue import demo_model_card  # noqa: E402
from engine.models.scratch import build_scratch_cnn  # noqa: E402
from engine.training import RunConfig, read_metrics, train  # noqa: E402
from engine.training.callbacks import RunMonitor  # noqa: E402
from engine.training.data import input_pipeline, steps_per_epoch, training_splits  # noqa: E402
from engine.training.runs import create_run  # noqa: E402
from engine.training.timeline import TimelineRecorder, pick_probes, probe_images  # noqa: E402


class HookTimer:
    """Mixin: adds up the time spent inside the callback's own hooks (its direct cost, which
    the noise of shared cores cannot blur)."""

    HOOKS = ("on_train_begin", "on_epoch_begin", "on_train_batch_end", "on_epoch_end",
             "on_train_end")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hook_seconds = 0.0
        for hook in self.HOOKS:
            inner = getattr(self, hook)

            def timed(*a, _inner=inner, **k):
                start = time.perf_counter()
                try:
                    return _inner(*a, **k)
                finally:
                    self.hook_seconds += time.perf_counter() - start

            setattr(self, hook, timed)


class TimedMonitor(HookTimer, RunMonitor):
    pass


class NaivePerBatchWriter(keras.callbacks.Callback):
    """A synchronous JSON line per batch (open, write, close): what live metrics must beat."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def on_train_batch_end(self, batch, logs=None):
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"batch": batch, **{k: float(v) for k, v in logs.items()}})
                         + "\n")


class TimedNaiveWriter(HookTimer, NaivePerBatchWriter):
    pass


def throughput(data_dir: Path, work: Path, n_images: int, size: int, rounds: int,
               batch: int) -> dict:
    dataset = export_demo(data_dir, n_images, size=size, seed=0)
    data = training_splits(dataset)
    n_train = data.count("train")
    pipeline = dict(image_size=(size, size), batch_size=batch, preprocessing="unit")
    train_ds = input_pipeline(data, "train", seed=0, **pipeline)
    val_ds = input_pipeline(data, "validation", shuffle=False, **pipeline)
    model = build_scratch_cnn((size, size), len(data.class_names), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  loss="sparse_categorical_crossentropy")
    steps = steps_per_epoch(n_train, batch)
    folders = {name: work / name for name in ("live", "naive", "full")}
    for folder in folders.values():
        folder.mkdir()
    probes = pick_probes(data.dataset.files_in("validation"), 12)
    timeline = TimelineRecorder(folders["full"], model, preprocessing="unit",
                                class_names=data.class_names,
                                images=probe_images(data.dataset, probes, (size, size)),
                                labels=[f.label for f in probes], paths=[f.path for f in probes])
    timeline.snapshot(0)  # trace Grad-CAM once, outside the timing

    hooks = {name: [] for name in ("live_metrics", "naive_per_batch_write",
                                   "full_run_callback")}

    def timed(name, callback):
        hooks[name].append(callback)
        return [callback]

    def monitor(folder, **options):
        return TimedMonitor(folder, stage=1, steps_per_epoch=steps, n_train=n_train,
                            batch_size=batch, **options)

    variants = {
        "plain": lambda: [],
        "live_metrics": lambda: timed("live_metrics",
                                      monitor(folders["live"], save_checkpoints=False)),
        "naive_per_batch_write": lambda: timed("naive_per_batch_write", TimedNaiveWriter(
            folders["naive"] / "m.jsonl")),
        "full_run_callback": lambda: timed("full_run_callback",
                                           monitor(folders["full"], timeline=timeline)),
    }

    def one_epoch(callbacks) -> tuple[float, float]:
        """(wall seconds, CPU seconds of this process) of the whole fit: checkpoints and
        timeline included."""
        wall, cpu = time.perf_counter(), time.process_time()
        model.fit(train_ds, validation_data=val_ds, epochs=1, verbose=0, shuffle=False,
                  callbacks=callbacks)
        return time.perf_counter() - wall, time.process_time() - cpu

    for make in variants.values():  # warm up: tracing, the pipeline, the first save
        one_epoch(make())
    for callbacks in hooks.values():
        callbacks.clear()
    seconds = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
            wall_s, cpu_s = one_epoch(variants[name]())
            seconds[name].append(wall_s)
            cpu[name].append(cpu_s)

    def ratio(times, name):
        return round(statistics.median(p / t for p, t in zip(times["plain"], times[name])), 3)

    plain = statistics.median(seconds["plain"])
    hook_s = {name: statistics.median(c.hook_seconds for c in callbacks)
              for name, callbacks in hooks.items()}

    return {
        "model": "scratch CNN", "input": [size, size], "batch": batch,
        "train_images": n_train, "validation_images": data.count("validation"),
        "rounds": rounds, "timed": "wall time of one-epoch fits (validation included), "
                                   "variants interleaved, rotated each round",
        "images_per_second": {k: round(n_train / statistics.median(v), 1)
                              for k, v in seconds.items()},
        "median_epoch_s": {k: round(statistics.median(v), 4) for k, v in seconds.items()},
        "median_epoch_cpu_s": {k: round(statistics.median(v), 4) for k, v in cpu.items()},
        "ratio_live_metrics_over_plain": ratio(seconds, "live_metrics"),
        "ratio_naive_per_batch_write_over_plain": ratio(seconds, "naive_per_batch_write"),
        "ratio_full_run_callback_over_plain": ratio(seconds, "full_run_callback"),
        "cpu_time_ratios": {name: ratio(cpu, name) for name in names[1:]},
        "callback_seconds_per_epoch": {k: round(v, 5) for k, v in hook_s.items()},
        "ratio_from_callback_time": {k: round(plain / (plain + v), 4) for k, v in hook_s.items()},
        "ratios_are": "median over rounds of plain time / variant time (1 = no cost); "
                      "cpu_time_ratios use this process's CPU seconds, steadier than wall "
                      "time when other work shares the cores; ratio_from_callback_time is "
                      "plain epoch / (plain epoch + the time spent inside the callback), "
                      "its direct cost",
        "goal": "ratio_live_metrics_over_plain >= 0.95",
    }


def accuracy(data_dir: Path, work: Path, n_images: int, batch: int | None,
             learning_rate: float, augment: bool) -> dict:
    """The scratch CNN on the demo data set for the demo model's documented epochs
    (``augment``: random flips and rotations, saved with the data set as the Data set page
    would)."""
    card = demo_model_card()
    size = int(card["input_size"][0])
    start = time.perf_counter()
    dataset = export_demo(data_dir, n_images, size=size, seed=card["train_seed"])
    made = time.perf_counter() - start
    augmentation = Augmentation(horizontal_flip=True, rotation=180.0) if augment else Augmentation()
    save_augmentation(dataset, augmentation)
    config = RunConfig(dataset=str(dataset.folder), epochs=int(card["epochs"]),
                       batch_size=batch or int(card["batch_size"]), image_size=(size, size),
                       learning_rate=learning_rate, probe_images=0)
    run_dir = create_run(config, work / "runs", launch=False)
    start = time.perf_counter()
    status = train(run_dir)
    epochs = [r for r in read_metrics(run_dir.name, work / "runs") if r["kind"] == "epoch"]
    return {
        "demo_model_card": {"heldout_accuracy": card["heldout_accuracy"],
                            "epochs": card["epochs"], "train_images": card["train_images"],
                            "augmentation": card["augmentation"]},
        "scratch_cnn": {"train_images": status.info["n_train"],
                        "batch_size": config.batch_size, "learning_rate": learning_rate,
                        "augmentation": augmentation.to_dict(),
                        "test_images": len(dataset.files_in("test")),
                        "epochs": len(epochs),
                        "val_accuracy_per_epoch": [r.get("val_accuracy") for r in epochs],
                        "test_accuracy": round(status.info.get("evaluation_accuracy", 0.0), 4),
                        "train_seconds": round(time.perf_counter() - start, 1),
                        "data_set_seconds": round(made, 1), "state": status.state},
        "reaches_demo_accuracy": status.info.get("evaluation_accuracy", 0.0)
        >= card["heldout_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1200, help="demo images (throughput)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=8,
                        help="one-epoch fits of each variant, interleaved")
    parser.add_argument("--full", action="store_true",
                        help="also train the scratch CNN on the demo set for the card's epochs")
    parser.add_argument("--full-images", type=int, default=25716,
                        help="demo images for --full (25716: 18000 of them for training, as "
                             "many as the demo model was trained on)")
    parser.add_argument("--full-batch", type=int, help="default: the demo model's batch size")
    parser.add_argument("--full-lr", type=float, default=1e-3)
    parser.add_argument("--full-augment", action="store_true",
                        help="random flips and rotations in --full")
    parser.add_argument("--only-full", action="store_true", help="skip the throughput part")
    args = parser.parse_args()
    # Runs print one line per epoch (their log); keep stdout for the JSON.
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        tmp = Path(tmp)
        report = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                              "keras": keras.__version__,
                              "note": "cores may be shared with other work"}}
        if not args.only_full:
            report["throughput"] = throughput(tmp / "data", tmp, args.images, args.size,
                                              args.rounds, args.batch)
        if args.full or args.only_full:
            report["accuracy"] = accuracy(tmp / "data", tmp, args.full_images, args.full_batch,
                                          args.full_lr, args.full_augment)
    print(json.dumps(report, indent=2), flush=True)


if __name__ == "__main__":
    main()
