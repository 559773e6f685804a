"""What the benchmark scripts share: their common command-line options and their JSON output
(the benchmark's name, the machine, then its own results)."""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path


def parser(doc: str, *, repeats: int, images: int | None = None,
           keep: bool = False) -> argparse.ArgumentParser:
    """A command line described by the first line of ``doc`` with ``--repeats``, and
    ``--images`` (when given a default) and ``--keep`` (a folder to build the data in and keep,
    reused by the next run) when asked for."""
    out = argparse.ArgumentParser(description=doc.splitlines()[0])
    if images is not None:
        out.add_argument("--images", type=int, default=images)
    out.add_argument("--repeats", type=int, default=repeats)
    if keep:
        out.add_argument("--keep", type=Path, help="folder to build in and keep (reused)")
    return out


def emit(benchmark: str, **results) -> None:
    """Print the benchmark's JSON: its name, the machine and ``results``."""
    print(json.dumps({"benchmark": benchmark, "machine": platform.machine(),
                      "cpus": os.cpu_count(), **results}, indent=2))
