"""What the Data set and Train pages say about data sets, in words and numbers: picker labels,
the saved augmentation, thumbnails, and the sanity report's counters, titles and tables.

Reports are read once per server process: ``known_report`` keeps them in a ``BoundedCache``
(thread safe, shared by every session); ``report_work`` computes a missing one as a job of the
server's queue. Plain text (no Markdown): the pages escape and draw it.
"""

from __future__ import annotations

from inspect import signature
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from engine.cache import BoundedCache
from engine.data.dataset import Dataset, export_demo
from engine.data.pipeline import AUGMENT_LIMITS, Augmentation  # noqa: F401 (the page's sliders)
from engine.data.report import SCOPES, TINY_SIDE, DatasetReport, DuplicatePair, inspect, load_report
from engine.images import load_image
from engine.render import fit_to_side

#: demo data set sizes and sides the Data set page offers; it starts at ``export_demo``'s own
#: (a set that is quick to draw and to report on; the Train page suggests more to train on)
DEMO_SIZES = (600, 1200, 3000, 6000, 12000)
DEMO_SIDES = (32, 64, 96, 128)
_EXPORT = signature(export_demo).parameters
DEMO_DEFAULT_SIZE = _EXPORT["n"].default
DEMO_DEFAULT_SIDE = _EXPORT["size"].default
#: duplicate pair scope -> its tab title
SCOPE_TITLES = {"across splits": "Across splits (leakage)",
                "across classes": "Across classes (conflicting labels)",
                "within class": "Within a class"}
#: augmentation setting -> its name on the Data set page, where it differs from the field's
_AUGMENT_NAMES = {"transpose": "diagonal mirror", "translation": "shift"}
#: reports kept per server process
REPORTS_KEPT = 4
_REPORTS: BoundedCache[DatasetReport] = BoundedCache(REPORTS_KEPT)


# ------------------------------------------------------------------------------ data sets
def dataset_label(dataset: Dataset, *, detailed: bool = True) -> str:
    """What a data set picker lists: ``"pets · 1,200 images · 2 classes · zip"``; not
    ``detailed``: the name and classes, with the image count for imported sets only
    (a demo set's name says it)."""
    images = f" · {len(dataset.files):,} images"
    classes = f" · {len(dataset.class_names)} classes"
    if detailed:
        return f"{dataset.name}{images}{classes} · {dataset.source}"
    return dataset.name + ("" if dataset.source == "demo" else images) + classes


def contents_text(dataset: Dataset) -> str:
    """``"Classes: cats, dogs · splits: train, test"``."""
    return f"Classes: {', '.join(dataset.class_names)} · splits: {', '.join(dataset.splits)}"


def augmentation_text(augment: Augmentation) -> str:
    """The settings that are on, named as the Data set page names them: ``"horizontal flip,
    rotation 30"``; a sentence saying where to set them when all are off."""
    if augment.is_identity:
        return "none saved for this data set (set it on the Data set page)"
    return ", ".join(_AUGMENT_NAMES.get(k, k.replace("_", " ")) + ("" if v is True else f" {v:g}")
                     for k, v in augment.to_dict().items() if v)


def thumbnail(path: str | Path, side: int) -> np.ndarray:
    """The image at ``path`` shrunk to fit in ``side`` x ``side`` (never enlarged).

    Raises:
        InvalidImageError: the file cannot be read as an image.
    """
    return fit_to_side(load_image(path), side, enlarge=False)


# -------------------------------------------------------------------------------- reports
def report_key(dataset: Dataset) -> tuple:
    """The key of ``dataset``'s report: among kept reports and as a job of the queue."""
    return ("dataset report", str(dataset.folder), dataset.key)


def known_report(dataset: Dataset) -> DatasetReport | None:
    """The report of ``dataset`` when it needs no computing: kept by this process, or saved
    with the data set (then kept); None when ``report_work`` must compute it."""
    key = report_key(dataset)
    report = _REPORTS.get(key)
    if report is None:
        report = load_report(dataset)
        if report is not None:
            _REPORTS.put(key, report)
    return report


def report_work(dataset: Dataset) -> Callable:
    """A job of the server's queue (``work(job)``) that computes ``dataset``'s report (it reads
    every image), says where it is, and keeps the report for ``known_report``."""
    def work(job) -> DatasetReport:
        def told(done: int, total: int, stage: str) -> None:
            if stage == "reading images":
                job.report(done, total, f"reading the images, {done:,} / {total:,}")
            elif stage == "near duplicates":
                job.report(total, total, "looking for near duplicates")

        report = inspect(dataset, callback=told)
        _REPORTS.put(report_key(dataset), report)
        return report

    return work


def report_metrics(report: DatasetReport) -> list[tuple[str, str]]:
    """``(label, value)`` of the report's counters."""
    return [("Images", f"{report.n_images:,}"), ("Classes", f"{len(report.class_names)}"),
            ("Splits", f"{len(report.splits)}"), ("Files not used", f"{len(report.unreadable)}"),
            ("Leaks across splits", f"{report.leaks}")]


def splits_text(report: DatasetReport) -> str:
    """``"Images per split: train 420 · validation 90 · test 90"``."""
    return "Images per split: " + " · ".join(
        f"{split} {sum(report.counts[split].values()):,}" for split in report.splits)


def imbalance_text(report: DatasetReport) -> str:
    """The imbalance ratio in words (``inf``: a class has no images)."""
    ratio = report.imbalance_ratio
    return ("Imbalance (largest class / smallest class): "
            + ("a class has no images" if ratio == float("inf") else f"{ratio:.2f}"))


def pair_count(report: DatasetReport, scope: str | None = None) -> int:
    """Duplicate pairs (exact and near) in ``scope``, or in all scopes."""
    scopes = SCOPES if scope is None else (scope,)
    return sum(report.exact_counts[s] + report.near_counts[s] for s in scopes)


def scope_title(report: DatasetReport, scope: str) -> str:
    """``"Across splits (leakage) · 3"``: a tab title with its pair count."""
    return f"{SCOPE_TITLES[scope]} · {pair_count(report, scope):,}"


def scope_text(report: DatasetReport, scope: str) -> str:
    """``"2 exact and 1 near pair(s)."``"""
    return (f"{report.exact_counts[scope]:,} exact and {report.near_counts[scope]:,} "
            "near pair(s).")


def pair_title(pair: DuplicatePair) -> str:
    """``"Exact copy"`` or ``"Near copy (hashes 3 bit(s) apart)"``."""
    return "Exact copy" if pair.exact else f"Near copy (hashes {pair.distance} bit(s) apart)"


def pair_rows(pairs: Sequence[DuplicatePair]) -> list[dict]:
    """One table row per pair: its kind and where each file is."""
    return [{"kind": "exact" if p.exact else "near", "first": p.a, "split": p.a_split,
             "class": p.a_class, "second": p.b, "split ": p.b_split, "class ": p.b_class}
            for p in pairs]


def flagged_images(report: DatasetReport) -> list[tuple[str, list[str]]]:
    """``(title, paths)`` of the images worth a look: tiny ones, and grayscale ones when the
    others have colour (an all-grey data set is not flagged); empty lists left out."""
    grey = report.grayscale if 0 < len(report.grayscale) < report.n_images else []
    flagged = [(f"Tiny images (shorter side under {TINY_SIDE} px)", list(report.tiny)),
               ("Grayscale images among colour ones", list(grey))]
    return [(title, paths) for title, paths in flagged if paths]


def class_total(report: DatasetReport, class_name: str) -> int:
    """Readable images of ``class_name`` over all splits."""
    return sum(report.counts[s][class_name] for s in report.splits)
