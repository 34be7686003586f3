"""Differential chromatic refraction and optical distortion in the simulator: off by default, and when on,
they move each star in the rendered frames by what their models say."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgc.cube.centroid import windowed_centroids
from sgc.sdss.names import BANDS
from sgc.sim.refraction import (
    TYPICAL_STAR_COLOURS,
    Distortion,
    Refraction,
    air_refractivity,
    colours_to_flux,
)
from sgc.sim.simulate import SimRun, _wcs, render_field
from sgc.sim.sources import _LOCUS
from tests.sim.measure import SEED

SMALL = (700, 1024)


def _bright_isolated_stars(sim_run: SimRun, band: str, image: np.ndarray, wcs) -> tuple[np.ndarray, ...]:
    """Stars of the field bright in ``band`` (S/N > 100) with no other source within 12 px: index, x, y."""
    sources = sim_run.sources_near(11)
    x, y = wcs.wcs_world2pix(sources.ra, sources.dec, 0)
    k = BANDS.index(band)
    rows, cols = sim_run.shape
    inside = (x > 20) & (x < cols - 20) & (y > 20) & (y < rows - 20)
    distance = np.hypot(x[:, None] - x[None], y[:, None] - y[None]) + np.eye(x.size) * 1e9
    alone = distance.min(axis=1) > 12
    candidates = np.flatnonzero(sources.is_star & inside & alone & (sources.flux[:, k] > 0))
    found = windowed_centroids(image, x[candidates], y[candidates])
    bright = found.flux > 100 * found.flux_err
    return candidates[bright], x[candidates[bright]], y[candidates[bright]]


def test_refractivity_falls_with_wavelength_and_pressure() -> None:
    wavelength = np.array([3500.0, 4700.0, 6200.0, 7500.0, 9000.0])
    n = air_refractivity(wavelength, 730.0, 5.0)
    assert np.all(np.diff(n) < 0)
    assert 1.9e-4 < n[1] < 2.2e-4  # 2.79e-4 at sea level, times 730 / 1013 hPa and 288 / 278 K
    assert np.all(air_refractivity(wavelength, 600.0, 5.0) < n)


def test_no_refraction_at_the_zenith_and_none_for_the_typical_star() -> None:
    flux = colours_to_flux(_LOCUS)
    np.testing.assert_array_equal(Refraction(airmass=1.0).shift(flux), 0.0)
    np.testing.assert_allclose(Refraction(airmass=1.5).shift(colours_to_flux(TYPICAL_STAR_COLOURS)), 0.0)


def test_bluer_stars_rise_further_and_g_spreads_more_than_r_i_z() -> None:
    shift = Refraction(airmass=1.8).shift(colours_to_flux(_LOCUS))  # locus from hot to M dwarfs
    relative = shift - shift[:, [3]]  # against i, the reference band
    # g: the redder the star, the less it rises (to the early M dwarfs; the latest move with i too).
    assert np.all(np.diff(relative[:4, 1]) < 0) and relative[-1, 1] < relative[2, 1]
    spread = relative.max(axis=0) - relative.min(axis=0)
    # g spreads 0.1-0.2 px over the locus at airmass 1.8, more than u (narrow band), r and z.
    assert 0.1 < spread[1] < 0.2
    assert spread[1] > spread[0] and spread[1] > 2 * spread[2] and spread[1] > 2 * spread[4]


@settings(max_examples=20, deadline=None)
@given(airmass=st.floats(1.01, 3.0), angle=st.floats(-np.pi, np.pi))
def test_refraction_scales_with_tan_z_along_the_zenith(airmass: float, angle: float) -> None:
    flux = colours_to_flux(_LOCUS)
    base = Refraction(airmass=2.0).shift(flux)
    refraction = Refraction(airmass=airmass, angle=angle)
    np.testing.assert_allclose(refraction.shift(flux), base * refraction.tan_z / np.sqrt(3.0), atol=1e-12)
    dx, dy = refraction.offsets(flux, "g")
    np.testing.assert_allclose(np.hypot(dx, dy), np.abs(refraction.shift(flux)[:, 1]), atol=1e-12)
    np.testing.assert_allclose(dx * np.sin(angle) - dy * np.cos(angle), 0.0, atol=1e-12)


def test_refraction_rejects_an_airmass_below_one() -> None:
    with pytest.raises(ValueError, match="airmass"):
        Refraction(airmass=0.9)


@pytest.mark.parametrize("column_rms, row_rms", [(0.05, 0.0), (0.1, 0.03)])
def test_distortion_has_the_rms_asked_and_no_linear_part(column_rms: float, row_rms: float) -> None:
    distortion = Distortion(column_rms=column_rms, row_rms=row_rms, seed=3)
    ys, xs = np.mgrid[0:1489:8, 0:2048:8].astype(float)
    for band in BANDS:
        dx, dy = distortion.offsets(band, xs.ravel(), ys.ravel(), (1489, 2048))
        for moved in (dx, dy):
            assert np.sqrt(np.mean(moved**2)) == pytest.approx(np.hypot(column_rms, row_rms), rel=0.05)
            # Legendre P2, P3: nothing an affine (the TAN WCS) can take up.
            design = np.stack([np.ones(xs.size), xs.ravel(), ys.ravel()], axis=1)
            linear = design @ np.linalg.lstsq(design, moved, rcond=None)[0]
            assert np.sqrt(np.mean(linear**2)) < 0.05 * np.hypot(column_rms, row_rms)
    assert not np.allclose(distortion.coefficients("g"), distortion.coefficients("i"))


def test_options_are_off_by_default() -> None:
    plain, explicit = SimRun(seed=SEED, shape=SMALL), SimRun(seed=SEED, shape=SMALL, refraction=None)
    assert plain == explicit and plain.refraction is None and plain.distortion is None


@pytest.fixture(scope="module")
def plain_field() -> dict:
    return render_field(SimRun(seed=SEED, shape=SMALL), 11)


def test_rendered_stars_move_by_their_refraction(plain_field: dict) -> None:
    refraction = Refraction(airmass=2.5, angle=0.4)
    sim_run = SimRun(seed=SEED, shape=SMALL, refraction=refraction)
    moved_field = render_field(sim_run, 11)
    for band in ("g", "r"):
        plain, moved = plain_field[band][0].data, moved_field[band][0].data
        wcs = _wcs(plain_field[band][0].header)
        index, x, y = _bright_isolated_stars(sim_run, band, plain, wcs)
        assert index.size >= 4
        before, after = windowed_centroids(plain, x, y), windowed_centroids(moved, x, y)
        expected_x, expected_y = refraction.offsets(sim_run.sources_near(11).flux[index], band)
        # The same noise in both renders: what moved is the refraction alone.
        np.testing.assert_allclose(after.x - before.x, expected_x, atol=0.015)
        np.testing.assert_allclose(after.y - before.y, expected_y, atol=0.015)
        if band == "g":
            assert np.ptp(expected_x) > 0.05  # a real spread of colours was tested, not one shift
    assert moved_field["g"][3].data["AIRMASS"][0] == 2.5


def test_rendered_stars_move_by_the_distortion(plain_field: dict) -> None:
    distortion = Distortion(column_rms=0.3, row_rms=0.1, seed=2)
    sim_run = SimRun(seed=SEED, shape=SMALL, distortion=distortion)
    moved_field = render_field(sim_run, 11)
    plain, moved = plain_field["g"][0].data, moved_field["g"][0].data
    index, x, y = _bright_isolated_stars(sim_run, "g", plain, _wcs(plain_field["g"][0].header))
    assert index.size >= 4
    before, after = windowed_centroids(plain, x, y), windowed_centroids(moved, x, y)
    expected_x, expected_y = distortion.offsets("g", x, y, SMALL)
    np.testing.assert_allclose(after.x - before.x, expected_x, atol=0.015)
    np.testing.assert_allclose(after.y - before.y, expected_y, atol=0.015)
