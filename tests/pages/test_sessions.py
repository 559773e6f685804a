"""Many people, one server: each session's state is its own, the models are the server's.

Two AppTest sessions run in one process, as two browser tabs run in one Streamlit server."""

from __future__ import annotations

import pytest
import streamlit as st

import ui.models
import ui.sidebar
from tests.engine.dataset_helpers import shape_png
from tests.pages.checks import assert_clean

PAGE = "pages/saliency.py"


@pytest.fixture
def model_uses(monkeypatch):
    """Which model object each session got, and how often a model was loaded from disk."""
    st.cache_resource.clear()
    uses, loads = [], []
    real_get, real_load = ui.sidebar.get_model, ui.models.load_model

    def get_model(name, *args, **kwargs):
        model = real_get(name, *args, **kwargs)
        # AppTest gives every session the same id; each has its own random upload token.
        uses.append((st.session_state["upload_token"], id(model)))
        return model

    def load_model(name, **options):
        loads.append(name)
        return real_load(name, **options)

    monkeypatch.setattr(ui.sidebar, "get_model", get_model)
    monkeypatch.setattr(ui.models, "load_model", load_model)
    return uses, loads


def test_two_sessions_share_one_model_object(app, model_uses):
    uses, loads = model_uses
    first, second = app(model="demo").run(), app(model="demo").run()
    first.switch_page(PAGE).run()
    second.switch_page(PAGE).run()
    assert_clean(first)
    assert_clean(second)
    sessions = {session for session, _ in uses}
    assert len(sessions) == 2                   # two sessions asked for the model...
    assert len({model for _, model in uses}) == 1  # ...and got the very same object
    assert loads == ["demo"]                    # loaded once for the whole server


def test_an_upload_stays_in_the_session_that_made_it(app):
    alice, bob = app().run(), app().run()
    alice.sidebar.file_uploader(key="image_upload").upload(
        "alice_secret.png", shape_png(3), "image/png").run()
    assert_clean(alice)
    uploaded = [i for i in alice.session_state["images"] if i.startswith("upload:")]
    assert len(uploaded) == 1 and uploaded[0].endswith("alice_secret.png")
    bob.run()  # bob's next rerun, after alice's upload
    assert_clean(bob)
    assert alice.session_state["upload_token"] != bob.session_state["upload_token"]
    assert not any(i.startswith("upload:") for i in bob.session_state["images"])
    # The image pickers list the upload by its file name: alice's only.
    assert "alice_secret.png" in alice.sidebar.multiselect(key="_w_images").options
    assert "alice_secret.png" not in bob.sidebar.multiselect(key="_w_images").options
    # A result computed for alice's image (its Grad-CAM card) is not in bob's page.
    alice.switch_page(PAGE).run()
    bob.switch_page(PAGE).run()
    assert_clean(alice)
    assert_clean(bob)
    assert "secret" in " ".join(m.value for m in alice.markdown)  # Markdown-escaped name
    assert "secret" not in " ".join(m.value for m in bob.markdown)
