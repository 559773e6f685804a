"""Train: train a CNN on a data set in the browser and watch it learn."""

from __future__ import annotations

import streamlit as st

from engine.data import list_datasets
from engine.training import list_runs, resume_run, start_run
from engine.training.forms import DEFAULT_SMOOTHING, SMOOTHINGS
from engine.training.views import run_label, run_to_show
from ui import state
from ui.errors import shown_errors
from ui.lesson import lesson_section
from ui.page import page
from ui.paths import datasets_dir, runs_dir
from ui.text import md_escape
from ui.train_runs import (admission_panel, admit, after_run_views, delete_view, live_run_panel,
                           run_panel)
from ui.train_settings import demo_creator, new_run_form, run_limit

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

page("Train", EXPLAINER, icon=":material/model_training:")
RUNS = runs_dir()
DATA = datasets_dir()


def _new_run(datasets, statuses) -> None:
    """The demo data set creator, the new-run form, and Start putting the run in line."""
    with st.expander("New run", expanded=not statuses, icon=":material/add_circle:"):
        if not datasets:
            st.info("There is no data set yet: create the demo shapes data set here, or import "
                    "your own on the Data set page.", icon=":material/info:")
            demo_creator("train_demo", DATA)
            return
        with st.popover("Create the demo data set", icon=":material/add:"):
            demo_creator("train_demo", DATA)
        config = new_run_form(datasets, RUNS)
        if config is not None:
            with shown_errors("The run did not start: "):
                config.validate()  # wrong settings are said now, not after waiting in line
                limit = run_limit()
                admit(lambda: start_run(config, RUNS, max_concurrent=limit),
                      f"Training run '{config.name or 'new run'}'", RUNS)


def _runs(statuses) -> None:
    """The run picker, the run's panel and, once it ended, resume, delete and its views."""
    by_id = {s.run_id: s for s in statuses}
    # A new session (reload, second tab, restarted server) reattaches to a run still going.
    st.session_state["train_run"] = run_to_show(statuses, st.session_state.get("train_run"))
    st.subheader("Runs")
    going = [s for s in statuses if s.active]
    if len(going) > 1:
        st.caption(f"{len(going)} runs are going: "
                   + "; ".join(md_escape(f"{s.name} ({s.state})") for s in going))
    cols = st.columns([4, 2])
    run_id = cols[0].selectbox("Run", list(by_id), format_func=lambda i: run_label(by_id[i]),
                               **state.durable("train_run", statuses[0].run_id))
    cols[1].select_slider("Smoothing", SMOOTHINGS,
                          **state.durable("train_smoothing", DEFAULT_SMOOTHING),
                          help="Moving average over the batches: higher is smoother.")
    status = by_id[run_id]
    if status.active:
        live_run_panel(run_id, RUNS)
        return
    run_panel(run_id, RUNS)
    cols = st.columns([3, 2, 3])
    if status.resumable and cols[0].button("Resume from the last checkpoint", key="train_resume",
                                           icon=":material/replay:"):
        limit = run_limit()
        admit(lambda: resume_run(run_id, RUNS, max_concurrent=limit), f"Resuming '{status.name}'",
              RUNS)
    with cols[1].popover("Delete this run", icon=":material/delete:"):
        delete_view(status, RUNS)
    after_run_views(status, statuses)


admission_panel()
statuses = list_runs(RUNS)
with st.container(border=True):
    lesson_section(DATA, RUNS)
_new_run(list_datasets(DATA), statuses)
if statuses:
    _runs(statuses)
