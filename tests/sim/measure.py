"""Measurements made the same way on simulated and real frames, so that realism tests compare like with like.

All take a frame's image (nanomaggies, sky-subtracted) and, where objects matter, their pixel positions.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SAMPLE = "003918-3-0213"  # the real sample field (its rows 0-744)
SEED = 1  # its first run has near-median seeing (r FWHM 1.19"), like the real sample field


def sky_sigma(image: np.ndarray) -> float:
    """Robust std of the sky: MAD of the pixels, clipped at 3 sigma until stable."""
    pixels = image.ravel()[::3].astype(float)
    kept = pixels
    for _ in range(5):
        median = np.median(kept)
        sigma = 1.4826 * np.median(np.abs(kept - median))
        kept = pixels[np.abs(pixels - median) < 3 * sigma]
    return float(sigma)


def residual_sky_ptp(image: np.ndarray, block: int = 128) -> float:
    """Peak-to-peak (sky sigma) of a quadratic fitted to the frame's sky, block by block.

    Each ``block`` x ``block`` cell's sky is the 3-sigma-clipped mean of its pixels away from sources (above
    3 sigma, dilated by 8 pixels). Means, not medians: the frames hold whole counts, steps of ~0.2 sigma, so
    a median jumps where the mean follows the sky. A quadratic keeps the low order and averages out the
    cells' noise (0.01 sigma) and sources' halos; on frames with no residual it gives 0.004-0.015.
    """
    image = image.astype(float)
    sigma = sky_sigma(image)
    masked = ndimage.binary_dilation(image > np.median(image) + 3 * sigma, iterations=8)
    n_rows, n_cols = image.shape[0] // block, image.shape[1] // block
    means = np.full((n_rows, n_cols), np.nan)
    for i in range(n_rows):
        for j in range(n_cols):
            cell = np.s_[i * block : (i + 1) * block, j * block : (j + 1) * block]
            values = image[cell][~masked[cell]]
            if values.size < block * block / 4:
                continue
            for _ in range(3):
                values = values[np.abs(values - values.mean()) < 3 * sigma]
            means[i, j] = values.mean() / sigma
    y, x = np.mgrid[:n_rows, :n_cols]
    y, x = y / n_rows - 0.5, x / n_cols - 0.5
    terms = np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=-1)
    ok = np.isfinite(means)
    coef, *_ = np.linalg.lstsq(terms[ok], means[ok], rcond=None)
    fit = terms @ coef
    return float(fit.max() - fit.min())


def sharp_peaks(image: np.ndarray, sigma: float, threshold: float = 5.0, ratio: float = 3.5) -> np.ndarray:
    """(row, column) of local maxima above ``threshold`` sigma and ``ratio`` times their 4 neighbours' mean.

    A PSF of 3 pixels FWHM puts its neighbours at ~0.7 of its peak; a cosmic ray's are near zero.
    """
    neighbours = ndimage.convolve(image.astype(float), np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]]) / 4.0)
    peak = image == ndimage.maximum_filter(image, 3)
    return np.argwhere(peak & (image > threshold * sigma) & (image > ratio * np.maximum(neighbours, 0.0)))


def isolated(points: np.ndarray, x: np.ndarray, y: np.ndarray, distance: float) -> np.ndarray:
    """The (row, column) points farther than ``distance`` pixels from every object at (x, y)."""
    if len(points) == 0 or len(x) == 0:
        return points
    d = np.hypot(points[:, 1, None] - x[None, :], points[:, 0, None] - y[None, :]).min(axis=1)
    return points[d > distance]


def aperture_fluxes(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    radii: tuple[float, ...],
    annulus: tuple[float, float] = (12, 20),
) -> np.ndarray:
    """Flux in circular apertures around each object, less the median of an annulus; NaN near the edges.

    Returns:
        (n, len(radii)) fluxes, in the image's units.
    """
    reach = int(annulus[1]) + 1
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    out = np.full((len(x), len(radii)), np.nan)
    for k, (xs, ys) in enumerate(zip(x, y, strict=True)):
        xi, yi = round(float(xs)), round(float(ys))
        if not (reach <= xi < image.shape[1] - reach and reach <= yi < image.shape[0] - reach):
            continue
        stamp = image[yi - reach : yi + reach + 1, xi - reach : xi + reach + 1].astype(float)
        r = np.hypot(dx - (xs - xi), dy - (ys - yi))
        background = np.median(stamp[(r >= annulus[0]) & (r < annulus[1])])
        for j, radius in enumerate(radii):
            out[k, j] = np.sum(stamp[r < radius] - background)
    return out
