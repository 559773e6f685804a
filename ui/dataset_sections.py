"""The Data set page's sections: the data set picker (the Train page's too), the import tabs,
the report's sections and the augmentation preview.

The words and numbers come from ``engine.data.views``; the figures from
``ui.dataset_figures``.
"""

from __future__ import annotations

from typing import Callable

import streamlit as st

from engine.data import (NOVEL_CLASS_NAMES, NOVEL_SMALL_TEST_PER_CLASS,
                         NOVEL_SMALL_TRAIN_PER_CLASS, NOVEL_SMALL_VALIDATION_PER_CLASS,
                         Augmentation, Dataset, augment_samples, export_demo, export_small_novel,
                         import_folder, import_zip, load_augmentation, save_augmentation)
from engine.data.report import SCOPES
from engine.data.views import (AUGMENT_LIMITS, DEMO_DEFAULT_SIDE, DEMO_DEFAULT_SIZE,
                               DEMO_SIDES, DEMO_SIZES, class_total, dataset_label,
                               flagged_images, imbalance_text,
                               pair_count, pair_rows, pair_title, report_metrics, scope_text,
                               scope_title, splits_text, thumbnail)
from engine.errors import CNNExplorerError
from engine.progress import Progress
from ui import dataset_figures as figures
from ui import presenter, state
from ui.errors import log, shown_errors
from ui.text import md_escape
from ui.widgets import progress_bar

PAIRS_SHOWN = 6
_NO_BAR = {"displayModeBar": False}

#: (setting, label, step, widget key part) of the augmentation sliders; each ends at the
#: setting's largest value (an int step: whole numbers)
_SLIDERS = (("rotation", "Rotation (degrees)", 5, "rotation"),
            ("shear", "Shear", 0.05, "shear"),
            ("zoom", "Zoom (fraction of the size)", 0.05, "zoom"),
            ("translation", "Shift (fraction of the size)", 0.05, "shift"),
            ("brightness", "Brightness", 0.05, "brightness"),
            ("contrast", "Contrast", 0.05, "contrast"))


def dataset_picker(datasets, *, detailed: bool = True, where=st) -> Dataset:
    """The data set picker of the Data set and Train pages (one durable choice, ``dataset``);
    the first data set when the one chosen before is gone."""
    by_id = {d.id: d for d in datasets}
    if st.session_state.get("dataset") not in by_id:
        st.session_state["dataset"] = datasets[0].id
    chosen = where.selectbox("Data set", list(by_id), **state.durable("dataset", datasets[0].id),
                             format_func=lambda i: dataset_label(by_id[i], detailed=detailed))
    return by_id[chosen]


def table_height(rows: int, cap: int) -> int:
    """A table's height in pixels: every row shown, up to ``cap``."""
    return min(38 + 35 * rows, cap)


@st.cache_data(show_spinner=False, max_entries=512)
def _thumbnail(path: str, dataset_key: str, side: int = 160):
    return thumbnail(path, side)


@st.cache_data(show_spinner=False, max_entries=64)
def _augmented(path: str, dataset_key: str, settings: dict, seed: int):
    image = _thumbnail(path, dataset_key, side=128)
    return augment_samples(image, Augmentation.from_dict(settings), n=8, seed=seed)


# ------------------------------------------------------------------------------------- import
def _progress_import(run: Callable[[Progress], Dataset], text: str) -> Dataset:
    bar, progress = progress_bar(text, first=text)
    try:
        return run(progress)
    finally:
        bar.empty()


def _chose(ds) -> None:
    st.session_state["dataset"] = ds.id
    st.toast(md_escape(f"Imported {ds.name}: {len(ds.files):,} images, "
                       f"{len(ds.class_names)} classes."),
             icon=":material/check_circle:")


def _imported(run: Callable[[Progress], Dataset], text: str, failed: str) -> None:
    """Import with a progress bar saying ``text``; the new data set becomes the chosen one
    (``failed`` starts the sentence when it could not be made)."""
    with shown_errors(failed):
        _chose(_progress_import(run, text))


def import_section(folder, *, expanded: bool) -> None:
    """The tabs that bring a data set into ``folder``: a zip, a folder, the demo shapes, the
    small new shapes."""
    with st.expander("Import a data set", expanded=expanded, icon=":material/upload:"):
        tabs = st.tabs(["Upload a zip", "Folder on the server", "Demo shapes",
                        "New shapes (small)"])
        with tabs[0]:
            _zip_tab(folder)
        with tabs[1]:
            path = st.text_input("Folder path on the server", placeholder="/data/pets",
                                 key="dataset_folder_path")
            if st.button("Import the folder", key="dataset_folder_go",
                         disabled=not path.strip()):
                _imported(lambda cb: import_folder(path.strip(), folder, callback=cb),
                          "Checking the images...", "The folder was not imported: ")
            st.caption("The images stay where they are; only the list of files and the report "
                       "are kept in the app's data folder.")
        with tabs[2]:
            _demo_tab(folder)
        with tabs[3]:
            _novel_tab(folder)


def _zip_tab(folder) -> None:
    st.caption("A .zip of class folders (cats/…, dogs/…), optionally inside train/, "
               "validation/ and test/ folders. Hidden files, non-images and damaged "
               "images are skipped and listed.")
    upload = st.file_uploader("Data set (.zip)", type=["zip"], key="dataset_zip")
    # Each upload is imported once; why one was refused stays shown while it is there.
    refusals = st.session_state.setdefault("_dataset_upload_refusals", {})
    if upload is None:
        return
    if upload.file_id not in refusals:
        refusals[upload.file_id] = ""
        try:
            ds = _progress_import(lambda cb: import_zip(upload, folder, callback=cb),
                                  "Unpacking...")
        except CNNExplorerError as exc:
            refusals[upload.file_id] = f"The zip was not imported: {exc}"
        except Exception:  # a bug: logged for developers, a sentence for the user
            log.exception("importing %r failed", upload.name)
            refusals[upload.file_id] = (
                "The zip was not imported: something went wrong inside CNN Explorer. "
                "The details were written to the server log.")
        else:
            _chose(ds)
    if refusals[upload.file_id]:
        st.error(md_escape(refusals[upload.file_id]), icon=":material/error:")


def _demo_tab(folder) -> None:
    cols = st.columns(2)
    n = cols[0].select_slider("Images", DEMO_SIZES, value=DEMO_DEFAULT_SIZE,
                              key="dataset_demo_n")
    side = cols[1].select_slider("Size (pixels)", DEMO_SIDES, value=DEMO_DEFAULT_SIDE,
                                 key="dataset_demo_side")
    st.caption("Six shape classes on cluttered backgrounds (the demo model's data), split "
               "70/15/15 into train, validation and test; each object's box is kept. "
               "Augmentation starts as both flips and the diagonal mirror.")
    if st.button("Create the demo data set", key="dataset_demo_go"):
        _imported(lambda cb: export_demo(folder, n, size=side, callback=cb, mirrors=True),
                  "Drawing shapes...", "The demo data set was not created: ")


def _novel_tab(folder) -> None:
    cols = st.columns(2)
    per_class = cols[0].number_input("Training images per class", 1, 2000,
                                     NOVEL_SMALL_TRAIN_PER_CLASS, key="dataset_novel_train")
    side = cols[1].select_slider("Size (pixels)", DEMO_SIDES, value=DEMO_DEFAULT_SIDE,
                                 key="dataset_novel_side")
    st.caption(md_escape(
        f"Six shapes the demo model never saw ({', '.join(NOVEL_CLASS_NAMES)}) on the same "
        f"cluttered backgrounds, with {NOVEL_SMALL_VALIDATION_PER_CLASS} validation and "
        f"{NOVEL_SMALL_TEST_PER_CLASS} test images per class: few examples to learn from, "
        "enough to score on. Augmentation starts as both flips and the diagonal mirror."))
    if st.button("Create the new shapes data set", key="dataset_novel_go"):
        _imported(lambda cb: export_small_novel(folder, int(per_class), size=side, callback=cb),
                  "Drawing shapes...", "The new shapes data set was not created: ")


# ------------------------------------------------------------------------------------- report
def summary_section(report) -> None:
    """The counters, the images per split and the report's warnings."""
    for col, (label, value) in zip(st.columns(5), report_metrics(report)):
        col.metric(label, value)
    st.caption(splits_text(report))
    if report.warnings:
        st.warning("\n".join(f"- {md_escape(w)}" for w in report.warnings),
                   icon=":material/warning:")
    else:
        st.success("Nothing to worry about found.", icon=":material/check_circle:")
    st.subheader("Classes and splits")
    st.caption(imbalance_text(report))
    presenter.chart(figures.class_counts(report), key="dataset_counts", config=_NO_BAR)
    if report.unreadable:
        st.subheader("Files not used")
        st.dataframe([{"file": s.path, "reason": s.reason} for s in report.unreadable],
                     hide_index=True, width="stretch",
                     height=table_height(len(report.unreadable), 400))


def duplicates_section(ds, report) -> None:
    """One tab per scope (across splits, across classes, within a class) with its pairs."""
    st.subheader("Duplicates and leaks")
    st.caption(f"{pair_count(report):,} pair(s) in all. Exact: the same bytes. Near: the same "
               "picture re-saved, resized or slightly brightened (perceptual hash, then a pixel "
               "check).")
    for scope, tab in zip(SCOPES, st.tabs([scope_title(report, s) for s in SCOPES])):
        with tab:
            pairs = report.pairs_in(scope)
            st.caption(scope_text(report, scope))
            if not pairs:
                st.info("None found.", icon=":material/check_circle:")
                continue
            for row in range(0, min(len(pairs), PAIRS_SHOWN), 2):
                for col, pair in zip(st.columns(2), pairs[row:row + 2]):
                    with col.container(border=True):
                        _pair(ds, pair)
            if len(pairs) > PAIRS_SHOWN:
                st.dataframe(pair_rows(pairs), hide_index=True, width="stretch", height=300)


def _pair(ds, pair) -> None:
    st.markdown(f"**{pair_title(pair)}**")
    for half, (path, split, cls) in zip(st.columns(2), ((pair.a, pair.a_split, pair.a_class),
                                                        (pair.b, pair.b_split, pair.b_class))):
        with half:
            with shown_errors():
                st.image(_thumbnail(str(ds.path_of(path)), ds.key), width="stretch")
            st.caption(md_escape(f"{split} · {cls}"))
            st.text(path)


def images_section(report) -> None:
    """Sizes, aspect ratios, colour modes and file sizes; tiny and grey images; each class's
    mean image and samples."""
    st.subheader("Sizes, shapes and colours")
    cols = st.columns(2) + st.columns(2)
    for col, (figure, key) in zip(cols, ((figures.image_sizes, "dataset_sizes"),
                                         (figures.aspect_ratios, "dataset_aspect"),
                                         (figures.colour_modes, "dataset_modes"),
                                         (figures.file_sizes, "dataset_bytes"))):
        col.plotly_chart(figure(report), key=key, config=_NO_BAR)
    for title, paths in flagged_images(report):
        with st.expander(f"{title}: {len(paths):,}", icon=":material/flag:"):
            st.dataframe([{"file": p} for p in paths], hide_index=True, width="stretch",
                         height=table_height(len(paths), 300))
    st.subheader("Samples and mean image per class")
    for index, name in enumerate(report.class_names):
        cols = st.columns([1, 6])
        with cols[0]:
            st.image(report.mean_images[index], width=96, clamp=True)
            st.caption("mean of " + md_escape(name))
        with cols[1]:
            st.markdown(f"**{md_escape(name)}** · {class_total(report, name):,} images")
            thumbs = report.sample_thumbnails(name)
            if thumbs:
                st.image([t for _, t in thumbs], width=80)


# ------------------------------------------------------------------------------- augmentation
@st.fragment
def augmentation_preview(ds, report) -> None:
    """Sliders and the live grid; a fragment, so moving a slider reruns only this part."""
    st.subheader("Augmentation preview")
    st.caption("Each setting is the largest random change; every training image gets its own "
               "draw. The settings are saved with this data set and used for training.")
    choices = report.sample_paths
    if not choices:
        st.info("No readable image to preview.")
        return
    left, right = st.columns([1, 2])
    with left:
        pick = st.selectbox("Image", choices, key=f"aug_image_{ds.id}")
        settings = _augmentation_settings(ds)
        if st.button("New random samples", key="aug_reseed", icon=":material/casino:"):
            st.session_state["aug_seed"] = st.session_state.get("aug_seed", 0) + 1
    with right:
        with shown_errors("The preview failed: "), st.spinner("Augmenting..."):
            samples = _augmented(str(ds.path_of(pick)), ds.key, settings.to_dict(),
                                 st.session_state.get("aug_seed", 0))
            st.image(list(samples), width=150)
        st.text(pick)


def _augmentation_settings(ds) -> Augmentation:
    """The augmentation widgets, starting at the saved settings; a change is saved."""
    saved = load_augmentation(ds)
    flip = st.toggle("Horizontal flip", value=saved.horizontal_flip, key=f"aug_flip_{ds.id}")
    vflip = st.toggle("Vertical flip", value=saved.vertical_flip, key=f"aug_vflip_{ds.id}",
                      help="For images without an up: shapes, cells, satellite views.")
    transpose = st.toggle("Diagonal mirror", value=saved.transpose, key=f"aug_transpose_{ds.id}",
                          help="Swap rows and columns; with both flips, every quarter turn and "
                               "mirror. Square images only (training resizes to a square).")
    values = {name: st.slider(label, type(step)(0), type(step)(AUGMENT_LIMITS[name]),
                              type(step)(getattr(saved, name)), step, key=f"aug_{key}_{ds.id}")
              for name, label, step, key in _SLIDERS}
    settings = Augmentation(horizontal_flip=flip, vertical_flip=vflip, transpose=transpose,
                            **values)
    if settings != saved:
        save_augmentation(ds, settings)
    st.caption("Saved with this data set." if not settings.is_identity
               else "No augmentation: training sees the images as they are.")
    return settings
