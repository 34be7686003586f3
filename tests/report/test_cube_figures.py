"""Cube figures: IRG before/after alignment, catalogue overlay, object positions."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from sgc.config import IngestConfig
from sgc.cube.store import CubeStore, StoreError
from sgc.errors import InputFileError
from sgc.report.cube_figures import (
    catalog_overlay,
    irg_before_after,
    irg_composite,
    irg_panels,
    object_positions,
)
from sgc.sdss.names import BANDS
from tests.cube.test_stats import tan_header

SHAPE = (120, 160)
FIELD = "000001-1-0011"
# Bright stars, all in the upper right quadrant, so the crop has one best place.
STARS = [(80, 110), (95, 130), (100, 100), (70, 140)]
CROP = 48


def _sky(shape: tuple[int, int], offset: tuple[int, int], seed: int) -> np.ndarray:
    """Sky noise plus the stars, shifted by ``offset`` (rows, columns) as a misaligned band would be."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0.0, 0.03, size=shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for y, x in STARS:
        image += 20.0 * np.exp(-((yy - y - offset[0]) ** 2 + (xx - x - offset[1]) ** 2) / (2 * 1.5**2))
    return image.astype(np.float32)


def _raw_and_store(tmp_path: Path, offsets: Mapping[str, tuple[int, int]]) -> tuple[Path, Path]:
    """Raw frames with the given per-band offsets, and a store holding the same field aligned."""
    raw = tmp_path / "raw" / "301" / "1" / "1"
    raw.mkdir(parents=True)
    aligned, files = [], {}
    for seed, band in enumerate(BANDS):
        header = tan_header(SHAPE)
        header["FILTER"] = band
        name = f"frame-{band}-{FIELD}.fits"
        fits.PrimaryHDU(_sky(SHAPE, offsets.get(band, (0, 0)), seed), header).writeto(raw / name)
        aligned.append(_sky(SHAPE, (0, 0), seed))
        files[band] = {"name": name}
    store = tmp_path / "s.zarr"
    cube = CubeStore.create(store, SHAPE, IngestConfig(chunk=64))
    slot = cube.allocate([FIELD])[FIELD]
    cube.write_field(
        slot, np.stack(aligned), np.ones(SHAPE, bool), tan_header(SHAPE).tostring(), {"files": files}
    )
    return store, tmp_path / "raw"


def _catalog() -> Table:
    ra, dec = WCS(tan_header(SHAPE)).pixel_to_world_values(
        np.array([x for _, x in STARS] + [20.0, 40.0]), np.array([y for y, _ in STARS] + [30.0, 10.0])
    )
    return Table({"ra": ra, "dec": dec, "class": ["star"] * len(STARS) + ["galaxy", "galaxy"]})


def _png_shape(path: Path) -> tuple[int, ...]:
    assert path.stat().st_size > 1000
    image = matplotlib.image.imread(path)
    assert image[..., :3].std() > 0.01  # something drawn, not a blank canvas
    return image.shape[:2]


def test_before_differs_from_after_when_bands_are_offset(tmp_path: Path) -> None:
    store, raw = _raw_and_store(tmp_path, {"g": (3, -2), "r": (0, 2)})
    before, after, (y0, x0) = irg_panels(store, "1-1-11", raw, size=CROP)
    assert before.shape == after.shape == (CROP, CROP, 3) and before.dtype == np.uint8
    # The stars' colour fringes: a large part of the crop differs.
    assert np.abs(before.astype(int) - after.astype(int)).max() > 100
    bands = {b: _sky(SHAPE, (0, 0), BANDS.index(b))[y0 : y0 + CROP, x0 : x0 + CROP] for b in "irg"}
    np.testing.assert_array_equal(after, irg_composite(bands["i"], bands["r"], bands["g"]))


def test_before_equals_after_when_frames_are_aligned(tmp_path: Path) -> None:
    store, raw = _raw_and_store(tmp_path, {})
    frames = {b: raw / "301" / "1" / "1" / f"frame-{b}-{FIELD}.fits" for b in "irg"}
    before, after, _ = irg_panels(store, FIELD, frames, size=CROP)
    np.testing.assert_array_equal(before, after)


def test_crop_is_placed_on_the_bright_stars(tmp_path: Path) -> None:
    store, raw = _raw_and_store(tmp_path, {})
    _, _, (y0, x0) = irg_panels(store, FIELD, raw, size=CROP)
    inside = [y0 <= y < y0 + CROP and x0 <= x < x0 + CROP for y, x in STARS]
    assert sum(inside) >= 3
    _, _, corner = irg_panels(store, FIELD, raw, size=CROP, corner=(5, 6))
    assert corner == (5, 6)


def test_irg_before_after_png(tmp_path: Path) -> None:
    store, raw = _raw_and_store(tmp_path, {"g": (3, -2)})
    out = irg_before_after(store, FIELD, raw, tmp_path / "figs" / "irg.png", size=CROP)
    assert out == tmp_path / "figs" / "irg.png"
    height, width = _png_shape(out)
    assert (width, height) == (1200, 660)
    left, right = np.hsplit(matplotlib.image.imread(out)[:, :1200], 2)
    assert not np.array_equal(left, right)


def test_irg_needs_the_raw_frames_and_a_done_field(tmp_path: Path) -> None:
    store, raw = _raw_and_store(tmp_path, {})
    (raw / "301" / "1" / "1" / f"frame-g-{FIELD}.fits").unlink()
    with pytest.raises(InputFileError, match="g frame of field 000001-1-0011"):
        irg_panels(store, FIELD, raw)
    with pytest.raises(StoreError, match="000001-1-0012"):
        irg_panels(store, "1-1-12", raw)


def test_catalog_overlay_png(tmp_path: Path) -> None:
    store, _ = _raw_and_store(tmp_path, {})
    out = catalog_overlay(store, FIELD, _catalog(), tmp_path / "overlay.png")
    height, width = _png_shape(out)
    assert (width, height) == (1200, 900)


def test_object_positions_png(tmp_path: Path) -> None:
    store, _ = _raw_and_store(tmp_path, {})
    out = object_positions(store, _catalog(), tmp_path / "positions.png")
    height, width = _png_shape(out)
    assert (width, height) == (1500, 450)
