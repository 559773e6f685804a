"""Data set: import a small image data set, read its sanity report, preview augmentation."""

from __future__ import annotations

from typing import Callable

import streamlit as st

from engine.cache import BoundedCache
from engine.data import (
    NOVEL_CLASS_NAMES,
    NOVEL_SMALL_TEST_PER_CLASS,
    NOVEL_SMALL_TRAIN_PER_CLASS,
    NOVEL_SMALL_VALIDATION_PER_CLASS,
    Augmentation,
    Dataset,
    augment_samples,
    delete_dataset,
    export_demo,
    export_small_novel,
    import_folder,
    import_zip,
    inspect,
    list_datasets,
    load_augmentation,
    load_report,
    save_augmentation,
)
from engine.data.report import SCOPES, TINY_SIDE
from engine.errors import CNNExplorerError
from engine.images import load_image, resize_image
from engine.progress import Progress
from ui import dataset_figures as figures
from ui import presenter, state
from ui.errors import log, shown_errors
from ui.jobs import again, ended_message, follow, job_for
from ui.page import page
from ui.paths import datasets_dir
from ui.text import md_escape

EXPLAINER = """
A CNN learns from **examples**: a folder of images per class (`cats/`, `dogs/`, ...). Before
training on them it pays to look at them, because most surprises in training come from the data:

- **Counts per class**: if one class has many more images, the network can score well by
  mostly guessing that class (*imbalance*).
- **Splits**: images are kept apart for *training*, *validation* (choosing settings) and *test*
  (the final score). The same photo in train and test (**leakage**) makes the test score too
  good to be true.
- **Duplicates**: *exact* copies have the same bytes; *near* copies are the same picture
  re-saved, resized or slightly brightened (found with a *perceptual hash*, a 64-bit summary of
  the picture's coarse shapes). A copy with a different label is a **conflicting label**.
- **Sizes and colours**: every image is resized to the network's input, so tiny images are
  blown up and blurred, and grayscale images among colour ones look different to the network.
- **Mean image**: the average of all images of a class. A sharp shape in it means the class's
  objects always sit in the same place, or share a background the network may learn instead.
- **Augmentation** shows the network slightly changed copies (flipped, rotated, zoomed...) so
  it learns the object, not one exact picture. The settings you choose here are saved with the
  data set and used for training.
"""

DEMO_SIZES = [600, 1200, 3000, 6000, 12000]
IMAGE_SIDES = [32, 64, 96, 128]
PAIRS_SHOWN = 6
SCOPE_TITLES = {"across splits": "Across splits (leakage)",
                "across classes": "Across classes (conflicting labels)",
                "within class": "Within a class"}

page("Data set", EXPLAINER, icon=":material/dataset:")
folder = datasets_dir()


# ------------------------------------------------------------------------------------ helpers
@st.cache_resource(show_spinner=False)
def _reports() -> BoundedCache:
    """Reports already read in this server process: ``(folder, key) -> report``."""
    return BoundedCache(4)


def _report(ds):
    cache = _reports()
    cache_key = (str(ds.folder), ds.key)
    report = cache.get(cache_key)
    if report is not None:
        return report
    report = load_report(ds)
    if report is None:
        # Reading every image is heavy: a job of the server's queue computes the report.
        key = ("dataset report",) + cache_key
        title = f"The report on {ds.name}"

        def work(job):
            return inspect(ds, callback=_told(job))

        job = job_for(key, work, title=title)
        if job is not None and job.alive:
            follow(job, "dataset_report_job")
        elif job is not None:
            ended_message(job)
            report = job.result
            if report is None and st.button("Compute the report again", key="dataset_again"):
                again(key, work, title=title)
                st.rerun()
        if report is None:
            return None
    cache.put(cache_key, report)
    return report


def _told(job) -> Progress:
    """``inspect``'s progress callback, reporting to a job."""
    def progress(done: int, total: int, stage: str) -> None:
        if stage == "reading images":
            job.report(done, total, f"reading the images, {done:,} / {total:,}")
        elif stage == "near duplicates":
            job.report(total, total, "looking for near duplicates")

    return progress


@st.cache_data(show_spinner=False, max_entries=512)
def _thumbnail(path: str, dataset_key: str, side: int = 160):
    image = load_image(path)
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale < 1:
        image = resize_image(image, (max(1, round(h * scale)), max(1, round(w * scale))))
    return image


@st.cache_data(show_spinner=False, max_entries=64)
def _augmented(path: str, dataset_key: str, settings: dict, seed: int):
    image = _thumbnail(path, dataset_key, side=128)
    return augment_samples(image, Augmentation.from_dict(settings), n=8, seed=seed)


def _progress_import(run: Callable[[Progress], Dataset], text: str) -> Dataset:
    bar = st.progress(0.0, text=text)

    def progress(done: int, total: int, stage: str) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"{text} {done:,} / {total:,}")

    try:
        return run(progress)
    finally:
        bar.empty()


def _chose(ds) -> None:
    st.session_state["dataset"] = ds.id
    st.toast(md_escape(f"Imported {ds.name}: {len(ds.files):,} images, "
                       f"{len(ds.class_names)} classes."),
             icon=":material/check_circle:")


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
    saved = load_augmentation(ds)
    left, right = st.columns([1, 2])
    with left:
        pick = st.selectbox("Image", choices, key=f"aug_image_{ds.id}")
        flip = st.toggle("Horizontal flip", value=saved.horizontal_flip, key=f"aug_flip_{ds.id}")
        vflip = st.toggle("Vertical flip", value=saved.vertical_flip, key=f"aug_vflip_{ds.id}",
                          help="For images without an up: shapes, cells, satellite views.")
        transpose = st.toggle("Diagonal mirror", value=saved.transpose,
                              key=f"aug_transpose_{ds.id}",
                              help="Swap rows and columns; with both flips, every quarter turn "
                                   "and mirror. Square images only (training resizes to a "
                                   "square).")
        rotation = st.slider("Rotation (degrees)", 0, 180, int(saved.rotation), 5,
                             key=f"aug_rotation_{ds.id}")
        shear = st.slider("Shear", 0.0, 1.0, float(saved.shear), 0.05, key=f"aug_shear_{ds.id}")
        zoom = st.slider("Zoom (fraction of the size)", 0.0, 0.9, float(saved.zoom), 0.05,
                         key=f"aug_zoom_{ds.id}")
        shift = st.slider("Shift (fraction of the size)", 0.0, 1.0, float(saved.translation),
                          0.05, key=f"aug_shift_{ds.id}")
        brightness = st.slider("Brightness", 0.0, 1.0, float(saved.brightness), 0.05,
                               key=f"aug_brightness_{ds.id}")
        contrast = st.slider("Contrast", 0.0, 1.0, float(saved.contrast), 0.05,
                             key=f"aug_contrast_{ds.id}")
        settings = Augmentation(horizontal_flip=flip, vertical_flip=vflip, transpose=transpose,
                                rotation=rotation, shear=shear, zoom=zoom,
                                translation=shift, brightness=brightness, contrast=contrast)
        if settings != saved:
            save_augmentation(ds, settings)
        st.caption("Saved with this data set." if not settings.is_identity
                   else "No augmentation: training sees the images as they are.")
        if st.button("New random samples", key="aug_reseed", icon=":material/casino:"):
            st.session_state["aug_seed"] = st.session_state.get("aug_seed", 0) + 1
    with right:
        with shown_errors("The preview failed: "), st.spinner("Augmenting..."):
            samples = _augmented(str(ds.path_of(pick)), ds.key, settings.to_dict(),
                                 st.session_state.get("aug_seed", 0))
            st.image(list(samples), width=150)
        st.text(pick)


# ------------------------------------------------------------------------------------- import
stored = list_datasets(folder)
with st.expander("Import a data set", expanded=not stored, icon=":material/upload:"):
    tab_zip, tab_folder, tab_demo, tab_novel = st.tabs(["Upload a zip", "Folder on the server",
                                                        "Demo shapes", "New shapes (small)"])
    with tab_zip:
        st.caption("A .zip of class folders (cats/…, dogs/…), optionally inside train/, "
                   "validation/ and test/ folders. Hidden files, non-images and damaged "
                   "images are skipped and listed.")
        upload = st.file_uploader("Data set (.zip)", type=["zip"], key="dataset_zip")
        # Each upload is imported once; why one was refused stays shown while it is there.
        refusals = st.session_state.setdefault("_dataset_upload_refusals", {})
        if upload is not None:
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
    with tab_folder:
        path = st.text_input("Folder path on the server", placeholder="/data/pets",
                             key="dataset_folder_path")
        if st.button("Import the folder", key="dataset_folder_go", disabled=not path.strip()):
            with shown_errors("The folder was not imported: "):
                ds = _progress_import(
                    lambda cb: import_folder(path.strip(), folder, callback=cb),
                    "Checking the images...")
                _chose(ds)
        st.caption("The images stay where they are; only the list of files and the report are "
                   "kept in the app's data folder.")
    with tab_demo:
        cols = st.columns(2)
        n = cols[0].select_slider("Images", DEMO_SIZES, value=600, key="dataset_demo_n")
        side = cols[1].select_slider("Size (pixels)", IMAGE_SIDES, value=64,
                                     key="dataset_demo_side")
        st.caption("Six shape classes on cluttered backgrounds (the demo model's data), split "
                   "70/15/15 into train, validation and test; each object's box is kept. "
                   "Augmentation starts as both flips and the diagonal mirror.")
        if st.button("Create the demo data set", key="dataset_demo_go"):
            with shown_errors("The demo data set was not created: "):
                ds = _progress_import(
                    lambda cb: export_demo(folder, n, size=side, callback=cb, mirrors=True),
                    "Drawing shapes...")
                _chose(ds)
    with tab_novel:
        cols = st.columns(2)
        per_class = cols[0].number_input("Training images per class", 1, 2000,
                                         NOVEL_SMALL_TRAIN_PER_CLASS, key="dataset_novel_train")
        side = cols[1].select_slider("Size (pixels)", IMAGE_SIDES, value=64,
                                     key="dataset_novel_side")
        st.caption(md_escape(
            f"Six shapes the demo model never saw ({', '.join(NOVEL_CLASS_NAMES)}) on the same "
            f"cluttered backgrounds, with {NOVEL_SMALL_VALIDATION_PER_CLASS} validation and "
            f"{NOVEL_SMALL_TEST_PER_CLASS} test images per class: few examples to learn from, "
            "enough to score on. Augmentation starts as both flips and the diagonal mirror."))
        if st.button("Create the new shapes data set", key="dataset_novel_go"):
            with shown_errors("The new shapes data set was not created: "):
                ds = _progress_import(
                    lambda cb: export_small_novel(folder, int(per_class), size=side, callback=cb),
                    "Drawing shapes...")
                _chose(ds)

stored = list_datasets(folder)
if not stored:
    st.info("Import a data set above to see its report.", icon=":material/info:")
    st.stop()

# ------------------------------------------------------------------------------------- picker
by_id = {d.id: d for d in stored}
if st.session_state.get("dataset") not in by_id:
    st.session_state["dataset"] = stored[0].id
cols = st.columns([4, 1], vertical_alignment="bottom")
chosen = cols[0].selectbox(
    "Data set", list(by_id), **state.durable("dataset", stored[0].id),
    format_func=lambda i: f"{by_id[i].name} · {len(by_id[i].files):,} images · "
                          f"{len(by_id[i].class_names)} classes · {by_id[i].source}")
ds = by_id[chosen]
with cols[1], presenter.technical("dataset_delete"), st.popover("Delete",
                                                                 icon=":material/delete:"):
    st.caption(md_escape(f"Delete '{ds.name}' from the data folder"
                         + (" (the folder's own images are kept)?" if ds.source == "folder"
                            else "?")))
    if st.button("Delete it", key="dataset_delete", type="primary"):
        delete_dataset(ds)
        st.session_state.pop("dataset", None)
        st.rerun()

with shown_errors("The report could not be computed: "):
    report = _report(ds)
    if report is None:  # its job is waiting, running, failed or was cancelled
        st.stop()

    # ----------------------------------------------------------------------------- summary
    total_pairs = sum(report.exact_counts.values()) + sum(report.near_counts.values())
    cols = st.columns(5)
    cols[0].metric("Images", f"{report.n_images:,}")
    cols[1].metric("Classes", len(report.class_names))
    cols[2].metric("Splits", len(report.splits))
    cols[3].metric("Files not used", len(report.unreadable))
    cols[4].metric("Leaks across splits", report.leaks)
    st.caption("Images per split: " + " · ".join(
        f"{split} {sum(report.counts[split].values()):,}" for split in report.splits))
    if report.warnings:
        st.warning("\n".join(f"- {md_escape(w)}" for w in report.warnings),
                   icon=":material/warning:")
    else:
        st.success("Nothing to worry about found.", icon=":material/check_circle:")

    # ------------------------------------------------------------------------------ counts
    st.subheader("Classes and splits")
    ratio = report.imbalance_ratio
    st.caption("Imbalance (largest class / smallest class): "
               + ("a class has no images" if ratio == float("inf") else f"{ratio:.2f}"))
    presenter.chart(figures.class_counts(report), key="dataset_counts",
                    config={"displayModeBar": False})

    if report.unreadable:
        st.subheader("Files not used")
        st.dataframe([{"file": s.path, "reason": s.reason} for s in report.unreadable],
                     hide_index=True, width="stretch",
                     height=min(38 + 35 * len(report.unreadable), 400))

    # -------------------------------------------------------------------------- duplicates
    st.subheader("Duplicates and leaks")
    st.caption(f"{total_pairs:,} pair(s) in all. Exact: the same bytes. Near: the same picture "
               "re-saved, resized or slightly brightened (perceptual hash, then a pixel check).")
    tabs = st.tabs([f"{SCOPE_TITLES[s]} · {report.exact_counts[s] + report.near_counts[s]:,}"
                    for s in SCOPES])
    for scope, tab in zip(SCOPES, tabs):
        with tab:
            pairs = report.pairs_in(scope)
            st.caption(f"{report.exact_counts[scope]:,} exact and {report.near_counts[scope]:,} "
                       "near pair(s).")
            if not pairs:
                st.info("None found.", icon=":material/check_circle:")
                continue
            for row in range(0, min(len(pairs), PAIRS_SHOWN), 2):
                cols = st.columns(2)
                for col, pair in zip(cols, pairs[row:row + 2]):
                    with col.container(border=True):
                        kind = "Exact copy" if pair.exact else \
                            f"Near copy (hashes {pair.distance} bit(s) apart)"
                        st.markdown(f"**{kind}**")
                        halves = st.columns(2)
                        for half, (p, split, cls) in zip(halves, (
                                (pair.a, pair.a_split, pair.a_class),
                                (pair.b, pair.b_split, pair.b_class))):
                            with half:
                                with shown_errors():
                                    st.image(_thumbnail(str(ds.path_of(p)), ds.key),
                                             width="stretch")
                                st.caption(md_escape(f"{split} · {cls}"))
                                st.text(p)
            if len(pairs) > PAIRS_SHOWN:
                st.dataframe([{"kind": "exact" if p.exact else "near", "first": p.a,
                               "split": p.a_split, "class": p.a_class, "second": p.b,
                               "split ": p.b_split, "class ": p.b_class} for p in pairs],
                             hide_index=True, width="stretch", height=300)

    # ---------------------------------------------------------------------- image properties
    st.subheader("Sizes, shapes and colours")
    cols = st.columns(2)
    cols[0].plotly_chart(figures.image_sizes(report), key="dataset_sizes",
                         config={"displayModeBar": False})
    cols[1].plotly_chart(figures.aspect_ratios(report), key="dataset_aspect",
                         config={"displayModeBar": False})
    cols = st.columns(2)
    cols[0].plotly_chart(figures.colour_modes(report), key="dataset_modes",
                         config={"displayModeBar": False})
    cols[1].plotly_chart(figures.file_sizes(report), key="dataset_bytes",
                         config={"displayModeBar": False})
    for flagged, title in ((report.tiny, f"Tiny images (shorter side under {TINY_SIDE} px)"),
                           (report.grayscale if 0 < len(report.grayscale) < report.n_images
                            else [], "Grayscale images among colour ones")):
        if flagged:
            with st.expander(f"{title}: {len(flagged):,}", icon=":material/flag:"):
                st.dataframe([{"file": p} for p in flagged], hide_index=True, width="stretch",
                             height=min(38 + 35 * len(flagged), 300))

    # -------------------------------------------------------------------- samples and means
    st.subheader("Samples and mean image per class")
    for index, name in enumerate(report.class_names):
        cols = st.columns([1, 6])
        with cols[0]:
            st.image(report.mean_images[index], width=96, clamp=True)
            st.caption("mean of " + md_escape(name))
        with cols[1]:
            st.markdown(f"**{md_escape(name)}** · "
                        f"{sum(report.counts[s][name] for s in report.splits):,} images")
            thumbs = report.sample_thumbnails(name)
            if thumbs:
                st.image([t for _, t in thumbs], width=80)

    augmentation_preview(ds, report)
