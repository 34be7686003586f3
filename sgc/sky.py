"""Geometry on the celestial sphere: which sky positions, catalogue objects and footprints come near a grid.

Every stage that asks "what falls on this field" first cuts with a spherical cap (a circle on the sky):
a cheap test on unit vectors that keeps far-away positions out of a TAN projection, where they mean
nothing. :func:`grid_cap` is the one cap around a pixel grid that they all use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales
from scipy.spatial import cKDTree


def unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Unit vectors (..., 3) of sky positions given in degrees, for chord and cone tests."""
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def match_positions(
    ra: np.ndarray, dec: np.ndarray, ref_ra: np.ndarray, ref_dec: np.ndarray, radius_arcsec: float
) -> tuple[np.ndarray, np.ndarray]:
    """Match sky positions to the nearest of reference positions (all in degrees).

    Returns:
        ``(matched, nearest)``: for each position, whether a reference lies within ``radius_arcsec``, and the
        index of the nearest reference (meaningful where matched).
    """
    ra, dec = np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64)
    if ra.size == 0 or np.size(ref_ra) == 0:
        return np.zeros(ra.shape, dtype=bool), np.zeros(ra.shape, dtype=np.int64)
    tree = cKDTree(unit_vectors(np.asarray(ref_ra, dtype=np.float64), np.asarray(ref_dec, dtype=np.float64)))
    distance, nearest = tree.query(unit_vectors(ra, dec), k=1)
    chord = 2 * np.sin(np.radians(radius_arcsec / 3600) / 2)
    return distance <= chord, np.asarray(nearest, dtype=np.int64)


def pixel_scale_arcsec(wcs: WCS) -> float:
    """Mean pixel scale of a celestial WCS, arcsec per pixel (0.396 for SDSS frames)."""
    return float(np.mean(proj_plane_pixel_scales(wcs))) * 3600.0


@dataclass(frozen=True)
class Cap:
    """A spherical cap: every point within ``radius`` radians of the unit vector ``centre``."""

    centre: np.ndarray
    radius: float

    @classmethod
    def around(cls, vectors: np.ndarray) -> Cap:
        """A cap holding the given unit vectors (centred on their normalised mean)."""
        centre = vectors.mean(axis=0)
        centre = centre / np.linalg.norm(centre)
        return cls(centre, float(np.arccos(np.clip(vectors @ centre, -1.0, 1.0)).max()))

    def contains(self, vectors: np.ndarray) -> np.ndarray:
        """Which unit vectors (..., 3) lie in the cap."""
        return vectors @ self.centre >= math.cos(self.radius)

    def meets(self, other: Cap, slack: float = 0.0) -> bool:
        """Whether the two caps, each grown by ``slack`` radians in total, overlap."""
        angle = float(np.arccos(np.clip(self.centre @ other.centre, -1.0, 1.0)))
        return angle <= self.radius + other.radius + slack

    def query(self, tree: cKDTree) -> np.ndarray:
        """Indices (sorted) of the points of a k-d tree over unit vectors that lie in the cap."""
        chord = 2 * math.sin(min(self.radius, math.pi) / 2)
        return np.array(sorted(tree.query_ball_point(self.centre, chord)), dtype=np.int64)


def grid_cap(wcs: WCS, shape: tuple[int, int], margin_px: float = 0.0) -> Cap:
    """A cap holding a pixel grid grown by ``margin_px`` pixels on every side.

    The cap is centred on the grid's central pixel and passes through the farthest corner of the grown
    grid, plus one pixel: a TAN grid's edges are great-circle arcs, which stay inside any cap holding
    their ends, and the pixel more covers edges that bow out under distortion terms.
    """
    rows, cols = shape
    lo_x, hi_x = -0.5 - margin_px, cols - 0.5 + margin_px
    lo_y, hi_y = -0.5 - margin_px, rows - 0.5 + margin_px
    x = np.array([(cols - 1) / 2, lo_x, hi_x, hi_x, lo_x])
    y = np.array([(rows - 1) / 2, lo_y, lo_y, hi_y, hi_y])
    vectors = unit_vectors(*wcs.pixel_to_world_values(x, y))
    corners = float(np.arccos(np.clip(vectors[1:] @ vectors[0], -1.0, 1.0)).max())
    return Cap(vectors[0], corners + math.radians(pixel_scale_arcsec(wcs) / 3600.0))
