"""Iterative Gaussian-windowed centroids (SExtractor's XWIN/YWIN), the yardstick of alignment.

For a Gaussian window ``w`` of width ``sigma`` centred on the current estimate, the step
``2 * sum(w I (x_i - x)) / sum(w I)`` lands exactly on the centre of a Gaussian star of the same width and
shrinks the error geometrically for other widths; the iteration stops when the step is below ``tol``.
A constant background adds the same amount on both sides of the window, so it slows the iteration but
does not move its fixed point: SDSS frames are sky-subtracted and no local background is fitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

DEFAULT_SIGMA = 1.5  # px: an SDSS PSF of 1.4 arcsec FWHM is 3.5 px, sigma 1.5 px
DEFAULT_TOL = 1e-3
DEFAULT_MAX_ITER = 50

# Columns of the kernel's output.
_X, _Y, _FLUX, _SUM_W2, _SUM_W2R2, _MXX, _MYY, _MXY = range(8)


@dataclass(frozen=True)
class Centroids:
    """Windowed centroids of a list of sources; NaN where the iteration failed.

    Attributes:
        x, y: centroid (0-based pixels).
        flux: windowed flux ``sum(w I)``.
        flux_err: its 1-sigma error from the background noise.
        error: 1-sigma error of the position along one axis, from the background noise.
        size: Gaussian sigma of the source with the window taken out (inf for sources wider than it).
        ellipticity: ``|e|`` of the windowed second moments.
    """

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    error: np.ndarray
    size: np.ndarray
    ellipticity: np.ndarray

    @property
    def ok(self) -> np.ndarray:
        """Where the iteration converged."""
        return np.isfinite(self.x)


def robust_noise(image: np.ndarray, stride: int = 61) -> float:
    """Background noise of an image: 1.4826 x the median absolute deviation of a pixel subsample.

    Args:
        image: 2-D image, NaN allowed.
        stride: every ``stride``-th pixel in raster order is used (a prime, so that the sample walks
            through all columns); images too small for 2000 such pixels use fewer.

    Returns:
        The noise sigma, in image units.
    """
    sample = image.ravel()[:: max(1, min(stride, image.size // 2000))]
    sample = sample[np.isfinite(sample)]
    return float(1.4826 * np.median(np.abs(sample - np.median(sample))))


def windowed_centroids(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    sigma: float = DEFAULT_SIGMA,
    noise: float | None = None,
    max_shift: float = 2.0,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    gain: float = 2.0,
) -> Centroids:
    """Iterate a Gaussian-windowed centroid from each starting position until the step is below ``tol``.

    Args:
        image: 2-D image.
        x, y: starting positions (0-based pixels).
        sigma: window width in pixels (about the PSF's sigma is best).
        noise: background noise per pixel; estimated with :func:`robust_noise` if None.
        max_shift: a centroid further than this from its start has wandered off to another source: failed.
        tol: convergence threshold on the step, in pixels.
        max_iter: iterations before giving up.
        gain: step factor; 2 converges in one step on a Gaussian source as wide as the window,
            ``1 + (source sigma / sigma)^2`` in general.

    Returns:
        The centroids; NaN for sources whose window leaves the image or holds a NaN, whose windowed flux
        is not positive, that moved more than ``max_shift`` or did not converge.
    """
    if noise is None:
        noise = robust_noise(image)
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    out = _centroids_kernel(np.ascontiguousarray(image), x, y, float(sigma), max_shift, tol, max_iter, gain)
    flux = out[:, _FLUX]
    with np.errstate(invalid="ignore", divide="ignore"):
        # XWIN error: var(x) = 4 noise^2 sum(w^2 (x_i - x)^2) / flux^2, averaged over the two axes.
        error = noise * np.sqrt(2.0 * out[:, _SUM_W2R2]) / flux
        spread = 0.5 * (out[:, _MXX] + out[:, _MYY])
        size = np.where(spread < sigma**2, np.sqrt(spread * sigma**2 / (sigma**2 - spread)), np.inf)
        ellipticity = np.hypot(out[:, _MXX] - out[:, _MYY], 2 * out[:, _MXY]) / (2 * spread)
    return Centroids(
        x=out[:, _X],
        y=out[:, _Y],
        flux=flux,
        flux_err=noise * np.sqrt(out[:, _SUM_W2]),
        error=error,
        size=np.where(np.isfinite(out[:, _X]), size, np.nan),
        ellipticity=ellipticity,
    )


def located_centroids(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    search: float,
    sigma: float = DEFAULT_SIGMA,
    noise: float | None = None,
) -> Centroids:
    """Windowed centroids of sources that may lie up to ``search`` pixels from their starting positions.

    A first pass with a window ``search / 2`` wide pulls each estimate onto its source (its step gain set
    for a source ``sigma`` wide, so that it converges in a few steps); the second, with ``sigma``, measures
    it.

    Args:
        image: 2-D image.
        x, y: rough positions (0-based pixels).
        search: how far the source may be from its rough position, in pixels.
        sigma: width of the measuring window.
        noise: background noise per pixel; estimated if None.

    Returns:
        The centroids of the second pass (see :func:`windowed_centroids`).
    """
    if noise is None:
        noise = robust_noise(image)
    wide_sigma = max(sigma, search / 2)
    gain = 1 + (sigma / wide_sigma) ** 2
    rough = windowed_centroids(
        image, x, y, sigma=wide_sigma, noise=noise, max_shift=1.5 * search, tol=0.05, gain=gain
    )
    return windowed_centroids(image, rough.x, rough.y, sigma=sigma, noise=noise, max_shift=2 * sigma)


@njit(cache=True)
def _centroids_kernel(image, xs, ys, sigma, max_shift, tol, max_iter, gain):
    out = np.full((xs.shape[0], 8), np.nan)
    for k in range(xs.shape[0]):
        _centroid(image, xs[k], ys[k], sigma, max_shift, tol, max_iter, gain, out[k])
    return out


@njit(cache=True)
def _centroid(image, x0, y0, sigma, max_shift, tol, max_iter, gain, out):
    """One windowed centroid; fills ``out`` (columns ``_X`` ...) on success, leaves it NaN otherwise."""
    if not (np.isfinite(x0) and np.isfinite(y0)):
        return
    ny, nx = image.shape
    half = int(np.ceil(4.0 * sigma))
    inv2s2 = 0.5 / (sigma * sigma)
    x, y = x0, y0
    for _ in range(max_iter):
        ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        if ix - half < 0 or iy - half < 0 or ix + half >= nx or iy + half >= ny:
            return
        sw = swx = swy = sw2 = sw2r2 = sxx = syy = sxy = 0.0
        for py in range(iy - half, iy + half + 1):
            dy = py - y
            for px in range(ix - half, ix + half + 1):
                dx = px - x
                value = image[py, px]
                if not np.isfinite(value):
                    return
                w = np.exp(-(dx * dx + dy * dy) * inv2s2)
                wi = w * value
                sw += wi
                swx += wi * dx
                swy += wi * dy
                sxx += wi * dx * dx
                syy += wi * dy * dy
                sxy += wi * dx * dy
                sw2 += w * w
                sw2r2 += w * w * (dx * dx + dy * dy)
        if sw <= 0.0:
            return
        step_x, step_y = gain * swx / sw, gain * swy / sw
        x += step_x
        y += step_y
        if (x - x0) ** 2 + (y - y0) ** 2 > max_shift * max_shift:
            return
        if step_x * step_x + step_y * step_y < tol * tol:
            out[0], out[1], out[2], out[3], out[4] = x, y, sw, sw2, sw2r2
            out[5], out[6], out[7] = sxx / sw, syy / sw, sxy / sw
            return
