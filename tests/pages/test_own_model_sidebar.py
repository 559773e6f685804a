"""AppTest: the sidebar's own-model picker says what preprocessing the file shows, and starts
its select box there."""

from __future__ import annotations

import keras
import streamlit as st

import ui.models
from tests.pages.checks import assert_clean
from ui.text import md_escape

L = keras.layers
RESCALING_SAYS = "The model starts with a Rescaling layer (x * 0.00392 + 0)"


def _save(tmp_path, name, *first):
    keras.utils.set_random_seed(0)
    network = keras.Sequential([keras.Input((8, 8, 3)), *first, L.Conv2D(2, 3),
                                L.GlobalAveragePooling2D(), L.Dense(3, activation="softmax")])
    path = tmp_path / name
    network.save(path)
    return path


def _open(at, path):
    at.sidebar.selectbox(key="_w_model").select("own").run()
    at.sidebar.text_input(key="_w_model_path").input(str(path)).run()
    return at


def _captions(at):
    return " ".join(c.value for c in at.sidebar.caption)


def test_a_rescaling_model_starts_on_raw_and_can_be_changed(app, tmp_path, monkeypatch):
    st.cache_resource.clear()
    loads, real_load = [], ui.models.load_model
    monkeypatch.setattr(ui.models, "load_model", lambda name, **options: (
        loads.append((name, options.get("preprocessing"))), real_load(name, **options))[1])
    scaled = _save(tmp_path, "scaled.keras", L.Rescaling(1 / 255))
    plain = _save(tmp_path, "plain.keras")
    at = _open(app().run(), scaled)
    assert_clean(at)
    assert at.sidebar.selectbox(key="_w_model_prep").value == "raw"
    assert md_escape(RESCALING_SAYS) in _captions(at)
    at.sidebar.selectbox(key="_w_model_prep").select("unit").run()  # the user knows better
    assert_clean(at)
    assert at.sidebar.selectbox(key="_w_model_prep").value == "unit"
    # the demo model first, then the file as detected, then as chosen
    assert loads == [("demo", None), (str(scaled), None), (str(scaled), "unit")]
    assert at.query_params["prep"] in ("unit", ["unit"])
    at.sidebar.text_input(key="_w_model_path").input(str(plain)).run()  # another file
    assert_clean(at)
    assert at.sidebar.selectbox(key="_w_model_prep").value == "unit"
    assert "does not start with a Rescaling or Normalization" in _captions(at)
    at.sidebar.text_input(key="_w_model_path").input(str(scaled)).run()  # back: detected again
    assert at.sidebar.selectbox(key="_w_model_prep").value == "raw"


def test_a_link_keeps_its_preprocessing_for_the_file_it_names(app, tmp_path):
    scaled = _save(tmp_path, "scaled.keras", L.Rescaling(1 / 255))
    at = app(model="own", path=str(scaled), prep="tf").run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="_w_model_prep").value == "tf"
    assert md_escape(RESCALING_SAYS) in _captions(at)  # said even when not followed
