"""The import rule between the layers (ARCHITECTURE.md): engine/ never imports Streamlit, ui/ or
pages/; ui/ never imports a page; no page imports another page."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PAGE_MODULES = {"pages", "app"}


def _imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)  # a relative import stays inside its own top package
    return names


def _offenders(folder: Path, banned: set[str]) -> list[str]:
    return sorted(f"{path.relative_to(folder.parent)} imports {name}"
                  for path in folder.rglob("*.py") for name in _imported(path)
                  if name.split(".")[0] in banned)


def test_engine_imports_neither_streamlit_nor_the_layers_above():
    assert _offenders(ROOT / "engine", {"streamlit", "ui"} | PAGE_MODULES) == []


def test_ui_imports_no_page():
    assert _offenders(ROOT / "ui", PAGE_MODULES) == []


def test_pages_import_no_page():
    assert _offenders(ROOT / "pages", PAGE_MODULES) == []


def test_the_check_finds_imports_inside_functions(tmp_path):
    folder = tmp_path / "engine"
    folder.mkdir()
    (folder / "lazy.py").write_text("def f():\n    import streamlit as st\n    return st\n")
    (folder / "nested.py").write_text("if True:\n    from streamlit.runtime import Runtime\n")
    (folder / "fine.py").write_text("import numpy\nfrom engine.errors import CNNExplorerError\n")
    assert _offenders(folder, {"streamlit"}) == ["engine/lazy.py imports streamlit",
                                                 "engine/nested.py imports streamlit.runtime"]
