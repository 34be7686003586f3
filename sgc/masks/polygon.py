"""Scanline polygon fill: which pixel centres of a grid lie inside any of a few polygons (numba, serial).

Pixel ``(x, y)`` of a grid has its centre at the coordinates ``(x, y)`` (astropy's 0-based convention) and
counts as inside when its centre does. Each polygon follows the even-odd rule (the classic crossing-number
test), and a pixel is set when it is inside any polygon: the union, as a footprint made of several bands'
rectangles needs.

The crossing test is evaluated exactly as the plain per-pixel version writes it: a horizontal line through
the centre row ``py`` meets edge ``(xa, ya)-(xb, yb)`` when ``(ya > py) != (yb > py)``, at
``xa + (py - ya) * (xb - xa) / (yb - ya)``, and the crossing lies left of centre ``px`` when
``px >= crossing``. Doing it per row instead of per pixel (an active-edge scanline: the edges
that straddle the row, their crossings sorted, spans filled between them) makes the cost the number of
crossings plus the pixels written, not pixels times edges, and gives bit-for-bit the same answer.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# A crossing is sorted as one integer: its column above these bits, its edge's index below.
_EDGE_BITS = 24
_EDGE_MASK = (1 << _EDGE_BITS) - 1


@njit(cache=True, nogil=True)
def _first_at_or_above(value: float, origin: int, n: int) -> int:
    """Smallest ``k`` in ``[0, n]`` with ``origin + k >= value`` (``n`` if there is none)."""
    t = value - origin
    # Clipping first keeps the integer conversion defined for far-off values; the float subtraction may
    # round, so the result is settled with the exact comparison the per-pixel test makes.
    t = min(max(t, -1.0), n + 1.0)
    k = min(max(int(np.ceil(t)), 0), n)
    while k > 0 and origin + k - 1 >= value:
        k -= 1
    while k < n and origin + k < value:
        k += 1
    return k


@njit(cache=True, nogil=True)
def fill_polygons(
    xs: np.ndarray, ys: np.ndarray, starts: np.ndarray, y0: int, x0: int, out: np.ndarray
) -> None:
    """Set ``out[r, c]`` where the pixel centre ``(x0 + c, y0 + r)`` lies inside any of the polygons.

    Args:
        xs: x of every vertex, polygons one after another, float64; each ring closes by itself (the last
            vertex joins the first), no repeated first vertex needed.
        ys: y of every vertex, float64, finite.
        starts: index in ``xs`` of each polygon's first vertex, then ``len(xs)``: polygon ``p`` is
            ``starts[p]:starts[p + 1]``.
        y0: grid row of ``out[0, :]`` (a chunk's offset in the full grid).
        x0: grid column of ``out[:, 0]``.
        out: 2-D bool block, left untouched outside the polygons (pass zeros for a plain mask).
    """
    ny, nx = out.shape
    n_poly = starts.size - 1

    # The edges that straddle some row of the block, with the rows [lo, hi) they straddle.
    n = xs.size
    if n > _EDGE_MASK:
        raise ValueError("fill_polygons: too many vertices for the crossing keys")
    edge_x, edge_y = np.empty(n), np.empty(n)
    edge_dx, edge_dy = np.empty(n), np.empty(n)
    edge_lo, edge_hi, edge_poly = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    m = 0
    for p in range(n_poly):
        a, b = starts[p], starts[p + 1]
        for i in range(a, b):
            j = i + 1 if i + 1 < b else a
            y_min, y_max = min(ys[i], ys[j]), max(ys[i], ys[j])
            if y_max < y0 or y_min > y0 + ny - 1:
                continue  # cheap test first: most edges miss a block of a large grid
            lo = _first_at_or_above(y_min, y0, ny)
            hi = _first_at_or_above(y_max, y0, ny)
            if lo == hi:
                continue
            edge_x[m], edge_y[m] = xs[i], ys[i]
            edge_dx[m], edge_dy[m] = xs[j] - xs[i], ys[j] - ys[i]
            edge_lo[m], edge_hi[m], edge_poly[m] = lo, hi, p
            m += 1
    if m == 0:
        return

    # Scan the rows with the active edges kept in the order of their last crossings, so each row's
    # crossings arrive nearly sorted and the insertion sort is linear. A polygon's parity flips at each of
    # its crossings; the row is inside the union wherever some polygon's parity is odd. Every polygon
    # crosses a row an even number of times (clipped crossings included), so parities are even again at
    # the row's end.
    entering = np.argsort(edge_lo[:m])
    active = np.empty(m, np.int64)
    keys = np.empty(m, np.int64)
    parity = np.zeros(n_poly, np.bool_)
    n_active = 0
    admitted = 0
    for r in range(ny):
        kept = 0
        for t in range(n_active):
            if edge_hi[active[t]] > r:
                active[kept] = active[t]
                kept += 1
        n_active = kept
        while admitted < m and edge_lo[entering[admitted]] <= r:
            active[n_active] = entering[admitted]
            n_active += 1
            admitted += 1
        py = float(y0 + r)
        for t in range(n_active):
            e = active[t]
            crossing = edge_x[e] + (py - edge_y[e]) * edge_dx[e] / edge_dy[e]
            column = _first_at_or_above(crossing, x0, nx)
            key = (column << _EDGE_BITS) | e
            s = t - 1
            while s >= 0 and keys[s] > key:
                keys[s + 1] = keys[s]
                s -= 1
            keys[s + 1] = key
        inside = 0
        start = 0
        row = out[r]
        for t in range(n_active):
            column, e = keys[t] >> _EDGE_BITS, keys[t] & _EDGE_MASK
            active[t] = e
            if inside > 0:
                row[start:column] = True
            q = edge_poly[e]
            parity[q] = not parity[q]
            inside += 1 if parity[q] else -1
            start = column
