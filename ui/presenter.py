"""Presenter mode: bigger text and figures for a projector, and no expert settings.

The sidebar's toggle keeps its value under the durable key ``presenter``, so it holds on every
page. Pages wrap their expert settings in ``technical``:

    with presenter.technical("am_settings"):
        with st.expander("Settings"):
            steps = st.number_input("Steps", ...)

In presenter mode the block still runs, so every value it returns is there (the default, or
what was chosen before presenting), but nothing of it stays on screen.
"""

from __future__ import annotations

import contextlib

import plotly.graph_objects as go
import streamlit as st

from ui import state

KEY = "presenter"
#: how much larger figures and their text get
SCALE = 1.3
_HIDDEN = "presenter_hidden_"

# Streamlit sizes its text in rem: a larger root font enlarges every text, label and widget
# of the app at once. Only this session's page gets the style.
_STYLE = f"""
<style>
html {{ font-size: 20px; }}
[data-testid="stMain"] h1 {{ font-size: 3rem; }}
[data-testid="stMain"] [data-testid="stMarkdownContainer"] p,
[data-testid="stMain"] [data-testid="stMarkdownContainer"] li {{ font-size: 1.15rem; }}
[data-testid="stMain"] [data-testid="stCaptionContainer"] p {{ font-size: 1rem; }}
[class*="st-key-{_HIDDEN}"] {{ display: none; }}
</style>
"""


def is_on() -> bool:
    """Whether this session is presenting."""
    return bool(st.session_state.get(KEY, False))


def toggle() -> bool:
    """The sidebar's switch."""
    return st.toggle("Presenter mode", **state.durable(KEY, False),
                     help="For a projector: bigger text and figures, expert settings hidden "
                          "(their defaults keep working).")


def apply_style() -> None:
    """Enlarge this page's text when presenting (call once per page)."""
    if is_on():
        st.html(_STYLE)


@contextlib.contextmanager
def technical(name: str):
    """A block of expert settings: shown normally, run but not shown when presenting.

    Args:
        name: unique on the page (it names the hidden block).
    """
    if not is_on():
        yield
        return
    # Drawn into a placeholder that is emptied afterwards: the widgets run (their values
    # hold), the page ends without them. The block is also hidden by the style, so nothing
    # flashes on screen in between.
    slot = st.container(key=_HIDDEN + name).empty()
    try:
        with slot.container():
            yield
    finally:
        slot.empty()


def figure(fig: go.Figure) -> go.Figure:
    """``fig`` with larger text and height when presenting (unchanged otherwise)."""
    if not is_on():
        return fig
    size = (fig.layout.font.size or 13) * SCALE
    fig.update_layout(font=dict(size=size))
    if fig.layout.height:
        fig.update_layout(height=int(fig.layout.height * SCALE))
    fig.update_annotations(font_size=size)
    return fig


def chart(fig: go.Figure, **kwargs):
    """``st.plotly_chart`` of ``fig``, enlarged when presenting; the keyword arguments are
    ``st.plotly_chart``'s."""
    return st.plotly_chart(figure(fig), **kwargs)
