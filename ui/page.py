"""The frame of every page: config, the shared sidebar, the title and the plain-words explainer."""

from __future__ import annotations

import streamlit as st

from ui import presenter
from ui.sidebar import Selection, sidebar
from ui.text import md_escape


def page(title: str, explainer: str, *, icon: str = ":material/visibility:") -> Selection:
    """Set up a page and return the sidebar's selection.

    When the chosen model did not load, the reason is shown here, in the main area; the page
    then checks ``selection.model is None`` and stops.

    Args:
        title: the page title.
        explainer: Markdown for the "What am I looking at?" expander, in plain words.
        icon: page icon.
    """
    st.set_page_config(page_title=f"{title} · CNN Explorer", page_icon=icon, layout="wide")
    selection = sidebar()
    presenter.apply_style()
    st.title(title)
    with st.expander("What am I looking at?", icon=":material/help:"):
        st.markdown(explainer)
    if selection.model_error:
        st.error(md_escape(selection.model_error), icon=":material/error:")
    elif selection.model is None:
        st.info("Choose a model in the sidebar.", icon=":material/info:")
    return selection
