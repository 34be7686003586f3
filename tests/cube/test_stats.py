"""Store statistics: exact against numpy on the same pixels, placeholders and invalid pixels ignored,
catalogue counts per field against a direct count, and the real sample's counts."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sgc.config import IngestConfig
from sgc.cube.objects import locate_objects
from sgc.cube.quantiles import PERCENTILES, ROBUST_SIGMA_PER_MAD, band_stats
from sgc.cube.stats import compute_stats, write_stats
from sgc.cube.store import CubeStore
from sgc.sdss.frames import read_frame
from sgc.sdss.names import BANDS
from tests.stores import build_store

SHAPE = (60, 80)
FIELDS = ("000001-1-0011", "000001-1-0012", "000001-1-0013", "000001-1-0014")
PIXEL_DEG = 0.396 / 3600


def tan_header(shape: tuple[int, int], ra: float = 150.0, dec: float = 2.0) -> fits.Header:
    """A TAN header like an SDSS frame's: 0.396"/pixel, reference pixel at the centre."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [shape[1] / 2, shape[0] / 2]
    wcs.wcs.cd = [[PIXEL_DEG, 0.0], [0.0, PIXEL_DEG]]
    header = wcs.to_header()
    header["NAXIS"], header["NAXIS1"], header["NAXIS2"] = 2, shape[1], shape[0]
    return header


def _synthetic_field(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sky noise rounded to produce ties, a few bright sources, and wild values on invalid pixels."""
    image = np.round(rng.normal(0.0, 0.05, size=(5, *SHAPE)), 3).astype(np.float32)
    image += rng.exponential(1.0, size=image.shape).astype(np.float32) * (rng.random(image.shape) < 0.01)
    valid = rng.random(SHAPE) > 0.2
    valid[:, :7] = False
    image[:, ~valid] = rng.choice([1e6, -1e6], size=(5, int((~valid).sum())))
    return image, valid


@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[Path, list[tuple[np.ndarray, np.ndarray]]]:
    """A store of three fields, the second a placeholder holding data (written, then marked not done),
    the fourth never written; returns it with the (image, valid) of the done ones."""
    rng = np.random.default_rng(7)
    data = {name: _synthetic_field(rng) for name in FIELDS[:3]}
    header = tan_header(SHAPE).tostring()
    path = tmp_path / "s.zarr"
    build_store(
        path,
        {name: (image, valid, header) for name, (image, valid) in data.items()},
    )
    cube = CubeStore.open(path, mode="r+")
    cube.allocate([FIELDS[3]])
    cube.mark_undone(1)
    return path, [data[FIELDS[0]], data[FIELDS[2]]]


def _expected(values: np.ndarray) -> dict[str, float]:
    x = values.astype(np.float64)
    median = np.percentile(x, 50)
    return {
        "count": x.size,
        "mean": x.mean(),
        "std": x.std(),
        "min": x.min(),
        "max": x.max(),
        "median": median,
        "mad": np.median(np.abs(x - median)),
    }


def test_band_statistics_equal_numpy_on_valid_pixels_of_done_fields(synthetic) -> None:
    path, done = synthetic
    stats = compute_stats(path)
    assert (stats["slots"], stats["done"]) == (4, 2)
    assert list(stats["fields"]) == [FIELDS[0], FIELDS[2]]
    for b, band in enumerate(BANDS):
        values = np.concatenate([image[b][valid] for image, valid in done])
        want, got = _expected(values), stats["bands"][band]
        assert got["count"] == want["count"]
        assert got["mean"] == pytest.approx(want["mean"], rel=1e-12)
        assert got["std"] == pytest.approx(want["std"], rel=1e-12)
        # Order statistics are exact: equal to numpy's to the last bit.
        assert (got["min"], got["max"], got["median"]) == (want["min"], want["max"], want["median"])
        for q in PERCENTILES:
            assert got["percentiles"][str(q)] == np.percentile(values.astype(np.float64), q)
        # The MAD is exact up to float32 rounding of the deviations.
        assert got["mad"] == pytest.approx(want["mad"], rel=1e-6)
        assert got["robust_sigma"] == pytest.approx(ROBUST_SIGMA_PER_MAD * got["mad"], rel=1e-15)
        assert abs(got["max"]) < 1e6  # the wild values on invalid pixels never count


def test_valid_fraction_per_done_field(synthetic) -> None:
    path, done = synthetic
    fields = compute_stats(path)["fields"]
    for name, (_, valid) in zip((FIELDS[0], FIELDS[2]), done, strict=True):
        assert fields[name] == {"valid_fraction": pytest.approx(valid.mean(), rel=1e-15)}


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 3), st.just(2), st.integers(1, 9), st.integers(1, 9)),
        elements=st.one_of(
            st.floats(-(2.0**100), 2.0**100, width=32),
            st.sampled_from([0.0, -0.0, 1.0, float("nan")]),
        ),
    )
)
def test_order_statistics_are_exact_on_any_floats(pixels: np.ndarray) -> None:
    # Several blocks per field, so merging partial results is exercised too; no threads for tiny tasks.
    with dask.config.set(scheduler="synchronous"):
        stats = band_stats(da.from_array(pixels, chunks=(1, 2, 4, 4)))
    for b in range(2):
        values = pixels[:, b][np.isfinite(pixels[:, b])].astype(np.float64)
        got = stats[b]
        assert got["count"] == values.size
        if values.size == 0:
            assert got["median"] is None and got["mean"] is None
            continue
        want = _expected(values)
        assert (got["min"], got["max"], got["median"]) == (want["min"], want["max"], want["median"])
        for q in PERCENTILES:
            assert got["percentiles"][str(q)] == np.percentile(values, q)
        assert got["mad"] == pytest.approx(want["mad"], rel=1e-6, abs=1e-45)


def test_a_store_without_done_fields_has_empty_statistics(tmp_path: Path) -> None:
    path = tmp_path / "empty.zarr"
    CubeStore.create(path, SHAPE, IngestConfig(chunk=32)).allocate([FIELDS[0]])
    stats = compute_stats(path)
    assert stats["done"] == 0 and stats["fields"] == {}
    assert stats["bands"]["r"]["count"] == 0 and stats["bands"]["r"]["median"] is None
    assert json.loads(write_stats(stats, tmp_path / "out").read_text()) == stats


def test_write_stats_writes_strict_json(synthetic, tmp_path: Path) -> None:
    path, _ = synthetic
    stats = compute_stats(path)
    written = write_stats(stats, tmp_path / "report")
    assert written == tmp_path / "report" / "stats.json"
    assert json.loads(written.read_text()) == stats
    assert not list((tmp_path / "report").glob("*.part"))
    assert not list((tmp_path / "report").glob(".*.tmp"))  # atomic_write's temporaries
    with pytest.raises(ValueError):
        write_stats({"mean": float("nan")}, tmp_path / "report")


def _catalog_file(path: Path, ra: np.ndarray, dec: np.ndarray, star: np.ndarray) -> Path:
    objc_type = np.where(star, 6, 3).astype(np.int16)
    Table({"RA": ra, "DEC": dec, "OBJC_TYPE": objc_type}).write(path)
    return path


def test_catalogue_counts_per_field_match_a_direct_count(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    # Two fields side by side on the sky: objects of one must not count in the other.
    headers = [tan_header(SHAPE, ra=150.0), tan_header(SHAPE, ra=150.0 + 100 * PIXEL_DEG)]
    valids = [rng.random(SHAPE) > 0.3 for _ in headers]
    fields = {
        name: (np.zeros((5, *SHAPE), np.float32), valid, header.tostring())
        for name, valid, header in zip(FIELDS[:2], valids, headers, strict=True)
    }
    path = build_store(tmp_path / "s.zarr", fields).path
    # Objects over both fields and around them, plus one on the far side of the sky.
    x = rng.uniform(-10, 190, 400)
    y = rng.uniform(-10, 70, 400)
    ra, dec = WCS(headers[0]).pixel_to_world_values(x, y)
    ra, dec = np.append(ra, 330.0), np.append(dec, -2.0)
    star = rng.random(ra.size) < 0.4
    catalog = _catalog_file(tmp_path / "catalog-x.fits", ra, dec, star)

    stats = compute_stats(path, [catalog])
    assert stats["catalog"] == {
        "paths": [str(catalog)],
        "stars": int(star.sum()),
        "galaxies": int((~star).sum()),
    }
    table = Table({"ra": ra, "dec": dec, "class": np.where(star, "star", "galaxy")})
    located = locate_objects(CubeStore.open(path), table)
    for name, valid, header in zip(FIELDS[:2], valids, headers, strict=True):
        px, py = WCS(header).world_to_pixel_values(ra, dec)
        # The far-side object does not project (NaN): off the grid.
        px, py = np.nan_to_num(px, nan=-1.0), np.nan_to_num(py, nan=-1.0)
        ix, iy = np.floor(px + 0.5).astype(int), np.floor(py + 0.5).astype(int)
        on_grid = (ix >= 0) & (ix < SHAPE[1]) & (iy >= 0) & (iy < SHAPE[0])
        inside = on_grid.copy()
        inside[on_grid] = valid[iy[on_grid], ix[on_grid]]
        want = {"stars": int((inside & star).sum()), "galaxies": int((inside & ~star).sum())}
        assert {k: stats["fields"][name][k] for k in want} == want
        assert want["stars"] > 10 and want["galaxies"] > 10
        mine = located[located["field"] == name]
        assert sorted(zip(mine["x"], mine["y"], strict=True)) == sorted(
            zip(ix[inside], iy[inside], strict=True)
        )
    second = locate_objects(CubeStore.open(path), table, ["1-1-12"])
    assert set(second["field"]) == {FIELDS[1]} and len(second) == (located["field"] == FIELDS[1]).sum()


def _real_store(path: Path, sample: Path, reference: str) -> Path:
    """The real sample field, its five frames written unaligned onto the ``reference`` band's grid."""
    frames = {b: read_frame(sample / f"frame-{b}-003918-3-0213.fits.bz2") for b in BANDS}
    image = np.stack([frames[b].image for b in BANDS])
    valid = np.isfinite(image).all(axis=0)
    header = frames[reference].header.tostring()
    return build_store(path, {"003918-3-0213": (image, valid, header)}, chunk=256).path


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.parametrize(("reference", "stars"), [("r", 138), ("i", 137)])
def test_real_sample_counts(tmp_path: Path, sdss_dir: Path, reference: str, stars: int) -> None:
    # The catalogue's 138 stars and 181 galaxies all lie on the r frame (its ROWC_R are 0-742.9). On the
    # i grid the star at r row 742.9 lands on row 746.3, beyond the 745 rows the sample keeps.
    sample = sdss_dir / "003918-3-0213"
    path = _real_store(tmp_path / "real.zarr", sample, reference)
    stats = compute_stats(path, [sample / "catalog-003918-3-0213.fits"])
    assert stats["catalog"]["stars"] == 138 and stats["catalog"]["galaxies"] == 181
    assert stats["fields"]["003918-3-0213"] == {"valid_fraction": 1.0, "stars": stars, "galaxies": 181}
    r = read_frame(sample / "frame-r-003918-3-0213.fits.bz2").image.astype(np.float64)
    got = stats["bands"]["r"]
    assert got["count"] == r.size and got["median"] == np.percentile(r, 50)
    assert got["mad"] == pytest.approx(np.median(np.abs(r - np.percentile(r, 50))), rel=1e-6)
