"""The Model page's numbers as text and rows: the totals with their units, the layer table
(``engine.models.architecture.layer_table``) as records, and those records as CSV."""

from __future__ import annotations

import csv
import io
from typing import Sequence

from engine.models.architecture import LayerInfo, ModelTotals

#: from this many FLOPs on, the count is given in G (else in M)
GIGA_FROM = 1e8
#: the layers the short table keeps: those that change the picture or make the classes
_SHORT_TYPES = ("Conv2D", "Pooling2D")


def flops_text(flops: float) -> str:
    """``"15.47 G"`` from ``GIGA_FROM`` on, else ``"2.3 M"``."""
    return f"{flops / 1e9:.2f} G" if flops >= GIGA_FROM else f"{flops / 1e6:.1f} M"


def totals_metrics(totals: ModelTotals) -> list[tuple[str, str]]:
    """``(label, value)`` of the whole-model counters."""
    return [("Parameters", f"{totals.params:,}"),
            ("Trainable", f"{totals.trainable_params:,}"),
            ("Size", f"{totals.size_mb:.1f} MB"),
            ("FLOPs per image", flops_text(totals.flops)),
            ("Layers", f"{totals.n_layers}")]


def layer_records(rows: Sequence[LayerInfo], show_all: bool = True) -> list[dict]:
    """One record per layer for the table: its name indented by its depth, type, output shape
    (``"?"`` for an unknown size), parameters, receptive field and FLOPs.

    Args:
        rows: ``layer_table(model)``.
        show_all: every layer; else only convolutions and pooling layers with a receptive
            field, and Dense layers.
    """
    return [{
        "layer": ("    " * r.depth) + r.name,
        "type": r.type,
        "output shape": " x ".join("?" if v is None else str(v) for v in r.output_shape or ()),
        "parameters": r.params,
        "trainable": r.trainable,
        "receptive field": r.rf_size,
        "RF stride": r.rf_stride,
        "FLOPs": r.flops,
    } for r in rows if show_all or _short(r)]


def records_csv(records: Sequence[dict]) -> str:
    """``records`` as CSV text with a header row (just ``layer`` when there are none)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(records[0]) if records else ["layer"])
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def _short(row: LayerInfo) -> bool:
    return (row.rf_size is not None and row.type.endswith(_SHORT_TYPES)) or row.type == "Dense"
