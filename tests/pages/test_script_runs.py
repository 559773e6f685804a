"""What a script run leaves behind in the server process (ui/models.py)."""

from __future__ import annotations

import keras

from tests.pages.checks import assert_clean


def test_a_run_leaves_keras_state_alone(app):
    """Streamlit calls keras.backend.clear_session() after each run unless told otherwise; that
    resets Keras's counters (and its state under every other thread) and drops TensorFlow's
    kernel cache, which the shared models of this server must keep."""
    at = app()
    at.run()
    assert_clean(at)
    before = keras.backend.get_uid("script_runs_probe")
    at.run()
    assert keras.backend.get_uid("script_runs_probe") == before + 1
