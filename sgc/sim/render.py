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

What the camera and photo's processing add on top, each measured on the real sample where it shows:

- Saturation. A pixel holds at most :data:`SATURATION_COUNTS` (55000 DN, sky included), so a frame's pixels
  stop at ``(55000 - sky) * calibration`` nanomaggies, and the charge above it bleeds along the CCD column.
  A drift-scan CCD clocks its charge along the scan, which is the frames' row axis (array axis 0), so bleed
  trails run along rows, up and down from the saturated core, each side taking half the core's excess and
  filling pixels to saturation until it is spent: the trail's length grows with the excess, and it tapers
  over the core's columns. The real calibObj sweep (``calibObj-004510-4``, 3 fields) bears the level out:
  in g every star the PSF model puts above 55500 DN at its peak is flagged SATURATED and the brightest
  unflagged one peaks at 41600 DN; in r and z the brightest unflagged stars peak at 42400 and 46200 DN. So
  stars saturate at r ~ 14 in median seeing (the real sample's rows 0-744 hold none: its brightest star,
  r ~ 14.2, peaks at 31000 DN). An r = 9.2 star bleeds ~100 rows each way over 9 columns in r. Trails are
  computed from each star's own PSF at its position on the band's scan grid (not the frame's TAN WCS), so
  the two frames that share scan rows show the same trail. Galaxies (r >= 15.5) stay under 0.3 of
  saturation even as point sources in 1.0" seeing (1000 simulated fields) and are not given trails.
- Cosmic rays. photo interpolates over most of them; those left are faint. In the real sample's five bands
  (rows 0-744), 16 sharp isolated peaks (above 5 sigma, 3.5 times the mean of their four neighbours, over
  10 pixels from any catalogued object) remain where the simulator without cosmic rays makes 6: about 4 a
  band per full field, peaking at 5-9 sigma (one at 8.8, a 3-pixel track). Here each band of each block of
  1361 scan rows gets Poisson(:data:`COSMIC_RAYS_PER_FIELD`) hits of 1-3 pixels, peaks drawn from N(>A) ~
  A^-3 between 5 and 50 sky sigma, independently per band (each band crosses the sky at another time),
  added as charge before saturation and noise; simulated fields then show 11-18 such peaks in 5 x 745 rows.
  They are not catalogued.
- Sky residual. photo's sky (HDU2) is smooth, and what it misses is small: fitting a quadratic to the
  clipped means of 128x128-pixel blocks of the real sample gives a peak-to-peak of 0.035, 0.046, 0.044,
  0.072, 0.038 sky sigma in u, g, r, i, z over its 745 rows (0.004-0.015 on simulated frames without a
  residual, the estimator's floor): a few hundredths of the sky noise, not tenths. Each band of a run gets
  its own residual, a sum of three long waves (along the scan, across it, and oblique; periods 1.5-4
  fields or frame widths) in units of the sky noise, of total amplitude :data:`SKY_RESIDUAL_AMPLITUDE`, a
  smooth function of the scan row and column so that shared rows stay the same pixels. Its peak-to-peak is
  0.055 sky sigma (median) over 745 rows and 0.073 (5-95%: 0.035-0.17) over a whole frame; the estimator
  reads 0.03-0.10 on the simulated fields' first 745 rows.
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

SATURATION_COUNTS = 55000.0  # DN a pixel holds, sky included
# Rows a bleed trail runs at most on each side of its core: the brightest stars (r = 9) need up to ~160, in
# i. With the core it stays within MAX_STAMP_RADIUS, so the sources that reach a frame include every trail's.
MAX_BLEED_ROWS = 200
_BLEED_HALF_WIDTH = 24  # columns searched for saturation on each side of a star (an r = 9 core spans ~10)
COSMIC_RAYS_PER_FIELD = 4.0  # mean residual hits per band per 1361 scan rows
COSMIC_RAY_PEAK = (5.0, 50.0)  # sky sigma: range of a hit's brightest pixel
_COSMIC_RAY_INDEX = 3.0  # N(>A) ~ A^-3: photo leaves the faint ones
_COSMIC_RAY_LENGTH_P = np.array([0.5, 0.3, 0.2])  # 1, 2 or 3 pixels
SKY_RESIDUAL_AMPLITUDE = (0.03, 0.12)  # sky sigma, log-uniform: the summed amplitude of a band's waves
_FRAME_COLS = 2048.0  # residual waves span frame widths, whatever the simulated frame size


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
        sky_residual: (5, k, 4) the waves of each band's residual sky (what photo's sky misses): amplitude
            (sky sigma), frequency along the scan (cycles per row), across it (cycles per column), phase.
    """

    seeing: float
    seeing_waves: np.ndarray
    band_fwhm: np.ndarray
    sky: np.ndarray
    sky_waves: np.ndarray
    nmgy: np.ndarray
    sky_residual: np.ndarray

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

    def sky_residual_terms(
        self, band: str, scan_row: np.ndarray, col: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The residual sky of ``band`` as separable terms: ``sum_k rows[k][:, None] * cols[k][None, :]``.

        Each wave ``a cos(2 pi (fy row + fx col) + phase)`` splits as ``a cos(A) cos(B) - a sin(A) sin(B)``,
        so a frame costs a few products per pixel rather than a cosine.

        Args:
            band: the band.
            scan_row: (rows,) scan rows of the frame.
            col: (cols,) its columns.

        Returns:
            ``(rows, cols)`` of shapes (2k, rows) and (2k, cols); the residual is in units of the sky noise.
        """
        amplitude, f_row, f_col, phase = self.sky_residual[BANDS.index(band)].T
        a = 2 * np.pi * f_row[:, None] * np.asarray(scan_row, float)[None, :] + phase[:, None]
        b = 2 * np.pi * f_col[:, None] * np.asarray(col, float)[None, :]
        rows = np.concatenate([amplitude[:, None] * np.cos(a), -amplitude[:, None] * np.sin(a)])
        return rows, np.concatenate([np.cos(b), np.sin(b)])

    def sky_residual_map(self, band: str, scan_row: np.ndarray, col: np.ndarray) -> np.ndarray:
        """The residual sky (sky sigma) of ``band`` at every (scan row, column) pair, shape (rows, cols)."""
        rows, cols = self.sky_residual_terms(band, scan_row, col)
        return rows.T @ cols


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
        # a generator of its own, so adding the residual left the other conditions of every run as they were
        sky_residual=_sky_residual_waves(
            np.random.default_rng(np.random.SeedSequence([seed, run, camcol, 8]))
        ),
    )


def _sky_residual_waves(rng: np.random.Generator) -> np.ndarray:
    """Each band's residual sky: three waves (along the scan, across it, oblique) sharing a drawn amplitude.

    Periods of 1.5-4 fields (rows) or frame widths (columns) make a frame see a gradient with some curvature,
    the low order of what photo's sky leaves.
    """
    waves = np.zeros((len(BANDS), 3, 4))
    lo, hi = np.log(SKY_RESIDUAL_AMPLITUDE)
    for k in range(len(BANDS)):
        amplitude = np.exp(rng.uniform(lo, hi)) * rng.dirichlet(np.ones(3))
        sign = rng.choice([-1.0, 1.0], 2)
        f_row = 1.0 / (rng.uniform(1.5, 4.0, 2) * _FIELD_ROWS)
        f_col = 1.0 / (rng.uniform(1.5, 4.0, 2) * _FRAME_COLS)
        waves[k, :, 0] = amplitude
        waves[k, :, 1] = [f_row[0], 0.0, sign[0] * f_row[1]]
        waves[k, :, 2] = [0.0, f_col[0], sign[1] * f_col[1]]
        waves[k, :, 3] = rng.uniform(0.0, 2 * np.pi, 3)
    return waves


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
        sky_counts: sky level (counts per pixel) of each row: photo's sky, the one subtracted.
        sky_sigma: sky noise (nanomaggies per pixel) of each row.
        calibration: nanomaggies per count of each column (the frame's HDU1).
        gain: electrons per count.
        sky_residual: the sky photo's misses, in sky sigma, as separable terms ``(rows, cols)`` of shapes
            (k, n_rows) and (k, n_cols) (see :meth:`RunConditions.sky_residual_terms`); None for none.
    """

    fwhm: np.ndarray
    sky_counts: np.ndarray
    sky_sigma: np.ndarray
    calibration: np.ndarray
    gain: float
    sky_residual: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True)
class Charge:
    """Charge added to single pixels of a frame, beside the sources' light: cosmic rays and bleed trails.

    Attributes:
        row: 0-based frame rows.
        col: 0-based frame columns.
        counts: DN added to each pixel; ``inf`` fills it to saturation (a bleed trail's body or core).
    """

    row: np.ndarray
    col: np.ndarray
    counts: np.ndarray

    @staticmethod
    def concatenate(parts: list[Charge]) -> Charge:
        """All the parts' pixels in one (a pixel may repeat; its charges add)."""
        return Charge(
            *(np.concatenate([getattr(p, name) for p in parts]) for name in ("row", "col", "counts"))
        )

    def inside(self, shape: tuple[int, int]) -> Charge:
        """The pixels that fall inside a frame of ``shape``."""
        keep = (self.row >= 0) & (self.row < shape[0]) & (self.col >= 0) & (self.col < shape[1])
        return Charge(self.row[keep], self.col[keep], self.counts[keep])


NO_CHARGE = Charge(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))


def render_band(
    wcs: WCS,
    sources: Sources,
    flux: np.ndarray,
    conditions: FrameConditions,
    noise: np.ndarray,
    charge: Charge = NO_CHARGE,
    shift: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Draw the sources into a sky-subtracted frame with sky and Poisson noise, in nanomaggies.

    As in SDSS, the camera counts whole DN: the frame is ``(counts - sky) * calibration`` with integer
    counts, so its values are quantised like the real frames'. Counts stop at :data:`SATURATION_COUNTS`.

    Args:
        wcs: the frame's WCS; sources are placed through it.
        sources: the sources that may touch the frame.
        flux: their flux in this band (nanomaggies).
        conditions: the band's PSF, sky and calibration.
        noise: standard normal deviates, one per pixel; the frame has their shape.
        charge: cosmic rays and bleed trails (see :func:`bleed_trails`), added before noise and saturation.
        shift: ``(dx, dy)`` pixels added to each source's WCS position (refraction, distortion), if any.

    Returns:
        The float32 image.
    """
    model = np.zeros(noise.shape)
    x, y = wcs.wcs_world2pix(sources.ra, sources.dec, 0)
    if shift is not None:
        x, y = x + shift[0], y + shift[1]
    owner, amp, icov, radius = _pixel_components(sources, flux, wcs, conditions)
    order = np.argsort(owner, kind="stable")
    start = np.searchsorted(owner[order], np.arange(len(sources) + 1))
    src_radius = np.zeros(len(sources))
    np.maximum.at(src_radius, owner, radius)
    _draw(model, x, y, src_radius, start, amp[order], icov[order, 0], icov[order, 1], icov[order, 2])
    calibration = conditions.calibration.astype(np.float64)
    charge = charge.inside(noise.shape)
    full = np.isinf(charge.counts)
    # a pixel filled to saturation gets four times the charge it holds: well past the clip whatever its noise
    np.maximum.at(
        model, (charge.row[full], charge.col[full]), 4 * SATURATION_COUNTS * calibration[charge.col[full]]
    )
    np.add.at(
        model, (charge.row[~full], charge.col[~full]), charge.counts[~full] * calibration[charge.col[~full]]
    )
    if conditions.sky_residual is None:
        res_rows, res_cols = np.zeros((0, noise.shape[0])), np.zeros((0, noise.shape[1]))
    else:
        res_rows, res_cols = conditions.sky_residual
    image = np.empty(noise.shape, np.float32)
    _expose(
        model,
        noise,
        conditions.sky_counts.astype(np.float64),
        conditions.sky_sigma.astype(np.float64),
        calibration,
        1.0 / conditions.gain,
        np.ascontiguousarray(res_rows, np.float64),
        np.ascontiguousarray(res_cols, np.float64),
        SATURATION_COUNTS,
        image,
    )
    return image


def saturation_level(sky_counts: np.ndarray, calibration: np.ndarray) -> np.ndarray:
    """Nanomaggies a saturated pixel shows in a sky-subtracted frame, per (row, column)."""
    room = SATURATION_COUNTS - np.asarray(sky_counts, float)
    return room[:, None] * np.asarray(calibration, float)[None, :]


def bleed_trails(
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    fwhm: np.ndarray,
    sky_counts: np.ndarray,
    calibration: np.ndarray,
) -> Charge:
    """The pixels saturated point sources fill: their cores, and the trails their excess charge bleeds into.

    Each column through a star's core holds the charge its PSF puts above :data:`SATURATION_COUNTS`; half
    runs up the column and half down, filling pixel after pixel to saturation (what a pixel takes is what its
    own light and sky leave room for) until it is spent, the last pixel keeping what remains. The PSF is the
    star's own, noise-free, so the trail depends only on where the star sits on the scan, not on the frame.

    Args:
        x: 0-based columns of the stars in the frame's band grid.
        y: 0-based rows (may lie off the frame: a trail may still reach it).
        flux: the stars' flux in the band (nanomaggies).
        fwhm: PSF FWHM (arcsec) at each star.
        sky_counts: the sky (counts per pixel) at each star's row; trails are short enough to keep it.
        calibration: nanomaggies per count of each column of the frame.

    Returns:
        The core and trail pixels (``inf`` counts: saturated) and each trail's last pixel (its partial
        charge), frame rows possibly outside the frame.
    """
    n_cols = calibration.size
    var = (psf_sigmas(np.asarray(fwhm, float)) / PIXEL_SCALE_ARCSEC) ** 2 + 1.0 / 12.0  # (n, 3)
    amp = PSF_WEIGHTS * np.asarray(flux, float)[:, None] / (2 * np.pi * var)  # nanomaggies at the centre
    room = SATURATION_COUNTS - np.asarray(sky_counts, float)
    peak_bound = amp.sum(axis=1) / float(np.min(calibration))
    parts = [NO_CHARGE]
    for s in np.flatnonzero(peak_bound > room):
        xi, yi = int(np.floor(x[s] + 0.5)), int(np.floor(y[s] + 0.5))
        cols = np.arange(max(xi - _BLEED_HALF_WIDTH, 0), min(xi + _BLEED_HALF_WIDTH + 1, n_cols))
        reach = MAX_BLEED_ROWS + _BLEED_HALF_WIDTH
        rows = np.arange(yi - reach, yi + reach + 1)
        d2 = ((cols[:, None] - x[s]) ** 2)[:, :, None] + ((rows[None, :] - y[s]) ** 2)[:, :, None]
        counts = np.sum(amp[s] * np.exp(-0.5 * d2 / var[s]), axis=2) / calibration[cols, None]  # (cols, rows)
        excess = counts - room[s]
        for c, col in enumerate(cols):
            core = np.flatnonzero(excess[c] > 0)  # contiguous: a star's profile has one peak
            if core.size == 0:
                continue
            half = 0.5 * float(np.sum(excess[c, core]))
            full = [rows[core[0] : core[-1] + 1]]
            partial_rows, partial_counts = [], []
            for direction, first in ((-1, core[0] - 1), (1, core[-1] + 1)):
                path = first + direction * np.arange(MAX_BLEED_ROWS)  # indices into rows, out from the core
                path = path[(path >= 0) & (path < rows.size)]  # a guard: cores stay well inside `reach`
                taken = np.cumsum(-excess[c, path])  # what the pixels along the path can take, accumulated
                n_full = int(np.searchsorted(taken, half, side="right"))
                full.append(rows[path[:n_full]])
                if n_full < path.size:
                    partial_rows.append(rows[path[n_full]])
                    partial_counts.append(half - (taken[n_full - 1] if n_full else 0.0))
            full_rows = np.concatenate(full)
            parts.append(Charge(full_rows, np.full(full_rows.size, col), np.full(full_rows.size, np.inf)))
            parts.append(
                Charge(
                    np.array(partial_rows, np.int64),
                    np.full(len(partial_rows), col),
                    np.array(partial_counts, float),
                )
            )
    return Charge.concatenate(parts)


def cosmic_rays(rng: np.random.Generator, rows: int, cols: int, sigma_counts: float) -> Charge:
    """The residual cosmic rays of one band over ``rows`` scan rows: a few sharp hits of 1-3 pixels.

    A hit's first pixel is its brightest, its peak drawn from N(>A) ~ A^-3 between the bounds of
    :data:`COSMIC_RAY_PEAK` (sky sigma); a track goes on in one of the 8 directions, each further pixel
    taking 30-100% of the peak. Tracks end at the block's edges, so the block alone decides its pixels.

    Args:
        rng: the block's generator.
        rows: rows of the block.
        cols: columns of the frame.
        sigma_counts: the band's sky noise in counts, the unit of the peaks.

    Returns:
        The hits' pixels, rows counted from the block's first.
    """
    n = rng.poisson(COSMIC_RAYS_PER_FIELD * rows / _FIELD_ROWS)
    row0 = rng.integers(0, rows, n)
    col0 = rng.integers(0, cols, n)
    lo, hi = COSMIC_RAY_PEAK
    tail = 1.0 - (lo / hi) ** _COSMIC_RAY_INDEX  # the truncated power law, drawn by inversion
    peak = lo * (1.0 - rng.random(n) * tail) ** (-1.0 / _COSMIC_RAY_INDEX) * sigma_counts
    length = 1 + rng.choice(3, n, p=_COSMIC_RAY_LENGTH_P)
    direction = rng.integers(0, 8, n)
    fraction = rng.uniform(0.3, 1.0, (n, 2))
    d_row = np.array([-1, -1, -1, 0, 0, 1, 1, 1])[direction]
    d_col = np.array([-1, 0, 1, -1, 1, -1, 0, 1])[direction]
    step = np.arange(3)
    hit_rows = row0[:, None] + step * d_row[:, None]
    hit_cols = col0[:, None] + step * d_col[:, None]
    counts = peak[:, None] * np.concatenate([np.ones((n, 1)), fraction], axis=1)
    keep = (
        (step < length[:, None]) & (hit_rows >= 0) & (hit_rows < rows) & (hit_cols >= 0) & (hit_cols < cols)
    )
    return Charge(hit_rows[keep], hit_cols[keep], counts[keep])


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
def _expose(
    model, noise, sky, sky_sigma, calibration, inv_gain, res_rows, res_cols, saturation, out
):  # pragma: no cover - compiled
    """Turn light (nanomaggies) into what camera and photo leave: whole counts, saturated, sky-subtracted.

    One pass per pixel, in place of the half-dozen whole-frame temporaries numpy would make.
    """
    rows, cols = model.shape
    n_terms = res_rows.shape[0]
    for py in range(rows):
        sky_row = sky[py]
        for px in range(cols):
            cal = calibration[px]
            source = model[py, px] / cal
            sky_sd = sky_sigma[py] / cal
            sigma = np.sqrt(sky_sd * sky_sd + max(source, 0.0) * inv_gain)
            residual = 0.0
            for k in range(n_terms):
                residual += res_rows[k, py] * res_cols[k, px]
            counts = np.rint(source + residual * sky_sd + sigma * noise[py, px] + sky_row)
            out[py, px] = (min(counts, saturation) - sky_row) * cal


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
