"""A self-contained HTML report of one image's analysis, to share after a demo.

``build_report`` runs the engine on one image (prediction, feature maps, saliency with its
faithfulness scores, activation-maximised filters, the model summary) and writes one HTML file:
every picture is embedded as a ``data:`` URI (PNG or JPEG, whichever is smaller), the styles
are inline and there is no script, font or link to anything outside the file, so it opens
offline in any browser. Every text that comes from a user (image and model file names, class
and layer names of one's own model) is escaped: it shows as text, never as markup.

    >>> html_text = build_report(model, image, image_name="cat.jpg")
    >>> Path("report.html").write_text(html_text, encoding="utf-8")
"""

from __future__ import annotations

import datetime
import functools
import html
import importlib.metadata
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from engine import actmax
from engine.actmax import objectives
from engine.actmax.cache import ActMaxCache, stored_settings
from engine.errors import CNNExplorerError, InvalidModelError
from engine.features import default_layer, feature_maps, map_layers, overview_channels
from engine.models import predict
from engine.models.architecture import layer_table, model_totals
from engine.models.explorable import ExplorableModel
from engine.models.preprocessing import PREPROCESSING_MODES
from engine.progress import Progress, report
from engine.render import (FONT, fit_to_side, image_uri, map_tiles, overlay, tile_grid,
                           tile_size)
from engine.saliency import METHODS, default_cam_layer, explain
from engine.saliency.leaderboard import COLUMNS
from engine.saliency.metrics import FaithfulnessCurves, deletion_insertion

#: the comparison grid's default: the methods that cost about one backward pass
FAST_METHODS = tuple(name for name, cls in METHODS.items() if cls.speed == "fast")


def build_report(model: ExplorableModel, image: np.ndarray, *, image_name: str,
                 target: int | None = None, methods: Sequence[str] | None = None,
                 method_options: dict[str, dict] | None = None, cam_layer: str | None = None,
                 faithfulness_steps: int = 24, feature_layers: Sequence[str] | None = None,
                 channels_per_layer: int = 16, filter_layer: str | None = None,
                 n_filters: int = 5, quick_steps: int = 48,
                 actmax_cache: str | os.PathLike | None = None, top: int = 5,
                 leaderboard=None, callback: Progress | None = None) -> str:
    """The HTML report of ``image``.

    Args:
        model: the model (never modified).
        image: (H, W, 3) uint8 RGB.
        image_name: what the image is called (a file name, a gallery label); shown as text.
        target: the class index the saliency maps explain; ``None``: the top prediction.
        methods: keys of ``saliency.METHODS``; default ``FAST_METHODS``.
        method_options: method -> its options (``explain(..., **options)``); others get their
            defaults.
        cam_layer: the layer of the CAM methods; ``None``: ``default_cam_layer``.
        faithfulness_steps: points on each deletion / insertion curve (``deletion_insertion``).
        feature_layers: layers of the feature-map overview; default up to four convolution
            layers spread from the first to the last.
        channels_per_layer: the most active channels shown per layer.
        filter_layer: the layer whose filters are shown; default ``features.default_layer``.
        n_filters: how many filters: those most active on this image.
        quick_steps: optimisation steps for filters not found in ``actmax_cache``.
        actmax_cache: the activation-maximisation disk cache: images of the layer already
            there (any settings, the most steps first) are used; new ones are written there.
        top: classes listed in the prediction.
        leaderboard: an ``engine.saliency.Leaderboard`` (the trust table of the methods on a
            data set) to include as a section, or ``None``.
        callback: ``callback(done, total, stage)`` (``engine.progress``) before each step,
            and once at the end (``done == total``).

    Returns:
        The HTML document.

    Raises:
        InvalidImageError: ``image`` is not (H, W, 3).
        InvalidModelError: ``target`` is not a class of the model.
        KeyError: an unknown method.
    """
    methods = list(FAST_METHODS if methods is None else methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise KeyError(f"Unknown saliency method {unknown[0]!r}; choose from {list(METHODS)}.")
    method_options = {m: dict(method_options.get(m, {})) for m in methods} \
        if method_options else {m: {} for m in methods}
    image = np.asarray(image)
    model.prepare(image)  # checks the image once, before any work
    if target is not None and not 0 <= int(target) < model.n_classes:
        raise InvalidModelError(f"Class {target} does not exist: the model has "
                                f"{model.n_classes} classes (0 to {model.n_classes - 1}).")
    progress = _Steps(2 * len(methods) + 4, callback)

    progress("Predicting")
    ranking = predict(model, image, top=top)[0]
    probabilities = model.probabilities(image)[0]
    explained = int(np.argmax(probabilities)) if target is None else int(target)

    progress("Computing feature maps")
    features = _features(model, image, feature_layers, channels_per_layer, filter_layer,
                         n_filters)

    cards = []
    for name in methods:
        cards.append(_saliency(model, image, name, explained, cam_layer, method_options[name],
                               faithfulness_steps, progress))

    progress("Finding the filters' images")
    filters = _filters(model, features, quick_steps, actmax_cache)

    progress("Summarising the model")
    summary = _summary(model)

    settings = _settings(model, image, image_name, explained, target, methods, method_options,
                         cam_layer, faithfulness_steps, features, filters)
    document = _document(model, image, image_name, ranking, explained, features, cards,
                         filters, summary, settings, leaderboard)
    progress.done()
    return document


# ------------------------------------------------------------------------------ progress
class _Steps:
    def __init__(self, total: int, callback: Progress | None):
        self.total, self.count, self.callback = total, 0, callback

    def __call__(self, text: str) -> None:
        report(self.callback, min(self.count, self.total - 1), self.total, text)
        self.count += 1

    def done(self) -> None:
        report(self.callback, self.total, self.total, "Report ready")


# ------------------------------------------------------------------------------ sections
@dataclass
class _Features:
    layers: list[tuple[str, tuple, np.ndarray, np.ndarray]]  # path, shape, grid, channels
    filter_layer: str | None
    filter_units: list[int]
    error: str | None = None


def _features(model, image, layers, k, filter_layer, n_filters) -> _Features:
    try:
        rows = map_layers(model)
        # maps of one or two pixels show nothing (MobileNet's 1x1 classifier convolution)
        spatial = [r for r in rows if r.is_spatial and min(r.output_shape[:2]) >= 3]
        convs = [r.path for r in spatial if r.kind == "conv"] or [r.path for r in spatial]
        if layers is None:
            picks = np.unique(np.round(np.linspace(0, len(convs) - 1, min(4, len(convs)))))
            layers = [convs[int(i)] for i in picks] if convs else []
        filter_layer = filter_layer or (default_layer(rows) if convs else None)
        wanted = list(dict.fromkeys(list(layers) + ([filter_layer] if filter_layer else [])))
        maps = feature_maps(model, image, wanted) if wanted else {}
    except (CNNExplorerError, KeyError) as exc:
        return _Features([], None, [], _message(exc))
    shown = []
    for path in layers:
        values = maps[path][0]
        if values.ndim != 3:
            continue
        channels = overview_channels(values, k)
        shown.append((path, values.shape, _channel_grid(values, channels), channels))
    units = []
    if filter_layer is not None and maps[filter_layer].ndim == 4:
        units = [int(u) for u in overview_channels(maps[filter_layer][0], n_filters)]
    return _Features(shown, filter_layer, units)


@dataclass
class _SaliencyCard:
    method: str
    options: dict
    overlay: np.ndarray | None = None
    curves: FaithfulnessCurves | None = None
    error: str | None = None


def _saliency(model, image, method, target, cam_layer, options, steps, progress):
    title = METHODS[method].title
    card = _SaliencyCard(method, options)
    progress(f"{title}: computing the map")
    try:
        layer = cam_layer if METHODS[method].uses_layer else None
        saliency = explain(model, image, method, target, layer, **options)[0]
        card.overlay = overlay(fit_to_side(image, 224, enlarge=False), saliency)
        progress(f"{title}: deleting and inserting pixels")
        card.curves = deletion_insertion(model, image, saliency, target, steps=steps)
    except (CNNExplorerError, TypeError) as exc:
        card.error = _message(exc)
    return card


@dataclass
class _Filters:
    layer: str | None
    units: list[int]
    images: np.ndarray | None = None
    activations: np.ndarray | None = None
    sources: list[str] | None = None
    error: str | None = None


def _filters(model, features: _Features, quick_steps, cache_dir) -> _Filters:
    layer, units = features.filter_layer, features.filter_units
    if layer is None or not units:
        return _Filters(layer, units, error=features.error or "This model has no convolution "
                                                              "layer whose filters can be shown.")
    found: dict[int, tuple] = {}
    if cache_dir is not None:
        measure = objectives.channel(layer, stage="out").description
        stored = [s for s in stored_settings(cache_dir, model.key, layer)
                  if s.get("measure") == measure]
        for settings in sorted(stored, key=lambda s: -int(s.get("steps", 0))):
            hits = ActMaxCache(cache_dir, model.key, layer, settings).load(
                [u for u in units if u not in found])
            for unit, result in hits.items():
                found[unit] = (result.images[0], float(result.activations[0]),
                               f"from the cache: {settings.get('steps')} steps, "
                               f"{settings.get('param')}")
    missing = [u for u in units if u not in found]
    try:
        if missing:
            result = actmax.visualize(model, layer, missing, steps=quick_steps,
                                      cache_dir=cache_dir)
            for i, unit in enumerate(int(u) for u in result.units):
                found[unit] = (result.images[i], float(result.activations[i]),
                               f"computed for this report: {quick_steps} steps, fourier")
    except (CNNExplorerError, ValueError) as exc:
        return _Filters(layer, units, error=_message(exc))
    units = [u for u in units if u in found]
    return _Filters(layer, units, np.stack([found[u][0] for u in units]),
                    np.array([found[u][1] for u in units]), [found[u][2] for u in units])


def _summary(model):
    try:
        return layer_table(model.keras_model), model_totals(model.keras_model), None
    except CNNExplorerError as exc:
        return [], None, _message(exc)


def _settings(model, image, image_name, explained, target, methods, method_options, cam_layer,
              steps, features, filters) -> dict:
    uses_layer = any(METHODS[m].uses_layer for m in methods)
    try:
        cam = (cam_layer or default_cam_layer(model.keras_model)) if uses_layer else None
    except CNNExplorerError:
        cam = None
    return {
        "image": image_name,
        "image size": f"{image.shape[1]}x{image.shape[0]} pixels",
        "model": model.name,
        "model title": model.title,
        "model key": model.key,
        "weights": model.source,
        "model input": f"{model.input_size[1]}x{model.input_size[0]}, {model.channels} channels",
        "preprocessing": f"{model.preprocessing} "
                         f"({PREPROCESSING_MODES.get(model.preprocessing, 'unknown')})",
        "class explained": f"{model.class_names[explained]} (class {explained}"
                           + (", the top prediction)" if target is None else ")"),
        "saliency methods": {m: {**METHODS[m].options, **method_options[m]} for m in methods},
        "CAM layer": cam,
        "faithfulness": f"deletion_insertion, {steps} steps, 2 random orders, seed 0",
        "feature-map layers": [path for path, *_ in features.layers],
        "filter layer": filters.layer,
        "filters": filters.units,
        "versions": _versions(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


@functools.lru_cache(maxsize=1)
def _versions() -> dict:
    def installed(package):
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {"CNN Explorer": _app_version(), "TensorFlow": tf.__version__,
            "Keras": keras.version(), "NumPy": np.__version__, "Pillow": installed("pillow"),
            "Streamlit": installed("streamlit"), "Python": platform.python_version()}


def _app_version() -> str:
    """The git commit of the checkout the app runs from (``+changes`` when it differs)."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, timeout=5,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, timeout=5, capture_output=True, text=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"git {commit}" + (" +changes" if dirty.strip() else "")


def _message(exc: Exception) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


# ------------------------------------------------------------------------------ pictures
def _channel_grid(maps: np.ndarray, channels: np.ndarray, side: int = 64,
                  per_row: int = 8) -> np.ndarray:
    """(h, w, C) maps -> one picture of the chosen channels, each on its own colour range."""
    size = tile_size(maps.shape[0], maps.shape[1], side)
    tiles = map_tiles(maps, channels, size, "viridis", maps.min(axis=(0, 1)),
                      maps.max(axis=(0, 1)))
    return tile_grid(tiles, per_row).image


def _img(image: np.ndarray, alt: str, css: str = "") -> str:
    h, w = image.shape[:2]
    css = f' class="{css}"' if css else ""
    src = image_uri(image, jpeg_quality=85)
    return f'<img src="{src}" width="{w}" height="{h}" alt="{_e(alt)}"{css}>'


def _curve_svg(fractions, ours, random, title: str, colour: str) -> str:
    """A small inline SVG of one faithfulness curve against its random-order baseline; the
    vertical axis runs from 0 to the highest probability on either curve (written at the top)."""
    w, h, pad = 176, 60, 4
    top = max(0.01, float(np.max(ours)), float(np.max(random)))

    def points(values):
        return " ".join(f"{pad + f * (w - 2 * pad):.1f},{h - pad - v / top * (h - 2 * pad):.1f}"
                        for f, v in zip(fractions, np.clip(values, 0, top)))

    return (f'<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">'
            f"<title>{_e(title)}</title>"
            f'<rect x="0.5" y="0.5" width="{w - 1}" height="{h - 1}" fill="#fff" '
            'stroke="#d0d7de"/>'
            f'<polyline points="{points(random)}" fill="none" stroke="#9aa5b1" '
            'stroke-dasharray="4 3" stroke-width="1.5"/>'
            f'<polyline points="{points(ours)}" fill="none" stroke="{colour}" '
            'stroke-width="2"/>'
            f'<text x="{w - 6}" y="14" font-size="10" text-anchor="end" fill="#57606a">'
            f"{_e(title)}, p up to {top:.2f}</text></svg>")


# ------------------------------------------------------------------------------ the document
def _e(text) -> str:
    return html.escape(str(text), quote=True)


_CSS = "body{font-family:" + FONT["family"] + """;margin:0;color:#1f2328;
background:#f6f8fa;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:24px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;
margin:16px 0}
h1{margin:0 0 4px}h2{margin:0 0 10px;font-size:1.3em}h3{margin:12px 0 6px;font-size:1.05em}
.muted{color:#57606a;font-size:.9em}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.card{border:1px solid #d0d7de;border-radius:6px;padding:8px;width:176px;font-size:.9em}
.card img{width:176px;height:auto;display:block}
.card svg{display:block;margin-top:6px}
.grid img,.hero img{max-width:100%;height:auto}
table{border-collapse:collapse;font-size:.9em}
td,th{border-bottom:1px solid #eaeef2;padding:3px 8px;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{background:#2f6fde;height:10px;border-radius:3px}
.error{color:#cf222e}
pre{background:#f6f8fa;padding:10px;overflow:auto;font-size:.85em;white-space:pre-wrap}
img.pixel{image-rendering:pixelated}
"""


def _document(model, image, image_name, ranking, explained, features, cards, filters, summary,
              settings, leaderboard=None) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>CNN Explorer report: {_e(image_name)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        "<h1>CNN Explorer report</h1>",
        f'<p class="muted">Image <b>{_e(image_name)}</b> · model <b>{_e(model.title)}</b> · '
        f"{_e(settings['date'])}</p>",
        _prediction_section(model, image, ranking),
        _features_section(features),
        _saliency_section(model, explained, cards),
        _leaderboard_section(leaderboard) if leaderboard is not None else "",
        _filters_section(filters),
        _summary_section(model, *summary),
        _settings_section(settings),
        "</main></body></html>",
    ]
    return "\n".join(parts)


def _prediction_section(model, image, ranking) -> str:
    rows = "".join(
        f'<tr><td>{rank}</td><td class="class">{_e(name)}</td>'
        f'<td class="num">{p:.1%}</td><td style="width:220px"><div class="bar" '
        f'style="width:{max(0.5, 100 * p):.1f}%"></div></td></tr>'
        for rank, (name, p) in enumerate(ranking, 1))
    return (f'<section id="prediction"><h2>Prediction</h2><div class="row">'
            f'<div class="hero">{_img(fit_to_side(image, 256, enlarge=False), "the image")}</div>'
            f"<div><p>The model's top {len(ranking)} of {model.n_classes} classes:</p>"
            f"<table><tr><th>#</th><th>class</th><th>probability</th><th></th></tr>{rows}"
            "</table></div></div></section>")


def _features_section(features: _Features) -> str:
    body = [f'<p class="error">{_e(features.error)}</p>'] if features.error else []
    for path, shape, grid, channels in features.layers:
        body.append(
            f'<h3>{_e(path)} <span class="muted">· {shape[0]}x{shape[1]} maps, {shape[2]} '
            f"channels</span></h3>"
            f'<div class="grid">{_img(grid, f"feature maps of {path}", "pixel")}</div>'
            f'<p class="muted">The {len(channels)} most active channels, most active first: '
            f"{', '.join(str(int(c)) for c in channels)}. Each map has its own colour range "
            "(dark: low, yellow: high).</p>")
    if not body:
        body.append("<p>This model has no layer with a spatial grid of feature maps.</p>")
    return ('<section id="feature-maps"><h2>Feature maps</h2><p class="muted">What layers from '
            "the first to the last compute for this image.</p>" + "".join(body) + "</section>")


def _saliency_section(model, explained, cards) -> str:
    name = model.class_names[explained]
    body, rows = [], []
    for card in cards:
        cls = METHODS[card.method]
        if card.error:
            body.append(f'<div class="card" data-method="{_e(card.method)}"><b>{_e(cls.title)}'
                        f'</b><p class="error">{_e(card.error)}</p></div>')
            rows.append(f'<tr><td>{_e(cls.title)}</td><td colspan="4" class="error">failed'
                        "</td></tr>")
            continue
        c = card.curves
        body.append(
            f'<div class="card" data-method="{_e(card.method)}">'
            f"{_img(card.overlay, f'{cls.title} map over the image')}"
            f"<b>{_e(cls.title)}</b>"
            f'<div class="muted">{_e(cls.summary)}</div>'
            f"{_curve_svg(c.fractions, c.deletion, c.random_deletion, 'deletion', '#cf222e')}"
            f"deletion AUC <b>{c.deletion_auc:.3f}</b> (random {c.random_deletion_auc:.3f})"
            f"{_curve_svg(c.fractions, c.insertion, c.random_insertion, 'insertion', '#2f6fde')}"
            f"insertion AUC <b>{c.insertion_auc:.3f}</b> (random {c.random_insertion_auc:.3f})"
            "</div>")
        rows.append(
            f'<tr data-method="{_e(card.method)}"><td>{_e(cls.title)}</td>'
            f'<td class="num" data-auc="deletion">{c.deletion_auc:.4f}</td>'
            f'<td class="num" data-auc="random_deletion">{c.random_deletion_auc:.4f}</td>'
            f'<td class="num" data-auc="insertion">{c.insertion_auc:.4f}</td>'
            f'<td class="num" data-auc="random_insertion">{c.random_insertion_auc:.4f}</td>'
            "</tr>")
    table = ("<table><tr><th>method</th><th>deletion AUC</th><th>random</th>"
             "<th>insertion AUC</th><th>random</th></tr>" + "".join(rows) + "</table>")
    return ('<section id="saliency"><h2>Saliency and faithfulness</h2>'
            f"<p>Maps for the class <b>{_e(name)}</b> (class {explained}); red is where the "
            "answer depends most on the pixels. Below each map: the class probability as its "
            "most important pixels are deleted (red line; falling faster than a random order, "
            "dashed, is good) and inserted into a blurred copy (blue; rising faster is good).</p>"
            f'<div class="row">{"".join(body)}</div><h3>Faithfulness scores</h3>{table}'
            '<p class="muted">Areas under the curves over the share of pixels, in [0, 1]: a '
            "faithful map has a lower deletion AUC and a higher insertion AUC than a random "
            "pixel order (Petsiuk et al., RISE, 2018).</p></section>")


def _leaderboard_section(board) -> str:
    def cell(value) -> str:
        return "" if np.isnan(value) else f"{value:.3f}"

    head = "".join(f"<th>{_e(header)} ({better} is better)</th>" for _, header, better in COLUMNS)
    rows = "".join(
        f'<tr data-method="{_e(row.method)}"><td>{_e(row.title)}</td>'
        + (f'<td colspan="{len(COLUMNS)}" class="error">{_e(row.error)}</td>' if row.error else
           "".join(f'<td class="num" data-score="{f}">{cell(getattr(row, f))}</td>'
                   for f, _, _ in COLUMNS)) + "</tr>" for row in board.rows)
    boxes = "" if board.has_boxes else " The data set has no object boxes: no pointing game."
    return ('<section id="leaderboard"><h2>Which method to trust</h2>'
            f"<p>Every method scored on the same {board.n_images} images of a data set, each "
            "explaining the model's top class.</p>"
            f"<table><tr><th>method</th>{head}</tr>{rows}</table>"
            '<p class="muted">Deletion and insertion (Petsiuk et al. 2018) and ROAD (Rong et '
            "al. 2022: removed pixels are filled from their neighbours) measure faithfulness; "
            "the pointing game whether the peak lies on the object; the two r columns how "
            "much the map stays the same when the model's top layers are random or another "
            f"class is explained (a map that stays the same shows the image).{boxes}</p>"
            "</section>")


def _filters_section(filters: _Filters) -> str:
    head = '<section id="filters"><h2>Filters</h2>'
    if filters.error:
        return head + f'<p class="error">{_e(filters.error)}</p></section>'
    cards = "".join(
        f'<div class="card" data-filter="{u}">'
        f"{_img(picture, f'filter {u}', 'pixel' if picture.shape[0] < 176 else '')}"
        f"<b>filter {u}</b><div class=\"muted\">activation {a:.3g}<br>{_e(source)}</div></div>"
        for u, picture, a, source in zip(filters.units, filters.images, filters.activations,
                                         filters.sources))
    return (head + f"<p>The {len(filters.units)} filters of <b>{_e(filters.layer)}</b> most "
            "active on this image, each with the picture that excites it most (activation "
            f'maximisation).</p><div class="row">{cards}</div></section>')


def _summary_section(model, rows, totals, error) -> str:
    head = '<section id="model-summary"><h2>Model summary</h2>'
    if error:
        return head + f'<p class="error">{_e(error)}</p></section>'
    facts = (f"<p><b>{_e(model.title)}</b>: {totals.n_layers} layers, {totals.params:,} "
             f"parameters ({totals.trainable_params:,} trainable), {totals.size_mb:.1f} MB of "
             f"weights, {totals.flops / 1e6:,.1f} MFLOPs per image; input "
             f"{_e(totals.input_shape)}, output {_e(totals.output_shape)}.</p>")
    table = "".join(
        f"<tr><td>{_e(('· ' * r.depth) + r.path)}</td><td>{_e(r.type)}</td>"
        f"<td>{_e(r.output_shape)}</td><td class=\"num\">{r.params:,}</td></tr>" for r in rows)
    return (head + facts + f"<details open><summary>{len(rows)} layers</summary><table><tr>"
            "<th>layer</th><th>type</th><th>output shape</th><th>parameters</th></tr>"
            f"{table}</table></details></section>")


def _settings_section(settings: dict) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_plain(v))}</td></tr>"
                   for k, v in settings.items())
    return ('<section id="settings"><h2>Settings</h2><p class="muted">Everything needed to make '
            f"this report again.</p><table>{rows}</table><h3>As JSON</h3>"
            f"<pre>{_e(json.dumps(settings, indent=2, default=str))}</pre></section>")


def _plain(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_plain(v)}" for k, v in value.items()) or "no options"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value) or "-"
    return "-" if value is None else str(value)
