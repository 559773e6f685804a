"""The Train page's runs: waiting in the server's training line, one run's live panel, and the
views after it ended (evaluation, learning timeline, comparison, files, deleting it).

The words and numbers come from ``engine.training.views``; the figures from
``ui.train_figures``.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from engine.jobs import TRAINING
from engine.training import MetricsReader, curves, delete_run, run_status, stop_run
from engine.training.admission import admission
from engine.training.evaluate import load_evaluation
from engine.training.forms import DEFAULT_SMOOTHING
from engine.training.metrics import METRICS_FILE
from engine.training.runs import CHECKPOINTS, LAST, LOG_FILE, MODEL_FILE
from engine.training.timeline import read_timeline
from engine.training.views import (class_rows, compared_runs, evaluation_metrics, log_tail,
                                   mistake_captions, probe_captions, run_label, run_view)
from ui import presenter
from ui import train_figures as figures
from ui.errors import shown_errors
from ui.feature_figures import magnify
from ui.jobs import again, ended_message, follow, session_id
from ui.saliency_figures import overlay
from ui.text import md_escape
from ui.train_settings import run_limit

STATE_ICONS = {"starting": ":material/hourglass_top:", "running": ":material/play_circle:",
               "stopping": ":material/pause_circle:", "finished": ":material/check_circle:",
               "stopped": ":material/stop_circle:", "diverged": ":material/error:",
               "failed": ":material/error:", "crashed": ":material/warning:"}
#: a run's notice kind (``RunView.notices``) -> how it is shown
NOTICES = {"warning": (st.warning, ":material/trending_flat:"),
           "diverged": (st.error, ":material/trending_up:"),
           "failed": (st.error, ":material/error:"),
           "ended": (st.success, ":material/check_circle:")}


# ------------------------------------------------------------------------------ admission
def admit(start, title: str, runs_dir) -> None:
    """Put a run in the server's training line (``start()`` starts it and returns its id)."""
    job = again(("train", session_id(), time.time()), admission(start, runs_dir, run_limit()),
                title=title, lane=TRAINING, outlives_session=True)
    if job is not None:
        st.session_state["_train_job"] = job
        st.rerun()


def admission_panel() -> None:
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


# ---------------------------------------------------------------------------------- a run
def _reader(runs_dir: Path, run_id: str) -> MetricsReader:
    """One incremental reader per run and session: each tick parses only the new lines."""
    readers = st.session_state.setdefault("_train_readers", {})
    if run_id not in readers:
        readers[run_id] = MetricsReader(runs_dir / run_id / METRICS_FILE)
    return readers[run_id]


def run_panel(run_id: str, runs_dir: Path) -> None:
    """Progress, counters and curves of one run (the live fragment calls it every second)."""
    with shown_errors("Reading the run failed: "):
        status = run_status(run_id, runs_dir)
        rows = _reader(runs_dir, run_id).read()
        view = run_view(status, rows)
        st.markdown(f"{STATE_ICONS.get(status.state, '')} **{md_escape(status.name)}** · "
                    f"{md_escape(view.mode)}")
        st.progress(view.fraction, text=view.progress_text)
        for col, (label, value) in zip(st.columns(len(view.metrics)), view.metrics):
            col.metric(label, value)
        for kind, text in view.notices:
            show, icon = NOTICES[kind]
            show(md_escape(text), icon=icon)
        if rows:
            presenter.chart(figures.curves_figure(curves(rows, status.steps_per_epoch),
                                                  st.session_state.get("train_smoothing",
                                                                       DEFAULT_SMOOTHING)),
                            key=f"curves_{run_id}")
        elif status.active:
            st.info("Starting: loading TensorFlow and the data set...",
                    icon=":material/hourglass_top:")
        _controls(status, runs_dir)


def _controls(status, runs_dir: Path) -> None:
    """Stop (and Kill, while stopping) a run that is going; redraw the page once it ended."""
    if status.active:
        cols = st.columns([1, 1, 4])
        if cols[0].button("Stop", key=f"stop_{status.run_id}", icon=":material/stop:",
                          disabled=status.state == "stopping"):
            stop_run(status.run_id, runs_dir)
            st.rerun(scope="fragment")
        if status.state == "stopping" and cols[1].button(
                "Kill it", key=f"kill_{status.run_id}", icon=":material/dangerous:"):
            stop_run(status.run_id, runs_dir, force=True)
        st.session_state[f"_active_{status.run_id}"] = True
    elif st.session_state.pop(f"_active_{status.run_id}", False):
        st.rerun()  # it just ended: redraw the whole page with the after-run views


live_run_panel = st.fragment(run_every=1.0)(run_panel)


# ----------------------------------------------------------------------------- after a run
def _version(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@st.cache_data(show_spinner=False, max_entries=16)
def _timeline(run_dir: str, version: float):
    return read_timeline(run_dir)


@st.cache_data(show_spinner=False, max_entries=16)
def _evaluation(run_dir: str, version: float):
    return load_evaluation(run_dir)


@st.cache_data(show_spinner=False, max_entries=32)
def _curves(run_dir: str, steps: int, version: float):
    return curves(MetricsReader(Path(run_dir) / METRICS_FILE).read(), steps)


def after_run_views(status, statuses) -> None:
    """The tabs of a run that ended."""
    tabs = st.tabs(["Evaluation", "Learning timeline", "Compare runs", "Model and log"])
    with tabs[0], shown_errors("The evaluation could not be shown: "):
        _evaluation_view(status)
    with tabs[1], shown_errors("The timeline could not be shown: "):
        _timeline_view(status)
    with tabs[2], shown_errors("The comparison could not be shown: "):
        _compare_view(statuses, status)
    with tabs[3]:
        _files_view(status)


def _evaluation_view(status) -> None:
    found = _evaluation(str(status.run_dir), _version(status.run_dir / "evaluation.json"))
    if found is None:
        st.info("This run has no evaluation (it ended before its first checkpoint, or "
                "evaluation was off).", icon=":material/info:")
        return
    report, images, maps = found
    for col, (label, value) in zip(st.columns(3), evaluation_metrics(report)):
        col.metric(label, value)
    cols = st.columns([3, 2])
    with cols[0]:
        st.markdown("**Confusion matrix**")
        presenter.chart(figures.confusion_figure(report), key="confusion")
    with cols[1]:
        st.markdown("**Precision and recall per class**")
        presenter.chart(figures.precision_recall_figure(report), key="precision_recall")
        st.dataframe(class_rows(report), hide_index=True, column_config={
            "precision": st.column_config.NumberColumn(format="percent"),
            "recall": st.column_config.NumberColumn(format="percent")})
    if len(images):
        st.markdown("**Misclassified images**, most confident mistakes first, with the Grad-CAM "
                    "map of the class the model wrongly chose")
        _grid([overlay(img, cam, 0.45) for img, cam in zip(images, maps)],
              mistake_captions(report, len(images)))


def _grid(pictures, captions, per_row: int = 6) -> None:
    for start in range(0, len(pictures), per_row):
        cols = st.columns(per_row)
        for col, picture, caption in zip(cols, pictures[start:start + per_row],
                                         captions[start:start + per_row]):
            col.image(magnify(picture, 160), caption=caption, width="stretch")


def _timeline_view(status) -> None:
    timeline = _timeline(str(status.run_dir), _version(status.run_dir / "timeline"))
    if timeline is None:
        st.info("This run stored no timeline.", icon=":material/info:")
        return
    epoch = st.select_slider("After epoch", timeline.epochs, value=timeline.epochs[-1],
                             key=f"timeline_{status.run_id}",
                             help="0 is before training, with random weights.")
    snapshot = timeline.at(epoch)
    cams = snapshot.get("cams")
    pictures = [overlay(img, cams[i], 0.45) if cams is not None else img
                for i, img in enumerate(timeline.images)]
    st.markdown(f"**Where the model looks after {epoch} epoch{'s' if epoch != 1 else ''}** "
                "(Grad-CAM of the true class; the caption is its probability)")
    _grid(pictures, probe_captions(timeline.class_names, timeline.labels, snapshot["probs"]))
    if "filters" in snapshot:
        st.markdown("**First-layer filters** (blue-grey = 0; each square is one filter, "
                    "its colours the weights for red, green and blue)")
        st.image(figures.kernel_image(snapshot["filters"]), width="content")


def _compare_view(statuses, current) -> None:
    choices = {s.run_id: s for s in statuses if (s.run_dir / METRICS_FILE).is_file()}
    picked = st.multiselect("Runs", list(choices), default=compared_runs(list(choices),
                                                                          current.run_id),
                            format_func=lambda i: run_label(choices[i]), key="train_compare")
    named = [(choices[i].name, _curves(str(choices[i].run_dir), choices[i].steps_per_epoch,
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
            st.code(log_tail(log), language=None)


def delete_view(status, runs_dir) -> None:
    """The confirmation inside the "Delete this run" popover."""
    st.markdown(f"Delete **{md_escape(status.name)}** for good: its folder with the curves, "
                "checkpoints, timeline and trained model. The model leaves the sidebar's model "
                "picker too.")
    if st.button("Delete for good", type="primary", key="train_delete",
                 icon=":material/delete_forever:"):
        with shown_errors("The run was not deleted: "):
            delete_run(status.run_id, runs_dir)
            st.session_state.pop("train_run", None)
            st.session_state.get("_train_readers", {}).pop(status.run_id, None)
            st.toast(md_escape(f"Deleted the run '{status.name}'."), icon=":material/delete:")
            st.rerun()
