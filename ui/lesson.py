"""The Train page's small-data lesson: one button starts four runs through the job queue; one
chart overlays their curves and a table compares them (``engine.training.lesson``)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from engine.data import NOVEL_SMALL_TRAIN_PER_CLASS, export_small_novel
from engine.jobs import TRAINING
from engine.training.lesson import (STEPS, TITLE, LessonConfig, lesson_curves, lesson_rows,
                                    lesson_work, list_lessons, start_lesson)
from engine.training.runs import ACTIVE_STATES
from engine.training.views import lesson_progress, lesson_table
from ui import presenter
from ui import train_figures as figures
from ui.errors import shown_errors
from ui.jobs import again, job_queue
from ui.text import md_escape
from ui.train_settings import run_limit

#: the Tour links here (``st.page_link(..., query_params)`` cannot carry an anchor)
ANCHOR = "small-data-lesson"
INTRO = (
    "Four real runs on the same small data set, six shapes the bundled demo model never saw "
    f"({NOVEL_SMALL_TRAIN_PER_CLASS} training images per class): **from scratch**, **from "
    "scratch with augmentation**, **feature extraction** from the demo model as a pretrained "
    "base, and **fine-tuning** its top. They run one after another; each is a normal run below "
    "(evaluation, model in the sidebar). Watch the validation curves (solid) part from the "
    "training curves (dotted): a small data set is not enough from scratch; augmentation "
    "helps; a pretrained base helps most. Fine-tuning starts as feature extraction does, so "
    "their curves lie on each other until its second stage.")


def lesson_section(data_dir, runs_dir) -> None:
    """The experiment's button, and the latest experiment's curves and table."""
    st.subheader(TITLE, anchor=ANCHOR)
    st.caption(INTRO)
    lessons = list_lessons(runs_dir)
    left, right = st.columns([1, 3], vertical_alignment="bottom")
    epochs = int(left.number_input(
        "Epochs of each run", 1, 500, value=LessonConfig.epochs, key="lesson_epochs",
        help="Fine-tuning adds half as many at a low learning rate. Fewer epochs end sooner "
             "and show the same ranking less clearly."))
    if right.button("Run the small-data experiment", key="lesson_start",
                    icon=":material/science:", type="primary" if not lessons else "secondary"):
        with shown_errors("The experiment did not start: "):
            with st.spinner("Drawing the new shapes..."):
                dataset = export_small_novel(data_dir)
            lesson = start_lesson(LessonConfig(dataset=str(dataset.folder), epochs=epochs),
                                  runs_dir)
            _submit(lesson.lesson_id, runs_dir)
            st.rerun()
    if lessons:
        _lesson_view(lessons[0].lesson_id, runs_dir)


def _submit(lesson_id: str, runs_dir) -> None:
    limit = run_limit()

    def work(job):
        return lesson_work(lesson_id, runs_dir, limit,
                           report=lambda text: job.report(0, 0, text, check=False),
                           cancelled=lambda: job.cancelled, published=job.publish)

    again(("lesson", lesson_id), work, title="The small-data experiment", lane=TRAINING,
          outlives_session=True)


def _lesson_view(lesson_id: str, runs_dir) -> None:
    lesson = next((x for x in list_lessons(runs_dir) if x.lesson_id == lesson_id), None)
    if lesson is None:
        return
    rows = lesson_rows(lesson, runs_dir)
    going = any(r.state in ACTIVE_STATES for r in rows)
    job = job_queue().get(("lesson", lesson_id))
    queued = job is not None and job.alive
    if going or queued:
        _live(lesson_id, runs_dir)
    else:
        _results(lesson_id, runs_dir)
        if not lesson.complete and st.button("Start the runs that have not started",
                                             key="lesson_continue", icon=":material/replay:"):
            _submit(lesson_id, runs_dir)
            st.rerun()


def _results(lesson_id: str, runs_dir) -> None:
    """The overlaid curves and the comparison table of the experiment."""
    with shown_errors("The experiment could not be shown: "):
        lesson = next(x for x in list_lessons(runs_dir) if x.lesson_id == lesson_id)
        rows = lesson_rows(lesson, runs_dir)
        fraction, text = lesson_progress(rows)
        st.progress(fraction, text=text)
        named = lesson_curves(lesson, runs_dir)
        if named:
            presenter.chart(figures.comparison_figure(named), key=f"lesson_curves_{lesson_id}")
        table = pd.DataFrame(lesson_table(rows))
        st.dataframe(table, hide_index=True, width="stretch", column_config={
            "Best validation accuracy": st.column_config.NumberColumn(format="percent"),
            "Test accuracy": st.column_config.NumberColumn(format="percent"),
            "Train-validation gap": st.column_config.NumberColumn(format="percent")})
        st.download_button("Download the table (CSV)", table.to_csv(index=False),
                           f"small-data-{lesson_id}.csv", "text/csv", on_click="ignore",
                           icon=":material/download:", key=f"lesson_csv_{lesson_id}")


@st.fragment(run_every=1.0)
def _live(lesson_id: str, runs_dir) -> None:
    _results(lesson_id, runs_dir)
    job = job_queue().get(("lesson", lesson_id))
    lesson = next(x for x in list_lessons(runs_dir) if x.lesson_id == lesson_id)
    rows = lesson_rows(lesson, runs_dir)
    if job is not None and job.alive:
        st.caption(md_escape(job.text or "waiting for a free training slot"))
        st.button("Stop the experiment", key="lesson_stop", icon=":material/stop:",
                  on_click=job_queue().cancel, args=(job,))
    elif not any(r.state in ACTIVE_STATES for r in rows):
        st.rerun()  # it ended: draw the page with the after-experiment view


__all__ = ["ANCHOR", "STEPS", "lesson_section"]
