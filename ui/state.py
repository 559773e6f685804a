"""Session state that survives page switches and browser reloads.

Streamlit forgets a widget's value when the page that drew it is left, and a reload starts a new
session. So each choice lives under a durable (non-widget) key, seeds its widget before drawing,
and is mirrored into the URL's query parameters: a reload, or a bookmark, reopens the same model
and images (E2E.md, "Shared sidebar state").
"""

from __future__ import annotations

import secrets

import streamlit as st

#: durable key -> query parameter; list values are joined with ","
URL_KEYS = {"model": "model", "images": "images", "upload_token": "u", "model_path": "path",
            "model_prep": "prep"}
_LISTS = {"images"}


def restore_from_url() -> None:
    """On a session's first run, take the durable choices from the URL."""
    if st.session_state.get("_restored"):
        return
    st.session_state["_restored"] = True
    for key, param in URL_KEYS.items():
        value = st.query_params.get(param)
        if value is None:
            continue
        st.session_state[key] = [v for v in value.split(",") if v] if key in _LISTS else value
    token = st.session_state.get("upload_token", "")
    if not (token.isalnum() and 16 <= len(token) <= 64):
        st.session_state["upload_token"] = secrets.token_hex(16)


def url_params() -> dict[str, str]:
    """The durable choices as query parameters (for the URL and for page links)."""
    params = {}
    for key, param in URL_KEYS.items():
        value = st.session_state.get(key)
        if value is not None:
            params[param] = ",".join(value) if key in _LISTS else str(value)
    return params


def write_to_url() -> None:
    """Mirror the durable choices into the URL (only what changed, to avoid extra reruns)."""
    for param, text in url_params().items():
        if st.query_params.get(param) != text:
            st.query_params[param] = text


def durable(key: str, default) -> dict:
    """Keyword arguments that make a widget remember ``key`` across pages.

    Usage: ``st.selectbox("Model", names, **durable("model", "demo"))``. Do not also pass the
    widget's own default (``index=``/``value=``): the durable value seeds it.
    """
    st.session_state.setdefault(key, default)
    st.session_state[f"_w_{key}"] = st.session_state[key]

    def copy_back():
        st.session_state[key] = st.session_state[f"_w_{key}"]

    return {"key": f"_w_{key}", "on_change": copy_back}


def upload_token() -> str:
    return st.session_state["upload_token"]
