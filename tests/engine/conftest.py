"""Fixtures shared by the engine tests (the tiny models live in tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.engine.saliency_helpers import demo_model


@pytest.fixture(scope="session")
def demo():
    """The bundled demo model (the test is skipped where it is not built); a module may define
    its own ``demo`` fixture instead."""
    return demo_model()
