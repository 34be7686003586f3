"""Observing conditions and rendering: the PSF, sky and noise of a frame, and its sources drawn in pixels.

Reference values are measured on the real sample field 003918-3-0213 (``shared/sdss``): the sky level
(HDU2 ALLSKY, counts), the sky noise (clipped MAD of HDU0, nanomaggies) and the calibration (NMGY) per band.
Seeing differs per run and drifts slowly along it, about 1.0-1.8 arcsec FWHM in r, broader in the blue as
(wavelength)^-0.2. The PSF is SDSS's usual shape, a core Gaussian, a second one 2.2 times wider and a faint
wide wing (weights 0.70, 0.25, 0.05), fitted to the stacked profile of the sample's isolated r-band stars.

Conditions are smooth functions of the row along the scan, not of the field: SDSS cuts its fields from one
continuous drift scan, so the 128 rows two fields share are the same pixels. Here too a source looks the
same in both frames (its PSF is the seeing at its row), and the noise comes in blocks of scan rows, so the
overlap's pixels agree between the frames up to the sub-millipixel difference of their TAN WCS.

Every source is a sum of elliptical Gaussians (its profile's components convolved with the PSF's), drawn
into a postage stamp just large enough for its light to fall below 1% of the sky noise, by a serial numba
kernel that releases the GIL so several frames can render at once in threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from astropy.wcs import WCS

from sgc.sdss.names import BANDS, PIXEL_SCALE_ARCSEC
from sgc.sim.sources import Sources, galaxy_components

# Measured on the sample field 003918-3-0213.
SKY_COUNTS = np.array([16.0, 54.2, 97.0, 130.1, 70.3])  # u..z, HDU2 ALLSKY median, counts/pixel
SKY_SIGMA = np.array([0.0426, 0.0164, 0.0232, 0.0380, 0.164])  # nanomaggies/pixel
NMGY = np.array([0.00971, 0.00378, 0.00511, 0.00679, 0.0362])  # nanomaggies per count
# Typical SDSS camera gains (electrons per count); only the sources' Poisson noise depends on them.
GAIN = np.array([1.6, 3.9, 4.7, 4.9, 4.7])
WAVELENGTH = np.array([3551.0, 4686.0, 6166.0, 7480.0, 8932.0])  # Angstrom, effective

PSF_WEIGHTS = np.array([0.70, 0.25, 0.05])
PSF_WIDTHS = np.array([1.0, 2.2, 6.0])  # sigma of each Gaussian in units of the core's

SEEING_MEDIAN = 1.2  # arcsec, r-band PSF FWHM of a typical run
SEEING_RANGE = (1.0, 1.8)
_FIELD_ROWS = 1361.0  # conditions drift on the scale of SDSS fields, whatever the simulated frame size
STAMP_THRESHOLD = 0.01  # stamps end where a source's light falls below this fraction of the sky noise
MAX_STAMP_RADIUS = 250  # pixels


def _fwhm_per_sigma() -> float:
    """FWHM of the PSF profile in units of its core sigma (solved once by bisection)."""

    def profile(r: float) -> float:
        return float(np.sum(PSF_WEIGHTS / PSF_WIDTHS**2 * np.exp(-(r**2) / (2 * PSF_WIDTHS**2))))

    half = profile(0.0) / 2
    lo, hi = 0.0, 10.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if profile(mid) > half else (lo, mid)
    return 2 * lo


FWHM_PER_SIGMA = _fwhm_per_sigma()


def psf_sigmas(fwhm: np.ndarray) -> np.ndarray:
    """Sigma (arcsec) of each PSF Gaussian, shape ``fwhm.shape + (3,)``, for PSF FWHMs in arcsec."""
    return np.asarray(fwhm, float)[..., None] * PSF_WIDTHS / FWHM_PER_SIGMA


@dataclass(frozen=True)
class RunConditions:
    """Seeing, sky and calibration along one run, as smooth functions of the scan row.

    Scan rows count r-band rows from row 0 of field 0 (``field * step + row``).

    Attributes:
        seeing: the run's typical r-band PSF FWHM (arcsec).
        seeing_waves: (k, 3) amplitude (in ln FWHM), period (rows) and phase of the seeing's drift.
        band_fwhm: (5,) FWHM of each band relative to r.
        sky: (5,) sky level of each band relative to the sample's.
        sky_waves: (k, 3) the sky's drift, as ``seeing_waves``.
        nmgy: (5,) calibration of each band (nanomaggies per count).
    """

    seeing: float
    seeing_waves: np.ndarray
    band_fwhm: np.ndarray
    sky: np.ndarray
    sky_waves: np.ndarray
    nmgy: np.ndarray

    def fwhm(self, band: str, scan_row: np.ndarray) -> np.ndarray:
        """PSF FWHM (arcsec) in ``band`` at the given scan rows."""
        r_fwhm = np.clip(self.seeing * np.exp(_waves(self.seeing_waves, scan_row)), *SEEING_RANGE)
        return r_fwhm * self.band_fwhm[BANDS.index(band)]

    def sky_counts(self, band: str, scan_row: np.ndarray) -> np.ndarray:
        """Sky level (counts per pixel) in ``band`` at the given scan rows."""
        k = BANDS.index(band)
        return SKY_COUNTS[k] * self.sky[k] * np.exp(_waves(self.sky_waves, scan_row))

    def sky_sigma(self, band: str, scan_row: np.ndarray) -> np.ndarray:
        """Sky noise (nanomaggies per pixel) in ``band``: the sample's, scaled as the sky's square root."""
        k = BANDS.index(band)
        return SKY_SIGMA[k] * np.sqrt(self.sky_counts(band, scan_row) / SKY_COUNTS[k])


def run_conditions(seed: int, run: int, camcol: int) -> RunConditions:
    """Draw the conditions of one run: its seeing and sky, and how they drift along the scan."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, run, camcol, 2]))

    def waves(low: float, high: float) -> np.ndarray:
        amplitude = rng.uniform(low, high, 2)
        period = rng.uniform(5.0, 30.0, 2) * _FIELD_ROWS
        return np.stack([amplitude, period, rng.uniform(0, 2 * np.pi, 2)], axis=1)

    band_fwhm = WAVELENGTH**-0.2 * np.exp(rng.normal(0.0, 0.02, len(BANDS)))
    return RunConditions(
        seeing=float(np.exp(rng.normal(np.log(SEEING_MEDIAN), 0.10))),
        seeing_waves=waves(0.02, 0.07),
        band_fwhm=band_fwhm / band_fwhm[BANDS.index("r")],
        sky=np.exp(rng.normal(0.0, 0.12) + rng.normal(0.0, 0.05, len(BANDS))),
        sky_waves=waves(0.0, 0.05),
        nmgy=NMGY * np.exp(rng.normal(0.0, 0.03, len(BANDS))),
    )


def _waves(waves: np.ndarray, scan_row: np.ndarray) -> np.ndarray:
    rows = np.asarray(scan_row, float)[..., None]
    return np.sum(waves[:, 0] * np.sin(2 * np.pi * rows / waves[:, 1] + waves[:, 2]), axis=-1)


def psf_flux_ratio(sources: Sources, fwhm: np.ndarray) -> np.ndarray:
    """PSF-fit flux over total flux of each source (1 for stars), as a PSF-weighted fit measures it.

    For Gaussian mixtures the fit is closed-form: <model, PSF> / <PSF, PSF>.

    Args:
        sources: the sources.
        fwhm: PSF FWHM (arcsec) at each source.
    """
    owner, weight, cov = galaxy_components(sources)
    var = psf_sigmas(fwhm) ** 2  # (n, 3)
    pair_var = var[:, :, None] + var[:, None, :]  # (n, 3, 3)
    pair_w = PSF_WEIGHTS[:, None] * PSF_WEIGHTS[None, :]
    norm = np.sum(pair_w / (2 * np.pi * pair_var), axis=(1, 2))
    total = cov[:, None, None] + pair_var[owner][..., None, None] * np.eye(2)
    overlap = np.sum(pair_w / (2 * np.pi * np.sqrt(np.linalg.det(total))), axis=(1, 2))
    return np.bincount(owner, weights=weight * overlap, minlength=len(sources)) / norm


@dataclass(frozen=True)
class FrameConditions:
    """What one band of one frame saw, row by row and column by column.

    Attributes:
        fwhm: PSF FWHM (arcsec) at each source.
        sky_counts: sky level (counts per pixel) of each row.
        sky_sigma: sky noise (nanomaggies per pixel) of each row.
        calibration: nanomaggies per count of each column (the frame's HDU1).
        gain: electrons per count.
    """

    fwhm: np.ndarray
    sky_counts: np.ndarray
    sky_sigma: np.ndarray
    calibration: np.ndarray
    gain: float


def render_band(
    wcs: WCS, sources: Sources, flux: np.ndarray, conditions: FrameConditions, noise: np.ndarray
) -> np.ndarray:
    """Draw the sources into a sky-subtracted frame with sky and Poisson noise, in nanomaggies.

    As in SDSS, the camera counts whole DN: the frame is ``(counts - sky) * calibration`` with integer
    counts, so its values are quantised like the real frames'.

    Args:
        wcs: the frame's WCS; sources are placed through it.
        sources: the sources that may touch the frame.
        flux: their flux in this band (nanomaggies).
        conditions: the band's PSF, sky and calibration.
        noise: standard normal deviates, one per pixel; the frame has their shape.

    Returns:
        The float32 image.
    """
    model = np.zeros(noise.shape)
    x, y = wcs.wcs_world2pix(sources.ra, sources.dec, 0)
    owner, amp, icov, radius = _pixel_components(sources, flux, wcs, conditions)
    order = np.argsort(owner, kind="stable")
    start = np.searchsorted(owner[order], np.arange(len(sources) + 1))
    src_radius = np.zeros(len(sources))
    np.maximum.at(src_radius, owner, radius)
    _draw(model, x, y, src_radius, start, amp[order], icov[order, 0], icov[order, 1], icov[order, 2])
    calibration = conditions.calibration.astype(np.float32)
    sky = conditions.sky_counts.astype(np.float32)[:, None]
    source_counts = (model / calibration).astype(np.float32)
    sky_variance = (conditions.sky_sigma.astype(np.float32)[:, None] / calibration) ** 2
    sigma = np.sqrt(sky_variance + np.maximum(source_counts, 0.0) / np.float32(conditions.gain))
    counts = np.rint(source_counts + sigma * noise + sky)
    return (counts - sky) * calibration


def _pixel_components(
    sources: Sources, flux: np.ndarray, wcs: WCS, conditions: FrameConditions
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every source's Gaussians in pixel space, PSF-convolved and pixel-integrated.

    The profile's components are convolved with the PSF's two inner Gaussians; the faint wide wing is
    convolved with the profile's overall second moment only, which is all a 7-pixel wing can tell apart.

    Returns:
        ``(owner, amplitude, (ixx, ixy, iyy), radius)`` per component: the source it belongs to, its peak
        value (nanomaggies per pixel), its inverse covariance and the radius its light needs.
    """
    owner, weight, cov_sky = galaxy_components(sources)
    jac = 3600.0 * wcs.wcs.cd  # arcsec on the sky (east, north) per pixel (column, row)
    inv_jac = np.linalg.inv(jac)
    cov = inv_jac @ cov_sky @ inv_jac.T
    moment = np.zeros((len(sources), 2, 2))
    np.add.at(moment, owner, weight[:, None, None] * cov)
    psf_var = (
        psf_sigmas(conditions.fwhm) / PIXEL_SCALE_ARCSEC
    ) ** 2 + 1.0 / 12.0  # + a pixel's box, as a Gaussian
    eye = np.eye(2)
    parts_owner = [owner, owner, np.arange(len(sources))]
    parts_w = [weight * PSF_WEIGHTS[0], weight * PSF_WEIGHTS[1], np.full(len(sources), PSF_WEIGHTS[2])]
    parts_cov = [
        cov + psf_var[owner, 0, None, None] * eye,
        cov + psf_var[owner, 1, None, None] * eye,
        moment + psf_var[:, 2, None, None] * eye,
    ]
    owner = np.concatenate(parts_owner)
    cov = np.concatenate(parts_cov)
    det = cov[:, 0, 0] * cov[:, 1, 1] - cov[:, 0, 1] ** 2
    amp = np.concatenate(parts_w) * flux[owner] / (2 * np.pi * np.sqrt(det))
    icov = np.stack([cov[:, 1, 1], -cov[:, 0, 1], cov[:, 0, 0]], axis=1) / det[:, None]
    threshold = STAMP_THRESHOLD * float(np.min(conditions.sky_sigma))
    half_trace = (cov[:, 0, 0] + cov[:, 1, 1]) / 2
    major = half_trace + np.sqrt(((cov[:, 0, 0] - cov[:, 1, 1]) / 2) ** 2 + cov[:, 0, 1] ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        radius = np.sqrt(2 * major * np.log(amp / threshold))
    radius = np.where(amp > threshold, np.minimum(radius, MAX_STAMP_RADIUS), 0.0)
    return owner, amp, icov, radius


@numba.njit(cache=True, nogil=True)
def _draw(image, x, y, radius, start, amp, ixx, ixy, iyy):  # pragma: no cover - compiled
    """Add each source's Gaussians to ``image`` inside a disc of its radius around (x, y)."""
    rows, cols = image.shape
    for s in range(x.size):
        r = radius[s]
        if r <= 0.0:
            continue
        x0 = max(int(np.floor(x[s] - r)), 0)
        x1 = min(int(np.ceil(x[s] + r)), cols - 1)
        y0 = max(int(np.floor(y[s] - r)), 0)
        y1 = min(int(np.ceil(y[s] + r)), rows - 1)
        for py in range(y0, y1 + 1):
            dy = py - y[s]
            for px in range(x0, x1 + 1):
                dx = px - x[s]
                if dx * dx + dy * dy > r * r:
                    continue
                value = 0.0
                for k in range(start[s], start[s + 1]):
                    q = ixx[k] * dx * dx + 2.0 * ixy[k] * dx * dy + iyy[k] * dy * dy
                    if q < 60.0:
                        value += amp[k] * np.exp(-0.5 * q)
                image[py, px] += value
