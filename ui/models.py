"""Loading models once per server: every session shares the same object (never mutated)."""

from __future__ import annotations

import streamlit as st

from engine.models import ExplorableModel, load_model


@st.cache_resource(show_spinner=False, max_entries=6)
def _cached(name: str, options: tuple, cache_version: float) -> ExplorableModel:
    return load_model(name, **{k: list(v) if isinstance(v, tuple) else v for k, v in options})


def get_model(name: str, cache_version: float = 0.0, **options) -> ExplorableModel:
    """The loaded model, from the server-wide cache (engine errors propagate, uncached).

    ``cache_version`` changes when a model file changes on disk (its modification time).
    """
    items = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))
    with st.spinner("Loading the model..."):
        return _cached(name, items, cache_version)
