"""Sky geometry: the cap around a grid holds every pixel of it; window sums equal direct counts."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sgc.sky import Cap, grid_cap, pixel_scale_arcsec, unit_vectors
from sgc.windows import coverage, integral_image, window_sums
from tests.patches.synthetic import tan_header


@settings(max_examples=30, deadline=None)
@given(
    ra=st.floats(0, 360, exclude_max=True),
    dec=st.floats(-85, 85),
    rows=st.integers(1, 2000),
    cols=st.integers(1, 2000),
    margin=st.floats(0, 50),
)
def test_the_cap_of_a_grid_holds_every_pixel_of_the_grown_grid(
    ra: float, dec: float, rows: int, cols: int, margin: float
) -> None:
    from astropy.wcs import WCS

    wcs = WCS(tan_header((rows, cols), ra=ra, dec=dec))
    cap = grid_cap(wcs, (rows, cols), margin)
    # Edges and a random scatter of points of the grid grown by the margin, pixel edges included.
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [rng.uniform(-0.5 - margin, cols - 0.5 + margin, 200), [-0.5 - margin, cols - 0.5 + margin]]
    )
    y = np.concatenate(
        [rng.uniform(-0.5 - margin, rows - 0.5 + margin, 200), [rows - 0.5 + margin, -0.5 - margin]]
    )
    assert cap.contains(unit_vectors(*wcs.pixel_to_world_values(x, y))).all()
    # ... and not much more: its radius is the half-diagonal plus a pixel.
    half_diagonal = np.hypot(rows + 2 * margin, cols + 2 * margin) / 2
    assert np.degrees(cap.radius) * 3600 / pixel_scale_arcsec(wcs) < half_diagonal + 2


def test_caps_meet_and_query_a_tree() -> None:
    from scipy.spatial import cKDTree

    a = Cap(unit_vectors(10.0, 0.0), np.radians(1.0))
    b = Cap(unit_vectors(12.5, 0.0), np.radians(1.0))
    assert not a.meets(b) and a.meets(b, slack=np.radians(0.6))
    points = unit_vectors(np.array([10.0, 10.9, 11.1, 200.0]), np.zeros(4))
    assert a.query(cKDTree(points)).tolist() == [0, 1]
    assert Cap.around(points[:3]).contains(points[:3]).all()


@settings(max_examples=50, deadline=None)
@given(
    rows=st.integers(1, 40),
    cols=st.integers(1, 40),
    seed=st.integers(0, 2**16),
    size=st.integers(1, 12),
)
def test_window_sums_and_coverage_equal_direct_counts(rows: int, cols: int, seed: int, size: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((rows, cols)) < 0.4
    y0 = rng.integers(0, rows, 20)
    x0 = rng.integers(0, cols, 20)
    y1 = np.minimum(y0 + rng.integers(0, size + 1, 20), rows)
    x1 = np.minimum(x0 + rng.integers(0, size + 1, 20), cols)
    sums = window_sums(integral_image(mask), y0, x0, y1, x1)
    assert sums.tolist() == [int(mask[a:b, c:d].sum()) for a, c, b, d in zip(y0, x0, y1, x1, strict=True)]
    covered = coverage((rows, cols), y0, x0, size)
    direct = np.zeros((rows, cols), dtype=bool)
    for a, c in zip(y0, x0, strict=True):
        direct[a : a + size, c : c + size] = True
    assert np.array_equal(covered, direct)
