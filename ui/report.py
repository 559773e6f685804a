"""The "Report" export: one click builds a self-contained HTML report of one image's analysis
(``engine.report``) with a progress bar, then offers it as a download."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from engine.report import FAST_METHODS, build_report
from engine.saliency import METHODS
from ui.errors import shown_errors
from ui.images import safe_file_name
from ui.paths import cache_dir
from ui.sidebar import Selection

SLOW_METHODS = tuple(name for name in METHODS if name not in FAST_METHODS)


def report_file_name(image_label: str) -> str:
    """``cnn_explorer_report_<image>.html``, safe on every file system."""
    stem = Path(safe_file_name(image_label)).stem or "image"
    return f"cnn_explorer_report_{stem}.html"


#: where the Saliency page keeps the last trust table it showed: ``(model key, Leaderboard)``
_LEADERBOARD = "_report_leaderboard"


def remember_leaderboard(model_key: str, board) -> None:
    """The trust table just shown goes into this session's next reports of that model."""
    st.session_state[_LEADERBOARD] = (model_key, board)


def _leaderboard(model_key: str):
    found = st.session_state.get(_LEADERBOARD)
    return found[1] if found is not None and found[0] == model_key else None


def report_section(selection: Selection, *, key: str, target: int | None = None,
                   cam_layer: str | None = None, method_options: dict | None = None) -> None:
    """Draw the report box: image choice, slow-method toggle, build button, download.

    Args:
        selection: the sidebar's selection (its model must be loaded).
        key: a prefix for the widgets' keys, unique per page.
        target: the class the saliency maps explain (``None``: the top prediction).
        cam_layer: the CAM methods' layer (``None``: the default).
        method_options: method -> options, for the methods a page has settings of.
    """
    model = selection.model
    if model is None or not selection.images:
        return
    with st.container(border=True):
        st.markdown("**:material/description: Report** · everything about one image in one "
                    "HTML file: prediction, feature maps, saliency with faithfulness scores, "
                    "filters, model summary and settings, and the trust table of the methods "
                    "once it has been computed on the Saliency page. It opens offline in any "
                    "browser.")
        left, right = st.columns([2, 3])
        labels = {image_id: label for image_id, label, _ in selection.images}
        image_id = left.selectbox("Image", list(labels), format_func=labels.get,
                                  key=f"{key}_report_image", label_visibility="collapsed")
        slow = right.checkbox(
            "Also the slow methods (" + ", ".join(METHODS[m].title for m in SLOW_METHODS) + ")",
            key=f"{key}_report_slow",
            help="The report has the fast methods' maps by default; these take many forward "
                 "passes each (Score-CAM one per channel of the layer).")
        methods = list(FAST_METHODS) + (list(SLOW_METHODS) if slow else [])
        options = {m: dict(o) for m, o in (method_options or {}).items() if m in methods}
        filter_layer = st.session_state.get(f"am_layer:{model.key}")  # the Filters page's layer
        if filter_layer not in model.conv_layers:
            filter_layer = None
        board = _leaderboard(model.key)
        request = (model.key, image_id, tuple(methods), target, cam_layer,
                   repr(sorted(options.items())), filter_layer, id(board))
        stored = f"_{key}_report"
        if st.button("Build the report", key=f"{key}_report_go", icon=":material/description:"):
            image = next(array for i, _, array in selection.images if i == image_id)
            bar = st.progress(0.0, text="Starting the report...")

            def progress(done: int, total: int, stage: str) -> None:
                bar.progress(done / max(total, 1), text=f"{stage} ({done}/{total})")

            with shown_errors("Building the report failed: "):
                document = build_report(
                    model, image, image_name=labels[image_id], target=target, methods=methods,
                    method_options=options, cam_layer=cam_layer, filter_layer=filter_layer,
                    actmax_cache=cache_dir("actmax"), leaderboard=board, callback=progress)
                st.session_state[stored] = (request, document, report_file_name(labels[image_id]))
            bar.empty()
        built = st.session_state.get(stored)
        if built is not None and built[0] == request:
            _, document, file_name = built
            st.download_button(f"Download {file_name}", document.encode("utf-8"), file_name,
                               "text/html", key=f"{key}_report_download", type="primary",
                               icon=":material/download:", on_click="ignore")
            st.caption(f"{len(document.encode('utf-8')) / 1024:.0f} KB, images included.")
