"""Showing user-supplied text (file names, class names) as text, never as markup."""

from __future__ import annotations

import re

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def md_escape(text: str) -> str:
    """Escape every Markdown/HTML-significant character so Streamlit shows ``text`` verbatim."""
    return _MARKDOWN.sub(r"\\\1", str(text))
