"""The patch-cutting kernel against numpy slicing, for every symmetry and any chunk crossing."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sgc.patches.gather import apply_symmetry, chunk_list, gather_patches

CHUNK = 8


def assembled(chunks: np.ndarray) -> np.ndarray:
    """A (ny, nx, ..., C, C) block of chunks as one (..., ny*C, nx*C) array."""
    ny, nx = chunks.shape[:2]
    moved = np.moveaxis(chunks, (0, 1), (-4, -2))  # (..., ny, C, nx, C)
    return moved.reshape(*moved.shape[:-4], ny * CHUNK, nx * CHUNK)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.integers(1, CHUNK),
    ny=st.integers(1, 3),
    nx=st.integers(1, 3),
    n=st.integers(1, 6),
)
def test_gathered_patches_equal_sliced_ones(seed: int, size: int, ny: int, nx: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(ny, nx, 3, CHUNK, CHUNK)).astype(np.float32)
    image[rng.random(image.shape) < 0.05] = np.nan
    label = rng.integers(0, 256, size=(ny, nx, CHUNK, CHUNK), dtype=np.uint8)
    ys = rng.integers(0, ny * CHUNK - size + 1, n)
    xs = rng.integers(0, nx * CHUNK - size + 1, n)
    symmetry = rng.integers(0, 8, n)
    dest = rng.permutation(n + 2)[:n]
    scale = rng.uniform(0.5, 2, 3).astype(np.float32)
    offset = rng.normal(size=3).astype(np.float32)
    out_image = np.full((n + 2, 3, size, size), 7.0, dtype=np.float32)
    out_label = np.full((n + 2, size, size), -1, dtype=np.int64)
    chunks = chunk_list(image)
    gather_patches(chunks, nx, label, ys, xs, symmetry, dest, scale, offset, True, out_image, out_label)
    full, full_label = assembled(image), assembled(label)
    for k in range(n):
        window = full[:, ys[k] : ys[k] + size, xs[k] : xs[k] + size]
        expected = np.nan_to_num(window * scale[:, None, None] + offset[:, None, None], nan=0.0)
        np.testing.assert_allclose(out_image[dest[k]], apply_symmetry(expected, symmetry[k]), rtol=1e-6)
        window_label = full_label[ys[k] : ys[k] + size, xs[k] : xs[k] + size]
        assert np.array_equal(out_label[dest[k]], apply_symmetry(window_label, symmetry[k]))
    untouched = np.setdiff1d(np.arange(n + 2), dest)
    assert (out_image[untouched] == 7).all() and (out_label[untouched] == -1).all()


def test_the_eight_symmetries_are_distinct_and_form_the_square_group() -> None:
    square = np.arange(9).reshape(3, 3)
    images = {apply_symmetry(square, t).tobytes() for t in range(8)}
    assert len(images) == 8
    rotations = {np.rot90(square, k).tobytes() for k in range(4)}
    assert rotations <= images
    assert {np.rot90(square.T, k).tobytes() for k in range(4)} <= images
