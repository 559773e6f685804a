"""The Saliency page's trust table (its Data set tab): every method scored on the same images of
a data set (deletion, insertion, ROAD, pointing game, the two sanity scores, time per image), as
a table and a CSV, and the data randomisation test in plain words: a map that stays the same
when the model is trained on shuffled labels explains the image, not the model.

The work is ``engine.saliency.leaderboard`` and ``engine.saliency.randomisation``, run by a job
of the server's queue (``ui.jobs``) with its progress shown.
"""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from engine.cache import BoundedCache
from engine.jobs import JobProgress
from engine.saliency import METHODS
from engine.saliency.leaderboard import COLUMNS, LeaderboardConfig, leaderboard
from engine.saliency.randomisation import data_randomisation_test, shuffled_label_model
from ui import state
from ui.jobs import queued_result
from ui.report import remember_leaderboard
from ui.errors import shown_errors
from ui.saliency_sections import title
from ui.saliency_what import draw_source, image_source
from ui.text import md_escape

#: images the shuffled-label model of the data randomisation test is trained on
SHUFFLED_IMAGES = 300
#: the method the data randomisation test explains with
RANDOMISED_METHOD = "gradcam"
_ARROWS = {"lower": "↓", "higher": "↑"}


@st.cache_resource(show_spinner=False)
def _results() -> BoundedCache:
    """Finished tables, server-wide (the queue forgets finished jobs after a while)."""
    return BoundedCache(16)


def _work(model, source: str, n: int, methods: tuple[str, ...], layer, store, key):
    """The job: the leaderboard, then (when the data set's classes are the model's) the data
    randomisation test."""
    def compute(progress):
        sample = draw_source(source, n)
        board = leaderboard(model, sample, list(methods), n=n, callback=progress,
                            config=LeaderboardConfig(layer=layer))
        if sample.class_names != list(model.class_names) or progress.stop_requested:
            return board, None
        training = draw_source(source, SHUFFLED_IMAGES)
        shuffled = shuffled_label_model(model, training.images, training.labels,
                                        callback=progress)
        return board, data_randomisation_test(
            model, sample.images, RANDOMISED_METHOD,
            layer=layer if METHODS[RANDOMISED_METHOD].uses_layer else None, shuffled=shuffled)

    return lambda job: store.get_or_build(key, lambda: compute(JobProgress(job)))


def trust_section(model, layer: str | None) -> None:
    """The trust table: choices, a button, the job's progress, then the table and verdict."""
    st.subheader("Which map to trust? Every method scored", anchor=False)
    st.caption("Each method explains the same images (each image's top class) and is scored: "
               "deletion and ROAD MoRF remove the most important pixels first (lower is "
               "better), insertion and ROAD LeRF (higher is better); the pointing game counts "
               "peaks on the object; the two sanity scores are rank correlations with the maps "
               "of a randomised model and of a random other class (lower is better: the map "
               "depends on the model and on the class).")
    with shown_errors("The trust table failed: "):
        left, mid = st.columns(2)
        with left:
            source = image_source("Images", "sal_trust_source")
        n = mid.slider("How many images", 6, 100, step=2, **state.durable("sal_trust_n", 24))
        fast = [m for m in METHODS if METHODS[m].speed == "fast"]
        chosen = st.multiselect("Methods", list(METHODS), format_func=title,
                                **state.durable("sal_trust_methods", fast))
        methods = tuple(m for m in METHODS if m in chosen)
        key = ("trust", model.key, source, n, methods, layer)
        if st.button("Rank the methods", key="sal_trust_go", type="primary",
                     icon=":material/leaderboard:", disabled=not methods):
            st.session_state["sal_trust_request"] = key
        if st.session_state.get("sal_trust_request") != key:
            return
        store = _results()
        found = store.get(key) or queued_result(
            key, _work(model, source, n, methods, layer, store, key),
            title=f"Trust table of {len(methods)} methods on {n} images",
            follow_key="sal_trust_job", again_key="sal_trust_again")
        if found is not None:
            remember_leaderboard(model.key, found[0])
            _table(*found)


def _table(board, verdict) -> None:
    n = len(board.rows)
    st.markdown(f"{n} method{'s' if n != 1 else ''} on {board.n_images} images, in "
                f"{board.seconds:.0f} s." + ("" if board.has_boxes else
                                             " No object boxes: no pointing game."))
    headers = {name: f"{header} {_ARROWS[better]}" for name, header, better in COLUMNS}
    shown = [name for name, _, _ in COLUMNS if board.has_boxes or name != "pointing_game"]
    rows = [{"method": row.title} | {headers[k]: _number(getattr(row, k)) for k in shown}
            for row in board.rows]
    st.dataframe(rows, hide_index=True, width="stretch", key="sal_trust_table",
                 column_config={headers[k]: st.column_config.NumberColumn(format="%.3f")
                                for k in shown})
    for row in board.rows:
        if row.error:
            st.error(md_escape(row.error), icon=":material/error:")
    st.download_button("Table (CSV)", board.to_csv(), "saliency_trust_table.csv", "text/csv",
                       key="sal_trust_csv", icon=":material/download:")
    if verdict is None:
        st.info("The data randomisation test needs a data set whose classes are the model's "
                "(the demo shapes for the demo model): the model is trained again on the same "
                "images with shuffled labels.", icon=":material/info:")
        return
    st.markdown(f"**Data randomisation** (the same network trained on shuffled labels): mean "
                f"rank correlation of the maps **{verdict.mean_correlation:.2f}**.")
    (st.success if verdict.changes else st.warning)(
        md_escape(verdict.sentence),
        icon=":material/check_circle:" if verdict.changes else ":material/flag:")


def _number(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) \
        else float(np.round(value, 6))
