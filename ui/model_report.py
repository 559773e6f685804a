"""What the model sees in a data set (``engine.data.model_report``): the Data set page's section
(the embedding map with a selection grid, likely label errors, outliers, the confusion matrix,
nearest neighbours) and the "Most similar training images" expander of the Home and Saliency
pages.

The report is computed by a job of the server's queue (the features of every image, then PCA,
cleanlab's label issues and outliers), kept per server in a ``BoundedCache`` and shared by
every session and page; the UMAP map is a second job that starts once the report is there, so
the PCA map shows at once. Clicking an image of a grid shows its Grad-CAM overlay.
"""

from __future__ import annotations

import csv
import io
import time
from inspect import signature

import numpy as np
import streamlit as st

from engine.cache import BoundedCache
from engine.data import Dataset, list_datasets
from engine.data.model_report import (ModelReport, ModelReportConfig, embedding_umap,
                                      model_report, nearest, nearest_to_index)
from engine.images import load_image
from engine.jobs import FINISHED, Job
from engine.predictions import cached_predict
from engine.render import fit_to_side, image_uri, overlay, tile_grid
from engine.saliency import explain
from engine.training.views import duration_text
from ui import model_report_figures as figures
from ui import presenter
from ui.errors import shown_errors
from ui.figures import tile_grid_figure
from ui.jobs import again, ended_message, follow, job_for
from ui.paths import datasets_dir
from ui.text import md_escape
from ui.widgets import image_choice

#: reports (and UMAP maps) kept per server process
REPORTS_KEPT = 4
#: images in one grid (a selection, the outliers, a confusion cell, the neighbours)
GRID_SHOWN = 30
#: rows of the label error table that get a thumbnail
TABLE_ROWS = 200
TILE_SIDE = 80
#: the report's job: PCA only; UMAP is the second job
_QUICK = ModelReportConfig(use_umap=False)
#: the UMAP map's job starts as soon as the report is there (else when UMAP is chosen); its
#: first run in a server process compiles UMAP with numba: tens of seconds on two cores
AUTO_UMAP = ModelReportConfig().use_umap
#: neighbours shown at first (``nearest``'s own default)
NEIGHBOURS = signature(nearest).parameters["k"].default
_NO_BAR = {"displayModeBar": False}
EXPLAINER = (
    "The model turns every image into a list of numbers, its *features* (the input of its last "
    "layer). Images the model finds alike get close features. The map lays them out in 2-D "
    "(PCA at once, UMAP when ready); a simple classifier trained on the features of the other "
    "images guesses each label, and where it strongly disagrees with the given label the label "
    "may be wrong (cleanlab). Images far from all others are *outliers*.")


@st.cache_resource(show_spinner=False)
def _store() -> BoundedCache:
    """Server-wide: reports and UMAP maps by key (a job computes them outside any script run)."""
    return BoundedCache(2 * REPORTS_KEPT)


def _key(ds: Dataset, model) -> tuple:
    return ("model report", model.key, str(ds.folder), ds.key)


def _name(report: ModelReport, label) -> str:
    """The class name of a label or prediction (an index)."""
    return report.class_names[int(label)]


# ------------------------------------------------------------------------------ the jobs
def _report_work(ds: Dataset, model, key: tuple):
    store = _store()

    def work(job: Job) -> ModelReport:  # features cached in the data set's folder
        report = model_report(ds, model, callback=job.report, config=_QUICK)
        store.put(key, report)
        return report

    return work


def _eta(job: Job) -> None:
    """The time left in the current stage, from its pace so far (the job's ``follow`` body;
    each stage counts from 0, so the pace is the stage's own); the time it has run while its
    pace is not known yet."""
    if not job.started:
        return
    now, seen = time.time(), st.session_state.setdefault("_mr_stages", {})
    stage, since = seen.get(job.id, (job.text, job.started))
    if stage != job.text:  # a new stage began (seen within a poll of its start)
        stage, since = job.text, now
    seen[job.id] = (stage, since)
    fraction = job.fraction
    if 0.02 < fraction < 1:
        st.caption(f"About {duration_text((now - since) * (1 - fraction) / fraction)} left.")
    else:
        st.caption(f"Running for {duration_text(now - job.started)}.")


def known_report(ds: Dataset, model) -> ModelReport | None:
    """The report of ``model`` on ``ds`` when this server has it (nothing is computed)."""
    found = _store().get(_key(ds, model))
    if found is not None:
        return found
    job = job_for(_key(ds, model), _report_work(ds, model, _key(ds, model)), title="",
                  start=False)
    return job.result if job is not None and job.status == FINISHED else None


def _queued_report(ds: Dataset, model, button: str, prefix: str) -> ModelReport | None:
    """The report, or None while its job waits or runs (its progress and time left are shown)
    or before anyone asked for it (``button`` submits it)."""
    found = known_report(ds, model)
    if found is not None:
        return found
    key = _key(ds, model)
    work, title = _report_work(ds, model, key), f"What {model.title} sees in {ds.name}"
    job = job_for(key, work, title=title, start=False)
    if job is not None and job.alive:
        follow(job, f"{prefix}_job", _eta)
        return None
    if job is not None:
        ended_message(job)
    if st.button(button, key=f"{prefix}_go", type="primary", icon=":material/play_arrow:"):
        again(key, work, title=title)
        st.rerun()
    return None


def _umap(report: ModelReport, key: tuple, start: bool) -> np.ndarray | None:
    """The UMAP map, or None while its job runs or before it was started (``start``)."""
    if report.embedding_method == "umap":
        return report.embedding
    store, umap_key = _store(), ("umap",) + key

    def work(job: Job) -> np.ndarray:
        job.report(0, 1, "laying out the features")
        points = embedding_umap(report.features, n_neighbors=_QUICK.umap_neighbours,
                                min_dist=_QUICK.umap_min_dist, seed=_QUICK.seed,
                                graph=report.graph)
        store.put(umap_key, points)
        return points

    found = store.get(umap_key)
    if found is not None:
        return found
    job = job_for(umap_key, work, title="The UMAP map", start=start)
    if job is None or job.status == FINISHED:
        return None if job is None else job.result
    if job.alive:
        follow(job, "mr_umap_job", _eta)
    else:
        ended_message(job)
    return None


# ------------------------------------------------------------------------------ pictures
@st.cache_data(show_spinner=False, max_entries=2048)
def _thumb(path: str, dataset_key: str, side: int = TILE_SIDE) -> np.ndarray:
    """The image fitted to ``side`` pixels (small images enlarged: grid tiles of one size)."""
    return fit_to_side(load_image(path), side)


@st.cache_data(show_spinner=False, max_entries=2048)
def _thumb_uri(path: str, dataset_key: str) -> str:
    return image_uri(_thumb(path, dataset_key, 48))


@st.cache_data(show_spinner="Grad-CAM...", max_entries=64)
def _gradcam(_model, model_key: str, path: str, dataset_key: str):
    """The image, its Grad-CAM overlay for the model's top class, and that class."""
    image = load_image(path)
    top = cached_predict(_model, [image], top=1)[0][0]
    return image, overlay(image, explain(_model, [image], "gradcam")[0], 0.5), top


def _cam_view(ds: Dataset, model, report: ModelReport, index: int) -> None:
    """One image of the set, large, beside its Grad-CAM overlay."""
    rel = report.files[index].path
    with shown_errors("Grad-CAM failed: "):
        image, picture, (name, p) = _gradcam(model, model.key, str(ds.path_of(rel)), ds.key)
        left, right, _ = st.columns([1, 1, 2])
        left.image(image, width="stretch")
        right.image(picture, width="stretch")
        st.text(rel)
        st.caption(md_escape(
            f"Given label: {_name(report, report.labels[index])} · prediction: "
            f"{_name(report, report.predictions[index])} · Grad-CAM for the model's top "
            f"class, {name} ({p:.0%})"))


def image_grid(ds: Dataset, model, report: ModelReport, indices, key: str,
               notes: list[str] | None = None) -> None:
    """Images of the report as one clickable grid (above each: its label, or in red
    "label->prediction" when the prediction differs; or ``notes``); a click shows that image's
    Grad-CAM below."""
    indices = [int(i) for i in indices][:GRID_SHOWN]
    if not indices:
        return
    labels, predictions = report.labels, report.predictions
    tiles = [_thumb(str(ds.path_of(report.files[i].path)), ds.key) for i in indices]
    words = notes or [_name(report, labels[i]) if labels[i] == predictions[i] else
                      f"{_name(report, labels[i])}->{_name(report, predictions[i])}"
                      for i in indices]
    grid = tile_grid(tiles, columns=10, labels=words, label_colours=[
        None if labels[i] == predictions[i] else (200, 30, 40) for i in indices])
    hover = figures.hover_texts([report.files[i].path for i in indices],
                                [_name(report, labels[i]) for i in indices],
                                [_name(report, predictions[i]) for i in indices])
    chosen = f"{key}_chosen"

    def clicked():
        points = st.session_state[key].selection.points
        if points:
            st.session_state[chosen] = int(points[0]["customdata"])

    presenter.chart(tile_grid_figure(grid.image, grid.boxes, hover, customdata=indices,
                                     name="images", selected=_position(indices, chosen)),
                    key=key, on_select=clicked, selection_mode="points", width="content",
                    config=_NO_BAR)
    if st.session_state.get(chosen) in indices:
        _cam_view(ds, model, report, st.session_state[chosen])
    else:
        st.caption("Click an image for its Grad-CAM.")


def _position(indices: list[int], chosen: str) -> int | None:
    value = st.session_state.get(chosen)
    return indices.index(value) if value in indices else None


# ------------------------------------------------------------------------------ the section
def model_report_section(ds: Dataset, model) -> None:
    """The Data set page's "What the model sees" section for the sidebar's model."""
    st.subheader("What the model sees", anchor=False, divider="gray")
    st.caption(EXPLAINER)
    if model is None:
        st.info("Choose a model in the sidebar to see what it makes of this data set.",
                icon=":material/info:")
        return
    with shown_errors("The model report could not be computed: "):
        report = _queued_report(ds, model, "Compute what the model sees", "mr")
        if report is not None:
            _report_body(ds, model, report)


def _report_body(ds: Dataset, model, report: ModelReport) -> None:
    st.info(md_escape(report.summary), icon=":material/fact_check:")
    if not report.model_classes_match:
        st.caption("The model's classes are not this data set's: the model only gives the "
                   "features, and the predictions come from a classifier trained on them "
                   "(each image predicted by one that never saw it).")
    if report.skipped:
        with st.expander(f"Files not read: {len(report.skipped):,}", icon=":material/flag:"):
            st.dataframe([{"file": getattr(s, "path", str(s)), "reason": getattr(s, "reason", "")}
                          for s in report.skipped], hide_index=True, width="stretch")
    tabs = st.tabs(["Map", f"Likely label errors · {len(report.label_issues):,}", "Outliers",
                    "Confusion", "Nearest neighbours"])
    for tab, (draw, failed) in zip(tabs, ((_map_tab, "The map failed: "),
                                          (_issues_tab, "The label errors failed: "),
                                          (_outliers_tab, "The outliers failed: "),
                                          (_confusion_tab, "The confusion matrix failed: "),
                                          (_neighbours_tab, "The neighbours failed: "))):
        with tab, shown_errors(failed):
            draw(ds, model, report)


def _groups(report: ModelReport, colouring: str) -> tuple[list[str], list[str]]:
    """Each point's group and the groups in legend order, for a colouring of the map."""
    labels, predictions = np.asarray(report.labels), np.asarray(report.predictions)
    if colouring == "correct / wrong":
        return (np.where(labels == predictions, "correct", "wrong").tolist(),
                ["correct", "wrong"])
    chosen = labels if colouring == "label" else predictions
    return [_name(report, c) for c in chosen], list(report.class_names)


def _map_tab(ds: Dataset, model, report: ModelReport) -> None:
    left, right = st.columns(2)
    projection = left.radio("Map", ["UMAP", "PCA"], horizontal=True, key="mr_projection")
    umap = _umap(report, _key(ds, model), AUTO_UMAP or projection == "UMAP")
    colouring = right.radio("Colour by", figures.COLOURINGS, horizontal=True, key="mr_colour")
    if projection == "UMAP" and umap is None:
        st.caption("UMAP is still being laid out; PCA meanwhile.")
    points, title = (umap, "UMAP") if projection == "UMAP" and umap is not None else (
        report.pca, "PCA")
    groups, order = _groups(report, colouring)
    hover = figures.hover_texts([f.path for f in report.files],
                                [_name(report, g) for g in report.labels],
                                [_name(report, p) for p in report.predictions])
    key = _key(ds, model)

    def selected():
        # Kept apart from the chart, and an empty selection ignored: a redrawn map (UMAP
        # arriving, another colouring) reports one, and the images would vanish.
        chosen = {int(p["customdata"]) for p in st.session_state["mr_map"].selection.points
                  if p.get("customdata") is not None}
        if chosen:
            st.session_state["mr_chosen"] = (key, sorted(chosen))

    presenter.chart(figures.embedding_figure(np.asarray(points), groups, order, hover, title),
                    key="mr_map", on_select=selected, selection_mode=("box", "lasso", "points"))
    mine, chosen = st.session_state.get("mr_chosen", (None, []))
    if mine != key or not chosen:
        st.caption("Drag a box (or a lasso, in the chart's tool bar) around points to see "
                   "their images.")
        return
    wrong = sum(report.labels[i] != report.predictions[i] for i in chosen)
    text, clear = st.columns([5, 1], vertical_alignment="center")
    text.markdown(f"**{len(chosen):,} images selected**, {wrong:,} predicted wrong"
                  + (f"; the first {GRID_SHOWN} shown." if len(chosen) > GRID_SHOWN else "."))
    clear.button("Clear", key="mr_clear", icon=":material/close:",
                 on_click=lambda: st.session_state.pop("mr_chosen", None))
    image_grid(ds, model, report, chosen, "mr_selected")


def _issue_rows(ds: Dataset, report: ModelReport) -> list[dict]:
    return [{"image": _thumb_uri(str(ds.path_of(row.file)), ds.key) if rank < TABLE_ROWS
             else None, "file": row.file, "given": row.given, "suggested": row.suggested,
             "score": row.score, "index": row.index}
            for rank, row in enumerate(report.label_issues)]


def issues_csv(rows: list[dict]) -> str:
    """The label issue table as CSV text (without the thumbnails)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["rank", "file", "given", "suggested", "score"])
    writer.writerows([rank, r["file"], r["given"], r["suggested"], f"{r['score']:.6f}"]
                     for rank, r in enumerate(rows, 1))
    return out.getvalue()


def _issues_tab(ds: Dataset, model, report: ModelReport) -> None:
    if not report.label_issues:
        st.success("No image looks mislabelled.", icon=":material/check_circle:")
        return
    st.caption("Most doubtful first. Score: how much the out-of-fold probabilities trust the "
               "given label (0: not at all). Click a row for the image and its Grad-CAM.")
    rows = _issue_rows(ds, report)
    st.download_button("Download the list (CSV)", issues_csv(rows),
                       f"label_issues_{ds.id}.csv", "text/csv", key="mr_issues_csv",
                       icon=":material/download:")
    event = st.dataframe(
        rows, hide_index=True, width="stretch", height=min(38 + 52 * len(rows), 480),
        row_height=50, key="mr_issues", on_select="rerun", selection_mode="single-row",
        column_order=("image", "file", "given", "suggested", "score"),
        column_config={"image": st.column_config.ImageColumn("image", width="small"),
                       "score": st.column_config.NumberColumn("score", format="%.3f")})
    picked = event.selection.rows
    if picked:
        _cam_view(ds, model, report, rows[picked[0]]["index"])


def _outliers_tab(ds: Dataset, model, report: ModelReport) -> None:
    st.caption("The images least like the others, in the model's eyes (out-of-distribution "
               "score on the features; lower is stranger). Click one for its Grad-CAM.")
    top = report.outliers[:GRID_SHOWN]
    image_grid(ds, model, report, [r.index for r in top], "mr_outliers",
               notes=[f"{r.score:.3f}" for r in top])
    st.dataframe([{"file": r.file, "label": _name(report, report.labels[r.index]),
                   "score": r.score} for r in report.outliers[:TABLE_ROWS]],
                 hide_index=True, width="stretch", height=300)


def _confusion_tab(ds: Dataset, model, report: ModelReport) -> None:
    st.caption("Rows: the given label; columns: the prediction. Click a cell for its images.")

    def clicked():
        points = st.session_state["mr_confusion"].selection.points
        if points:
            st.session_state["mr_cell"] = tuple(int(v) for v in points[0]["customdata"])

    presenter.chart(figures.confusion_figure(report.confusion, report.class_names),
                    key="mr_confusion", on_select=clicked, selection_mode="points",
                    config=_NO_BAR)
    cell = st.session_state.get("mr_cell")
    if cell is None:
        return
    given, predicted = cell
    labels, predictions = np.asarray(report.labels), np.asarray(report.predictions)
    members = np.flatnonzero((labels == given) & (predictions == predicted))
    st.markdown(md_escape(f"Given {_name(report, given)}, predicted "
                          f"{_name(report, predicted)}: {len(members):,} images"))
    image_grid(ds, model, report, members, "mr_cell_grid")


def _neighbour_notes(rows) -> tuple[list[int], list[str]]:
    return [r.index for r in rows], [f"{r.label} · {r.distance:.3g}" for r in rows]


def _neighbours_tab(ds: Dataset, model, report: ModelReport) -> None:
    st.caption("The images whose features are closest to one image's (label · distance): "
               "explanation by example.")
    files = [f.path for f in report.files]
    left, right = st.columns([3, 1])
    chosen = left.selectbox("Image of the set", range(len(files)), format_func=files.__getitem__,
                            key="mr_nn_image")
    k = right.slider("Neighbours", 1, GRID_SHOWN, NEIGHBOURS, key="mr_nn_k")
    indices, notes = _neighbour_notes(nearest_to_index(report, chosen, k))
    image_grid(ds, model, report, indices, "mr_nn_grid", notes=notes)
    upload = st.file_uploader("Or an image of your own", type=["png", "jpg", "jpeg", "webp",
                                                                  "bmp", "gif", "tif", "tiff"],
                              key="mr_nn_upload")
    if upload is not None:
        with shown_errors("That image could not be compared: "):
            image = load_image(upload.getvalue())
            st.image(image, width=TILE_SIDE * 2)
            indices, notes = _neighbour_notes(nearest(report, image, k, model=model))
            image_grid(ds, model, report, indices, "mr_nn_upload_grid", notes=notes)
    _feature_pairs(ds, report)


def _feature_pairs(ds: Dataset, report: ModelReport) -> None:
    """Near-duplicates by features: pairs the model sees as (nearly) the same image, which
    the pixel hashes of the report above miss when the pixels differ (a crop, a re-encoding,
    a brighter copy)."""
    pairs = report.feature_duplicates
    st.markdown(f"**Near-duplicates by features · {len(pairs):,}** (the pixel-hash ones are "
                "in the data set report above)")
    if not pairs:
        st.caption("No two images have nearly the same features.")
        return
    rows = [{"a": _thumb_uri(str(ds.path_of(p.a)), ds.key), "file a": p.a,
             "label a": _name(report, report.labels[p.index_a]),
             "b": _thumb_uri(str(ds.path_of(p.b)), ds.key), "file b": p.b,
             "label b": _name(report, report.labels[p.index_b]), "distance": p.distance}
            for p in pairs[:TABLE_ROWS]]
    st.dataframe(rows, hide_index=True, width="stretch", row_height=50, key="mr_feature_pairs",
                 height=min(38 + 52 * len(rows), 420),
                 column_config={"a": st.column_config.ImageColumn("a", width="small"),
                                "b": st.column_config.ImageColumn("b", width="small"),
                                "distance": st.column_config.NumberColumn(format="%.3f")})


# ------------------------------------------------------------------ Home and Saliency pages
def similar_images(selection, *, key: str) -> None:
    """The "Most similar training images" expander: the sidebar's image, its nearest images of
    a stored data set in the model's feature space. Nothing is read or computed until it is
    opened; the data set's features are computed only on a click."""
    box = st.expander("Most similar training images", key=f"{key}_similar", on_change="rerun",
                      icon=":material/image_search:")
    with box:
        if box.open:
            with shown_errors("The similar images could not be found: "):
                _similar_body(selection, key)


def _similar_body(selection, key: str) -> None:
    model = selection.model
    if model is None or not selection.images:
        st.info("Choose a model and an image in the sidebar.", icon=":material/info:")
        return
    stored = list_datasets(datasets_dir())
    if not stored:
        st.info("Import a data set on the Data set page first.", icon=":material/info:")
        return
    by_id = {d.id: d for d in stored}
    first = st.session_state.get("dataset") if st.session_state.get("dataset") in by_id \
        else stored[0].id
    left, right = st.columns(2)
    ds = by_id[left.selectbox("Data set", list(by_id), index=list(by_id).index(first),
                              format_func=lambda i: by_id[i].name, key=f"{key}_similar_ds")]
    with right:
        image_id = image_choice(selection, f"{key}_similar_image")
    report = _queued_report(ds, model, md_escape(f"Compute the features of {ds.name}"),
                            f"{key}_similar")
    if report is None:
        return
    image = dict((i, a) for i, _, a in selection.images)[image_id]
    rows = nearest(report, image, NEIGHBOURS, model=model)
    indices, notes = _neighbour_notes(rows)
    image_grid(ds, model, report, indices, f"{key}_similar_grid", notes=notes)
