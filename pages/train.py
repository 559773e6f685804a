"""Train: train a CNN on a data set in the browser and watch it learn."""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from engine.data import (NOVEL_SMALL_TRAIN_PER_CLASS, export_demo, export_small_novel,
                         list_datasets, load_augmentation)
from engine.models.catalogue import CATALOGUE
from engine.models.preprocessing import PREPROCESSING_MODES
from engine.training import (LR_SCHEDULES, MODES, OPTIMIZERS, STRATEGIES, MetricsReader,
                             RunConfig, curves, default_learning_rate, delete_run, list_runs,
                             max_runs, progress,
                             resume_run, run_status, start_run, stop_run, trained_models)
from engine.jobs import TRAINING
from engine.training.admission import admission
from engine.training.evaluate import load_evaluation
from engine.training.metrics import METRICS_FILE
from engine.training.runs import CHECKPOINTS, LAST, LOG_FILE, MODEL_FILE
from engine.training.timeline import read_timeline
from ui import presenter, state
from ui import train_figures as figures
from ui.errors import shown_errors
from ui.feature_figures import magnify
from ui.jobs import again, ended_message, follow, session_id
from ui.lesson import lesson_section
from engine.training.bases import base_choices, imagenet_weights_at_hand, why_demo_first
from engine.training.data import default_image_size
from ui.page import page
from ui.paths import datasets_dir, runs_dir
from ui.saliency_figures import overlay
from ui.text import md_escape

EXPLAINER = """
**Training** is how a network gets its numbers: it looks at a batch of example images, compares
its answers with the right ones (the **loss**, lower is better), and nudges every weight a little
in the direction that lowers the loss. The size of the nudge is the **learning rate**. One pass
over all training images is an **epoch**.

- **From scratch** starts from random weights: it needs many images and epochs.
- **Feature extraction** reuses a network trained before (the bundled demo model, one of your
  runs, your own file, or an ImageNet network trained on 1.2 million photos) as a fixed feature
  extractor and trains only a new last part (the *head*) for your classes: good results from
  few images.
- **Fine-tuning** does that first, then also lets the top layers of that network adjust, slowly
  (a low learning rate), so they fit your images better.
- **The small-data experiment** runs all of these side by side on a small data set.

The curves show the loss and the **accuracy** (share of right answers) on the training images
and on **validation** images the network never trains on. When the training curve keeps
improving but the validation curve gets worse, the network is memorising its examples
(**overfitting**). A run goes on in the background: you can switch pages or close the browser
and come back. The **learning timeline** shows, epoch after epoch, where the network looks in a
few fixed images (Grad-CAM, red = important) and what its first filters look like.
"""

IMAGE_SIZES = [32, 48, 64, 96, 128, 160, 192, 224]
BATCH_SIZES = [8, 16, 32, 64, 128, 256]
DEMO_SIZES = [120, 600, 3000, 18000]
#: the demo data set offered first: the smallest the scratch CNN learns from in 10 epochs
#: (88.2 % test accuracy at 3,000 images with the mirrors; 600 stay near chance: about 78 %
#: held-out errors where chance makes 83 %)
DEMO_DEFAULT = 3000
STATE_ICONS = {"starting": ":material/hourglass_top:", "running": ":material/play_circle:",
               "stopping": ":material/pause_circle:", "finished": ":material/check_circle:",
               "stopped": ":material/stop_circle:", "diverged": ":material/error:",
               "failed": ":material/error:", "crashed": ":material/warning:"}

page("Train", EXPLAINER, icon=":material/model_training:")
RUNS = runs_dir()
DATA = datasets_dir()


# ------------------------------------------------------------------------------ helpers
def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "estimating..."
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _reader(run_id: str) -> MetricsReader:
    """One incremental reader per run and session: each tick parses only the new lines."""
    readers = st.session_state.setdefault("_train_readers", {})
    if run_id not in readers:
        readers[run_id] = MetricsReader(RUNS / run_id / METRICS_FILE)
    return readers[run_id]


def _run_label(s) -> str:
    when = time.strftime("%d %b %H:%M", time.localtime(s.created))
    return f"{s.name} · {'going' if s.active else s.state} · {when}"


def _augmentation_text(dataset) -> str:
    augment = load_augmentation(dataset)
    if augment.is_identity:
        return "none saved for this data set (set it on the Data set page)"
    names = {"transpose": "diagonal mirror", "translation": "shift"}  # the Data set page's
    parts = [names.get(k, k.replace("_", " ")) + ("" if v is True else f" {v:g}")
             for k, v in augment.to_dict().items() if v]
    return ", ".join(parts)


@st.cache_data(show_spinner=False, max_entries=16)
def _timeline(run_id: str, version: float):
    return read_timeline(RUNS / run_id)


@st.cache_data(show_spinner=False, max_entries=16)
def _evaluation(run_id: str, version: float):
    return load_evaluation(RUNS / run_id)


@st.cache_data(show_spinner=False, max_entries=32)
def _curves(run_id: str, steps: int, version: float):
    return curves(MetricsReader(RUNS / run_id / METRICS_FILE).read(), steps)


def _version(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


# -------------------------------------------------------------------------- demo data set
def _demo_creator(key: str) -> None:
    cols = st.columns([2, 2, 3])
    n = cols[0].selectbox("Images", DEMO_SIZES, index=DEMO_SIZES.index(DEMO_DEFAULT),
                          key=f"{key}_n")
    side = cols[1].selectbox("Size (pixels)", [32, 64], index=1, key=f"{key}_side")
    cols[2].caption("Six shape classes, split 70/15/15 into train, validation and test, "
                    "augmented with both flips and the diagonal mirror (the Data set page "
                    "changes that). From scratch with the default settings (10 epochs, the "
                    "images' own 64 pixels), 3,000 images reach about 96 % on their test split "
                    "in a few minutes on two CPU cores, and 18,000 (what the bundled demo "
                    "model was trained on) 99.97 %; a few hundred are too few.")
    left, right = st.columns(2)
    if left.button("Create the demo data set", key=f"{key}_go", icon=":material/add:"):
        _create(lambda: export_demo(DATA, n, size=side, mirrors=True))
    if right.button("Create New shapes (small)", key=f"{key}_novel", icon=":material/add:",
                    help=f"Six shapes the demo model never saw, {NOVEL_SMALL_TRAIN_PER_CLASS} "
                         "training images per class: too few from scratch, enough from a "
                         "pretrained base (the demo model)."):
        _create(lambda: export_small_novel(DATA))


def _create(export) -> None:
    with shown_errors("The data set was not created: "):
        with st.spinner("Drawing shapes..."):
            dataset = export()
        st.session_state["dataset"] = dataset.id
        st.rerun()


# ------------------------------------------------------------------------------- settings
def _base_settings() -> dict:
    """The pretrained base of feature extraction and fine-tuning: one picker (the demo model
    first when ImageNet weights cannot be had), where to cut it, and the image size."""
    online = imagenet_weights_at_hand()
    choices = {**base_choices(RUNS, imagenet_available=online), "": "A .keras / .h5 file"}
    cols = st.columns(2)
    base = cols[0].selectbox("Pretrained base", list(choices), format_func=choices.get,
                             **state.durable("train_base", next(iter(choices))))
    if why_demo_first(online):
        cols[0].caption(why_demo_first(online))
    if not base:
        base = st.text_input("Model file", **state.durable("train_base_path", ""),
                             placeholder="/path/to/model.keras").strip()
    spec = CATALOGUE.get(base)
    size = cols[1].select_slider(
        "Image size (pixels)", [0] + [s for s in IMAGE_SIZES if s >= 32],
        **state.durable("train_tsize", 0),
        format_func=lambda s: "the base's own" if s == 0 else str(s),
        help="The base's own: the size it was trained at" + (
            f" ({spec.input_size[0]} pixels; smaller is faster and usually works)." if spec
            else "."))
    options = {"base_model": base, "image_size": (size, size) if size else None}
    with presenter.technical("train_base_more"):
        cols = st.columns(2)
        layer = cols[0].text_input(
            "Cut the base at layer (optional)", **state.durable("train_base_layer", ""),
            placeholder="its last convolution block",
            help="The new head (pooling, Dense, Dropout, softmax) goes on this layer's output; "
                 "empty: the last convolution block, the layer Grad-CAM uses.")
        options["base_layer"] = layer.strip() or None
        if spec is not None:
            weights = cols[1].text_input(
                "ImageNet weights file (optional)", **state.durable("train_weights", ""),
                placeholder=f"/path/to/{spec.weights_file}",
                help="Empty: Keras' cache (~/.keras/models), downloading it once when online. "
                     "A file with or without the classifier top works.")
            options["weights"] = weights.strip() or "imagenet"
    return options


def _fine_tune_settings() -> dict:
    """Stage 2 of fine-tuning: how many layers, how many epochs, at which learning rate."""
    cols = st.columns(3)
    layers = int(cols[0].number_input(
        "Layers to unfreeze", 1, 500, **state.durable("train_ft_layers", 20),
        help="Stage 2 lets this many of the base's top layers (with weights) learn."))
    epochs = int(cols[1].number_input(
        "Stage 2 epochs", 1, 1000, **state.durable("train_ft_epochs", 5)))
    rate = float(cols[2].number_input(
        "Stage 2 learning rate", 1e-8, 1.0, format="%g", step=1e-5,
        **state.durable("train_ft_lr", 1e-5)))
    return {"fine_tune_layers": layers, "fine_tune_epochs": epochs,
            "fine_tune_learning_rate": rate}


def _continue_settings() -> dict:
    """The model a ``continue`` run starts from: a run's model, or a file and its
    preprocessing."""
    trained = trained_models(RUNS)
    sources = {str(t.path): t.title for t in trained}
    sources[""] = "A .keras file on this computer"
    source = st.selectbox("Model to continue", list(sources), format_func=sources.get,
                          **state.durable("train_init", next(iter(sources))))
    if source:
        return {"init_model": source}
    path = st.text_input("Model file", **state.durable("train_init_path", ""),
                         placeholder="/path/to/model.keras")
    prep = st.selectbox("Its preprocessing", list(PREPROCESSING_MODES),
                        format_func=PREPROCESSING_MODES.get,
                        **state.durable("train_init_prep", "unit"))
    return {"init_model": path.strip() or None, "preprocessing": prep}


def _settings(datasets) -> RunConfig | None:
    """The new-run settings; returns the config when Start was pressed."""
    by_id = {d.id: d for d in datasets}
    if st.session_state.get("dataset") not in by_id:
        st.session_state["dataset"] = datasets[0].id
    chosen = st.selectbox(
        "Data set", list(by_id), **state.durable("dataset", datasets[0].id),
        format_func=lambda i: by_id[i].name + ("" if by_id[i].source == "demo" else
                                               f" · {len(by_id[i].files):,} images")
        + f" · {len(by_id[i].class_names)} classes")
    dataset = by_id[chosen]
    st.caption(md_escape("Classes: " + ", ".join(dataset.class_names) + " · splits: "
                         + ", ".join(dataset.splits)))
    mode = st.radio("Mode", list(MODES), format_func=MODES.get, horizontal=False,
                    **state.durable("train_mode", "scratch"))
    options: dict = {}
    if mode == "scratch":
        side = _typical_side(str(dataset.folder), dataset.key)
        size = st.select_slider("Image size (pixels)", IMAGE_SIZES,
                                **state.durable("train_size", side),
                                help="Images are resized to this square; smaller is faster.")
        options["image_size"] = (size, size)
        with presenter.technical("train_scratch"):
            options["batch_norm"] = st.toggle(
                "Batch normalisation while training", **state.durable("train_bn", True),
                help="Normalise each convolution's output while training: a few epochs are "
                     "then enough. The saved model has it folded into the convolutions, so it "
                     "is the classic network, computing the same.")
    elif mode in ("feature_extraction", "fine_tuning"):
        options.update(_base_settings())
        if mode == "fine_tuning":
            options.update(_fine_tune_settings())
    else:
        options.update(_continue_settings())
    cols = st.columns([1, 4])
    epochs = int(cols[0].number_input("Epochs", 1, 10_000, **state.durable("train_epochs", 10)))
    with cols[1], presenter.technical("train_optimiser"):
        cols = st.columns(4)
        batch = cols[0].selectbox("Batch size", BATCH_SIZES, **state.durable("train_batch", 32))
        optimizer = cols[1].selectbox("Optimizer", OPTIMIZERS, **state.durable("train_opt", "adam"))
        lr = float(cols[2].number_input("Learning rate", 1e-8, 1e6, format="%g", step=1e-4,
                                        **state.durable(f"train_lr_{mode}",
                                                        default_learning_rate(mode)),
                                        help="Each mode remembers its own; this mode's "
                                             f"default is {default_learning_rate(mode):g}."))
        schedule = cols[3].selectbox("Schedule", list(LR_SCHEDULES), format_func=LR_SCHEDULES.get,
                                     **state.durable("train_schedule", "cosine"),
                                     help="Cosine decay lowers the learning rate smoothly to 0 by "
                                          "the last epoch, so the weights settle. Reduce LR on "
                                          "plateau, when on, replaces it.")
    with presenter.technical("train_more"):
        cols = st.columns(4)
        augment = cols[0].toggle("Augmentation", **state.durable("train_augment", True),
                                 help="The settings saved on the Data set page: "
                                      + _augmentation_text(dataset))
        early = int(cols[1].number_input("Early stopping patience", 0, 1000,
                                         **state.durable("train_early", 0),
                                         help="Stop after this many epochs without a better "
                                              "validation loss; 0 is off."))
        plateau = int(cols[2].number_input("Reduce LR on plateau", 0, 1000,
                                           **state.durable("train_plateau", 0),
                                           help="Divide the learning rate by 5 after this many "
                                                "epochs without a better validation loss; 0 is "
                                                "off."))
        split = 0.2
        if "validation" not in dataset.splits:
            split = float(cols[3].slider("Validation share", 0.05, 0.5,
                                         **state.durable("train_split", 0.2),
                                         help="This data set has no validation split: hold out "
                                              "this share of its training images."))
        with st.expander("More settings", icon=":material/tune:"):
            cols = st.columns(3)
            name = cols[0].text_input("Run name (optional)", **state.durable("train_name", ""))
            seed = int(cols[1].number_input("Seed", 0, 2**31 - 1, **state.durable("train_seed", 0)))
            probes = int(cols[2].number_input("Timeline images", 0, 48,
                                              **state.durable("train_probes", 12),
                                              help="Validation images whose Grad-CAM maps are "
                                                   "stored after every epoch; 0: no timeline."))
            cols = st.columns(3)
            strategy = cols[0].selectbox("Devices", list(STRATEGIES), format_func=STRATEGIES.get,
                                         **state.durable("train_strategy", "default"))
            has_gpu = _has_gpu()
            mixed = cols[1].toggle("Mixed precision (GPU)", disabled=not has_gpu,
                                   **state.durable("train_mixed", False),
                                   help="float16 arithmetic on a GPU: faster, less memory."
                                        + ("" if has_gpu else " No GPU was found here."))
            cols[2].number_input("Runs at once (limit)", 1, 16, **state.durable("train_limit",
                                                                                 max_runs()))
            cols = st.columns(3)
            warmup = float(cols[0].number_input(
                "Warm-up (share of the steps)", 0.0, 0.5, step=0.01, format="%g",
                **state.durable("train_warmup", RunConfig.warmup),
                help="With cosine decay: the learning rate rises from 0 over this share of "
                     "each stage's first steps, so the untrained network's large first "
                     "gradients do not throw it off. 0 is off."))
            label_smoothing = float(cols[1].number_input(
                "Label smoothing", 0.0, 0.5, step=0.05, format="%g",
                **state.durable("train_label_smoothing", RunConfig.label_smoothing),
                help="Train towards 0.9 for the true class (with 0.1) and the rest shared by "
                     "the others instead of 1 and 0: the network stops chasing ever more "
                     "confident answers and generalises better. The loss then levels off "
                     "above 0. 0 is off."))
    if not st.button("Start", type="primary", icon=":material/play_arrow:", key="train_start"):
        return None
    return RunConfig(dataset=str(dataset.folder), mode=mode, name=name.strip(), epochs=epochs,
                     batch_size=int(batch), optimizer=optimizer, learning_rate=lr,
                     lr_schedule=schedule, warmup=warmup, label_smoothing=label_smoothing,
                     augment=augment, early_stopping=early, reduce_lr=plateau,
                     validation_split=split, seed=seed, probe_images=probes,
                     strategy=strategy, mixed_precision=bool(mixed), **options)


@st.cache_data(show_spinner=False, max_entries=64)
def _typical_side(folder: str, key: str) -> int:
    """The image size to suggest for a data set: the engine's default (its images' median
    side, at most 128), as one of the slider's choices."""
    dataset = next((d for d in list_datasets(DATA) if str(d.folder) == folder), None)
    side = default_image_size(dataset)[0] if dataset is not None else 128
    return min(IMAGE_SIZES, key=lambda s: abs(s - side))


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


# ---------------------------------------------------------------------------------- a run
def _panel(run_id: str) -> None:
    """Progress, counters and curves of one run (the live fragment calls it every second)."""
    with shown_errors("Reading the run failed: "):
        status = run_status(run_id, RUNS)
        rows = _reader(run_id).read()
        st.markdown(f"{STATE_ICONS.get(status.state, '')} **{md_escape(status.name)}** · "
                    f"{md_escape(MODES.get(status.mode, status.mode))}")
        p = progress(rows, status.total_epochs, status.steps_per_epoch, status.batch_size)
        if status.active:
            text = (f"{status.state.capitalize()} · epoch {min(p.epoch + 1, p.total_epochs)}"
                    f"/{p.total_epochs} · batch {p.batch}/{p.steps_per_epoch} · ETA "
                    f"{_duration(p.eta_seconds)}")
        else:
            text = f"{status.state.capitalize()} after {p.epoch}/{p.total_epochs} epochs"
        st.progress(p.fraction, text=text)
        cols = st.columns(5)
        cols[0].metric("Epoch", f"{p.epoch}/{p.total_epochs}")
        cols[1].metric("Batch", f"{p.batch}/{p.steps_per_epoch}" if status.active else "—")
        cols[2].metric("Learning rate", "—" if p.learning_rate is None
                       else f"{p.learning_rate:.3g}")
        cols[3].metric("Stage", f"{p.stage} of {len(status.info.get('stages', [1]))}")
        cols[4].metric("Images / s", "—" if p.images_per_second is None
                       else f"{p.images_per_second:,.0f}")
        if status.warning:
            st.warning(md_escape(status.warning), icon=":material/trending_flat:")
        if status.state == "diverged":
            st.error(md_escape(status.message), icon=":material/trending_up:")
        elif status.state in ("failed", "crashed"):
            st.error(md_escape(status.message), icon=":material/error:")
        elif status.message and not status.active:
            st.success(md_escape(status.message), icon=":material/check_circle:")
        if rows:
            smoothing = st.session_state.get("train_smoothing", 0.9)
            presenter.chart(figures.curves_figure(curves(rows, status.steps_per_epoch),
                                                  smoothing), key=f"curves_{run_id}")
        elif status.active:
            st.info("Starting: loading TensorFlow and the data set...",
                    icon=":material/hourglass_top:")
        if status.active:
            cols = st.columns([1, 1, 4])
            if cols[0].button("Stop", key=f"stop_{run_id}", icon=":material/stop:",
                              disabled=status.state == "stopping"):
                stop_run(run_id, RUNS)
                st.rerun(scope="fragment")
            if status.state == "stopping" and cols[1].button("Kill it", key=f"kill_{run_id}",
                                                             icon=":material/dangerous:"):
                stop_run(run_id, RUNS, force=True)
            st.session_state[f"_active_{run_id}"] = True
        elif st.session_state.pop(f"_active_{run_id}", False):
            st.rerun()  # it just ended: redraw the whole page with the after-run views


_live_panel = st.fragment(run_every=1.0)(_panel)


def _going(statuses) -> None:
    going = [s for s in statuses if s.active]
    if len(going) > 1:
        st.caption(f"{len(going)} runs are going: "
                   + "; ".join(md_escape(f"{s.name} ({s.state})") for s in going))


# ----------------------------------------------------------------------------- after a run
def _evaluation_view(status) -> None:
    found = _evaluation(status.run_id, _version(status.run_dir / "evaluation.json"))
    if found is None:
        st.info("This run has no evaluation (it ended before its first checkpoint, or "
                "evaluation was off).", icon=":material/info:")
        return
    report, images, maps = found
    cols = st.columns(3)
    cols[0].metric(f"Accuracy on '{report.split}'", f"{report.accuracy:.1%}")
    cols[1].metric("Images", f"{int(report.confusion.sum()):,}")
    cols[2].metric("Misclassified", f"{len(report.misclassified):,}")
    cols = st.columns([3, 2])
    with cols[0]:
        st.markdown("**Confusion matrix**")
        presenter.chart(figures.confusion_figure(report), key="confusion")
    with cols[1]:
        st.markdown("**Precision and recall per class**")
        presenter.chart(figures.precision_recall_figure(report), key="precision_recall")
        st.dataframe([{"class": n, "precision": p, "recall": r, "images": int(s)}
                      for n, p, r, s in zip(report.class_names, report.precision,
                                            report.recall, report.support)],
                     hide_index=True, column_config={
                         "precision": st.column_config.NumberColumn(format="percent"),
                         "recall": st.column_config.NumberColumn(format="percent")})
    if len(images):
        st.markdown("**Misclassified images**, most confident mistakes first, with the Grad-CAM "
                    "map of the class the model wrongly chose")
        _grid([overlay(img, cam, 0.45) for img, cam in zip(images, maps)],
              [f"{report.class_names[t]} → {report.class_names[q]} ({c:.0%})"
               for _, t, q, c in report.misclassified[:len(images)]])


def _grid(pictures, captions, per_row: int = 6) -> None:
    for start in range(0, len(pictures), per_row):
        cols = st.columns(per_row)
        for col, picture, caption in zip(cols, pictures[start:start + per_row],
                                         captions[start:start + per_row]):
            col.image(magnify(picture, 160), caption=caption, width="stretch")


def _timeline_view(status) -> None:
    timeline = _timeline(status.run_id, _version(status.run_dir / "timeline"))
    if timeline is None:
        st.info("This run stored no timeline.", icon=":material/info:")
        return
    epoch = st.select_slider("After epoch", timeline.epochs, value=timeline.epochs[-1],
                             key=f"timeline_{status.run_id}",
                             help="0 is before training, with random weights.")
    snapshot = timeline.at(epoch)
    names = timeline.class_names
    probs = snapshot["probs"]
    captions = [f"{names[t]}: {probs[i, t]:.0%}" + ("" if probs[i].argmax() == t else
                                                    f" (says {names[probs[i].argmax()]})")
                for i, t in enumerate(timeline.labels)]
    cams = snapshot.get("cams")
    pictures = [overlay(img, cams[i], 0.45) if cams is not None else img
                for i, img in enumerate(timeline.images)]
    st.markdown(f"**Where the model looks after {epoch} epoch{'s' if epoch != 1 else ''}** "
                "(Grad-CAM of the true class; the caption is its probability)")
    _grid(pictures, captions)
    if "filters" in snapshot:
        st.markdown("**First-layer filters** (blue-grey = 0; each square is one filter, "
                    "its colours the weights for red, green and blue)")
        st.image(figures.kernel_image(snapshot["filters"]), width="content")


def _compare_view(statuses, current) -> None:
    choices = {s.run_id: s for s in statuses if (s.run_dir / METRICS_FILE).is_file()}
    default = [current.run_id] + [i for i in choices if i != current.run_id][:3]
    picked = st.multiselect("Runs", list(choices), default=default,
                            format_func=lambda i: _run_label(choices[i]), key="train_compare")
    named = [(choices[i].name, _curves(i, choices[i].steps_per_epoch,
                                       _version(choices[i].run_dir / METRICS_FILE)))
             for i in picked]
    if named:
        presenter.chart(figures.comparison_figure(named), key="comparison")


def _files_view(status) -> None:
    cols = st.columns(3)
    final = status.run_dir / MODEL_FILE
    last = status.run_dir / CHECKPOINTS / LAST
    if final.is_file():
        cols[0].download_button("Download the model (.keras)", lambda: final.read_bytes(),
                                f"{status.run_id}.keras", "application/octet-stream",
                                on_click="ignore", icon=":material/download:", key="dl_best")
        cols[0].caption("The best epoch by validation loss. It is in the sidebar's model "
                        "picker of every page, too.")
    if last.is_file():
        cols[1].download_button("Download the last checkpoint", lambda: last.read_bytes(),
                                f"{status.run_id}-last.keras", "application/octet-stream",
                                on_click="ignore", icon=":material/download:", key="dl_last")
    st.caption(md_escape(f"Run folder: {status.run_dir}"))
    log = status.run_dir / LOG_FILE
    if log.is_file():
        with st.expander("Log", icon=":material/terminal:"):
            st.code(log.read_text(errors="replace")[-6000:] or "(empty)", language=None)


def _delete_view(status) -> None:
    """The confirmation inside the "Delete this run" popover."""
    st.markdown(f"Delete **{md_escape(status.name)}** for good: its folder with the curves, "
                "checkpoints, timeline and trained model. The model leaves the sidebar's model "
                "picker too.")
    if st.button("Delete for good", type="primary", key="train_delete",
                 icon=":material/delete_forever:"):
        with shown_errors("The run was not deleted: "):
            delete_run(status.run_id, RUNS)
            st.session_state.pop("train_run", None)
            st.session_state.get("_train_readers", {}).pop(status.run_id, None)
            st.toast(md_escape(f"Deleted the run '{status.name}'."), icon=":material/delete:")
            st.rerun()


# ------------------------------------------------------------------------------ admission
def _admit(start, title: str) -> None:
    """Put a run in the server's training line (``start()`` starts it and returns its id)."""
    limit = int(st.session_state.get("train_limit") or max_runs())
    job = again(("train", session_id(), time.time()), admission(start, RUNS, limit), title=title,
                lane=TRAINING, outlives_session=True)
    if job is not None:
        st.session_state["_train_job"] = job
        st.rerun()


def _admission_panel() -> None:
    """This session's run waiting in line: its place, until it has started."""
    job = st.session_state.get("_train_job")
    if job is None:
        return
    if job.parts():  # it started: follow the run itself
        st.session_state["train_run"] = job.parts()[0]
        del st.session_state["_train_job"]
    elif job.alive:
        follow(job, "train_job", lambda j: st.rerun() if j.parts() else None)
    else:
        ended_message(job)
        del st.session_state["_train_job"]


# ----------------------------------------------------------------------------------- page
_admission_panel()
datasets = list_datasets(DATA)
statuses = list_runs(RUNS)
with st.container(border=True):
    lesson_section(DATA, RUNS)
with st.expander("New run", expanded=not statuses, icon=":material/add_circle:"):
    if not datasets:
        st.info("There is no data set yet: create the demo shapes data set here, or import "
                "your own on the Data set page.", icon=":material/info:")
        _demo_creator("train_demo")
    else:
        with st.popover("Create the demo data set", icon=":material/add:"):
            _demo_creator("train_demo")
        config = _settings(datasets)
        if config is not None:
            with shown_errors("The run did not start: "):
                config.validate()  # wrong settings are said now, not after waiting in line
                limit = int(st.session_state.get("train_limit") or max_runs())
                _admit(lambda: start_run(config, RUNS, max_concurrent=limit),
                       f"Training run '{config.name or 'new run'}'")

if not statuses:
    st.stop()

by_id = {s.run_id: s for s in statuses}
if st.session_state.get("train_run") not in by_id:
    # A new session (reload, second tab, restarted server): reattach to a run still going.
    going = [s for s in statuses if s.active]
    st.session_state["train_run"] = (going or statuses)[0].run_id
st.subheader("Runs")
_going(statuses)
cols = st.columns([4, 2])
run_id = cols[0].selectbox("Run", list(by_id), format_func=lambda i: _run_label(by_id[i]),
                           **state.durable("train_run", statuses[0].run_id))
cols[1].select_slider("Smoothing", [0.0, 0.5, 0.8, 0.9, 0.95, 0.99],
                      **state.durable("train_smoothing", 0.9),
                      help="Moving average over the batches: higher is smoother.")
status = by_id[run_id]
if status.active:
    _live_panel(run_id)
else:
    _panel(run_id)
    cols = st.columns([3, 2, 3])
    if status.resumable and cols[0].button("Resume from the last checkpoint", key="train_resume",
                                           icon=":material/replay:"):
        limit = int(st.session_state.get("train_limit") or max_runs())
        _admit(lambda: resume_run(run_id, RUNS, max_concurrent=limit),
               f"Resuming '{status.name}'")
    with cols[1].popover("Delete this run", icon=":material/delete:"):
        _delete_view(status)
    tabs = st.tabs(["Evaluation", "Learning timeline", "Compare runs", "Model and log"])
    with tabs[0]:
        with shown_errors("The evaluation could not be shown: "):
            _evaluation_view(status)
    with tabs[1]:
        with shown_errors("The timeline could not be shown: "):
            _timeline_view(status)
    with tabs[2]:
        with shown_errors("The comparison could not be shown: "):
            _compare_view(statuses, status)
    with tabs[3]:
        _files_view(status)
