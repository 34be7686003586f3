"""Painting catalogue objects into a block of labels: a serial numba kernel and its numpy reference.

Label values are :mod:`sgc.classes`' ``SKY`` (0), ``STAR``, ``GALAXY`` and ``IGNORE``. A block is a rectangle
of a field's stored grid whose first pixel is pixel ``(y0, x0)`` of the field; object positions are 0-based
field coordinates in astropy's convention, where pixel ``(i, j)`` has its centre at ``(i, j)``. A pixel
belongs to an object's disk when its centre lies within the object's radius of the object's centre, and to its
ignore ring when it lies within ``radius + ring`` but not within ``radius``. "Within ``r``" is evaluated row
by row, as the kernel fills it: with ``dy = i - yc`` and ``rest = r * r - dy * dy``, row ``i`` holds the
columns ``ceil(xc - sqrt(rest)) <= j <= floor(xc + sqrt(rest))`` if ``rest >= 0`` (the same set as ``dx * dx +
dy * dy <= r * r`` but for rounding at the last bit); the numpy reference evaluates the same expressions, so
the two agree bit for bit.

Overlap rule, the same whoever paints (kernel, reference, one block or many):

1. Every object's ring is painted ``IGNORE`` first, then every object's disk with its class, so a ring
   never overwrites a disk pixel, the object's own or another's, and a disk always overwrites a ring.
2. Disks are painted in :func:`paint_order`: decreasing radius, at equal radius galaxies before stars,
   then catalogue order; a disk painted later overwrites an earlier one. Where disks overlap, the smaller
   object therefore keeps its whole disk: a star on a galaxy keeps its core, and no object is erased by
   a larger neighbour, which only loses the few of its many pixels that the smaller one covers. At equal
   radius the star wins: a star's light is concentrated where the two disks meet, a galaxy's is not.
3. Pixels outside ``valid`` (not covered by all five bands) are ``IGNORE`` whatever covers them.

A pixel depends only on the objects whose ring reaches it, so a field painted chunk by chunk (each chunk
given the objects whose ring reaches it, in the same order) equals the field painted as one block.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sgc.classes import IGNORE, STAR


def paint_order(radius: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """The order in which disks are painted (later wins): decreasing radius, stars after galaxies at ties.

    Args:
        radius: disk radius of each object, pixels.
        cls: class of each object, ``STAR`` or ``GALAXY``.

    Returns:
        Indices into the objects; equal keys keep their given (catalogue) order.
    """
    return np.lexsort((np.arange(radius.size), cls == STAR, -radius))


@njit(cache=True, nogil=True)
def paint_disks(
    valid: np.ndarray,
    y0: int,
    x0: int,
    y: np.ndarray,
    x: np.ndarray,
    radius: np.ndarray,
    cls: np.ndarray,
    ring: float,
) -> np.ndarray:
    """Paint objects as disks with ignore rings into a new block of labels.

    Args:
        valid: (h, w) bool, the block's pixels covered by all five bands.
        y0, x0: field row and column of the block's first pixel.
        y, x: object centres, field pixels (float64).
        radius: disk radius of each object, pixels (float64); 0 paints the pixel at the centre only
            when the centre is a pixel centre.
        cls: class of each object (uint8), painted in array order, later objects winning: pass them in
            :func:`paint_order`.
        ring: width of the ignore ring around every disk, pixels.

    Returns:
        (h, w) uint8 labels, by the overlap rule of the module docstring.
    """
    h, w = valid.shape
    label = np.zeros((h, w), dtype=np.uint8)  # sky
    if ring > 0:
        # Rings are painted as whole outer disks; the disks painted next take their own pixels back.
        for k in range(y.size):
            _paint_one(label, y0, x0, y[k], x[k], radius[k] + ring, IGNORE)
    for k in range(y.size):
        _paint_one(label, y0, x0, y[k], x[k], radius[k], cls[k])
    # Invalid pixels last, in one pass: cheaper than testing validity inside every disk.
    for i in range(h):
        for j in range(w):
            if not valid[i, j]:
                label[i, j] = IGNORE
    return label


@njit(cache=True, nogil=True)
def _paint_one(label: np.ndarray, y0: int, x0: int, yc: float, xc: float, reach: float, value: int) -> None:
    """Set ``value`` on the pixels of ``label`` whose centres lie within ``reach`` of (yc, xc)."""
    h, w = label.shape
    # The row range errs on the wide side; the test on ``rest`` decides every row in it.
    i_lo = max(int(np.floor(yc - reach)), y0)
    i_hi = min(int(np.ceil(yc + reach)), y0 + h - 1)
    reach2 = reach * reach
    for i in range(i_lo, i_hi + 1):
        dy = i - yc
        rest = reach2 - dy * dy
        if rest < 0:
            continue
        # One run of columns per row, filled at once: no per-pixel test at all.
        half = np.sqrt(rest)
        j_a = max(int(np.ceil(xc - half)), x0)
        j_b = min(int(np.floor(xc + half)), x0 + w - 1)
        if j_a <= j_b:
            label[i - y0, j_a - x0 : j_b - x0 + 1] = value


def paint_disks_numpy(
    valid: np.ndarray,
    y0: int,
    x0: int,
    y: np.ndarray,
    x: np.ndarray,
    radius: np.ndarray,
    cls: np.ndarray,
    ring: float,
) -> np.ndarray:
    """The same computation as :func:`paint_disks` in vectorised numpy, one bounding box per object.

    The reference the kernel is tested against (bit for bit) and benchmarked against.
    """
    h, w = valid.shape
    label = np.zeros((h, w), dtype=np.uint8)
    passes = ((radius + ring, np.full(y.size, IGNORE, dtype=np.uint8)),) if ring > 0 else ()
    for reach, value in (*passes, (radius, cls)):
        for k in range(y.size):
            i_lo = max(int(np.floor(y[k] - reach[k])), y0)
            i_hi = min(int(np.ceil(y[k] + reach[k])), y0 + h - 1)
            j_lo = max(int(np.floor(x[k] - reach[k])), x0)
            j_hi = min(int(np.ceil(x[k] + reach[k])), x0 + w - 1)
            if i_lo > i_hi or j_lo > j_hi:
                continue
            dy = np.arange(i_lo, i_hi + 1) - y[k]
            rest = reach[k] * reach[k] - dy * dy
            half = np.sqrt(np.maximum(rest, 0.0))
            cols = np.arange(j_lo, j_hi + 1)[None, :]
            inside = (
                (rest >= 0)[:, None]
                & (cols >= np.ceil(x[k] - half)[:, None])
                & (cols <= np.floor(x[k] + half)[:, None])
            )
            label[i_lo - y0 : i_hi - y0 + 1, j_lo - x0 : j_hi - x0 + 1][inside] = value[k]
    label[~valid] = IGNORE
    return label
