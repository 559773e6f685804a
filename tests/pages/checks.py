"""What an AppTest asks of a page that should have run fine."""

from __future__ import annotations


def assert_clean(at, context: str = "") -> None:
    """``at``'s last run raised nothing and showed no error box.

    ``ui.errors.shown_errors`` turns a crash into ``st.error``, so ``not at.exception`` alone
    passes a page that broke inside it; the failure message gives the texts of both.
    """
    problems = [f"exception: {e.message}\n" + "\n".join(e.stack_trace) for e in at.exception]
    problems += [f"error box: {e.value}" for e in at.error]
    assert not problems, "\n".join(([context] if context else []) + problems)
