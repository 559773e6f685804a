"""The training function: one run, start to end, in the process that calls it.

``train(run_dir)`` reads ``config.json``, streams the data set through ``tf.data``, builds the
model of the mode inside a ``tf.distribute`` strategy's scope, fits it stage by stage with
``RunMonitor`` watching, and leaves the final model, its card and the evaluation in the run
folder. Started again on the same folder after a crash or a stop, it goes on from the last
checkpoint. The Start button runs it in a separate process (``python -m engine.training``,
launched by ``runs.launch_process``), so the run survives page switches, reloads and server
restarts.

Distribution: ``default`` is TensorFlow's default strategy (one device); ``mirrored`` copies
the model to every GPU of this machine and splits each batch between them; ``multi_worker``
does the same across machines, each running this same command with its own ``TF_CONFIG``
(see the README). Only the chief worker writes the run folder; every other worker writes its
status and metrics to a temporary folder of its own, deleted at the end, or to
``$CNN_EXPLORER_WORKER_DIR``, kept, with its checkpoints. Mixed precision (float16 compute,
float32 weights) is used on a GPU when the config asks for it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import tempfile
import time
import traceback
from pathlib import Path

from engine.errors import CNNExplorerError, TrainingError
from engine.training import runs
from engine.training.config import RunConfig, load_config
from engine.training.metrics import METRICS_FILE, append_rows, read_rows

#: a non-chief worker of a multi-worker cluster writes its status, metrics and checkpoints here
#: (kept, to compare its weights with the chief's) instead of in a temporary folder it deletes
WORKER_DIR_ENV = "CNN_EXPLORER_WORKER_DIR"
_stop_signal = {"set": False}


def make_strategy(name: str):
    """The ``tf.distribute`` strategy called ``name`` (a key of ``config.STRATEGIES``)."""
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise TrainingError("The multi-worker strategy needs TF_CONFIG describing the "
                                "cluster and this worker's task; see the README.")
        return _multi_worker_strategy()
    return tf.distribute.get_strategy()


def _multi_worker_strategy():
    """``MultiWorkerMirroredStrategy`` as Keras 3's ``fit`` needs it (keras-team/keras#20585).

    ``fit`` asks the strategy to reduce two things it refuses: the first batch, an ``(images,
    labels)`` tuple whose shapes are all ``fit`` wants from it to build the model (an
    all-reduce would also fail on a batch split unevenly between the workers), so this worker's
    own share stands for it; and the scalar metrics of every step, reduced along ``axis=0``,
    which they lack, so they are reduced as they are.
    """
    import tensorflow as tf

    class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            if tf.nest.is_nested(value):
                return tf.nest.map_structure(lambda v: self.experimental_local_results(v)[0],
                                             value)
            if axis is not None and self.experimental_local_results(value)[0].shape.rank == 0:
                axis = None
            return super().reduce(reduce_op, value, axis)

    return MultiWorkerStrategy()


def train(run_dir: str | os.PathLike, strategy=None) -> runs.RunStatus:
    """Train the run in ``run_dir`` in this process (resuming when it has a checkpoint).

    Args:
        run_dir: a folder made by ``runs.create_run``.
        strategy: a ``tf.distribute.Strategy``; default: the one ``config.strategy`` names.

    Returns:
        The final status.

    Raises:
        CNNExplorerError: settings, data set or model problems (also recorded in the folder).
    """
    run_dir = Path(run_dir)
    record = run_dir  # where this process writes: the run folder, or a non-chief worker's own
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        config = load_config(run_dir / runs.CONFIG_FILE).validate()
        if not is_chief(strategy, config):
            record = _worker_folder()
        runs.write_pid(record, os.getpid())
        return _train(run_dir, record, config, strategy)
    except BaseException as exc:
        message = str(exc) if isinstance(exc, CNNExplorerError) else (
            f"Training failed with an unexpected error ({type(exc).__name__}: {exc}); the log "
            "has the details.")
        if isinstance(exc, KeyboardInterrupt):
            message = "Interrupted (Ctrl-C); resume it from the last checkpoint."
        traceback.print_exc()
        _event(record, "failed", message=message)
        runs.write_status(record, state="failed", message=message, ended=time.time())
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        _stop_signal["set"] = False


def _train(run_dir: Path, record: Path, config: RunConfig, strategy) -> runs.RunStatus:
    import keras
    import tensorflow as tf

    from engine.data.dataset import open_dataset
    from engine.training.build import build_model, unfreeze_top
    from engine.training.callbacks import RunMonitor, chance_loss
    from engine.training.data import input_pipeline, training_augmentation, training_splits
    from engine.training.loop import fit

    checkpoint = runs._read_json(run_dir / runs.CHECKPOINTS / runs.STATE_FILE) or {}
    done = int(checkpoint.get("epochs_done", 0))
    resuming = done > 0 and (run_dir / runs.CHECKPOINTS / runs.LAST).is_file()
    if not resuming:
        done = 0
    if resuming and done >= config.total_epochs:
        raise TrainingError("This run has already trained all its epochs.")
    keras.utils.set_random_seed(config.seed + done)

    strategy = strategy or make_strategy(config.strategy)
    chief = record == run_dir
    mixed = config.mixed_precision and bool(tf.config.list_physical_devices("GPU"))
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")

    data = training_splits(open_dataset(config.dataset), config.validation_split, config.seed)
    n_train, n_val = data.count(data.train), data.count(data.validation)
    replicas = int(strategy.num_replicas_in_sync)
    steps = _batches(n_train, config.batch_size, replicas)
    if steps == 0:
        raise TrainingError(f"The training split has {n_train} images, fewer than the "
                            f"{replicas} devices training on it; add images.")
    if resuming and chief:
        _drop_unfinished_epoch(run_dir, done)
    with strategy.scope():
        if resuming:  # the checkpoint has the weights and the optimizer's state
            model = keras.saving.load_model(run_dir / runs.CHECKPOINTS / runs.LAST,
                                            compile=True, safe_mode=True)
            built = _built_before(run_dir, model)
        else:
            built = build_model(config, len(data.class_names), mixed_precision=mixed,
                                runs_dir=run_dir.parent)
            model = built.model
    runs.write_status(
        record, state="running", message="", started=time.time(),
        total_epochs=config.total_epochs,
        steps_per_epoch=steps, n_train=n_train, n_validation=n_val,
        class_names=data.class_names, dataset_name=data.dataset.name, splits={
            "train": data.train, "validation": data.validation, "evaluation": data.evaluation,
            "carved_validation": data.carved},
        input_size=list(built.input_size), preprocessing=built.preprocessing,
        weights_source=built.source, base=built.base, replicas=replicas,
        mixed_precision=mixed, stages=[list(s) for s in config.stages])
    _event(record, "resume" if resuming else "start", epoch=done,
           message=(f"Resumed from the checkpoint after epoch {done}." if resuming else
                    f"Training {n_train} images, validating on {n_val}, {steps} batches per "
                    f"epoch, {replicas} device(s)."))

    augment = training_augmentation(data, config.augment)
    pipeline = dict(image_size=built.input_size, batch_size=config.batch_size,
                    preprocessing=built.preprocessing, channels=built.channels)
    train_ds = input_pipeline(data, data.train, augment=augment, seed=config.seed, **pipeline)
    val_ds = input_pipeline(data, data.validation, shuffle=False, **pipeline)
    train_ds = train_ds.take(steps)
    val_ds = val_ds.take(_batches(n_val, config.batch_size, replicas))
    timeline = (_timeline(run_dir, model, config, data, built)
                if config.probe_images and chief else None)
    if timeline is not None and not timeline.has(0):
        timeline.snapshot(0)

    best = float(checkpoint.get("best", math.inf)) if resuming else math.inf
    monitor_name = "val_loss"
    outcome, message = "done", ""
    for stage, (first, end, learning_rate) in enumerate(config.stages, start=1):
        if done >= end:
            continue
        start = max(first, done)
        unfreeze = stage == 2 and (not resuming or int(checkpoint.get("stage", 1)) < 2
                                   or start == first)
        if unfreeze:  # fit compiles again, in the strategy's scope
            unfrozen = unfreeze_top(model, built.base, config.fine_tune_layers)
            _event(record, "stage", epoch=first, stage=2, layers=unfrozen,
                   message=f"Stage 2: fine-tuning the top {len(unfrozen)} layers of the base "
                           f"at learning rate {learning_rate:g}.")
        # resumed inside a stage, the checkpoint's optimizer (and its state) goes on
        keep_optimizer = (not unfreeze and resuming and start == done
                          and model.optimizer is not None and model.compiled)
        monitor = RunMonitor(record, stage=stage, steps_per_epoch=steps, n_train=n_train,
                             batch_size=config.batch_size, monitor=monitor_name, best=best,
                             timeline=timeline, stop_requested=lambda: _stop_signal["set"],
                             save_checkpoints=chief or bool(os.environ.get(WORKER_DIR_ENV)),
                             chance_loss=chance_loss(
                                 list(data.dataset.counts()[data.train].values()),
                                 config.label_smoothing))
        in_step = _in_step(strategy)
        fit(model, train_ds, val_ds, recipe=config, learning_rate=learning_rate, epochs=end,
            initial_epoch=start, schedule_steps=(end - first) * steps, callbacks=[monitor],
            final_callbacks=in_step, compile=not keep_optimizer, strategy=strategy)
        best = monitor.best
        outcome, message = monitor.outcome, monitor.message
        if outcome == "done" and any(c.by_another for c in in_step):
            outcome, message = "stopped", "Stopped with another worker of the cluster."
        elif outcome == "done" and model.stop_training:
            outcome = "early_stop"
            message = (f"Stopped early: the validation loss did not improve for "
                       f"{config.early_stopping} epochs.")
        if outcome != "done":
            break
        done = end

    return _finish(run_dir, record, config, data, built, outcome, message)


def _built_before(run_dir: Path, model):
    """How the interrupted session fed the model, from what it recorded in status.json."""
    from engine.training.build import BuiltModel

    info = runs._read_json(run_dir / runs.STATUS_FILE) or {}
    size = info.get("input_size") or list(model.inputs[0].shape[1:3])
    return BuiltModel(model, info.get("preprocessing", "unit"), (int(size[0]), int(size[1])),
                      base=info.get("base"), source=info.get("weights_source", ""))


def _finish(run_dir, record, config, data, built, outcome, message) -> runs.RunStatus:
    state = {"done": "finished", "early_stop": "finished", "stopped": "stopped",
             "diverged": "diverged"}[outcome]
    if outcome == "done":
        message = "Finished all epochs."
    chief = record == run_dir
    folder = run_dir / runs.CHECKPOINTS
    source = folder / runs.BEST if (folder / runs.BEST).is_file() else folder / runs.LAST
    if chief and source.is_file():
        tmp = run_dir / f".tmp-{runs.MODEL_FILE}"  # Keras saves only to a .keras name
        _save_final_model(source, tmp, fold=config.mode == "scratch" and config.batch_norm)
        os.replace(tmp, run_dir / runs.MODEL_FILE)
        _write_card(run_dir, config, data, built)
    if chief and source.is_file() and config.evaluate:
        _evaluate(run_dir, data, config)
    _event(record, {"done": "end"}.get(outcome, outcome), message=message)
    runs.write_status(record, state=state, message=message, ended=time.time())
    status = runs.read_status(record)
    if chief:
        (run_dir / runs.STOP_FILE).unlink(missing_ok=True)
    elif not os.environ.get(WORKER_DIR_ENV):
        shutil.rmtree(record, ignore_errors=True)
    return status


# ------------------------------------------------------------------------------ helpers
def _save_final_model(checkpoint: Path, out: Path, *, fold: bool) -> None:
    """The run's model from its checkpoint: with ``fold`` (a scratch CNN trained with batch
    normalisation) saved with the batch norm folded into the convolutions, the classic network
    computing the same; else copied as it is."""
    if not fold:
        shutil.copyfile(checkpoint, out)
        return
    import keras

    from engine.models.folding import fold_batch_norm

    trained = keras.saving.load_model(checkpoint, compile=False, safe_mode=True)
    fold_batch_norm(trained).save(out)


def _batches(n_images: int, batch_size: int, replicas: int) -> int:
    """Batches of a split that give every replica at least one image: a last, smaller batch
    with fewer images than replicas is left out (a replica handed an empty share fails inside
    the network, and a multi-worker cluster with it)."""
    full, rest = divmod(n_images, batch_size)
    return full + (rest >= replicas)


def _timeline(run_dir, model, config: RunConfig, data, built):
    from engine.training.timeline import TimelineRecorder, pick_probes, probe_images

    files = pick_probes(data.dataset.files_in(data.validation), config.probe_images)
    if not files:
        return None
    images = probe_images(data.dataset, files, built.input_size)
    return TimelineRecorder(run_dir, model, preprocessing=built.preprocessing,
                            class_names=data.class_names, images=images,
                            labels=[f.label for f in files], paths=[f.path for f in files])


def _evaluate(run_dir: Path, data, config: RunConfig) -> None:
    from engine.training.evaluate import evaluate_model, save_evaluation
    from engine.training.loading import load_trained

    model = load_trained(run_dir)
    report, images, maps = evaluate_model(model, data, data.evaluation,
                                          batch_size=config.batch_size)
    save_evaluation(run_dir, report, images, maps)
    runs.write_status(run_dir, evaluation_accuracy=report.accuracy,
                      evaluation_split=report.split)


def _write_card(run_dir: Path, config: RunConfig, data, built) -> None:
    status = runs._read_json(run_dir / runs.STATUS_FILE) or {}
    card = {"name": status.get("name", run_dir.name), "run_id": run_dir.name,
            "mode": config.mode, "classes": data.class_names,
            "input_size": list(built.input_size), "preprocessing": built.preprocessing,
            "base": built.base, "dataset": data.dataset.name, "weights_source": built.source,
            "epochs_done": (runs._read_json(run_dir / runs.CHECKPOINTS / runs.STATE_FILE)
                            or {}).get("epochs_done", 0)}
    runs._write_json(run_dir / runs.MODEL_CARD, card)


def _event(run_dir: Path, event: str, **fields) -> None:
    row = {"kind": "event", "event": event, "time": time.time(), **fields}
    row.setdefault("stage", 1)
    with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as handle:
        append_rows(handle, [row])


def _drop_unfinished_epoch(run_dir: Path, done: int) -> None:
    """Before resuming: keep the rows of the finished epochs (and the events), drop those of
    the epoch the crash interrupted, which is trained again."""
    path = run_dir / METRICS_FILE
    rows = read_rows(path)
    keep = [r for r in rows if r.get("kind") == "event" or int(r.get("epoch", 0)) < done]
    tmp = run_dir / f".{METRICS_FILE}.tmp"
    tmp.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in keep))
    os.replace(tmp, path)


def is_chief(strategy=None, config: RunConfig | None = None) -> bool:
    """Whether this process writes the run folder: always, except on the non-chief workers of
    a multi-worker cluster. The task is the one of ``strategy``'s cluster resolver or, with no
    strategy yet, of ``TF_CONFIG`` (when ``config``, if given, asks for ``multi_worker``); the
    chief is the task of type ``chief``, else worker 0."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and getattr(resolver, "task_type", None):
        task = {"type": resolver.task_type, "index": resolver.task_id}
        cluster = resolver.cluster_spec().as_dict()
    elif strategy is None and (config is None or config.strategy == "multi_worker"):
        try:
            tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        except ValueError:
            return True
        task, cluster = tf_config.get("task") or {}, tf_config.get("cluster") or {}
    else:
        return True
    if not task.get("type"):
        return True
    return task["type"] == "chief" or (task["type"] == "worker" and "chief" not in cluster
                                       and int(task.get("index", 0)) == 0)


def _worker_folder() -> Path:
    """Where a non-chief worker writes: ``$CNN_EXPLORER_WORKER_DIR``, else a temporary folder."""
    kept = os.environ.get(WORKER_DIR_ENV)
    if not kept:
        return Path(tempfile.mkdtemp(prefix="cnn-explorer-worker-"))
    path = Path(kept).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _in_step(strategy) -> list:
    """``[a callback]`` that keeps the workers of a multi-worker cluster in step, or ``[]``
    without a cluster.

    They stop together, where any one of them stops (a stop asked on the chief, SIGTERM on any
    worker, a diverging loss seen at one worker's flush before the others'): after every batch
    and every epoch they agree on ``model.stop_training`` with one all-reduce of a number. A
    worker that stopped alone would leave the others waiting in an all-reduce it never joins,
    and the cluster would fail. The callback's ``by_another`` says whether this worker stopped
    only because another one did.

    They validate and save the same model: each replica's batch normalisation layers average
    the statistics of that replica's share of the batches only (Keras 3 does not combine them),
    so before every validation the moving means and variances are averaged over the replicas.
    """
    if not getattr(getattr(strategy, "cluster_resolver", None), "task_type", None):
        return []
    import keras
    import tensorflow as tf

    def over_replicas(op, value_fn):
        return strategy.reduce(op, strategy.run(value_fn), axis=None)

    class InStep(keras.callbacks.Callback):
        by_another = False

        def on_train_batch_end(self, batch, logs=None):
            self._agree_on_stop()

        def on_test_begin(self, logs=None):
            for variable in self.model.non_trainable_variables:
                if variable.path.endswith(("/moving_mean", "/moving_variance")):
                    variable.assign(over_replicas("MEAN", lambda v=variable: tf.identity(v.value)))

        def on_epoch_end(self, epoch, logs=None):
            self._agree_on_stop()

        def _agree_on_stop(self):
            wanted = bool(self.model.stop_training)
            agreed = bool(over_replicas("SUM", lambda: tf.constant(float(wanted))) > 0)
            self.by_another = self.by_another or (agreed and not wanted)
            self.model.stop_training = agreed

    return [InStep()]


def _on_sigterm(signum, frame) -> None:
    _stop_signal["set"] = True


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
