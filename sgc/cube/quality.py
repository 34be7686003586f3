"""Measuring how well the bands of a cube line up: star centroids in each band against the reference band.

The measure used by the tests and by ``bench/alignment.py``: for the catalogue's stars (the brighter half
by reference-band flux), an iterative windowed centroid in every band of the cube is compared with the
same star's centroid in the reference band. A band's *systematic* offset is the length of the vector of
the median dx and median dy; its *per-star* offset is the median of the per-star distances.

So that bands left unaligned (several pixels off) are measured the same way as aligned ones, each band
is measured twice: a wide search finds the band's bulk offset (the median over stars), then every star
is centroided with the narrow window starting from its reference position plus that offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from sgc.cube.centroid import DEFAULT_SIGMA, located_centroids, robust_noise, windowed_centroids
from sgc.sdss.names import BANDS

# Far enough to find a star in a band left unaligned (SDSS bands are up to ~6 px apart).
DEFAULT_SEARCH = 8.0


@dataclass(frozen=True)
class BandOffsets:
    """Offsets of one band's star centroids from the reference band's, in pixels.

    Attributes:
        band: the band.
        n: stars measured in both bands.
        median_dx, median_dy: medians of the per-star offsets along x and y.
        systematic: ``hypot(median_dx, median_dy)``.
        median_offset: median of the per-star ``hypot(dx, dy)``.
    """

    band: str
    n: int
    median_dx: float
    median_dy: float
    systematic: float
    median_offset: float


def catalog_stars(
    catalog: Table, wcs: WCS, image: np.ndarray, fraction: float = 0.5, sigma: float = DEFAULT_SIGMA
) -> tuple[np.ndarray, np.ndarray]:
    """Reference-grid positions of the brightest catalogue stars.

    Brightness is the windowed flux measured in ``image`` (not every catalogue has magnitudes: the
    sample's has none), so the choice is the same whatever the catalogue carries.

    Args:
        catalog: a table with ``ra``, ``dec`` (degrees) and ``class``.
        wcs: the reference band's WCS.
        image: the reference band's pixels.
        fraction: the share of the stars inside the image to keep, brightest first.
        sigma: centroid window width in pixels.

    Returns:
        ``(x, y)`` of the chosen stars' windowed centroids in ``image``.
    """
    stars = catalog[catalog["class"] == "star"]
    x, y = wcs.world_to_pixel_values(np.asarray(stars["ra"]), np.asarray(stars["dec"]))
    found = windowed_centroids(image, x, y, sigma=sigma)
    ok = np.flatnonzero(found.ok & (found.flux > 0))
    brightest = ok[np.argsort(-found.flux[ok])][: int(round(fraction * ok.size))]
    return found.x[brightest], found.y[brightest]


def star_offsets(
    cube: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    bands: tuple[str, ...] = BANDS,
    reference: str = "i",
    sigma: float = DEFAULT_SIGMA,
    search: float = DEFAULT_SEARCH,
) -> dict[str, BandOffsets]:
    """Per-band offsets of star centroids from the reference band's, on a cube of aligned bands.

    Args:
        cube: ``(bands, ny, nx)`` images on one pixel grid.
        x, y: star positions on that grid.
        bands: the band of each plane of ``cube``.
        reference: the band the others are measured against.
        sigma: centroid window width in pixels.
        search: how far from its reference-band position a star is looked for in another band.

    Returns:
        :class:`BandOffsets` per band other than the reference.
    """
    ref = cube[bands.index(reference)]
    ref_found = windowed_centroids(ref, x, y, sigma=sigma, noise=robust_noise(ref))
    result = {}
    for index, band in enumerate(bands):
        if band == reference:
            continue
        noise = robust_noise(cube[index])
        rough = located_centroids(
            cube[index], ref_found.x, ref_found.y, search=search, sigma=sigma, noise=noise
        )
        bulk_x, bulk_y = _median_offset(rough.x - ref_found.x), _median_offset(rough.y - ref_found.y)
        found = windowed_centroids(
            cube[index], ref_found.x + bulk_x, ref_found.y + bulk_y, sigma=sigma, noise=noise
        )
        ok = ref_found.ok & found.ok
        if not ok.any():
            result[band] = BandOffsets(band, 0, *(4 * [float("nan")]))
            continue
        dx, dy = found.x[ok] - ref_found.x[ok], found.y[ok] - ref_found.y[ok]
        median_dx, median_dy = float(np.median(dx)), float(np.median(dy))
        result[band] = BandOffsets(
            band=band,
            n=int(ok.sum()),
            median_dx=median_dx,
            median_dy=median_dy,
            systematic=float(np.hypot(median_dx, median_dy)),
            median_offset=float(np.median(np.hypot(dx, dy))),
        )
    return result


def _median_offset(offsets: np.ndarray) -> float:
    """Median of the finite offsets, 0 if there are none."""
    finite = offsets[np.isfinite(offsets)]
    return float(np.median(finite)) if finite.size else 0.0
