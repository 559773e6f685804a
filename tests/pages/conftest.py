"""AppTest fixtures: each test gets its own app home folder and never downloads anything."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def app_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_EXPLORER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CNN_EXPLORER_OFFLINE", "1")
    return tmp_path / "home"


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
