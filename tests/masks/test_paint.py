"""The label-painting kernel: disk geometry, rings, the overlap rule, and bit-for-bit agreement with numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgc.classes import GALAXY, IGNORE, SKY, STAR
from sgc.masks.paint import paint_disks, paint_disks_numpy, paint_order


def _paint(
    shape: tuple[int, int],
    objects: list[tuple[float, float, float, int]],
    ring: float = 0.0,
    valid: np.ndarray | None = None,
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Paint ``(y, x, radius, class)`` objects in the rule's order with the kernel."""
    y, x, radius, cls = (np.array(v) for v in zip(*objects, strict=True))
    cls = cls.astype(np.uint8)
    order = paint_order(radius, cls)
    valid = np.ones(shape, dtype=bool) if valid is None else valid
    return paint_disks(valid, *origin, y[order], x[order], radius[order], cls[order], ring)


def _within(shape: tuple[int, int], y: float, x: float, r: float) -> np.ndarray:
    rows, cols = np.indices(shape)
    return (rows - y) ** 2 + (cols - x) ** 2 <= r**2


@pytest.mark.parametrize(
    ("y", "x", "radius", "expected"),
    [
        (10.0, 10.0, 0.0, 1),  # a point on a pixel centre
        (10.0, 10.0, 0.99, 1),
        (10.0, 10.0, 1.0, 5),  # the centre and its four neighbours
        (10.0, 10.0, 1.5, 9),  # the 3x3 block (corners at sqrt(2))
        (10.5, 10.5, 0.75, 4),  # between four centres, all at sqrt(0.5)
        (10.5, 10.0, 0.5, 2),
        (10.2, 9.7, 0.0, 0),  # radius 0 off every centre paints nothing
    ],
)
def test_disk_holds_exactly_the_pixel_centres_within_the_radius(
    y: float, x: float, radius: float, expected: int
) -> None:
    label = _paint((21, 21), [(y, x, radius, STAR)])
    assert np.count_nonzero(label == STAR) == expected
    np.testing.assert_array_equal(label == STAR, _within(label.shape, y, x, radius))


@pytest.mark.parametrize("radius", [2.0, 3.5, 5.0, 8.3, 15.0])
def test_disk_area_is_pi_r_squared(radius: float) -> None:
    rng = np.random.default_rng(int(radius * 10))
    for y, x in rng.uniform(30, 31, (5, 2)):
        area = np.count_nonzero(_paint((64, 64), [(y, x, radius, GALAXY)]) == GALAXY)
        # lattice points in a disk: pi r^2 within a boundary term of order the circumference
        assert abs(area - math.pi * radius**2) <= 1.5 * math.pi * radius, (y, x, area)


def test_ring_is_ignore_between_radius_and_radius_plus_width() -> None:
    label = _paint((31, 31), [(15.3, 14.8, 4.0, STAR)], ring=2.0)
    disk = _within(label.shape, 15.3, 14.8, 4.0)
    outer = _within(label.shape, 15.3, 14.8, 6.0)
    np.testing.assert_array_equal(label == STAR, disk)
    np.testing.assert_array_equal(label == IGNORE, outer & ~disk)
    np.testing.assert_array_equal(label == SKY, ~outer)


def test_a_ring_never_overwrites_a_disk_whatever_the_order() -> None:
    big = (20.0, 20.0, 8.0, GALAXY)
    small = (20.0, 30.5, 2.0, STAR)  # its ring falls inside the galaxy's disk, its disk touches the edge
    for objects in ([big, small], [small, big]):
        label = _paint((41, 41), objects, ring=3.0)
        galaxy = _within(label.shape, 20.0, 20.0, 8.0)
        star = _within(label.shape, 20.0, 30.5, 2.0)
        np.testing.assert_array_equal(label == STAR, star)
        np.testing.assert_array_equal(label == GALAXY, galaxy & ~star)


def test_the_smaller_disk_wins_the_overlap_and_a_star_wins_a_tie() -> None:
    galaxy = (20.0, 20.0, 8.0, GALAXY)
    star = (22.0, 21.0, 3.0, STAR)
    label = _paint((41, 41), [star, galaxy])
    np.testing.assert_array_equal(label == STAR, _within(label.shape, 22.0, 21.0, 3.0))

    small_galaxy = (20.0, 24.0, 2.5, GALAXY)
    big_star = (20.0, 20.0, 6.0, STAR)
    label = _paint((41, 41), [small_galaxy, big_star])
    np.testing.assert_array_equal(label == GALAXY, _within(label.shape, 20.0, 24.0, 2.5))

    for objects in (
        [(20.0, 20.0, 4.0, GALAXY), (20.0, 23.0, 4.0, STAR)],
        [(20.0, 23.0, 4.0, STAR), (20.0, 20.0, 4.0, GALAXY)],
    ):
        label = _paint((41, 41), objects)
        np.testing.assert_array_equal(label == STAR, _within(label.shape, 20.0, 23.0, 4.0))


def test_paint_order_is_decreasing_radius_then_stars_last_then_catalogue_order() -> None:
    radius = np.array([2.0, 5.0, 2.0, 2.0, 5.0])
    cls = np.array([STAR, GALAXY, GALAXY, STAR, STAR], dtype=np.uint8)
    assert paint_order(radius, cls).tolist() == [1, 4, 2, 0, 3]


def test_pixels_outside_valid_are_ignore_even_under_a_disk() -> None:
    valid = np.ones((21, 21), dtype=bool)
    valid[:, :10] = False
    label = _paint((21, 21), [(10.0, 10.0, 4.0, STAR)], ring=1.0, valid=valid)
    assert (label[:, :10] == IGNORE).all()
    np.testing.assert_array_equal(label[:, 10:] == STAR, _within((21, 21), 10.0, 10.0, 4.0)[:, 10:])


def test_block_offset_places_objects_in_field_coordinates() -> None:
    whole = _paint((40, 50), [(17.3, 33.9, 4.2, GALAXY)], ring=1.5)
    block = _paint((16, 20), [(17.3, 33.9, 4.2, GALAXY)], ring=1.5, origin=(10, 25))
    np.testing.assert_array_equal(block, whole[10:26, 25:45])


_objects = st.lists(
    st.tuples(
        st.floats(-20, 80, allow_nan=False),
        st.floats(-20, 90, allow_nan=False),
        st.floats(0, 15, allow_nan=False),
        st.sampled_from([STAR, GALAXY]),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(
    objects=_objects,
    ring=st.sampled_from([0.0, 1.0, 2.0, 2.5]),
    origin=st.tuples(st.integers(-5, 30), st.integers(-5, 30)),
    seed=st.integers(0, 2**16),
)
def test_kernel_equals_the_numpy_reference_bit_for_bit(
    objects: list[tuple[float, float, float, int]], ring: float, origin: tuple[int, int], seed: int
) -> None:
    valid = np.random.default_rng(seed).random((37, 45)) > 0.1
    if objects:
        y, x, radius, cls = (np.array(v) for v in zip(*objects, strict=True))
    else:
        y = x = radius = np.empty(0)
        cls = np.empty(0)
    cls = cls.astype(np.uint8)
    kernel = paint_disks(valid, *origin, y, x, radius, cls, ring)
    reference = paint_disks_numpy(valid, *origin, y, x, radius, cls, ring)
    np.testing.assert_array_equal(kernel, reference)
