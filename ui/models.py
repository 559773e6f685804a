"""Loading models once per server: every session shares the same object (never mutated)."""

from __future__ import annotations

import sys

import streamlit as st
from streamlit.runtime.scriptrunner import script_runner

from engine.models import ExplorableModel, load_model


def _clean_all_but_keras() -> None:
    """Streamlit's cleanup after a script run, without ``keras.backend.clear_session()``.

    Streamlit clears Keras after every run of every session, for scripts that build a model on
    each run. Here models are built once per server and shared, so that call only did harm: it
    threw away TensorFlow's kernel cache (the next forward pass built its kernels again), reset
    Keras's global state under the threads of other sessions and of the job queue still using
    it, and held the server (and every session's messages) for a full garbage collection:
    0.2-0.5 s after each run on two cores.
    """
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")  # the part of Streamlit's cleanup that stays


# A private function of Streamlit's script runner (1.67); tests/pages/test_script_runs.py fails
# if a Streamlit upgrade clears Keras again some other way.
if hasattr(script_runner, "_clean_problem_modules"):
    script_runner._clean_problem_modules = _clean_all_but_keras


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
