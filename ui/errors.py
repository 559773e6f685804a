"""Showing engine errors to people: a sentence, never a traceback."""

from __future__ import annotations

import contextlib
import logging

import streamlit as st

from engine.errors import CNNExplorerError
from ui.text import md_escape

log = logging.getLogger("cnn_explorer")


@contextlib.contextmanager
def shown_errors(context: str = ""):
    """Run a block; show an engine error as ``st.error`` and anything else as a short apology.

    The block stops at the error; the rest of the page still renders.
    """
    try:
        yield
    except CNNExplorerError as exc:
        st.error(md_escape(f"{context}{exc}"), icon=":material/error:")
    except Exception:  # a bug: log it for developers, tell the user without a traceback
        log.exception("unexpected error %s", context)
        st.error(f"{context}Something went wrong inside CNN Explorer. The details were written to "
                 "the server log; try another model or image, or reload the page.",
                 icon=":material/bug_report:")
