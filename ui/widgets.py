"""Widget glue the pages share: a choice that lives in the URL, a progress bar fed by the
engine's progress protocol (``engine.progress``), an image picker, top-k probability bars."""

from __future__ import annotations

from typing import Any, Iterable

import streamlit as st

from engine.progress import Progress
from ui import state
from ui.text import md_escape


def linked_choice(label: str, key: str, param: str, options: Iterable, default, *,
                  container: Any = st, widget: str = "selectbox", **kwargs):
    """A ``selectbox`` (or ``widget``: ``"radio"``) whose choice is kept under the durable
    ``key`` and in the URL as ``param`` (``state.linked``); ``kwargs`` go to the widget.

    Returns:
        The chosen option.
    """
    state.linked(key, param, options, default)
    return getattr(container, widget)(label, list(options), **state.durable(key, default),
                                      **kwargs)


def progress_bar(prefix: str | None = None, *, first: str | None = None
                 ) -> tuple[Any, Progress]:
    """A progress bar and the ``callback(done, total, stage)`` that fills it: its text is
    ``"<prefix> <done>/<total>"``, or the stage without ``prefix``. The bar appears at the
    first call, or at once with the text ``first``; ``bar.empty()`` removes it.

    Returns:
        ``(bar, callback)``.
    """
    bar = st.empty()
    if first is not None:
        bar.progress(0.0, text=first)

    def report(done: float, total: float, stage: str) -> None:
        text = stage if prefix is None else f"{prefix} {done}/{total}"
        bar.progress(min(1.0, done / max(total, 1)), text=text)

    return bar, report


def image_choice(selection, key: str, *, linked: bool = False, container: Any = st) -> str:
    """The id of one of the sidebar's images: a selectbox under ``key`` (in the URL as
    ``image`` when ``linked``); with a single image, that one without a widget (unless
    ``linked``, which always shows the choice)."""
    labels = {image_id: label for image_id, label, _ in selection.images}
    first = next(iter(labels))
    if linked:
        return linked_choice("Image", key, "image", labels, first, container=container,
                             format_func=labels.get)
    if st.session_state.get(key) not in labels:
        st.session_state[key] = first
    if len(labels) == 1:
        return first
    return container.selectbox("Image", list(labels), format_func=labels.get, key=key)


def top_k_rows(pairs: Iterable[tuple[str, float]], *, container: Any = st) -> None:
    """The top-k classes as labelled bars, the most likely first: Streamlit's own progress
    bars ("circle · 97.3%"), so Home needs no chart library in a fresh browser (Plotly's
    4.7 MB script took 1.4 s there before the first bar showed; bench/classroom.py)."""
    for name, p in pairs:
        container.progress(min(max(float(p), 0.0), 1.0), text=f"{md_escape(name)} · {p:.1%}")


_PREFETCH = "chart_library_prefetch"


def prefetch_charts() -> None:
    """Load the browser's chart library (Plotly) now, out of sight, so that the next page's
    first chart does not wait for it. Home draws no chart itself (its bars are progress bars):
    its predictions show without Plotly's 4.7 MB script, which then loads while the user
    reads them (bench/classroom.py, one session on 2 cores: the Feature maps step after Home
    took 2.27 s p50 when it had to load Plotly, 0.58-0.68 s with this)."""
    import plotly.graph_objects as go

    st.html(f"<style>.st-key-{_PREFETCH} {{ display: none; }}</style>")
    with st.container(key=_PREFETCH):
        st.plotly_chart(go.Figure(), key=f"{_PREFETCH}_figure", config={"staticPlot": True})
