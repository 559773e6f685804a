"""A procedural, labelled image set: one geometric shape on a cluttered, textured background.

The demo model is trained on it and every page can explain its predictions against a known
truth: the class *and* where the object is (``boxes``, ``make_shape_mask``), which is what a
saliency map ought to point at.

Two families of six classes share everything but the object: ``"demo"`` (``CLASS_NAMES``, what
the bundled demo model learnt) and ``"novel"`` (``NOVEL_CLASS_NAMES``, shapes it never saw, for
fine-tuning and transfer). No novel shape is a rotation, scaling or mirror image of a demo shape,
and every shape of both keeps its class under both flips and the diagonal mirror.

Every image is a pure function of ``(label, size, seed)`` within its family. In a batch, image
``i`` of ``make_shapes(n, seed=s)`` is ``make_shape_image(i % 6, seed=(s, i))``, so it does not
depend on ``n`` and "images from a seed never used in training" is well defined. The family only
changes the object: the same seed draws the same scene (background, clutter, noise, object
position, size and angle) in both.

An image is drawn in four layers, each from its own random stream (spawned from the seed), so
leaving one layer out (``with_object=False``) leaves the others pixel-identical:

1. background: a smooth colour field (2x2 to 4x4 random grid, bilinear) plus a finer texture
   (8x8 to 16x16 grid) of lower amplitude;
2. clutter: 1 to 4 distractors that are not class shapes and are much smaller than one (thin
   line segments, specks, short thin arcs, soft blurry blobs);
3. the object: one class shape of the family, filled with a flat colour far from the local
   background colour, its circumscribed circle 30-70 % of the image side, rotated, fully inside
   the image and drawn over the clutter, so never occluded;
4. pixel noise (Gaussian, per pixel and channel).

Shapes are drawn with PIL at ``SUPERSAMPLE`` times the resolution and box-averaged down, which
anti-aliases their edges and gives each pixel's object coverage in [0, 1].
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

CLASS_NAMES = ("circle", "square", "triangle", "star", "cross", "ring")
# Six classes the bundled demo model never saw. Each is its own mirror image (up to a turn), so
# it keeps its class under the flips and the diagonal mirror, as the demo classes do.
NOVEL_CLASS_NAMES = ("hexagon", "crescent", "arrow", "heart", "L-shape", "T-shape")
FAMILIES = {"demo": CLASS_NAMES, "novel": NOVEL_CLASS_NAMES}

# 4x4 sub-pixels per pixel: 17 coverage levels, smooth enough edges at 64x64 for ~0.1 ms a mask.
SUPERSAMPLE = 4

# Circumscribed-circle diameter of the object as a fraction of the image side.
OBJECT_SIZE_RANGE = (0.3, 0.7)

# Smallest RGB distance between the object colour and the mean background under it. The
# background varies by about +-50 over an object, so every object pixel stays visibly apart.
MIN_OBJECT_CONTRAST = 120.0

# The bundled sample images (assets/images/shape_<class>.png) use seed (SAMPLE_SEED, label):
# far from the training (0), held-out (1000) and test (777) seeds of the demo model.
SAMPLE_SEED = 4242
SAMPLE_SIZE = 128

Seed = int | Sequence[int]


@dataclass(frozen=True)
class ShapesBatch:
    """A batch of labelled shape images.

    Attributes:
        images: ``(n, H, W, 3)`` uint8 RGB in [0, 255].
        labels: ``(n,)`` int64 class indices into ``class_names``; ``labels[i] == i % n_classes``.
        class_names: the family's class names (``list(CLASS_NAMES)`` for ``"demo"``).
        boxes: ``(n, 4)`` int64 ``(x0, y0, x1, y1)`` pixel box of the class object,
            inclusive-exclusive (``image[y0:y1, x0:x1]`` is the object's crop): the tightest box
            holding every pixel the object covers at all (coverage > 0).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def make_shapes(n: int, *, size: int = 64, seed: int = 0, family: str = "demo") -> ShapesBatch:
    """Generate ``n`` labelled images, balanced over the family's six classes.

    Labels cycle through the classes (``labels[i] == i % 6``), so any ``n`` that is a multiple of
    6 is exactly balanced and any other is within one image per class. Shuffle before training.

    Args:
        n: number of images, >= 0.
        size: image side in pixels, >= 16 (images are square).
        seed: non-negative int; image ``i`` is drawn from the seed ``(seed, i)``.
        family: ``"demo"`` (``CLASS_NAMES``) or ``"novel"`` (``NOVEL_CLASS_NAMES``).

    Returns:
        A ``ShapesBatch`` of ``n`` images of ``(size, size, 3)``.

    Raises:
        ValueError: ``n`` negative, ``size`` below 16, ``seed`` negative or an unknown family.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    _check_seed(seed)
    names = family_class_names(family)
    n_classes = len(names)
    labels = np.arange(n, dtype=np.int64) % n_classes
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    boxes = np.empty((n, 4), dtype=np.int64)
    for i in range(n):
        images[i], boxes[i] = make_shape_image(int(labels[i]), size=size, seed=(seed, i),
                                               family=family)
    if n == 0:
        _check_size(size)
    return ShapesBatch(images=images, labels=labels, class_names=list(names), boxes=boxes)


def family_class_names(family: str) -> tuple[str, ...]:
    """The class names of a family of shapes (``FAMILIES[family]``).

    Raises:
        ValueError: an unknown family.
    """
    try:
        return FAMILIES[family]
    except (KeyError, TypeError):
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}.") from None


def make_shape_image(
    label: int, *, size: int = 64, seed: Seed = 0, with_object: bool = True,
    family: str = "demo",
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Draw one image of class ``label``.

    The background, the clutter and the noise do not depend on ``label``: the same seed with
    another label (or family) puts another shape on the very same scene.

    Args:
        label: class index in ``[0, 6)`` into the family's class names.
        size: image side in pixels, >= 16.
        seed: a non-negative int or a sequence of them (``make_shapes`` uses ``(seed, i)``).
        with_object: ``False`` leaves the object out and nothing else changes (same background,
            clutter and noise, pixel for pixel): a "what is the model looking at" baseline.
        family: ``"demo"`` (``CLASS_NAMES``) or ``"novel"`` (``NOVEL_CLASS_NAMES``).

    Returns:
        ``(image, box)``: ``image`` is ``(size, size, 3)`` uint8 RGB; ``box`` is the object's
        inclusive-exclusive ``(x0, y0, x1, y1)`` (see ``ShapesBatch.boxes``), the same whether or
        not the object is drawn.

    Raises:
        ValueError: ``label`` out of range, ``size`` below 16, a negative seed or an unknown
            family.
    """
    image, coverage = _render(label, size, seed, with_object, family)
    return image, _box_of(coverage)


def make_shape_mask(label: int, *, size: int = 64, seed: Seed = 0,
                    family: str = "demo") -> np.ndarray:
    """The object's coverage in the image ``make_shape_image(label, size=size, seed=seed,
    family=family)``.

    Useful as ground truth for saliency maps (how much of the map falls on the object).

    Args:
        label: class index in ``[0, 6)`` into the family's class names.
        size: image side in pixels, >= 16.
        seed: as for ``make_shape_image``.
        family: as for ``make_shape_image``.

    Returns:
        ``(size, size)`` float32 in [0, 1]: the fraction of each pixel the object covers.

    Raises:
        ValueError: as for ``make_shape_image``.
    """
    return _render(label, size, seed, False, family)[1]


def write_sample_images(
    out_dir: str | Path, *, size: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED
) -> list[Path]:
    """Write one PNG per class, ``shape_<class>.png``, drawn with the seed ``(seed, label)``.

    Args:
        out_dir: folder to write into; created if missing.
        size: image side in pixels, >= 16.
        seed: non-negative int.

    Returns:
        The written paths, in ``CLASS_NAMES`` order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for label, name in enumerate(CLASS_NAMES):
        image, _ = make_shape_image(label, size=size, seed=(seed, label))
        path = out / f"shape_{name}.png"
        Image.fromarray(image).save(path, optimize=True)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------
# Rendering


def _render(label: int, size: int, seed: Seed, with_object: bool, family: str
            ) -> tuple[np.ndarray, np.ndarray]:
    """``(image (size, size, 3) uint8, object coverage (size, size) float32 in [0, 1])``."""
    names = family_class_names(family)
    if not 0 <= label < len(names):
        raise ValueError(f"label must be in [0, {len(names)}), got {label}.")
    _check_size(size)
    # The length goes first because SeedSequence ignores trailing zeros: without it the seeds
    # 3 and (3, 0) would draw the same image.
    entropy = _check_seed(seed)
    entropy = [len(entropy), *entropy]
    bg_ss, clutter_ss, object_ss, noise_ss = np.random.SeedSequence(entropy).spawn(4)

    image = _background(np.random.default_rng(bg_ss), size)
    for alpha, colour in _clutter(np.random.default_rng(clutter_ss), size, image):
        _paint(image, alpha, colour)
    coverage, colour = _object(np.random.default_rng(object_ss), names[label], size, image)
    if with_object:
        _paint(image, coverage, colour)

    noise_rng = np.random.default_rng(noise_ss)
    sigma = noise_rng.uniform(2.0, 7.0)
    image += noise_rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), coverage


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """``(size, size, 3)`` float32: smooth colour field plus a finer, fainter texture."""
    base = rng.uniform(40.0, 215.0, size=3)
    coarse = _upsample(rng.normal(0.0, 28.0, size=(int(rng.integers(2, 5)),) * 2 + (3,)), size)
    # The texture is mostly luminance (same offset on all channels), like grain or paper.
    fine_cells = int(rng.integers(8, 17))
    grain = rng.normal(0.0, rng.uniform(4.0, 12.0), size=(fine_cells, fine_cells, 1))
    fine = _upsample(grain + rng.normal(0.0, 3.0, size=(fine_cells, fine_cells, 3)), size)
    return (base + coarse + fine).astype(np.float32)


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear ``(g, g, C) -> (size, size, C)``, corners aligned."""
    m = _bilinear_matrix(grid.shape[0], size)
    rows = np.tensordot(m, grid, axes=(1, 0))  # (size, g, C)
    return np.matmul(m, rows)  # (size, size, C): (size, g) @ each row's (g, C)


@functools.lru_cache(maxsize=64)
def _bilinear_matrix(cells: int, size: int) -> np.ndarray:
    t = np.linspace(0.0, cells - 1, size)
    lo = np.minimum(np.floor(t).astype(int), cells - 2)
    frac = t - lo
    m = np.zeros((size, cells))
    m[np.arange(size), lo] = 1.0 - frac
    m[np.arange(size), lo + 1] = frac
    return m


def _clutter(
    rng: np.random.Generator, size: int, background: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """1-4 distractors as ``(alpha (size, size) in [0, 1], colour (3,))`` pairs.

    Each is far smaller or thinner than the smallest class object (a 19 px wide circle at
    64x64): lines 1-1.5 px wide, specks under 3 px, arcs of radius 2-5 px spanning at most half a
    turn, blobs with no edge at all. Sizes scale with the image (``unit`` is one pixel at 64x64).
    """
    unit = size / 64.0
    s = SUPERSAMPLE
    items = []
    for _ in range(int(rng.integers(1, 5))):
        kind = rng.integers(4)
        colour = _contrasting_colour(rng, background.reshape(-1, 3).mean(axis=0), 70.0)
        if kind == 3:  # blob: a soft Gaussian spot, computed directly at the final resolution
            cx, cy = rng.uniform(0, size, size=2)
            sx, sy = rng.uniform(1.2, 3.0, size=2) * unit
            yy, xx = np.mgrid[0:size, 0:size] + 0.5
            alpha = rng.uniform(0.5, 0.9) * np.exp(
                -0.5 * (((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))
            items.append((alpha.astype(np.float32), colour))
            continue
        mask, draw = _canvas(size)
        if kind == 0:  # line segment
            x0, y0 = rng.uniform(0, size, size=2)
            length = rng.uniform(0.15, 0.45) * size
            angle = rng.uniform(0, 2 * np.pi)
            x1, y1 = x0 + length * np.cos(angle), y0 + length * np.sin(angle)
            width = max(1, round(rng.uniform(1.0, 1.5) * unit * s))
            draw.line([(x0 * s, y0 * s), (x1 * s, y1 * s)], fill=255, width=width)
        elif kind == 1:  # a few specks
            for _ in range(int(rng.integers(2, 7))):
                cx, cy = rng.uniform(0, size, size=2)
                r = rng.uniform(0.6, 1.4) * unit
                draw.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=255)
        else:  # short thin arc
            cx, cy = rng.uniform(0, size, size=2)
            r = rng.uniform(2.0, 5.0) * unit
            start = rng.uniform(0, 360)
            width = max(1, round(unit * s))
            draw.arc([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s],
                     start, start + rng.uniform(45, 180), fill=255, width=width)
        items.append((_downsample(mask), colour))
    return items


def _object(
    rng: np.random.Generator, name: str, size: int, background: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The class object's ``(coverage (size, size) float32 in [0, 1], colour (3,))``.

    The size, position and angle are drawn first, the same way for every class, so that a seed
    puts every class's object at the same place.
    """
    r = rng.uniform(*OBJECT_SIZE_RANGE) * size / 2.0
    # One pixel of margin keeps the anti-aliased edge inside the image too.
    cx, cy = rng.uniform(r + 1.0, size - r - 1.0, size=2)
    angle = rng.uniform(0.0, 2 * np.pi)
    mask, draw = _canvas(size)
    s = SUPERSAMPLE
    if name in ("circle", "ring", "crescent"):
        draw.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=255)
        if name == "ring":
            ri = r * rng.uniform(0.45, 0.65)
            draw.ellipse([(cx - ri) * s, (cy - ri) * s, (cx + ri) * s, (cy + ri) * s], fill=0)
        elif name == "crescent":
            # A disc of radius ``bite`` at ``offset`` from the centre is cut away: the crescent
            # is ``thickness`` thick opposite the cut, and the cut reaches ``opening`` past
            # the rim, so the horns stay apart (a ring has a closed hole).
            thickness, opening = rng.uniform(0.45, 0.6), rng.uniform(0.25, 0.4)
            offset, bite = (thickness + opening) / 2 * r, (1 + (opening - thickness) / 2) * r
            bx, by = cx + offset * np.cos(angle), cy + offset * np.sin(angle)
            draw.ellipse([(bx - bite) * s, (by - bite) * s, (bx + bite) * s, (by + bite) * s],
                         fill=0)
    else:
        xy = _outline(name, rng) @ np.array([[np.cos(angle), np.sin(angle)],
                                             [-np.sin(angle), np.cos(angle)]])
        xy = (xy * r + (cx, cy)) * s
        draw.polygon([tuple(p) for p in xy], fill=255)
    coverage = _downsample(mask)

    x0, y0, x1, y1 = (int(v) for v in np.clip(np.round([cx - r, cy - r, cx + r, cy + r]), 0, size))
    under = background[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)
    return coverage, _contrasting_colour(rng, under, MIN_OBJECT_CONTRAST)


def _outline(name: str, rng: np.random.Generator) -> np.ndarray:
    """``(k, 2)`` polygon vertices of a shape whose farthest vertex is at distance 1.

    The arrow, heart, L and T are drawn symmetric about the x axis and centred by ``_centred``,
    which puts the centre of their smallest enclosing circle at the origin.
    """
    if name == "square":
        turns = np.arange(4) / 4 + 1 / 8
        return np.stack([np.cos(2 * np.pi * turns), np.sin(2 * np.pi * turns)], axis=1)
    if name == "triangle":
        turns = np.arange(3) / 3
        return np.stack([np.cos(2 * np.pi * turns), np.sin(2 * np.pi * turns)], axis=1)
    if name == "star":
        turns = np.arange(10) / 10
        radii = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
        return np.stack([radii * np.cos(2 * np.pi * turns), radii * np.sin(2 * np.pi * turns)],
                        axis=1)
    if name == "cross":
        w = rng.uniform(0.22, 0.32)  # half the arm width, relative to the arm length
        arm = np.array([[w, w], [1, w], [1, -w], [w, -w], [w, -1], [-w, -1],
                        [-w, -w], [-1, -w], [-1, w], [-w, w], [-w, 1], [w, 1]])
        return arm / np.hypot(1.0, w)
    if name == "hexagon":
        turns = np.arange(6) / 6
        return np.stack([np.cos(2 * np.pi * turns), np.sin(2 * np.pi * turns)], axis=1)
    if name == "arrow":  # a shaft from x = 0 to a triangular head pointing at x = 1
        w, head, half = rng.uniform(0.09, 0.13), rng.uniform(0.35, 0.45), rng.uniform(0.25, 0.32)
        neck = 1.0 - head
        return _centred([[0, -w], [neck, -w], [neck, -half], [1, 0], [neck, half], [neck, w],
                         [0, w]])
    if name == "heart":  # the classic parametric heart, its point towards x = +1
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        across = 16 * np.sin(t) ** 3 * rng.uniform(0.9, 1.1)
        along = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return _centred(np.stack([along, across], axis=1))
    if name == "L-shape":  # two equal arms of thickness w, symmetric about the diagonal
        w = rng.uniform(0.3, 0.4)
        corner = np.array([[0, 0], [1, 0], [1, w], [w, w], [w, 1], [0, 1]])
        # Turn the diagonal onto the x axis.
        return _centred(corner @ np.array([[1, -1], [1, 1]]) / np.sqrt(2))
    if name == "T-shape":  # a stem along the x axis, a bar across its end at x = 1
        w, half = rng.uniform(0.25, 0.33), rng.uniform(0.45, 0.6)
        return _centred([[0, -w / 2], [1 - w, -w / 2], [1 - w, -half], [1, -half], [1, half],
                         [1 - w, half], [1 - w, w / 2], [0, w / 2]])
    raise AssertionError(f"no outline for {name!r}")


def _centred(xy) -> np.ndarray:
    """Vertices symmetric about the x axis, moved and scaled so that their smallest enclosing
    circle is the unit circle (its centre lies on the axis of symmetry)."""
    xy = np.asarray(xy, dtype=float)
    x, y2 = xy[:, 0], xy[:, 1] ** 2

    def reach(c: float) -> float:
        return float(np.max((x - c) ** 2 + y2))

    # ``reach`` is convex in c (a maximum of parabolas): a ternary search finds its minimum.
    lo, hi = float(x.min()), float(x.max())
    for _ in range(60):
        a, b = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        lo, hi = (lo, b) if reach(a) < reach(b) else (a, hi)
    centre = (lo + hi) / 2
    return (xy - (centre, 0.0)) / np.sqrt(reach(centre))


def _contrasting_colour(rng: np.random.Generator, against: np.ndarray, min_distance: float
                        ) -> np.ndarray:
    """A random RGB colour at least ``min_distance`` from ``against`` (both float, 0-255)."""
    for _ in range(20):
        colour = rng.uniform(0.0, 255.0, size=3)
        if np.linalg.norm(colour - against) >= min_distance:
            return colour
    # Rarely reached: push every channel to the far end, >= 127 * sqrt(3) away.
    return np.where(against > 127.5, rng.uniform(0, 30, 3), rng.uniform(225, 255, 3))


def _canvas(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    mask = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    return mask, ImageDraw.Draw(mask)


def _downsample(mask: Image.Image) -> np.ndarray:
    """Box-average the supersampled 0/255 mask to a ``(size, size)`` float32 coverage."""
    small = mask.reduce(SUPERSAMPLE)
    return np.asarray(small, dtype=np.float32) / 255.0


def _paint(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    image += alpha[..., None] * (colour.astype(np.float32) - image)


def _box_of(coverage: np.ndarray) -> tuple[int, int, int, int]:
    cols = np.flatnonzero(coverage.any(axis=0))
    rows = np.flatnonzero(coverage.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _check_size(size: int) -> None:
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}.")


def _check_seed(seed: Seed) -> list[int]:
    entropy = [seed] if isinstance(seed, (int, np.integer)) else list(seed)
    if not entropy or any(int(v) < 0 for v in entropy):
        raise ValueError(f"seed must be a non-negative int or a sequence of them, got {seed!r}.")
    return [int(v) for v in entropy]
