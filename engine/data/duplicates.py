"""Perceptual hashes and a near-duplicate search that grows close to linearly.

A 64-bit perceptual hash keeps the signs of the 64 lowest-frequency DCT coefficients (the
constant one left out) of a 32x32 grey thumbnail: a DCT-sign variant of pHash. Re-encoding,
resizing, brightening or more contrast barely change those signs, while another picture changes
about half of them. Two images are near duplicate candidates when their hashes differ in at
most ``max_distance`` bits (then ``similarity`` checks the pixels).

Comparing all pairs is quadratic. Multi-index hashing (Norouzi et al., 2012) splits each hash
into three bands of 22, 21 and 21 bits: two hashes at most 5 bits apart differ in at most one
bit on at least one band (pigeonhole), so only pairs that share a band value, up to one flipped
bit, are compared. Bands that long rarely match by chance, so the work grows with the number of
images (a table lookup per band and flipped bit) plus the true matches, not with all pairs.
"""

from __future__ import annotations

import numpy as np

HASH_SIDE = 32  # the grey thumbnail the DCT reads
_BAND_BITS = (22, 21, 21)
#: The largest ``max_distance`` the search is exact for (one flipped bit in one of 3 bands).
MAX_SEARCH_DISTANCE = 5
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads band values over buckets


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float32)


_DCT = _dct_matrix(HASH_SIDE)
# The 64 lowest frequencies (by u + v, then u) of the 9x9 corner, the constant (0, 0) left out.
_LOW = np.array(sorted(((u, v) for u in range(9) for v in range(9) if u or v),
                       key=lambda uv: (uv[0] + uv[1], uv[0]))[:64])
_LOW_INDEX = _LOW[:, 0] * 9 + _LOW[:, 1]


def phash(grey: np.ndarray) -> np.ndarray:
    """Perceptual hashes of a batch of grey thumbnails.

    Args:
        grey: ``(N, 32, 32)`` float (any range) grey images.

    Returns:
        ``(N,)`` uint64: bit ``63 - k`` is set when the ``k``-th lowest-frequency DCT
        coefficient (``_LOW[k]``) is positive.
    """
    grey = np.asarray(grey, dtype=np.float32)
    if grey.ndim != 3 or grey.shape[1:] != (HASH_SIDE, HASH_SIDE):
        raise ValueError(f"expected (N, {HASH_SIDE}, {HASH_SIDE}) grey images, got {grey.shape}.")
    corner = (_DCT[:9] @ grey @ _DCT[:9].T).reshape(len(grey), 81)
    bits = corner[:, _LOW_INDEX] > 0
    return np.ascontiguousarray(np.packbits(bits, axis=1)).view(">u8").ravel().astype(np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Number of differing bits between uint64 hashes (element-wise, broadcast)."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def near_pairs(hashes: np.ndarray, max_distance: int = MAX_SEARCH_DISTANCE
               ) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of hashes at most ``max_distance`` bits apart, without comparing all pairs.

    Args:
        hashes: ``(N,)`` uint64.
        max_distance: in ``[0, 5]``; the search is exact (finds every such pair) in that range.

    Returns:
        ``(pairs, distances)``: ``pairs`` is ``(M, 2)`` int64 indices ``i < j``, sorted;
        ``distances`` is ``(M,)`` int64 Hamming distances.

    Raises:
        ValueError: when ``max_distance`` is outside ``[0, 5]``.
    """
    if not 0 <= max_distance <= MAX_SEARCH_DISTANCE:
        raise ValueError(f"max_distance must be in [0, {MAX_SEARCH_DISTANCE}], got {max_distance}.")
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    if n < 2:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64)
    radius = max_distance // len(_BAND_BITS)
    # About two buckets per image: a bucket holds one band value plus rare strangers.
    table_bits = max(4, int(np.ceil(np.log2(n))) + 1)
    keys, shift = [], 0
    for width in _BAND_BITS:
        values = (hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        shift += width
        buckets = _bucket(values, table_bits)
        order = np.argsort(buckets, kind="stable")
        starts = np.zeros(2**table_bits + 1, np.int64)
        np.cumsum(np.bincount(buckets, minlength=2**table_bits), out=starts[1:])
        queries, owners = [values], [np.arange(n)]
        if radius:
            for bit in range(width):
                flipped = values ^ np.uint64(1 << bit)
                ask = flipped > values  # each unordered pair of values is asked for once
                queries.append(flipped[ask])
                owners.append(np.flatnonzero(ask))
        query, owner = np.concatenate(queries), np.concatenate(owners)
        asked, member = _lookup(starts, order, _bucket(query, table_bits))
        # A bucket may also hold other band values: keep the true matches, then the close ones.
        match = values[member] == query[asked]
        a, b = owner[asked[match]], member[match]
        a, b = np.minimum(a, b), np.maximum(a, b)
        close = (a != b) & (hamming(hashes[a], hashes[b]) <= max_distance)
        keys.append(a[close] * n + b[close])
    key = np.concatenate(keys)
    # Sort-based unique: numpy's hash-based np.unique is pathologically slow on these keys.
    key.sort()
    key = key[np.concatenate(([True], key[1:] != key[:-1]))] if len(key) else key
    pairs = np.stack([key // n, key % n], axis=1)
    return pairs, hamming(hashes[pairs[:, 0]], hashes[pairs[:, 1]])


def _bucket(values: np.ndarray, table_bits: int) -> np.ndarray:
    return ((values * _MIX) >> np.uint64(64 - table_bits)).astype(np.int64)


def _lookup(starts: np.ndarray, order: np.ndarray, buckets: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Every ``(q, i)`` with item ``i`` in bucket ``buckets[q]``.

    ``order`` lists the items sorted by bucket; bucket ``k`` is ``order[starts[k]:starts[k+1]]``.
    """
    lo = starts[buckets]
    counts = starts[buckets + 1] - lo
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first = np.cumsum(counts) - counts
    offsets = np.arange(total) - np.repeat(first, counts)
    return np.repeat(np.arange(len(buckets)), counts), order[np.repeat(lo, counts) + offsets]


def similarity(a: np.ndarray, b: np.ndarray, colour_a: np.ndarray | None = None,
               colour_b: np.ndarray | None = None) -> np.ndarray:
    """How alike two thumbnails look, pair by pair, whatever their brightness and contrast.

    The smallest of three correlations: of the grey pixels; of the grey fine detail (each
    thumbnail minus its 5x5 box blur), which tells apart pictures that only share a smooth
    background; and, when colour thumbnails are given, of each colour channel, which tells
    apart a green circle on purple from a cyan one on brown.

    Args:
        a, b: ``(M, h, w)`` grey thumbnails (uint8 or float in 0-255), h and w >= 5.
        colour_a, colour_b: optional ``(M, h', w', 3)`` RGB thumbnails of the same pictures.

    Returns:
        ``(M,)`` float in [-1, 1]. Two flat grey thumbnails (standard deviation under 2 grey
        levels) give 1 when their means are within 8 levels and 0 otherwise; a flat one
        against a textured one gives 0. A colour channel flat in both is no evidence either
        way.
    """
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    pixels = _correlation(a, b, flat_below=2.0, both_flat=_same_level(a, b))
    detail = _correlation(a - _box_blur(a), b - _box_blur(b), flat_below=0.5,
                          both_flat=np.full(len(a), np.nan))
    score = np.minimum(pixels, np.where(np.isnan(detail), pixels, detail))
    if colour_a is not None and colour_b is not None:
        colour_a = np.asarray(colour_a, np.float32)
        colour_b = np.asarray(colour_b, np.float32)
        for channel in range(3):
            agree = _correlation(colour_a[..., channel], colour_b[..., channel], flat_below=2.0,
                                 both_flat=np.full(len(a), np.nan))
            score = np.minimum(score, np.where(np.isnan(agree), score, agree))
    return score


def _same_level(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    means = np.abs(a.reshape(len(a), -1).mean(axis=1) - b.reshape(len(b), -1).mean(axis=1))
    return (means <= 8).astype(np.float32)


def _correlation(a: np.ndarray, b: np.ndarray, flat_below: float, both_flat: np.ndarray
                 ) -> np.ndarray:
    """Pearson correlation per pair; ``both_flat`` where both are flat, 0 where one is."""
    a = a.reshape(len(a), -1)
    b = b.reshape(len(b), -1)
    a_c = a - a.mean(axis=1, keepdims=True)
    b_c = b - b.mean(axis=1, keepdims=True)
    sa, sb = a_c.std(axis=1), b_c.std(axis=1)
    corr = (a_c * b_c).mean(axis=1) / np.maximum(sa * sb, 1e-6)
    flat_a, flat_b = sa < flat_below, sb < flat_below
    return np.where(flat_a & flat_b, both_flat, np.where(flat_a | flat_b, 0.0, corr))


def _box_blur(x: np.ndarray, k: int = 5) -> np.ndarray:
    """Mean over each pixel's ``k x k`` neighbourhood (edges repeated), by running sums."""
    r = k // 2
    padded = np.pad(x.astype(np.float64), ((0, 0), (r + 1, r), (r + 1, r)), mode="edge")
    padded[:, 0, :] = 0  # a zero row and column in front turn cumulative sums into window sums
    padded[:, :, 0] = 0
    sums = padded.cumsum(axis=1).cumsum(axis=2)
    h, w = x.shape[1:]
    window = (sums[:, k:k + h, k:k + w] - sums[:, :h, k:k + w] - sums[:, k:k + h, :w]
              + sums[:, :h, :w])
    return window / (k * k)
