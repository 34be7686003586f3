"""Rectangular windows of a pixel grid (patches): the pixels they cover, pixel counts inside them from a
mask's integral image (summed-area table), and which pixel a position falls in."""

from __future__ import annotations

import numpy as np


def integral_image(mask: np.ndarray) -> np.ndarray:
    """The summed-area table of a 2-D mask: ``(rows + 1, columns + 1)`` int64, zero first row and column."""
    table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    table[1:, 1:] = mask.cumsum(axis=0, dtype=np.int64).cumsum(axis=1)
    return table


def window_sums(
    table: np.ndarray, y0: np.ndarray, x0: np.ndarray, y1: np.ndarray, x1: np.ndarray
) -> np.ndarray:
    """True pixels of the mask in each window ``[y0, y1) x [x0, x1)`` (arrays broadcast together).

    Args:
        table: the mask's :func:`integral_image`.
        y0, x0: first row and column of each window.
        y1, x1: end row and column (exclusive), at most the mask's size.
    """
    return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]


def coverage(shape: tuple[int, int], y0: np.ndarray, x0: np.ndarray, size: int) -> np.ndarray:
    """Boolean mask of the pixels covered by at least one ``size`` x ``size`` window at ``(y0, x0)``."""
    covered = np.zeros(shape, dtype=bool)
    for y, x in zip(np.asarray(y0).tolist(), np.asarray(x0).tolist(), strict=True):
        covered[y : y + size, x : x + size] = True
    return covered


def round_up(value: int, step: int) -> int:
    """The least multiple of ``step`` at or above ``value`` (a grid padded to whole pooling cells)."""
    return -(-value // step) * step


def nearest_pixel(position: np.ndarray) -> np.ndarray:
    """The index of the pixel a position falls in (int64): pixel ``i`` spans ``[i - 0.5, i + 0.5)``."""
    return np.floor(np.asarray(position, dtype=np.float64) + 0.5).astype(np.int64)


def pixels_in(mask: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether each position's nearest pixel is set in ``mask`` (positions off the grid take the edge's)."""
    ny, nx = mask.shape
    return mask[np.clip(nearest_pixel(y), 0, ny - 1), np.clip(nearest_pixel(x), 0, nx - 1)]
