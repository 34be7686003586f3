"""The predicted-object catalogue: touching objects split by the watershed, measured on their pixels."""

from __future__ import annotations

import numpy as np
from astropy.wcs import WCS

from sgc.classes import GALAXY, SKY, STAR
from sgc.evaluate.catalog import find_objects
from tests.patches.synthetic import tan_header

SHAPE = (60, 80)


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two touching stars (one region, two flux peaks), a galaxy apart, and a 2-pixel speck."""
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]]
    flux = np.zeros(SHAPE)
    cls = np.full(SHAPE, SKY, dtype=np.uint8)
    prob = np.zeros((3, *SHAPE), dtype=np.float32)
    prob[SKY] = 1.0
    for cy, cx, value, radius, amp in (
        (20, 20, STAR, 4, 10.0),
        (20, 27, STAR, 4, 6.0),
        (40, 60, GALAXY, 6, 3.0),
    ):
        disk = (y - cy) ** 2 + (x - cx) ** 2 <= radius**2
        cls[disk] = value
        prob[:, disk] = 0.05
        prob[value, disk] = 0.9
        flux += amp * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 1.5**2))
    cls[5, 70:72] = GALAXY
    return cls, prob, flux


def test_touching_objects_are_split_and_measured() -> None:
    cls, prob, flux = _scene()
    wcs = WCS(tan_header(SHAPE))
    table = find_objects(cls, prob, flux, wcs, "009001-3-0011", min_area=3)
    assert len(table) == 3  # the two stars split, the galaxy, and the speck below min_area dropped
    table.sort("x")
    assert table["class"].tolist() == ["star", "star", "galaxy"]
    np.testing.assert_allclose(table["y"], [20, 20, 40], atol=0.6)
    assert 17 < table["x"][0] < 23.5 and 23.5 < table["x"][1] < 30 and abs(table["x"][2] - 60) < 0.5
    assert sum(table["area"][:2]) == int((cls == STAR).sum())
    assert table["area"][2] == int((cls == GALAXY).sum()) - 2
    np.testing.assert_allclose(table["prob"], 0.9, rtol=1e-6)
    assert table["flux_r"][0] > table["flux_r"][1] > 0  # the brighter star keeps more of the shared flux
    ra, dec = wcs.pixel_to_world_values(np.asarray(table["x"]), np.asarray(table["y"]))
    np.testing.assert_allclose(table["ra"], ra)
    np.testing.assert_allclose(table["mag_r"], 22.5 - 2.5 * np.log10(table["flux_r"]), rtol=1e-5)
    assert table["id"].tolist() != [] and set(table["field"]) == {"009001-3-0011"}


def test_no_object_gives_an_empty_catalogue() -> None:
    cls, prob, flux = _scene()
    table = find_objects(np.full(SHAPE, SKY, np.uint8), prob, flux, WCS(tan_header(SHAPE)), "x")
    assert len(table) == 0 and "ra" in table.colnames
