"""The scanline fill kernel against a plain per-pixel crossing-number test."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sgc.masks.polygon import fill_polygons


def _inside_numpy(
    xs: np.ndarray, ys: np.ndarray, starts: np.ndarray, y0: int, x0: int, shape: tuple[int, int]
) -> np.ndarray:
    """Per pixel, per edge: the classic even-odd test, vectorised over the grid; union over polygons."""
    py = (y0 + np.arange(shape[0], dtype=float))[:, None]
    px = (x0 + np.arange(shape[1], dtype=float))[None, :]
    union = np.zeros(shape, dtype=bool)
    for p in range(len(starts) - 1):
        ring = np.arange(starts[p], starts[p + 1])
        parity = np.zeros(shape, dtype=bool)
        for i, j in zip(ring, np.roll(ring, -1), strict=True):
            xa, ya, xb, yb = xs[i], ys[i], xs[j], ys[j]
            if ya == yb:
                continue  # a horizontal edge never straddles a row
            with np.errstate(over="ignore"):  # a near-horizontal edge crosses far away: inf is right
                crossing = xa + (py - ya) * (xb - xa) / (yb - ya)
            parity ^= ((ya > py) != (yb > py)) & (px < crossing)
        union |= parity
    return union


def _fill(
    xs: np.ndarray, ys: np.ndarray, starts: np.ndarray, y0: int, x0: int, shape: tuple[int, int]
) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    fill_polygons(xs, ys, starts, y0, x0, out)
    return out


# Coordinates on a half-pixel lattice put vertices and horizontal edges exactly on pixel centres and rows,
# where the two tests must still agree; free floats cover the general case.
_lattice = st.integers(-12, 60).map(lambda k: k / 2)
_free = st.floats(-6.0, 30.0, allow_nan=False, allow_infinity=False)
_vertex = st.tuples(st.one_of(_lattice, _free), st.one_of(_lattice, _free))
_polygons = st.lists(st.lists(_vertex, min_size=3, max_size=12), min_size=1, max_size=4)


def _layout(polygons: list[list[tuple[float, float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vertices = np.array([v for ring in polygons for v in ring], dtype=float)
    starts = np.cumsum([0] + [len(ring) for ring in polygons]).astype(np.int64)
    return vertices[:, 0].copy(), vertices[:, 1].copy(), starts


@settings(max_examples=300, deadline=None)
@given(polygons=_polygons, y0=st.integers(-4, 8), x0=st.integers(-4, 8))
def test_kernel_equals_the_per_pixel_even_odd_test(
    polygons: list[list[tuple[float, float]]], y0: int, x0: int
) -> None:
    xs, ys, starts = _layout(polygons)
    shape = (19, 23)
    np.testing.assert_array_equal(
        _fill(xs, ys, starts, y0, x0, shape), _inside_numpy(xs, ys, starts, y0, x0, shape)
    )


@settings(max_examples=50, deadline=None)
@given(polygons=_polygons)
def test_chunks_tile_the_whole_grid_mask(polygons: list[list[tuple[float, float]]]) -> None:
    xs, ys, starts = _layout(polygons)
    whole = _fill(xs, ys, starts, 0, 0, (26, 31))
    tiled = np.zeros_like(whole)
    for y0 in range(0, 26, 8):
        for x0 in range(0, 31, 8):
            block = tiled[y0 : y0 + 8, x0 : x0 + 8]
            fill_polygons(xs, ys, starts, y0, x0, block)
    np.testing.assert_array_equal(tiled, whole)


def test_pixel_centres_decide_and_polygons_unite() -> None:
    # Pixel edges of a 3x4 block at x in [1.5, 5.5], y in [2.5, 5.5]: exactly those 3x4 centres inside.
    square = [(1.5, 2.5), (5.5, 2.5), (5.5, 5.5), (1.5, 5.5)]
    xs, ys, starts = _layout([square])
    out = _fill(xs, ys, starts, 0, 0, (8, 8))
    expected = np.zeros((8, 8), dtype=bool)
    expected[3:6, 2:6] = True
    np.testing.assert_array_equal(out, expected)
    # A second, overlapping polygon adds its own pixels; the overlap stays inside (union, not even-odd).
    other = [(3.5, 0.5), (7.5, 0.5), (7.5, 3.5), (3.5, 3.5)]
    xs, ys, starts = _layout([square, other])
    expected[1:4, 4:8] = True
    np.testing.assert_array_equal(_fill(xs, ys, starts, 0, 0, (8, 8)), expected)


def test_leaves_pixels_outside_untouched_and_handles_far_polygons() -> None:
    far = [(1e6, 1e6), (1e6 + 5, 1e6), (1e6, 1e6 + 5)]
    huge = [(-1e9, -1e9), (1e9, -1e9), (1e9, 1e9), (-1e9, 1e9)]
    xs, ys, starts = _layout([far])
    out = np.ones((4, 5), dtype=bool)
    fill_polygons(xs, ys, starts, 0, 0, out)
    assert out.all()
    xs, ys, starts = _layout([huge])
    assert _fill(xs, ys, starts, 100, -50, (4, 5)).all()
