"""Differential chromatic refraction (DCR) and optical distortion: what moves a star off its WCS position.

The atmosphere lifts every star towards the zenith by ``R = (n(lambda) - 1) tan z``; the WCS of a frame is
calibrated on stars of typical colour, so what is left is the *differential* part: within a band, a bluer
star has a shorter mean wavelength, is lifted more, and lands towards the zenith of a redder one. The
mean refraction of a star in a band is the photon-weighted mean of ``R(lambda)`` over the band's response
and the star's spectrum. Here the spectrum is the power law through the star's own five band fluxes
(``f_nu`` interpolated in log-log between band centres), the response a smooth top hat with the SDSS
bands' effective wavelengths and widths, and ``n(lambda)`` Edlen's (1966) formula scaled to Apache Point
(2788 m: 730 hPa, 5 C). At airmass 1.25 this gives g-band offsets of 0.07 px between the bluest and
reddest stars of the stellar locus against i (u: 0.4 px), the size the real sample field 003918-3-0213
(airmass 1.25, computed from its header's TAI and boresight) shows in its g and u residuals.

SDSS scans in drift mode, so the direction of the zenith on a frame is fixed by the hour angle and the
stripe: :class:`Refraction` takes it as an angle in pixel coordinates.

Optical distortion in drift scan: a star crosses the whole CCD along its columns during the exposure, so
the camera's distortion averages into a function of the column alone (SDSS's asTrans holds a cubic in
the column for each CCD). The frames' TAN WCS is linear and cannot follow it; :class:`Distortion` adds,
per band, the part no linear map holds (Legendre P2 and P3 of the column, and optionally of the row, for
what a single TAN over a whole frame misses along the scan), with a given rms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sgc.sdss.names import BANDS, PIXEL_SCALE_ARCSEC

# Effective wavelength and width (Angstrom) of the SDSS bands (camera + 1.3 airmasses), and the width
# of their edges.
BAND_CENTRE = np.array([3551.0, 4686.0, 6166.0, 7480.0, 8932.0])
BAND_WIDTH = np.array([600.0, 1270.0, 1150.0, 1240.0, 940.0])
_EDGE = 60.0
APO_PRESSURE_HPA = 730.0
APO_TEMPERATURE_C = 5.0
# A star at the middle of the stellar locus (u-g 1.9, g-r 0.95, r-i 0.35, i-z 0.18): what the WCS is tied to.
TYPICAL_STAR_COLOURS = np.array([1.90, 0.95, 0.35, 0.18])
_GRID = np.linspace(2800.0, 11000.0, 821)  # Angstrom, 10 A steps


def air_refractivity(wavelength: np.ndarray, pressure_hpa: float, temperature_c: float) -> np.ndarray:
    """``n - 1`` of dry air (Edlen 1966), scaled from standard air to the given pressure and temperature."""
    sigma2 = (1e4 / np.asarray(wavelength, float)) ** 2  # inverse micrometres, squared
    standard = 1e-8 * (8342.13 + 2406030.0 / (130.0 - sigma2) + 15997.0 / (38.9 - sigma2))
    pressure = 100.0 * pressure_hpa
    scale = pressure * (1 + pressure * (0.817 - 0.0133 * temperature_c) * 1e-8)
    return standard * scale / (96095.43 * (1 + 0.003661 * temperature_c))


def band_response(band_index: int, wavelength: np.ndarray) -> np.ndarray:
    """A smooth top hat with the band's centre and width (peak 1)."""
    half = BAND_WIDTH[band_index] / 2
    offset = np.abs(np.asarray(wavelength, float) - BAND_CENTRE[band_index])
    return 1.0 / (1.0 + np.exp((offset - half) / (_EDGE / 4)))


def colours_to_flux(colours: np.ndarray) -> np.ndarray:
    """Five band fluxes (r = 1) of stars with colours ``(u-g, g-r, r-i, i-z)``, shape ``(n, 4) -> (n, 5)``."""
    colours = np.atleast_2d(colours)
    mags = np.zeros((colours.shape[0], 5))
    mags[:, 1] = colours[:, 1]
    mags[:, 0] = mags[:, 1] + colours[:, 0]
    mags[:, 3] = -colours[:, 2]
    mags[:, 4] = mags[:, 3] - colours[:, 3]
    return 10 ** (-0.4 * mags)


def mean_refractivity(flux: np.ndarray, pressure_hpa: float, temperature_c: float) -> np.ndarray:
    """Photon-weighted mean ``n - 1`` in each band for sources with band fluxes ``flux`` ``(n, 5)``.

    The spectrum is the power law through the five fluxes (``f_nu``, log-log between band centres,
    extrapolated flat in log beyond the ends); photons per Angstrom go as ``f_nu / lambda``.

    Returns:
        ``(n, 5)`` refractivities.
    """
    flux = np.atleast_2d(np.asarray(flux, float))
    log_flux = np.log(np.clip(flux, 1e-30, None))
    log_centre = np.log(BAND_CENTRE)
    log_grid = np.log(_GRID)
    # Interpolate log f_nu along log lambda for every source at once.
    position = np.clip(np.searchsorted(log_centre, log_grid) - 1, 0, 3)
    t = np.clip((log_grid - log_centre[position]) / (log_centre[position + 1] - log_centre[position]), 0, 1)
    spectrum = np.exp(log_flux[:, position] * (1 - t) + log_flux[:, position + 1] * t) / _GRID
    refractivity = air_refractivity(_GRID, pressure_hpa, temperature_c)
    out = np.empty((flux.shape[0], 5))
    for k in range(5):
        weight = spectrum * band_response(k, _GRID)
        out[:, k] = (weight @ refractivity) / weight.sum(axis=1)
    return out


@dataclass(frozen=True)
class Refraction:
    """Differential chromatic refraction of a frame: each source moved towards the zenith by its colour.

    Attributes:
        airmass: the frame's airmass (``sec z``); 1 means none.
        angle: direction of the zenith on the frame, radians from the +column axis towards +row.
        pressure_hpa, temperature_c: the air's pressure and temperature.
    """

    airmass: float = 1.25
    angle: float = 0.0
    pressure_hpa: float = APO_PRESSURE_HPA
    temperature_c: float = APO_TEMPERATURE_C

    def __post_init__(self) -> None:
        if not 1.0 <= self.airmass < 5.0:
            raise ValueError(f"airmass must be in [1, 5), got {self.airmass}")

    @property
    def tan_z(self) -> float:
        """Tangent of the zenith distance."""
        return float(np.sqrt(self.airmass**2 - 1.0))

    def shift(self, flux: np.ndarray) -> np.ndarray:
        """Pixels towards the zenith of each source in each band, relative to a typical star.

        Args:
            flux: ``(n, 5)`` band fluxes u, g, r, i, z (any positive scale; only their ratios matter).

        Returns:
            ``(n, 5)`` shifts in pixels.
        """
        mean = mean_refractivity(flux, self.pressure_hpa, self.temperature_c)
        typical_flux = colours_to_flux(TYPICAL_STAR_COLOURS)
        typical = mean_refractivity(typical_flux, self.pressure_hpa, self.temperature_c)
        return (mean - typical) * self.tan_z * np.degrees(1.0) * 3600.0 / PIXEL_SCALE_ARCSEC

    def offsets(self, flux: np.ndarray, band: str) -> tuple[np.ndarray, np.ndarray]:
        """``(dx, dy)`` pixels by which each source lands off its WCS position in ``band``."""
        shift = self.shift(flux)[:, BANDS.index(band)]
        return shift * np.cos(self.angle), shift * np.sin(self.angle)


@dataclass(frozen=True)
class Distortion:
    """Smooth per-band displacements that a frame's linear (TAN) WCS does not hold.

    Each band gets its own random combination of Legendre P2 and P3 of the normalised column (the drift
    scan's distortion) and, with ``row_rms`` > 0, of the normalised frame row (not continuous across
    the rows two fields share: a test of what a single TAN misses along the scan), scaled so that the
    displacement's rms over the frame (per axis, each term's share drawn at random) is ``column_rms`` and
    ``row_rms``.

    Attributes:
        column_rms: rms (px) of the column-dependent part, per axis.
        row_rms: rms (px) of the row-dependent part, per axis.
        seed: the draw of each band's coefficients.
    """

    column_rms: float = 0.05
    row_rms: float = 0.0
    seed: int = 0

    def coefficients(self, band: str) -> np.ndarray:
        """Amplitudes (px) of P2 and P3, shape ``(axis, variable, term)``: dx, dy; column, row; P2, P3."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 11, BANDS.index(band)]))
        raw = rng.normal(size=(2, 2, 2))
        # rms over u in [-1, 1] of a P2 + b P3 is sqrt(a^2 / 5 + b^2 / 7)
        norm = np.sqrt(raw[:, :, 0] ** 2 / 5 + raw[:, :, 1] ** 2 / 7)
        scale = np.array([self.column_rms, self.row_rms])[None, :, None]
        return raw / norm[:, :, None] * scale

    def offsets(
        self, band: str, x: np.ndarray, y: np.ndarray, shape: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(dx, dy)`` pixels at frame positions ``(x, y)`` of a frame of ``shape`` ``(rows, cols)``."""
        coef = self.coefficients(band)
        u = 2 * np.asarray(x, float) / (shape[1] - 1) - 1
        v = 2 * np.asarray(y, float) / (shape[0] - 1) - 1
        basis = np.stack([_legendre23(u), _legendre23(v)])  # (variable, term, n)
        moved = np.einsum("avt,vtn->an", coef, basis)
        return moved[0], moved[1]


def _legendre23(u: np.ndarray) -> np.ndarray:
    return np.stack([(3 * u**2 - 1) / 2, (5 * u**3 - 3 * u) / 2])
