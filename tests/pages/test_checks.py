"""The clean-run check fails on a crash that ``shown_errors`` turned into an error box, on a
plain exception, and passes a page that showed only a warning."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.pages.checks import assert_clean


def _boxed_crash():
    import streamlit as st

    from ui.errors import shown_errors

    st.warning("a warning is not an error")
    with shown_errors("Drawing: "):
        raise ZeroDivisionError("bug")


def _raw_crash():
    raise KeyError("no such widget")


def _fine():
    import streamlit as st

    st.warning("a warning is not an error")


def test_an_error_box_fails_the_check_with_its_text():
    at = AppTest.from_function(_boxed_crash).run()
    assert not at.exception  # what the old check looked at, and it passed
    with pytest.raises(AssertionError, match="error box: Drawing: Something went wrong"):
        assert_clean(at)


def test_an_exception_fails_the_check_with_its_message():
    at = AppTest.from_function(_raw_crash).run()
    with pytest.raises(AssertionError, match="exception: 'no such widget'"):
        assert_clean(at, "step 1")
    with pytest.raises(AssertionError, match="^step 1\n"):
        assert_clean(at, "step 1")


def test_a_page_with_only_a_warning_is_clean():
    assert_clean(AppTest.from_function(_fine).run())
