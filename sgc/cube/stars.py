"""Finding the stars that tie the bands together: bright, isolated, unsaturated point sources.

Stars are found in the image itself (no catalogue needed): local maxima well above the noise, measured with
a windowed centroid, kept when alone within a few PSF widths and as compact as the PSF. Point sources have
one size, the PSF's, while galaxies are wider, saturated stars have flat, wide cores (often several
maxima), and cosmic rays are narrower; so the stellar locus is the tight cluster of sizes among bright
sources, and only sources within 10 % of it are used.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sgc.cube.centroid import DEFAULT_SIGMA, Centroids, robust_noise, windowed_centroids

DEFAULT_MIN_SNR = 30.0
DEFAULT_ISOLATION = 8.0  # px, about 2.5 PSF FWHM: a neighbour beyond it barely reaches the window

# A neighbouring maximum within the isolation radius disqualifies a star when brighter than this fraction
# of the star's peak: fainter ones move a windowed centroid by well under 0.01 px.
_NEIGHBOUR_FRACTION = 0.01
_PEAK_NSIGMA = 5.0
_SIZE_TOLERANCE = 0.10
_MAX_ELLIPTICITY = 0.2


def detect_stars(
    image: np.ndarray,
    sigma: float = DEFAULT_SIGMA,
    min_snr: float = DEFAULT_MIN_SNR,
    isolation: float = DEFAULT_ISOLATION,
    noise: float | None = None,
) -> Centroids:
    """Bright, isolated, point-like sources of an image, brightest first.

    Args:
        image: 2-D image (sky-subtracted).
        sigma: centroid window width in pixels.
        min_snr: smallest windowed signal-to-noise ratio kept.
        isolation: radius in pixels within which no other significant maximum may lie.
        noise: background noise per pixel; estimated if None.

    Returns:
        Their windowed centroids (possibly none).
    """
    if noise is None:
        noise = robust_noise(image)
    border = int(np.ceil(4 * sigma)) + 1
    px, py, peak = _local_maxima(np.ascontiguousarray(image), _PEAK_NSIGMA * noise, border)
    alone = _isolated(px, py, peak, isolation, _NEIGHBOUR_FRACTION)
    found = windowed_centroids(image, px[alone], py[alone], sigma=sigma, noise=noise)
    with np.errstate(invalid="ignore", divide="ignore"):
        bright = found.ok & (found.flux > min_snr * found.flux_err)
    point = _point_like(found, bright)
    keep = np.flatnonzero(bright & point)
    keep = keep[np.argsort(-found.flux[keep])]
    return _take(found, keep)


def _point_like(found: Centroids, candidates: np.ndarray) -> np.ndarray:
    """Sources on the stellar locus: the size of the PSF (10 %) and round."""
    sizes = found.size[candidates & np.isfinite(found.size)]
    if sizes.size == 0:
        return np.zeros(found.x.shape, dtype=bool)
    # Start from the lower half, where stars sit whatever the share of galaxies, then centre on the cluster.
    locus = float(np.median(sizes[sizes <= np.median(sizes)]))
    for _ in range(2):
        locus = float(np.median(sizes[np.abs(sizes / locus - 1) < _SIZE_TOLERANCE]))
    with np.errstate(invalid="ignore"):
        return (np.abs(found.size / locus - 1) < _SIZE_TOLERANCE) & (found.ellipticity < _MAX_ELLIPTICITY)


def _take(found: Centroids, index: np.ndarray) -> Centroids:
    return Centroids(**{name: getattr(found, name)[index] for name in found.__dataclass_fields__})


@njit(cache=True)
def _local_maxima(image, threshold, border):
    """Pixels above ``threshold`` and above their 8 neighbours (ties go to the first in raster order)."""
    ny, nx = image.shape
    xs = []
    ys = []
    values = []
    for y in range(border, ny - border):
        for x in range(border, nx - border):
            v = image[y, x]
            if not v > threshold:
                continue
            # Earlier neighbours must be strictly lower, later ones not higher: a flat top yields one maximum.
            if (
                image[y - 1, x - 1] < v
                and image[y - 1, x] < v
                and image[y - 1, x + 1] < v
                and image[y, x - 1] < v
                and image[y, x + 1] <= v
                and image[y + 1, x - 1] <= v
                and image[y + 1, x] <= v
                and image[y + 1, x + 1] <= v
            ):
                xs.append(float(x))
                ys.append(float(y))
                values.append(v)
    return np.array(xs), np.array(ys), np.array(values)


@njit(cache=True)
def _isolated(xs, ys, values, radius, fraction):
    """Maxima with no other maximum within ``radius`` brighter than ``fraction`` of their own value."""
    n = xs.shape[0]
    order = np.argsort(ys)
    alone = np.ones(n, dtype=np.bool_)
    r2 = radius * radius
    for a in range(n):
        i = order[a]
        for step in (-1, 1):
            b = a + step
            while 0 <= b < n and abs(ys[order[b]] - ys[i]) <= radius:
                j = order[b]
                dx, dy = xs[j] - xs[i], ys[j] - ys[i]
                if dx * dx + dy * dy <= r2 and values[j] > fraction * values[i]:
                    alone[i] = False
                b += step
    return alone
