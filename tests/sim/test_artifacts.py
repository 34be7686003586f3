"""Simulated detector artefacts and what photo leaves behind: saturation and bleed trails, cosmic rays, the
residual sky, and bright stars at the real rate.

Unit tests use small frames or no frames at all; those on the two full-size fields (``conftest.py``) are
marked slow, and those that compare with the real sample (``shared/sdss``) real.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from sgc.sdss.catalogs import read_catalogs
from sgc.sdss.frames import Frame, frame_wcs
from sgc.sdss.names import BANDS, FieldId
from sgc.sdss.names import PIXEL_SCALE_ARCSEC as PIXEL_SCALE
from sgc.sim.render import (
    MAX_BLEED_ROWS,
    MAX_STAMP_RADIUS,
    NMGY,
    PSF_WEIGHTS,
    SATURATION_COUNTS,
    SKY_SIGMA,
    bleed_trails,
    cosmic_rays,
    psf_sigmas,
    run_conditions,
    saturation_level,
)
from sgc.sim.simulate import SimRun, frame_cosmic_rays, render_field, write_calibobj
from sgc.sim.sources import Sources, draw_segment, segment_rng
from tests.sim.measure import SEED, isolated, residual_sky_ptp, sharp_peaks, sky_sigma

SMALL = (300, 512)
COMPRESSION = 2.0**-9  # frames keep 10 significant bits: a stored value is within 2^-10 of the true one
# A run, a field, its bright star, and the field's and the next field's frames by band.
SaturatedStar = tuple[SimRun, int, Sources, dict[str, fits.HDUList], dict[str, fits.HDUList]]


def _r_mag(sources: Sources) -> np.ndarray:
    return 22.5 - 2.5 * np.log10(sources.flux[:, 2])


def _bright_star(sim_run: SimRun, max_mag: float, rows: tuple[float, float]) -> tuple[int, Sources]:
    """The first field from 11 whose own sources hold a star brighter than ``max_mag`` in r, its r row in
    ``rows`` of the field's frame and at least 40 pixels from the columns' ends; and that star."""
    geometry = sim_run.geometry
    for field in range(11, 3000):
        sources = draw_segment(geometry, segment_rng(sim_run.seed, sim_run.run, sim_run.camcol, field), field)
        wanted = (
            sources.is_star
            & (_r_mag(sources) < max_mag)
            & (sources.row >= rows[0])
            & (sources.row < rows[1])
            & (sources.col > 40)
            & (sources.col < sim_run.shape[1] - 40)
        )
        if np.any(wanted):
            return field, sources.take(np.flatnonzero(wanted)[:1])
    raise AssertionError("no bright star in 3000 fields")


@pytest.fixture(scope="module")
def saturated_star() -> SaturatedStar:
    """A small run's first field holding an r < 11.5 star in rows whose trail reaches the rows the next
    field shares (from ``step``), not the frame's end; both fields rendered."""
    sim_run = SimRun(seed=SEED, shape=SMALL)
    step = sim_run.geometry.step
    field, star = _bright_star(sim_run, 11.5, (step - 22, step + 28))
    return sim_run, field, star, render_field(sim_run, field), render_field(sim_run, field + 1)


def _saturated(sim_run: SimRun, field: int, band: str, hdul: fits.HDUList) -> tuple[np.ndarray, np.ndarray]:
    """A frame's saturation level (nanomaggies, per pixel) and where its pixels sit at it."""
    scan_rows = field * sim_run.geometry.step + np.arange(sim_run.shape[0])
    level = saturation_level(sim_run.conditions.sky_counts(band, scan_rows), hdul[1].data)
    return level, np.abs(hdul[0].data - level) <= COMPRESSION * level


def _pixel(hdul: fits.HDUList, star: Sources) -> tuple[float, float]:
    x, y = frame_wcs(hdul[0].header).world_to_pixel_values(star.ra[0], star.dec[0])
    return float(x), float(y)


# --- saturation and bleed trails ---------------------------------------------------------------------


def test_saturated_pixels_stop_at_each_band_level(saturated_star: SaturatedStar) -> None:
    """(55000 DN - sky) * calibration: about 565, 211, 271, 375 and 1914 nanomaggies in u, g, r, i, z."""
    sim_run, field, star, frames, _ = saturated_star
    for band, hdul in frames.items():
        level, at_level = _saturated(sim_run, field, band, hdul)
        assert np.all(hdul[0].data <= level * (1 + COMPRESSION)), band
        if band in "gri":  # the star (r < 11.5) saturates there whatever its colour
            x, y = _pixel(hdul, star)
            assert at_level[round(y), round(x)], band
            assert np.count_nonzero(at_level) >= 20, band


def test_bleed_trail_runs_along_the_scan(saturated_star: SaturatedStar) -> None:
    """Charge bleeds along the CCD columns, which a drift scan clocks along the scan: the frame's rows."""
    sim_run, field, star, frames, _ = saturated_star
    hdul = frames["r"]
    _, at_level = _saturated(sim_run, field, "r", hdul)
    x, y = _pixel(hdul, star)
    labels, _ = ndimage.label(at_level)
    rows, cols = np.nonzero(labels == labels[round(y), round(x)])
    height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
    assert height >= 4 * width and height >= 25
    assert rows.min() < y - 10 and rows.max() > y + 10  # both ways along the column
    assert abs((y - rows.min()) - (rows.max() - y)) <= 3
    assert abs(np.mean(cols) - x) < 1.0


def test_shared_rows_hold_the_same_trail(saturated_star: SaturatedStar) -> None:
    sim_run, field, _, frames, following = saturated_star
    step = sim_run.geometry.step
    for band in BANDS:
        _, first = _saturated(sim_run, field, band, frames[band])
        _, second = _saturated(sim_run, field + 1, band, following[band])
        assert np.array_equal(first[step:], second[: sim_run.shape[0] - step]), band
        if band == "r":
            assert np.count_nonzero(first[step:]) >= 5  # the trail does cross into the shared rows
        same = frames[band][0].data[step:] == following[band][0].data[: sim_run.shape[0] - step]
        assert np.mean(same) > 0.99, band


def test_saturated_star_stays_a_catalogued_star(saturated_star: SaturatedStar, tmp_path: Path) -> None:
    sim_run, field, star, _, _ = saturated_star
    paths = write_calibobj(tmp_path, sim_run, [field])
    catalog = read_catalogs(paths)
    match = np.flatnonzero(np.isclose(catalog["ra"], star.ra[0], rtol=0, atol=1e-10))
    assert match.size == 1
    row = catalog[match[0]]
    assert row["class"] == "star" and row["dec"] == pytest.approx(star.dec[0], abs=1e-10)
    assert row["colc_r"] == pytest.approx(star.col[0], abs=0.02)
    assert row["rowc_r"] == pytest.approx(star.row[0], abs=0.02)


def _star_counts(
    x: float, y: float, flux: float, fwhm: float, col: int, rows: np.ndarray, cal: float
) -> np.ndarray:
    """A star's counts along one column: the PSF mixture, pixel-integrated as a Gaussian of a pixel's box."""
    var = (psf_sigmas(np.array(fwhm)) / PIXEL_SCALE) ** 2 + 1.0 / 12.0
    d2 = (col - x) ** 2 + (rows - y) ** 2
    return (
        sum(w * flux / (2 * np.pi * v) * np.exp(-d2 / (2 * v)) for w, v in zip(PSF_WEIGHTS, var, strict=True))
        / cal
    )


def test_bleed_trail_conserves_the_excess_charge() -> None:
    cal, sky, x, y, fwhm = 0.005, 100.0, 31.3, 400.6, 1.2
    calibration = np.full(64, cal)
    lengths = []
    for flux in (2e4, 8e4):  # r ~ 11.7 and 10.2
        charge = bleed_trails(
            np.array([x]), np.array([y]), np.array([flux]), np.array([fwhm]), np.array([sky]), calibration
        )
        assert np.all(np.abs(charge.col - x) < 10)
        column = charge.col == 31
        rows = charge.row[column]
        counts = _star_counts(x, y, flux, fwhm, 31, np.arange(800), cal) + sky
        core = counts > SATURATION_COUNTS
        excess = np.sum(counts[core] - SATURATION_COUNTS)
        full = rows[np.isinf(charge.counts[column])]
        assert set(np.flatnonzero(core)) <= set(full)
        filled = np.sum(SATURATION_COUNTS - counts[np.setdiff1d(full, np.flatnonzero(core))])
        partial = np.sum(charge.counts[column][np.isfinite(charge.counts[column])])
        assert filled + partial == pytest.approx(excess, rel=1e-9)
        assert abs((y - full.min()) - (full.max() - y)) <= 2  # half up, half down
        lengths.append(np.ptp(full) + 1)
    assert lengths[1] > 2.5 * lengths[0]  # four times the flux: the excess, and the trail, grow ~4-fold
    # the longest trail and its core stay within the rows whose sources a frame draws (SimRun.sources_near)
    assert MAX_BLEED_ROWS + 30 < MAX_STAMP_RADIUS


# --- cosmic rays -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cosmic_rays_sharp_uncatalogued_and_per_band(
    full_sim: tuple[Path, list[FieldId]], full_frames: list[dict[str, Frame]], full_catalog: Table
) -> None:
    sim_run = SimRun(seed=SEED)
    values, near_objects = [], 0
    for field, frames in zip(full_sim[1], full_frames, strict=True):
        positions = []
        for k, band in enumerate(BANDS):
            frame = frames[band]
            hits = frame_cosmic_rays(sim_run, field.field, k)
            # each hit's first pixel, and some others: peaks are in units of the band's usual sky noise
            brightest = hits.counts >= 5 * SKY_SIGMA[k] / NMGY[k] - 1e-6
            row, col = hits.row[brightest], hits.col[brightest]
            values.append(frame.image[row, col] / frame.header["SGCSKYSG"])
            x, y = frame.wcs.world_to_pixel_values(full_catalog["ra"], full_catalog["dec"])
            points = np.stack([row, col], axis=1)
            near_objects += len(points) - len(isolated(points, x, y, 1.5))
            positions.append({(int(r), int(c)) for r, c in zip(hits.row, hits.col, strict=True)})
        # each band has its own hits: bands see the sky minutes apart
        for a in range(len(BANDS)):
            for b in range(a):
                assert not positions[a] & positions[b]
    values = np.concatenate(values)
    # 4 hits a band per 1361 rows: 44 in 2 fields x 5 bands of 1489 rows, and ~10 second pixels above 5 sigma
    assert 30 <= values.size <= 90
    # present: 5-50 sigma of charge stands out of the noise (u's few electrons a count make it noisy)
    assert np.mean(values > 3) >= 0.9 and values.min() > 2
    # not catalogued: the catalogue lists no object on them (one may fall near one by chance)
    assert near_objects <= 1


def test_cosmic_ray_shapes_and_peaks() -> None:
    """1-3 pixel hits, peaks from 5 sky sigma with N(>A) ~ A^-3, 4 per 1361 rows; a seed gives the same."""
    sigma_counts = SKY_SIGMA[2] / NMGY[2]  # r
    rows = 100 * 1361
    hits = cosmic_rays(np.random.default_rng(1), rows, 2048, sigma_counts)
    points = np.stack([hits.row, hits.col], axis=1)
    pairs = cKDTree(points).query_pairs(1.5, output_type="ndarray")  # 8-connected neighbours
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(points), len(points)))
    n_hits, label = connected_components(graph, directed=False)
    sizes = np.bincount(label)
    assert np.all(sizes <= 6)  # 3 at most a hit; two may touch now and then
    assert np.mean(sizes == 1) == pytest.approx(0.5, abs=0.1)
    peaks = np.zeros(n_hits)
    np.maximum.at(peaks, label, hits.counts / sigma_counts)
    assert n_hits == pytest.approx(400, rel=0.15)
    assert peaks.min() >= 5.0 - 1e-9 and peaks.max() <= 50.0
    assert np.mean(peaks > 9.0) == pytest.approx((5.0 / 9.0) ** 3, abs=0.06)
    sim_run = SimRun(seed=SEED)
    first, again = frame_cosmic_rays(sim_run, 11, 2), frame_cosmic_rays(sim_run, 11, 2)
    assert np.array_equal(again.row, first.row) and np.array_equal(again.counts, first.counts)


@pytest.mark.slow
@pytest.mark.real
def test_sharp_peaks_like_the_real(
    real_sample: tuple[dict[str, Frame], Table], full_frames: list[dict[str, Frame]], full_catalog: Table
) -> None:
    """Sharp isolated peaks (cosmic rays photo missed, and noise): 16 in the real sample's 5 x 745 rows.

    The simulated fields show 12-16 in their first 745 rows, ~6 without cosmic rays.
    """

    def count(frames: dict[str, Frame], catalog: Table) -> int:
        total = 0
        for band in BANDS:
            image = frames[band].image[:745]
            x, y = frames[band].wcs.world_to_pixel_values(catalog["ra"], catalog["dec"])
            total += len(isolated(sharp_peaks(image, sky_sigma(image)), x, y, 10))
        return total

    real = count(*real_sample)
    assert 10 <= real <= 25
    for frames in full_frames:
        assert 0.5 * real <= count(frames, full_catalog) <= 2 * real


# --- the residual sky --------------------------------------------------------------------------------


def test_sky_residual_amplitude_and_per_band() -> None:
    """A smooth residual of a few hundredths of the sky noise across a frame, each band its own."""
    scan_rows = 11 * 1361 + np.arange(0, 1489, 16)
    cols = np.arange(0, 2048, 16)
    ptp = []
    for seed in range(40):
        conditions = run_conditions(seed, 9001, 3)
        maps = [conditions.sky_residual_map(band, scan_rows, cols) for band in BANDS]
        ptp += [float(np.ptp(m)) for m in maps]
        for a in range(len(BANDS)):
            for b in range(a):
                assert not np.allclose(maps[a], maps[b])
    ptp = np.array(ptp)
    # the real sample's five bands: 0.035-0.072 sky sigma over half a frame (see the next test)
    assert ptp.max() < 0.25 and 0.04 < np.median(ptp) < 0.12 and ptp.min() > 0.005


@pytest.mark.slow
@pytest.mark.real
def test_sky_residual_like_the_real(
    real_sample: tuple[dict[str, Frame], Table], full_frames: list[dict[str, Frame]]
) -> None:
    """The low-order sky left in a frame, measured alike on the real sample and the first 745 rows of the
    simulated frames: real 0.035, 0.046, 0.044, 0.072, 0.038 sky sigma (u..z), simulated 0.03-0.10."""
    real = [residual_sky_ptp(real_sample[0][band].image) for band in BANDS]
    sim = [residual_sky_ptp(frames[band].image[:745]) for frames in full_frames for band in BANDS]
    assert max(real) < 0.1
    assert max(sim) < 0.25
    assert 0.5 < np.median(sim) / np.median(real) < 2.0


# --- bright stars ------------------------------------------------------------------------------------


@pytest.mark.real
def test_bright_stars_at_the_real_rate(sdss_dir: Path) -> None:
    """Stars bright enough to saturate (r < 14) as often as in the real calibObj sweep: 8 in its 3 fields
    (4 brighter than 13); the simulated counts reach r ~ 9."""
    real = fits.getdata(sdss_dir / "calibObj" / "calibObj-004510-4-star-fields29-31.fits")
    real_r = 22.5 - 2.5 * np.log10(np.clip(real["PSFFLUX"][:, 2], 1e-3, None))
    sim_run = SimRun(seed=SEED)
    geometry = sim_run.geometry
    fields = range(
        11, 111
    )  # a segment holds one field's primary rows: 1361 x 2048 pixels, as each real field
    mags = []
    for field in fields:
        sources = draw_segment(geometry, segment_rng(SEED, sim_run.run, sim_run.camcol, field), field)
        inside = sources.is_star & (sources.col >= 0) & (sources.col < geometry.shape[1])
        mags.append(_r_mag(sources)[inside])
    sim_r = np.concatenate(mags)
    for limit in (13.0, 14.0):
        per_field_real = np.count_nonzero(real_r < limit) / 3
        per_field_sim = np.count_nonzero(sim_r < limit) / len(fields)
        assert 0.5 < per_field_sim / per_field_real < 2.0, limit
    assert sim_r.min() < 10.5
