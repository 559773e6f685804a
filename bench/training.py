"""Benchmark: training throughput with live metrics on vs a plain ``model.fit``; with
``--accuracy``, the scratch CNN trained on the demo data set against the demo model's accuracy;
with ``--scratch-sizes``, how far a short run with every default gets at two image sizes.

Throughput: one compiled scratch CNN, the same ``tf.data`` pipeline (the data set pipeline
plus preprocessing, streamed from disk) and validation each epoch, fitted in turns:

- ``plain``: ``model.fit`` with no callback of ours;
- ``live_metrics``: the same with ``RunMonitor`` writing ``metrics.jsonl`` (checkpoints and
  timeline off): the cost of live curves. Goal: images per second live / plain >= 0.95;
- ``naive_per_batch_write``: a callback that opens the file and appends one JSON line per
  batch, the design the live metrics avoid (for reference);
- ``full_run_callback``: everything a run does per epoch: live metrics, the last and best
  checkpoints and the learning timeline (Grad-CAM of 12 probe images, first-layer filters).

Each timing is the wall time of a one-epoch ``fit`` of the same compiled model (no tracing
after two warm-up rounds of every variant), validation included. ``plain`` and
``live_metrics`` run back to back in every trial, in alternating order (A B, B A, ...), the
references after them; each ratio is the median over trials of plain / variant time within a
trial, because the machine's cores may be shared with other work. Every trial is printed.

Accuracy: a run with the default settings (the Train page's: batch normalisation while
training, folded on save) on the demo shapes at 64 pixels, 25,716 images split 18,000 / 3,858 /
3,858 as the data set's train / validation / test, with both flips and the diagonal mirror saved
as the data set's augmentation (``--augmentation``), as on the Data set page; the trained model is
then scored on 3,000 fresh images from the demo model's held-out seed, and both networks'
errors are counted on the same 12,858 unseen images. Measured here (2 shared cores): held-out
0.9997 after 10 epochs (1 error in 12,858; the demo model 4), 0.9990-0.9993 after 6 (2 errors
in 12,858). Prints JSON.

    python bench/training.py [--images 1200] [--size 64] [--batch 32] [--trials 12]
    python bench/training.py --only-accuracy            # the scratch CNN, default recipe
    python bench/training.py --only-accuracy --accuracy-epochs 6 --set batch_size=64
    python bench/training.py --scratch-sizes            # 4 epochs at 64 and at 128 pixels

Scratch sizes: the 3,000-image demo set the Train page makes (64 pixels, with the mirrors),
trained from scratch with every default for 4 epochs, once at the default image size (the set's
own, ``default_image_size``) and once at 128 pixels (the images upscaled, as larger photos
would be trained); goal: validation accuracy >= 0.6 after the 4 epochs at both. Measured here
(2 shared cores): 0.847 at 64 pixels (33 s), 0.680 at 128 (117 s); the recipe before (a Dense
512 without batch norm, Glorot initialisation, a random classifier, 5 % warm-up, 128 pixels
by default): 0.331 and 0.167, its dense units dead.
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
import numpy as np  # noqa: E402

from engine.data import MIRRORS, Augmentation, export_demo, save_augmentation  # noqa: E402
from engine.data.pipeline import tf_dataset  # noqa: E402
from engine.data.shapes import make_shapes  # noqa: E402
from engine.models.catalogue import demo_model_card  # noqa: E402
from engine.models.loading import load_model  # noqa: E402
from engine.models.scratch import build_scratch_cnn  # noqa: E402
from engine.training import RunConfig, load_trained, read_metrics, train  # noqa: E402
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


def throughput(data_dir: Path, work: Path, n_images: int, size: int, n_trials: int,
               batch: int) -> dict:
    dataset = export_demo(data_dir, n_images, size=size, seed=0)
    data = training_splits(dataset)
    n_train = data.count("train")
    pipeline = dict(image_size=(size, size), batch_size=batch, preprocessing="unit")
    train_ds = input_pipeline(data, "train", seed=0, **pipeline)
    val_ds = input_pipeline(data, "validation", shuffle=False, **pipeline)
    # the network a scratch run trains (batch norm on: the default)
    model = build_scratch_cnn((size, size), len(data.class_names), seed=0, batch_norm=True)
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

    for _ in range(2):  # warm up: tracing, the pipeline's threads, the first save
        for make in variants.values():
            one_epoch(make())
    for callbacks in hooks.values():
        callbacks.clear()
    # Trials alternate the order of the pair (A B, B A, A B, ...) so a slow drift of the
    # machine's load hits both sides alike; the references follow each pair.
    pair, references = ["plain", "live_metrics"], ["naive_per_batch_write", "full_run_callback"]
    trials = []
    for t in range(n_trials):
        wall, cpu = {}, {}
        for name in (pair if t % 2 == 0 else pair[::-1]) + references:
            wall[name], cpu[name] = one_epoch(variants[name]())
        trials.append({"first": pair[t % 2], "wall_s": _rounded(wall), "cpu_s": _rounded(cpu),
                       "ratio_live_metrics": round(wall["plain"] / wall["live_metrics"], 4)})

    def ratio(kind, name):
        return round(statistics.median(t[kind]["plain"] / t[kind][name] for t in trials), 4)

    def median_s(kind, name):
        return statistics.median(t[kind][name] for t in trials)

    plain = median_s("wall_s", "plain")
    hook_s = {name: statistics.median(c.hook_seconds for c in callbacks)
              for name, callbacks in hooks.items()}
    names = pair + references
    return {
        "model": "scratch CNN", "input": [size, size], "batch": batch,
        "train_images": n_train, "validation_images": data.count("validation"),
        "trials": n_trials, "timed": "wall time of one-epoch fits of the same compiled model "
                                     "(validation included), after two warm-up rounds; plain "
                                     "and live_metrics alternate order every trial",
        "images_per_second": {k: round(n_train / median_s("wall_s", k), 1) for k in names},
        "median_epoch_s": {k: round(median_s("wall_s", k), 4) for k in names},
        "median_epoch_cpu_s": {k: round(median_s("cpu_s", k), 4) for k in names},
        "ratio_live_metrics_over_plain": ratio("wall_s", "live_metrics"),
        "ratio_live_metrics_trials": [t["ratio_live_metrics"] for t in trials],
        "ratio_naive_per_batch_write_over_plain": ratio("wall_s", "naive_per_batch_write"),
        "ratio_full_run_callback_over_plain": ratio("wall_s", "full_run_callback"),
        "cpu_time_ratios": {name: ratio("cpu_s", name) for name in names[1:]},
        "callback_seconds_per_epoch": {k: round(v, 5) for k, v in hook_s.items()},
        "ratio_from_callback_time": {k: round(plain / (plain + v), 4) for k, v in hook_s.items()},
        "ratios_are": "median over trials of plain time / variant time in the same trial "
                      "(images per second of the variant over plain; 1 = no cost); "
                      "cpu_time_ratios use this process's CPU seconds, steadier than wall "
                      "time when other work shares the cores; ratio_from_callback_time is "
                      "plain epoch / (plain epoch + the time spent inside the callback), "
                      "its direct cost",
        "goal": "ratio_live_metrics_over_plain >= 0.95",
        "trial_times": trials,
    }


def _rounded(times: dict) -> dict:
    return {k: round(v, 4) for k, v in times.items()}


#: (seed, images) of a second held-out set, scored for both networks
EXTRA_HELDOUT = (2000, 6000)
#: what --accuracy saves with the demo shapes, as the Data set page would (every class is
#: closed under flips and rotations). "mirrors": both flips and the diagonal mirror, every
#: quarter turn and mirror of the square, what the demo model was trained with.
AUGMENTATIONS = {"mirrors": MIRRORS,
                 "flip+rotation": Augmentation(horizontal_flip=True, rotation=180.0),
                 "flip": Augmentation(horizontal_flip=True), "none": Augmentation()}


def accuracy(data_dir: Path, work: Path, n_images: int, epochs: int | None,
             changes: dict, augment: str = "mirrors") -> dict:
    """The scratch CNN trained on the demo data set by a run with the default settings (those
    of ``RunConfig`` and the Train page), at the demo images' 64 pixels, against the bundled
    demo model. Validation is the data set's own split; held-out accuracy is measured on fresh
    images from the demo model's held-out seed, which no training image comes from."""
    card = demo_model_card()
    size = int(card["input_size"][0])
    start = time.perf_counter()
    dataset = export_demo(data_dir, n_images, size=size, seed=card["train_seed"])
    heldout = make_shapes(int(card["heldout_images"]), size=size, seed=int(card["heldout_seed"]))
    made = time.perf_counter() - start
    save_augmentation(dataset, AUGMENTATIONS[augment])
    config = RunConfig(dataset=str(dataset.folder), image_size=(size, size), probe_images=0,
                       **({"epochs": epochs} if epochs else {}), **changes)
    run_dir = create_run(config, work / "runs", launch=False)
    start = time.perf_counter()
    status = train(run_dir)
    trained_s = time.perf_counter() - start
    rows = [r for r in read_metrics(run_dir.name, work / "runs") if r["kind"] == "epoch"]
    model = load_trained(run_dir)
    # Both networks on the same images, errors counted: the 3,000 of the demo card, 6,000 more
    # from another unseen seed, and the data set's own test split (never trained on by either;
    # its 0-255 float pixels go in as they are, ``prepare`` takes them).
    extra = make_shapes(EXTRA_HELDOUT[1], size=size, seed=EXTRA_HELDOUT[0])
    test = [(np.asarray(x), np.asarray(y)) for x, y in
            tf_dataset(dataset, "test", (size, size), 256, shuffle=False)]
    card_set = f"heldout_seed_{card['heldout_seed']}"
    sets = {card_set: (heldout.images, heldout.labels),
            f"heldout_seed_{EXTRA_HELDOUT[0]}": (extra.images, extra.labels),
            "test_split": (np.concatenate([x for x, _ in test]),
                           np.concatenate([y for _, y in test]))}
    errors = {name: {set_name: int((m.probabilities(x, batch_size=256).argmax(1) != y).sum())
                     for set_name, (x, y) in sets.items()}
              for name, m in (("scratch_cnn", model), ("demo_model", load_model("demo")))}
    heldout_accuracy = 1.0 - errors["scratch_cnn"][card_set] / len(heldout)
    settings = {k: v for k, v in config.to_dict().items()
                if k in ("epochs", "batch_size", "optimizer", "learning_rate", "lr_schedule",
                         "warmup", "label_smoothing", "batch_norm", "augment", "image_size",
                         "seed")}
    return {
        "demo_model_card": {k: card[k] for k in ("heldout_accuracy", "heldout_images", "epochs",
                                                 "train_images", "augmentation",
                                                 "training_seconds")},
        "scratch_cnn": {
            "settings": settings, "state": status.state,
            "augmentation": AUGMENTATIONS[augment].to_dict(),
            "train_images": status.info["n_train"], "validation_images": status.info[
                "n_validation"], "epochs": len(rows),
            "val_accuracy_per_epoch": [r.get("val_accuracy") for r in rows],
            "val_accuracy": rows[-1].get("val_accuracy") if rows else None,
            "test_accuracy": round(status.info.get("evaluation_accuracy", 0.0), 4),
            "heldout_accuracy": round(heldout_accuracy, 4),
            "heldout_images": len(heldout), "heldout_seed": int(card["heldout_seed"]),
            "train_seconds": round(trained_s, 1), "data_set_seconds": round(made, 1)},
        "errors_on_the_same_images": {
            "images": {k: len(v[1]) for k, v in sets.items()}, **errors,
            "all_sets": {k: sum(v.values()) for k, v in errors.items()}},
        "reaches_99_percent": heldout_accuracy >= 0.99,
        "load_average": os.getloadavg(),
    }


#: --scratch-sizes: the demo set of the Train page (images, side) and the run's epochs
SCRATCH_SET, SCRATCH_EPOCHS, SCRATCH_GOAL = (3000, 64), 4, 0.6


def scratch_sizes(data_dir: Path, work: Path, changes: dict) -> dict:
    """Validation accuracy of ``SCRATCH_EPOCHS``-epoch runs with every default (bar
    ``changes``) on the Train page's demo set, at the default image size and at 128 pixels."""
    dataset = export_demo(data_dir, SCRATCH_SET[0], size=SCRATCH_SET[1], mirrors=True)
    report = {}
    for label, size in (("default_size", None), ("size_128", (128, 128))):
        config = RunConfig(dataset=str(dataset.folder), epochs=SCRATCH_EPOCHS, image_size=size,
                           probe_images=0, evaluate=False, **changes)
        run_dir = create_run(config, work / "runs", launch=False)
        start = time.perf_counter()
        status = train(run_dir)
        seconds = time.perf_counter() - start
        rows = [r for r in read_metrics(run_dir.name, work / "runs") if r["kind"] == "epoch"]
        report[label] = {
            "input_size": status.info["input_size"], "learning_rate": config.learning_rate,
            "train_loss_per_epoch": [r.get("loss") for r in rows],
            "val_accuracy_per_epoch": [r.get("val_accuracy") for r in rows],
            "val_accuracy": rows[-1].get("val_accuracy") if rows else None,
            "warning": status.warning, "train_seconds": round(seconds, 1)}
    report.update(
        data_set={"images": SCRATCH_SET[0], "side": SCRATCH_SET[1], "augmentation": "mirrors",
                  "train_images": status.info["n_train"],
                  "validation_images": status.info["n_validation"]},
        epochs=SCRATCH_EPOCHS, goal=f"val_accuracy >= {SCRATCH_GOAL} at both sizes",
        reached=all((report[k]["val_accuracy"] or 0) >= SCRATCH_GOAL
                    for k in ("default_size", "size_128")),
        load_average=os.getloadavg())
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1200, help="demo images (throughput)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--trials", type=int, default=12,
                        help="one-epoch fits of each variant, interleaved")
    parser.add_argument("--accuracy", action="store_true",
                        help="also train the scratch CNN on the demo set with the defaults")
    parser.add_argument("--only-accuracy", action="store_true", help="skip the throughput part")
    parser.add_argument("--accuracy-images", type=int, default=25716,
                        help="demo images for --accuracy (25716: 18000 of them for training, "
                             "as many as the demo model was trained on)")
    parser.add_argument("--accuracy-epochs", type=int, help="default: RunConfig's")
    parser.add_argument("--augmentation", choices=list(AUGMENTATIONS), default="mirrors",
                        help="saved with the demo set for --accuracy (default: mirrors)")
    parser.add_argument("--scratch-sizes", action="store_true",
                        help="4-epoch runs with the defaults at the default size and at 128 "
                             "(instead of the throughput part)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="change a RunConfig setting in --accuracy and --scratch-sizes, "
                             "e.g. batch_size=64")
    args = parser.parse_args()
    # Runs print one line per epoch (their log); keep stdout for the JSON.
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        tmp = Path(tmp)
        report = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                              "keras": keras.__version__,
                              "note": "cores may be shared with other work"}}
        changes = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
        if args.scratch_sizes:
            report["scratch_sizes"] = scratch_sizes(tmp / "data", tmp, changes)
        elif not args.only_accuracy:
            report["throughput"] = throughput(tmp / "data", tmp, args.images, args.size,
                                              args.trials, args.batch)
        if args.accuracy or args.only_accuracy:
            report["accuracy"] = accuracy(tmp / "data", tmp, args.accuracy_images,
                                          args.accuracy_epochs, changes,
                                          augment=args.augmentation)
    print(json.dumps(report, indent=2), flush=True)


if __name__ == "__main__":
    main()
