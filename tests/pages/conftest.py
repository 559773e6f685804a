"""AppTest fixtures: each test gets its own app home folder and never downloads anything."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.util import patch_config_options

from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def app_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_EXPLORER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CNN_EXPLORER_OFFLINE", "1")
    return tmp_path / "home"


@pytest.fixture(autouse=True)
def exception_details():
    """An uncaught exception keeps its message and traceback in ``at.exception`` (the app's
    config redacts them for users), so a failing check says what went wrong."""
    with patch_config_options({"client.showErrorDetails": "full"}):
        yield


@pytest.fixture
def app():
    """An AppTest of app.py with query parameters; reach other pages with ``at.switch_page``
    (the page links need app.py as the main script)."""

    def make(**query) -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        for key, value in query.items():
            at.query_params[key] = value
        return at

    return make


@pytest.fixture
def runs(app_home):
    """The app home's runs folder; runs still going at the end are stopped (never leave a
    training process behind)."""
    from engine.training import list_runs, stop_run

    folder = app_home / "runs"
    yield folder
    for status in list_runs(folder) if folder.is_dir() else []:
        if status.active:
            stop_run(status.run_id, folder, force=True)
