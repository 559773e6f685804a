"""Session state that survives page switches and browser reloads, and travels in links.

Streamlit forgets a widget's value when the page that drew it is left, and a reload starts a new
session. So each choice lives under a durable (non-widget) key, seeds its widget before drawing,
and the choices that make up a view are mirrored into the URL's query parameters: the sidebar's
model and images on every page (``URL_KEYS``), and each page's own layer, channel, method or class
through ``linked``; the page itself is the URL's path. A reload, a bookmark or a link sent to
someone else reopens the same view (tests/e2e/test_share.py drives it in a browser).

Uploads never go into a URL: they belong to the browser, not to the link. Their folder is named
by a random token kept in a cookie, and a choice that names an upload (an uploaded image, an
uploaded model file) is kept in that folder instead of the URL. A reload in the same browser
keeps them; the same link opened in another browser shows the bundled images only.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable

import streamlit as st

from ui.images import DEFAULT_IMAGES
from ui.paths import home, uploads_dir

#: durable key -> query parameter; list values are joined with ","
URL_KEYS = {"model": "model", "images": "images", "model_path": "path", "model_prep": "prep"}
_LISTS = {"images"}
_DEFAULTS = {"images": DEFAULT_IMAGES}
#: the cookie that names this browser's upload folder
COOKIE = "cnn_explorer_uploads"
#: parameters that older links carry and that are dropped: "u" named the upload folder
_RETIRED = ("u",)
_OWN_FILE = ".view.json"  # this browser's choices that name uploads
# a link followed inside the app: its parameters for the next run, then for the current one
_FOLLOWING, _FOLLOWED = "_link_following", "_link_followed"


def shareable(value) -> bool:
    """Whether a choice may travel in a link: not an uploaded image, nor a file under the
    uploads folder (uploaded models and weights)."""
    text = str(value)
    if text.startswith("upload:"):
        return False
    if os.sep not in text:
        return True
    uploads = os.path.join(os.path.abspath(home()), "uploads") + os.sep
    return not os.path.abspath(os.path.expanduser(text)).startswith(uploads)


def restore_from_url() -> None:
    """On a session's first run, take the durable choices from the URL, and this browser's own
    (uploads) from its upload folder. On every run, the parameters of a link followed inside
    the app (``open_page``) become this run's to take."""
    st.session_state[_FOLLOWED] = st.session_state.pop(_FOLLOWING, {})
    if st.session_state.get("_restored"):
        return
    st.session_state["_restored"] = True
    token = st.context.cookies.get(COOKIE, "")
    if not (token.isalnum() and 16 <= len(token) <= 64):
        token = secrets.token_hex(16)
        st.session_state["_new_upload_token"] = True
    st.session_state["upload_token"] = token
    own = _own()
    for key, param in URL_KEYS.items():
        value = st.query_params.get(param)
        if key in _LISTS:
            mine = [v for v in own.get(param, []) if isinstance(v, str)]
            if value is None and not mine:
                continue
            shared = [v for v in value.split(",") if v and shareable(v)] if value is not None \
                else list(_DEFAULTS.get(key, []))
            st.session_state[key] = shared + [v for v in mine if v not in shared]
        elif value is not None and shareable(value):
            st.session_state[key] = value
        elif isinstance(own.get(param), str):
            st.session_state[key] = own[param]


def url_params() -> dict[str, str]:
    """The sidebar's choices as query parameters (for the URL and for page links), without
    uploads."""
    params = {}
    for key, param in URL_KEYS.items():
        value = st.session_state.get(key)
        if value is None:
            continue
        if key in _LISTS:
            params[param] = ",".join(v for v in value if shareable(v))
        elif shareable(value):
            params[param] = str(value)
    return params


def write_to_url() -> None:
    """Mirror the sidebar's choices into the URL, and those that name uploads into this
    browser's folder (only what changed, to avoid extra reruns)."""
    for param in _RETIRED:
        _hide(param)
    shown = url_params()
    for key, param in URL_KEYS.items():
        value = st.session_state.get(key)
        if param in shown:
            _show(param, shown[param])
        elif value is not None:
            _hide(param)
        if key in _LISTS:
            _keep_own(param, [v for v in value or [] if not shareable(v)] or None)
        else:
            _keep_own(param, None if value is None or shareable(value) else str(value))


def linked(key: str, param: str, options: Iterable, default):
    """Keep the durable choice ``key`` one of ``options``, and in the URL as ``param``.

    A session's first use of ``key`` takes the URL's value when it is the text of one of
    ``options``, so a link or a reload reopens the same view; anything else (a hand-edited URL,
    a layer of another model) falls back to ``default``. A value that names an upload stays out
    of the URL and is kept with this browser's uploads instead. Call it before drawing the
    widget with ``durable(key, default)``.

    Args:
        key: the durable session-state key.
        param: the query parameter (short and readable: "layer", "channel", "method").
        options: the valid values; their ``str()`` is what the URL holds.
        default: the value when the URL and the session have none, or an invalid one.

    Returns:
        The current value.
    """
    options = options if isinstance(options, (range, dict)) else list(options)
    followed = st.session_state.get(_FOLLOWED, {})
    if key not in st.session_state or param in followed:
        by_text = {str(option): option for option in options}
        text = followed.pop(param, None) or st.query_params.get(param)
        if text is None:
            text = _own().get(param)
        if text in by_text:
            st.session_state[key] = by_text[text]
    if st.session_state.get(key) not in options:
        st.session_state[key] = default
    value = st.session_state[key]
    if shareable(value):
        _show(param, str(value))
        _keep_own(param, None)
    else:
        _hide(param)
        _keep_own(param, str(value))
    return value


def open_page(script: str, **params) -> None:
    """Switch to the page ``script`` with ``params`` in its URL (a link inside the app: "this
    channel on the Feature maps page"). Its ``linked`` choices take them on its first run even
    where this session has its own, and the URL it opens with is shareable as it is."""
    texts = {param: str(value) for param, value in params.items()}
    st.session_state[_FOLLOWING] = texts
    st.switch_page(script, query_params=url_params() | texts)


def unlinked(param: str) -> None:
    """Drop ``param`` from the URL where the view no longer has it (a method without a layer)."""
    _hide(param)


def remember_browser() -> None:
    """Put a new upload token into a cookie, so that a reload in this browser finds its uploads
    again. The token is ours (hex), never user text; the script runs once per new token."""
    if st.session_state.get("_new_upload_token"):
        st.html(f"<script>document.cookie = '{COOKIE}={upload_token()}; path=/; "
                "max-age=31536000; SameSite=Lax';</script>", unsafe_allow_javascript=True)


def _show(param: str, text: str) -> None:
    if st.query_params.get(param) != text:
        st.query_params[param] = text


def _hide(param: str) -> None:
    if param in st.query_params:
        del st.query_params[param]


def _own_path():
    return uploads_dir(upload_token()) / _OWN_FILE


def _own() -> dict:
    """This browser's choices that name uploads (read once per session)."""
    if "_own" not in st.session_state:
        try:
            own = json.loads(_own_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            own = {}
        st.session_state["_own"] = own if isinstance(own, dict) else {}
    return st.session_state["_own"]


def _keep_own(param: str, value) -> None:
    own = _own()
    if own.get(param) == value:
        return
    if value is None:
        own.pop(param, None)
    else:
        own[param] = value
    try:
        _own_path().write_text(json.dumps(own), encoding="utf-8")
    except OSError:
        pass  # the choice then lasts for this session only


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
