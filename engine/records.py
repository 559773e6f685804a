"""Folders of stored records (data sets, training runs): each record is a sub-folder holding
one marker file; hidden folders and damaged records are left out of a listing."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

R = TypeVar("R")


def stored_records(root: Path, marker: str, read: Callable[[Path], R],
                   damaged: type[Exception], key: Callable[[R], object]) -> list[R]:
    """``read(folder)`` for every sub-folder of ``root`` that holds ``marker``, sorted by ``key``.

    A folder whose name starts with "." is skipped, and so is one whose ``read`` raises
    ``damaged`` (the listing shows what can be opened; opening the damaged one says why).
    """
    if not root.is_dir():
        return []
    out = []
    for folder in root.iterdir():
        if folder.name.startswith(".") or not (folder / marker).is_file():
            continue
        try:
            out.append(read(folder))
        except damaged:
            continue
    return sorted(out, key=key)
