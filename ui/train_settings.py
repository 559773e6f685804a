"""The Train page's new-run form: the demo data set creator, then the data set, the mode and its
settings; Start turns the values into a ``RunConfig`` (``engine.training.forms.run_config``).

Every widget starts at ``RunConfig``'s default and remembers its value across pages
(``state.durable``); expert settings sit in ``presenter.technical`` blocks.
"""

from __future__ import annotations

import streamlit as st

from engine.data import (NOVEL_SMALL_TRAIN_PER_CLASS, export_demo, export_small_novel,
                         load_augmentation, open_dataset)
from engine.data.views import DEMO_DEFAULT_SIDE, augmentation_text, contents_text
from engine.models.catalogue import CATALOGUE
from engine.models.preprocessing import DEFAULT_PREPROCESSING, PREPROCESSING_MODES
from engine.training import (LR_SCHEDULES, MODES, OPTIMIZERS, STRATEGIES, RunConfig,
                             default_learning_rate, max_runs, trained_models)
from engine.training.bases import base_choices, imagenet_weights_at_hand, why_demo_first
from engine.training.forms import (BATCH_SIZES, DEMO_TRAINING_SIZE, IMAGE_SIZES,
                                   TRAINING_DEMO_SIDES, TRAINING_DEMO_SIZES, gpu_available,
                                   run_config, suggested_side)
from ui import presenter, state
from ui.dataset_sections import dataset_picker
from ui.errors import shown_errors
from ui.text import md_escape


def run_limit() -> int:
    """How many runs may go at once: the form's "Runs at once" setting, else the engine's."""
    return int(st.session_state.get("train_limit") or max_runs())


# -------------------------------------------------------------------------- demo data set
def demo_creator(key: str, data_dir) -> None:
    """Buttons that draw the demo shapes set or the small new shapes set into ``data_dir``."""
    cols = st.columns([2, 2, 3])
    n = cols[0].selectbox("Images", TRAINING_DEMO_SIZES,
                          index=TRAINING_DEMO_SIZES.index(DEMO_TRAINING_SIZE), key=f"{key}_n")
    side = cols[1].selectbox("Size (pixels)", TRAINING_DEMO_SIDES,
                             index=TRAINING_DEMO_SIDES.index(DEMO_DEFAULT_SIDE), key=f"{key}_side")
    cols[2].caption("Six shape classes, split 70/15/15 into train, validation and test, "
                    "augmented with both flips and the diagonal mirror (the Data set page "
                    f"changes that). From scratch with the default settings ({RunConfig.epochs} "
                    f"epochs, the images' own {DEMO_DEFAULT_SIDE} pixels), {DEMO_TRAINING_SIZE:,} "
                    "images reach about 96 % on their test split in a few minutes on two CPU "
                    f"cores, and {TRAINING_DEMO_SIZES[-1]:,} (what the bundled demo model was "
                    "trained on) 99.97 %; a few hundred are too few.")
    left, right = st.columns(2)
    if left.button("Create the demo data set", key=f"{key}_go", icon=":material/add:"):
        _create(lambda: export_demo(data_dir, n, size=side, mirrors=True))
    if right.button("Create New shapes (small)", key=f"{key}_novel", icon=":material/add:",
                    help=f"Six shapes the demo model never saw, {NOVEL_SMALL_TRAIN_PER_CLASS} "
                         "training images per class: too few from scratch, enough from a "
                         "pretrained base (the demo model)."):
        _create(lambda: export_small_novel(data_dir))


def _create(export) -> None:
    with shown_errors("The data set was not created: "):
        with st.spinner("Drawing shapes..."):
            dataset = export()
        st.session_state["dataset"] = dataset.id
        st.rerun()


# ------------------------------------------------------------------------------- the form
def new_run_form(datasets, runs_dir) -> RunConfig | None:
    """The new-run settings; the config when Start was pressed, else None."""
    dataset = dataset_picker(datasets, detailed=False)
    st.caption(md_escape(contents_text(dataset)))
    mode = st.radio("Mode", list(MODES), format_func=MODES.get, horizontal=False,
                    **state.durable("train_mode", RunConfig.mode))
    if mode == "scratch":
        options = _scratch_settings(dataset)
    elif mode in ("feature_extraction", "fine_tuning"):
        options = _base_settings(runs_dir)
        if mode == "fine_tuning":
            options.update(_fine_tune_settings())
    else:
        options = _continue_settings(runs_dir)
    options.update(_optimiser_settings(mode))
    with presenter.technical("train_more"):
        options.update(_data_settings(dataset))
        with st.expander("More settings", icon=":material/tune:"):
            options.update(_expert_settings())
    if not st.button("Start", type="primary", icon=":material/play_arrow:", key="train_start"):
        return None
    return run_config({"dataset": str(dataset.folder), "mode": mode, **options})


@st.cache_data(show_spinner=False, max_entries=64)
def _suggested_side(folder: str, key: str) -> int:
    return suggested_side(open_dataset(folder))


def _scratch_settings(dataset) -> dict:
    side = st.select_slider("Image size (pixels)", IMAGE_SIZES,
                            **state.durable("train_size", _suggested_side(str(dataset.folder),
                                                                          dataset.key)),
                            help="Images are resized to this square; smaller is faster.")
    with presenter.technical("train_scratch"):
        batch_norm = st.toggle(
            "Batch normalisation while training", **state.durable("train_bn", RunConfig.batch_norm),
            help="Normalise each convolution's output while training: a few epochs are then "
                 "enough. The saved model has it folded into the convolutions, so it is the "
                 "classic network, computing the same.")
    return {"image_side": side, "batch_norm": batch_norm}


def _base_settings(runs_dir) -> dict:
    """The pretrained base of feature extraction and fine-tuning: one picker (the demo model
    first when ImageNet weights cannot be had), where to cut it, and the image size."""
    online = imagenet_weights_at_hand()
    choices = {**base_choices(runs_dir, imagenet_available=online), "": "A .keras / .h5 file"}
    cols = st.columns(2)
    base = cols[0].selectbox("Pretrained base", list(choices), format_func=choices.get,
                             **state.durable("train_base", next(iter(choices))))
    if why_demo_first(online):
        cols[0].caption(why_demo_first(online))
    if not base:
        base = st.text_input("Model file", **state.durable("train_base_path", ""),
                             placeholder="/path/to/model.keras")
    spec = CATALOGUE.get(base.strip())
    side = cols[1].select_slider(
        "Image size (pixels)", (0, *IMAGE_SIZES), **state.durable("train_tsize", 0),
        format_func=lambda s: "the base's own" if s == 0 else str(s),
        help="The base's own: the size it was trained at" + (
            f" ({spec.input_size[0]} pixels; smaller is faster and usually works)." if spec
            else "."))
    options = {"base_model": base, "image_side": side}
    with presenter.technical("train_base_more"):
        cols = st.columns(2)
        options["base_layer"] = cols[0].text_input(
            "Cut the base at layer (optional)", **state.durable("train_base_layer", ""),
            placeholder="its last convolution block",
            help="The new head (pooling, Dense, Dropout, softmax) goes on this layer's output; "
                 "empty: the last convolution block, the layer Grad-CAM uses.")
        if spec is not None:
            options["weights"] = cols[1].text_input(
                "ImageNet weights file (optional)", **state.durable("train_weights", ""),
                placeholder=f"/path/to/{spec.weights_file}",
                help="Empty: Keras' cache (~/.keras/models), downloading it once when online. "
                     "A file with or without the classifier top works.")
    return options


def _fine_tune_settings() -> dict:
    """Stage 2 of fine-tuning: how many layers, how many epochs, at which learning rate."""
    cols = st.columns(3)
    return {
        "fine_tune_layers": cols[0].number_input(
            "Layers to unfreeze", 1, 500, **state.durable("train_ft_layers",
                                                          RunConfig.fine_tune_layers),
            help="Stage 2 lets this many of the base's top layers (with weights) learn."),
        "fine_tune_epochs": cols[1].number_input(
            "Stage 2 epochs", 1, 1000, **state.durable("train_ft_epochs",
                                                       RunConfig.fine_tune_epochs)),
        "fine_tune_learning_rate": cols[2].number_input(
            "Stage 2 learning rate", 1e-8, 1.0, format="%g", step=1e-5,
            **state.durable("train_ft_lr", RunConfig.fine_tune_learning_rate))}


def _continue_settings(runs_dir) -> dict:
    """The model a ``continue`` run starts from: a run's model, or a file and its
    preprocessing."""
    sources = {str(t.path): t.title for t in trained_models(runs_dir)}
    sources[""] = "A .keras file on this computer"
    source = st.selectbox("Model to continue", list(sources), format_func=sources.get,
                          **state.durable("train_init", next(iter(sources))))
    if source:
        return {"init_model": source}
    path = st.text_input("Model file", **state.durable("train_init_path", ""),
                         placeholder="/path/to/model.keras")
    prep = st.selectbox("Its preprocessing", list(PREPROCESSING_MODES),
                        format_func=PREPROCESSING_MODES.get,
                        **state.durable("train_init_prep", DEFAULT_PREPROCESSING))
    return {"init_model": path, "preprocessing": prep}


def _optimiser_settings(mode: str) -> dict:
    """Epochs (always shown), and the batch size, optimiser, learning rate and schedule."""
    cols = st.columns([1, 4])
    options = {"epochs": cols[0].number_input("Epochs", 1, 10_000,
                                              **state.durable("train_epochs", RunConfig.epochs))}
    rate = default_learning_rate(mode)
    with cols[1], presenter.technical("train_optimiser"):
        cols = st.columns(4)
        options["batch_size"] = cols[0].selectbox(
            "Batch size", BATCH_SIZES, **state.durable("train_batch", RunConfig.batch_size))
        options["optimizer"] = cols[1].selectbox(
            "Optimizer", OPTIMIZERS, **state.durable("train_opt", RunConfig.optimizer))
        options["learning_rate"] = cols[2].number_input(
            "Learning rate", 1e-8, 1e6, format="%g", step=1e-4,
            **state.durable(f"train_lr_{mode}", rate),
            help=f"Each mode remembers its own; this mode's default is {rate:g}.")
        options["lr_schedule"] = cols[3].selectbox(
            "Schedule", list(LR_SCHEDULES), format_func=LR_SCHEDULES.get,
            **state.durable("train_schedule", RunConfig.lr_schedule),
            help="Cosine decay lowers the learning rate smoothly to 0 by the last epoch, so the "
                 "weights settle. Reduce LR on plateau, when on, replaces it.")
    return options


def _data_settings(dataset) -> dict:
    """Augmentation, early stopping, reduce-LR-on-plateau and, without a validation split, the
    share held out for it."""
    cols = st.columns(4)
    options = {
        "augment": cols[0].toggle(
            "Augmentation", **state.durable("train_augment", RunConfig.augment),
            help="The settings saved on the Data set page: "
                 + augmentation_text(load_augmentation(dataset))),
        "early_stopping": cols[1].number_input(
            "Early stopping patience", 0, 1000,
            **state.durable("train_early", RunConfig.early_stopping),
            help="Stop after this many epochs without a better validation loss; 0 is off."),
        "reduce_lr": cols[2].number_input(
            "Reduce LR on plateau", 0, 1000, **state.durable("train_plateau", RunConfig.reduce_lr),
            help="Divide the learning rate by 5 after this many epochs without a better "
                 "validation loss; 0 is off.")}
    if "validation" not in dataset.splits:
        options["validation_split"] = cols[3].slider(
            "Validation share", 0.05, 0.5,
            **state.durable("train_split", RunConfig.validation_split),
            help="This data set has no validation split: hold out this share of its training "
                 "images.")
    return options


def _expert_settings() -> dict:
    """Name, seed, timeline, devices, mixed precision, the run limit, warm-up, label smoothing."""
    cols = st.columns(3)
    options = {
        "name": cols[0].text_input("Run name (optional)", **state.durable("train_name", "")),
        "seed": cols[1].number_input("Seed", 0, 2**31 - 1,
                                     **state.durable("train_seed", RunConfig.seed)),
        "probe_images": cols[2].number_input(
            "Timeline images", 0, 48, **state.durable("train_probes", RunConfig.probe_images),
            help="Validation images whose Grad-CAM maps are stored after every epoch; 0: no "
                 "timeline.")}
    cols = st.columns(3)
    options["strategy"] = cols[0].selectbox(
        "Devices", list(STRATEGIES), format_func=STRATEGIES.get,
        **state.durable("train_strategy", RunConfig.strategy))
    has_gpu = gpu_available()
    options["mixed_precision"] = cols[1].toggle(
        "Mixed precision (GPU)", disabled=not has_gpu,
        **state.durable("train_mixed", RunConfig.mixed_precision),
        help="float16 arithmetic on a GPU: faster, less memory."
             + ("" if has_gpu else " No GPU was found here."))
    cols[2].number_input("Runs at once (limit)", 1, 16, **state.durable("train_limit", max_runs()))
    cols = st.columns(3)
    options["warmup"] = cols[0].number_input(
        "Warm-up (share of the steps)", 0.0, 0.5, step=0.01, format="%g",
        **state.durable("train_warmup", RunConfig.warmup),
        help="With cosine decay: the learning rate rises from 0 over this share of each "
             "stage's first steps, so the untrained network's large first gradients do not "
             "throw it off. 0 is off.")
    options["label_smoothing"] = cols[1].number_input(
        "Label smoothing", 0.0, 0.5, step=0.05, format="%g",
        **state.durable("train_label_smoothing", RunConfig.label_smoothing),
        help="Train towards 0.9 for the true class (with 0.1) and the rest shared by the others "
             "instead of 1 and 0: the network stops chasing ever more confident answers and "
             "generalises better. The loss then levels off above 0. 0 is off.")
    return options
