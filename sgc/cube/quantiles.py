"""Exact per-band statistics of pixels held in a Dask array, never all in memory at once.

:func:`band_stats` gives per band the count, mean and population standard deviation (ddof 0, in float64,
partial moments merged with Chan's formula), min and max, and the order statistics median, 0.5 and 99.5
percentiles, median absolute deviation (MAD) and robust sigma 1.4826 x MAD, over the finite pixels.

The order statistics are exact, not approximated: a float32 maps to a uint32 key that sorts like the float
(:func:`_keys`), so the k-th smallest pixel is found by a radix selection in two passes over the cube: a
histogram of the upper 16 bits of every key, then a histogram of the lower 16 bits of the keys in the
upper bins that hold the wanted ranks. Percentiles interpolate between the two neighbouring order
statistics exactly like ``numpy.percentile``'s default (linear) method. The MAD is found the same way over
the deviations ``|x - median|`` rounded to float32, which is exact up to that rounding (relative 6e-8).
The pixels are read four times (moments and upper bins, lower bins, then both again for the deviations).

Parallelism is Dask's: one task per chunk (best one field per chunk, all bands together), each returning
moments and 65536-bin histograms, merged in a tree :data:`_SPLIT_EVERY` at a time. Memory is a few chunks
per worker, whatever the number of fields. Tasks run on the current Dask scheduler: the run's cluster
(:mod:`sgc.compute`) where there is one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed

ROBUST_SIGMA_PER_MAD = 1.4826
PERCENTILES: tuple[float, ...] = (0.5, 99.5)
METHOD = "exact order statistics (radix selection over float32 keys); MAD exact to float32 rounding"

_SIGN = np.uint32(1 << 31)
_HALF_BITS = 16
_BINS = 1 << _HALF_BITS
_LOW_MASK = np.uint32(_BINS - 1)
# Partial results merged at once: bounds the memory of the merge tree (a partial is a few MB).
_SPLIT_EVERY = 8

Partial = dict[str, np.ndarray]


def band_stats(pixels: da.Array) -> list[dict[str, Any]]:
    """Statistics of each band of a ``(field, band, y, x)`` array over its finite pixels.

    Args:
        pixels: float32 Dask array, NaN where a pixel does not count; best chunked one field per chunk
            with all bands together (each chunk is one task, its result a few MB).

    Returns:
        One dict per band, ``count``, ``mean``, ``std``, ``min``, ``max``, ``median``, ``mad``,
        ``robust_sigma`` and ``percentiles`` (``{"0.5": ..., "99.5": ...}``), all None where the band has
        no finite pixel.
    """
    pixels = pixels.rechunk({1: -1})
    if pixels.shape[0] == 0:
        return [_band_summary(_empty_partial(pixels.shape[1]), b, {}, {}) for b in range(pixels.shape[1])]
    first = _reduce(pixels, _summarise_block).compute()
    counts = first["moments"][:, 0].astype(np.int64)
    order = _order_statistics(pixels, first["upper"], _ranks(counts, (50.0, *PERCENTILES)), None)
    median = np.array([_percentile(order[b], counts[b], 50.0) for b in range(len(counts))])
    spread = _reduce(pixels, _upper_block, median).compute()
    mad_order = _order_statistics(pixels, spread["upper"], _ranks(counts, (50.0,)), median)
    return [_band_summary(first, b, order[b], mad_order[b]) for b in range(len(counts))]


def _keys(values: np.ndarray) -> np.ndarray:
    """Map float32 values to uint32 keys in the same order (a < b exactly when key(a) < key(b))."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    # Positive floats sort like their bits: set the sign bit to put them above every negative one.
    # Negative ones sort in reverse: flip all bits. The arithmetic shift turns the sign into either mask.
    flip = (values.view(np.int32) >> 31).view(np.uint32) | _SIGN
    return values.view(np.uint32) ^ flip


def _values(keys: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_keys`."""
    keys = np.asarray(keys, dtype=np.uint32)
    bits = np.where(keys & _SIGN, keys & ~_SIGN, ~keys)
    return bits.astype(np.uint32).view(np.float32)


def _finite(block: np.ndarray, band: int, median: np.ndarray | None) -> np.ndarray:
    """A block's finite values of one band, or their float32 deviations from the band's median."""
    values = block[:, band].ravel()
    values = values[np.isfinite(values)]
    if median is None:
        return values
    return np.abs(values.astype(np.float64) - median[band]).astype(np.float32)


def _upper_histogram(values: np.ndarray) -> np.ndarray:
    return np.bincount(_keys(values) >> _HALF_BITS, minlength=_BINS)


def _upper_block(block: np.ndarray, median: np.ndarray) -> Partial:
    """Histogram of the upper 16 key bits of each band's deviations from its median."""
    upper = np.zeros((block.shape[1], _BINS), dtype=np.int64)
    for band in range(block.shape[1]):
        upper[band] = _upper_histogram(_finite(block, band, median))
    return {"upper": upper}


def _summarise_block(block: np.ndarray) -> Partial:
    """Count, mean and sum of squared deviations, min, max and upper-key-bit histogram of each band."""
    partial = _empty_partial(block.shape[1])
    for band in range(block.shape[1]):
        values = _finite(block, band, None)
        if values.size:
            v = values.astype(np.float64)
            mean = v.mean()
            partial["moments"][band] = (v.size, mean, np.square(v - mean).sum())
            partial["min"][band], partial["max"][band] = values.min(), values.max()
            partial["upper"][band] = _upper_histogram(values)
    return partial


def _lower_block(block: np.ndarray, targets: Sequence[tuple[int, int]], median: np.ndarray | None) -> Partial:
    """For each target ``(band, upper)``: histogram of the lower 16 bits of the band's keys in that bin."""
    lower = np.zeros((len(targets), _BINS), dtype=np.int64)
    keys = {band: _keys(_finite(block, band, median)) for band in {band for band, _ in targets}}
    for row, (band, upper) in enumerate(targets):
        k = keys[band]
        lower[row] = np.bincount(k[(k >> _HALF_BITS) == upper] & _LOW_MASK, minlength=_BINS)
    return {"lower": lower}


def _empty_partial(nbands: int) -> Partial:
    return {
        "moments": np.zeros((nbands, 3)),
        "min": np.full(nbands, np.inf),
        "max": np.full(nbands, -np.inf),
        "upper": np.zeros((nbands, _BINS), dtype=np.int64),
    }


def _merge_moments(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Chan et al.'s pairwise update of (count, mean, M2) rows: stable however the data are split."""
    n = a[:, 0] + b[:, 0]
    share = np.divide(b[:, 0], n, out=np.zeros_like(n), where=n > 0)
    delta = b[:, 1] - a[:, 1]
    mean = a[:, 1] + delta * share
    m2 = a[:, 2] + b[:, 2] + delta**2 * a[:, 0] * share
    return np.stack([n, mean, m2], axis=1)


_MERGE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "moments": _merge_moments,
    "min": np.fmin,
    "max": np.fmax,
    "upper": np.add,
    "lower": np.add,
}


def _merge(*parts: Partial) -> Partial:
    merged = dict(parts[0])
    for part in parts[1:]:
        merged = {key: _MERGE[key](merged[key], value) for key, value in part.items()}
    return merged


def _reduce(pixels: da.Array, block_function: Callable[..., Partial], *args: Any) -> Delayed:
    """Apply ``block_function`` to every chunk of ``pixels`` and merge the results in a tree, lazily."""
    parts = [dask.delayed(block_function)(block, *args) for block in pixels.to_delayed().ravel()]
    while len(parts) > 1:
        parts = [
            dask.delayed(_merge)(*parts[i : i + _SPLIT_EVERY]) for i in range(0, len(parts), _SPLIT_EVERY)
        ]
    return parts[0]


def _ranks(counts: np.ndarray, percentiles: Sequence[float]) -> list[list[int]]:
    """The 0-based ranks of each band that the percentiles interpolate between."""
    ranks = []
    for n in map(int, counts):
        needed: set[int] = set()
        for q in percentiles if n else ():
            low = math.floor((n - 1) * (q / 100))
            needed.update({low, min(low + 1, n - 1)})
        ranks.append(sorted(needed))
    return ranks


def _order_statistics(
    pixels: da.Array, upper: np.ndarray, ranks: list[list[int]], median: np.ndarray | None
) -> list[dict[int, float]]:
    """The values at the given ranks of each band, from the upper-bit histograms and one more pass."""
    cumulative = np.cumsum(upper, axis=1)
    located = [
        [(rank, int(np.searchsorted(cumulative[b], rank, side="right"))) for rank in band_ranks]
        for b, band_ranks in enumerate(ranks)
    ]
    targets = sorted({(b, bin_) for b, pairs in enumerate(located) for _, bin_ in pairs})
    if not targets:
        return [{} for _ in ranks]
    lower = _reduce(pixels, _lower_block, targets, median).compute()["lower"]
    row_of = {target: row for row, target in enumerate(targets)}
    result: list[dict[int, float]] = []
    for b, pairs in enumerate(located):
        values = {}
        for rank, bin_ in pairs:
            below = int(cumulative[b, bin_ - 1]) if bin_ else 0
            low = int(np.searchsorted(np.cumsum(lower[row_of[b, bin_]]), rank - below, side="right"))
            values[rank] = float(_values(np.uint32((bin_ << _HALF_BITS) | low)))
        result.append(values)
    return result


def _percentile(order: Mapping[int, float], n: int, q: float) -> float:
    """``numpy.percentile``'s linear interpolation between the order statistics around ``q``."""
    if n == 0:
        return math.nan
    # numpy's position and its _lerp, operation for operation, so both agree to the last bit.
    position = (n - 1) * (q / 100)
    low = math.floor(position)
    a, b = order[low], order[min(low + 1, n - 1)]
    t = position - low
    return a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t)


def _band_summary(
    first: Partial, band: int, order: Mapping[int, float], mad_order: Mapping[int, float]
) -> dict[str, Any]:
    n, mean, m2 = first["moments"][band]
    n = int(n)
    if n == 0:
        empty = dict.fromkeys(("mean", "std", "min", "max", "median", "mad", "robust_sigma"))
        return {"count": 0, **empty, "percentiles": {str(q): None for q in PERCENTILES}}
    mad = _percentile(mad_order, n, 50.0)
    return {
        "count": n,
        "mean": float(mean),
        "std": math.sqrt(m2 / n),
        "min": float(first["min"][band]),
        "max": float(first["max"][band]),
        "median": _percentile(order, n, 50.0),
        "mad": mad,
        "robust_sigma": ROBUST_SIGMA_PER_MAD * mad,
        "percentiles": {str(q): _percentile(order, n, q) for q in PERCENTILES},
    }
