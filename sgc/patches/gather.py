"""Cutting patches out of a block of chunks: one pass that also normalises and augments.

A block holds a rectangle of a field's chunks as ``image[cy, cx, band, r, c]`` and ``label[cy, cx, r, c]``,
exactly as the chunks were read (see :mod:`sgc.patches.chunks`), so a patch that straddles chunk
boundaries is gathered from up to four chunks without first assembling the rectangle. Each output pixel
is read once and written once: the affine normalisation, NaN to 0, label widening to int64 and one of the
eight symmetries of the square all happen on the way.

Symmetry ``t`` (0-7): bit 2 transposes, bit 0 flips rows, bit 1 flips columns; output pixel ``(i, j)``
shows source pixel ``(a, b)`` with ``(a, b) = (j, i)`` if transposed else ``(i, j)``, then ``a -> P-1-a`` and
``b -> P-1-b`` for the flips. The kernel is serial (the house rule: parallelism belongs to the DataLoader
workers and DDP ranks).
"""

from __future__ import annotations

import numba
import numpy as np

N_SYMMETRIES = 8


@numba.njit(cache=True, nogil=True, inline="always")
def _scaled(v, s, o, check_nan):
    v = v * s + o
    return 0.0 if check_nan and v != v else v


@numba.njit(cache=True, nogil=True, inline="always")
def _image_run(image, cy, cx, band, r, x0, count, s, o, out, d, n, m0, reverse, check_nan):  # noqa: ANN001
    """``count`` pixels of a source row, from column ``x0`` of chunk ``cx``, scaled into output row ``n``
    from column ``m0`` on, right to left if ``reverse``. One loop per direction: that is what vectorises."""
    if reverse:
        for j in range(count):
            out[d, band, n, m0 - j] = _scaled(image[cy, cx, band, r, x0 + j], s, o, check_nan)
    else:
        for j in range(count):
            out[d, band, n, m0 + j] = _scaled(image[cy, cx, band, r, x0 + j], s, o, check_nan)


@numba.njit(cache=True, nogil=True, inline="always")
def _label_run(label, cy, cx, r, x0, count, out, d, n, m0, reverse):  # noqa: ANN001
    """The label counterpart of :func:`_image_run`."""
    if reverse:
        for j in range(count):
            out[d, n, m0 - j] = label[cy, cx, r, x0 + j]
    else:
        for j in range(count):
            out[d, n, m0 + j] = label[cy, cx, r, x0 + j]


@numba.njit(cache=True, nogil=True)
def gather_patches(
    image: np.ndarray,
    label: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    symmetry: np.ndarray,
    dest: np.ndarray,
    scale: np.ndarray,
    offset: np.ndarray,
    check_nan: bool,
    out_image: np.ndarray,
    out_label: np.ndarray,
) -> None:
    """Cut patches ``k`` at block pixel ``(ys[k], xs[k])`` into ``out_*[dest[k]]``.

    Patches must be no wider than a chunk, so a source row spans at most two chunk columns.

    Args:
        image: float ``(ny, nx, bands, C, C)`` chunks of the block.
        label: uint8 ``(ny, nx, C, C)`` chunks of the block.
        ys, xs: top-left corner of each patch, in pixels from the block's first row and column.
        symmetry: the symmetry (0-7) applied to each patch.
        dest: the batch row each patch goes to.
        scale, offset: per band, ``out = value * scale + offset``.
        check_nan: turn NaN into 0; patches known to hold only finite pixels skip the test.
        out_image: float32 ``(batch, bands, P, P)``.
        out_label: int64 ``(batch, P, P)``.
    """
    size = out_image.shape[2]
    chunk = image.shape[3]
    bands = image.shape[2]
    # Transposed patches are cut upright into a scratch patch first, then transposed: writing the output
    # column-wise straight from the block runs at half the speed.
    scratch_image = np.empty((1, bands, size, size), dtype=out_image.dtype)
    scratch_label = np.empty((1, size, size), dtype=out_label.dtype)
    for k in range(ys.shape[0]):
        t = symmetry[k]
        flip_rows = (t & 1) != 0
        flip_cols = (t & 2) != 0
        transpose = (t & 4) != 0
        d = 0 if transpose else dest[k]
        to_image = scratch_image if transpose else out_image
        to_label = scratch_label if transpose else out_label
        # Each source row is a run in chunk column cx, then the rest (if any) in cx + 1: P <= C.
        cx = xs[k] // chunk
        x_off = xs[k] % chunk
        n_first = min(size, chunk - x_off)
        n_second = size - n_first
        # Output position of each run's first pixel: rows are written right to left when columns are flipped.
        m_first = size - 1 if flip_cols else 0
        m_second = m_first - n_first if flip_cols else n_first
        for n in range(size):
            y = ys[k] + (size - 1 - n if flip_rows else n)
            cy = y // chunk
            r = y % chunk
            for band in range(bands):
                s = scale[band]
                o = offset[band]
                _image_run(
                    image,
                    cy,
                    cx,
                    band,
                    r,
                    x_off,
                    n_first,
                    s,
                    o,
                    to_image,
                    d,
                    n,
                    m_first,
                    flip_cols,
                    check_nan,
                )
                _image_run(
                    image,
                    cy,
                    cx + 1,
                    band,
                    r,
                    0,
                    n_second,
                    s,
                    o,
                    to_image,
                    d,
                    n,
                    m_second,
                    flip_cols,
                    check_nan,
                )
            _label_run(label, cy, cx, r, x_off, n_first, to_label, d, n, m_first, flip_cols)
            _label_run(label, cy, cx + 1, r, 0, n_second, to_label, d, n, m_second, flip_cols)
        if transpose:
            _transpose_into(scratch_image, scratch_label, out_image, out_label, dest[k])


@numba.njit(cache=True, nogil=True)
def _transpose_into(
    image: np.ndarray, label: np.ndarray, out_image: np.ndarray, out_label: np.ndarray, d: int
) -> None:
    """``out_*[d]`` = the scratch patch ``*[0]`` transposed."""
    size = image.shape[2]
    for band in range(image.shape[1]):
        for i in range(size):
            for j in range(size):
                out_image[d, band, i, j] = image[0, band, j, i]
    for i in range(size):
        for j in range(size):
            out_label[d, i, j] = label[0, j, i]


def apply_symmetry(array: np.ndarray, t: int) -> np.ndarray:
    """Symmetry ``t`` of the last two axes of ``array``, as :func:`gather_patches` applies it (for tests)."""
    if t & 1:
        array = array[..., ::-1, :]
    if t & 2:
        array = array[..., :, ::-1]
    return np.swapaxes(array, -1, -2) if t & 4 else array
