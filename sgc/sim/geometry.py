"""Where a simulated run looks: the scan great circle, each band's pixel grid, and their TAN WCS.

SDSS images the sky in drift scans along great circles. A scan has its own spherical coordinates
(mu along the great circle, nu across it) set by the circle's ascending NODE and inclination INCL, and a
camera column sees the strip around one nu. Rows run along mu (one field every 1361 rows, 128 rows
overlapping the next field), columns along nu, both 0.396 arcsec per pixel.

Here every band has one continuous grid along the run: band pixel ``(x, y)`` of field ``F`` is global
row ``F * step + y``, and an affine map takes it to the r band's grid and so to (mu, nu). The affine
holds the per-band offsets the real frames show (several pixels, measured from the 12 DR17 headers in
``shared/sdss/headers``) and a small tilt and scale of the column axis. Rows keep the scan direction and
step in every band (a drift-scan CCD's rows are its scan time), so row ``step`` of field ``F`` and row 0
of field ``F + 1`` see the same sky in every band, as in SDSS. Each frame then gets the TAN WCS that best
describes its piece of the grid at its centre, with ``CRPIX`` 1025, 745 as the real frames have.

A camera column off the stripe's centre line scans a small circle, which no TAN WCS follows exactly: the
WCS of two consecutive fields agree on their shared rows to 0.006 px at camcol 3 (nu -0.1 deg) but only to
0.05 px at camcols 1 and 6 (nu +-1 deg). Real frames, also TAN, share the limitation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sgc.sdss.names import BANDS, PIXEL_SCALE_ARCSEC

FRAME_SHAPE: tuple[int, int] = (1489, 2048)  # rows, columns of an SDSS frame
_PIXEL_DEG = PIXEL_SCALE_ARCSEC / 3600.0
OVERLAP_ROWS = 128  # rows shared by consecutive fields of a run
NODE = 95.0  # deg, ascending node of every SDSS survey stripe
DEFAULT_STRIPE = 70  # the test field 008162-6-0080 lies on stripe 70

# Field F of a simulated run is centred at mu = MU_ORIGIN + F * step: 2.3 deg past the test field
# 008162-6-0080 (mu 335.70), so no simulated field of stripe 70 covers its sky unless asked to.
MU_ORIGIN = 338.0
# nu of the camera columns' centres on a north strip, from the 12 DR17 headers: 0.4198 deg apart.
_CAMCOL_NU_SPACING = 0.4198
_CAMCOL_NU_MEAN = 0.1052

# Offsets of the u, g, i, z grids from r (pixels: the same sky lands at r pixel + offset), measured on
# the 11 of the 12 DR17 headers that have an r band. Columns share a common shift per field (sd 2.09 px);
# what remains per band is small. Rows differ by the camera's filter order along the scan.
_COMMON_DX_SD = 2.09
_OFFSET_MODEL: dict[str, dict[str, tuple[float, ...]]] = {
    #        mean dx, sd dx (after the common shift), min, max | mean dy, sd dy, min, max
    "u": {"dx": (2.51, 1.25, -2.00, 5.47), "dy": (5.63, 1.54, 3.72, 8.92)},
    "g": {"dx": (1.73, 0.80, -2.07, 5.55), "dy": (11.10, 1.47, 8.93, 13.58)},
    "i": {"dx": (0.47, 1.11, -1.94, 2.87), "dy": (3.08, 0.43, 2.61, 3.72)},
    "z": {"dx": (0.79, 0.87, -2.32, 4.20), "dy": (7.34, 0.60, 6.55, 8.47)},
}
# The column axis of u, g, i, z is tilted from r's by 40 arcsec rms (at most 86) and scaled by a few
# 1e-4 (mean, sd per band), again from the real headers.
_TILT_SD_ARCSEC = 40.0
_TILT_MAX_ARCSEC = 80.0
_COL_SCALE: dict[str, tuple[float, float]] = {
    "u": (1.0e-4, 4.2e-4),
    "g": (-4.2e-4, 0.8e-4),
    "i": (0.2e-4, 3.9e-4),
    "z": (-2.1e-4, 2.1e-4),
}


def stripe_inclination(stripe: int) -> float:
    """Inclination (deg) of an SDSS survey stripe's great circle: 2.5 deg per stripe, 0 at stripe 10."""
    return (2.5 * (stripe - 10) + 90.0) % 180.0 - 90.0


def camcol_nu(camcol: int) -> float:
    """nu (deg) of the centre of a camera column on a north strip."""
    return _CAMCOL_NU_MEAN + _CAMCOL_NU_SPACING * (camcol - 3.5)


def gc_to_eq(mu: np.ndarray, nu: np.ndarray, node: float, incl: float) -> tuple[np.ndarray, np.ndarray]:
    """Great-circle scan coordinates to ICRS RA, Dec (all in degrees), as SDSS astrotools define them."""
    mu_r, nu_r = np.radians(mu), np.radians(nu)
    node_r, incl_r = np.radians(node), np.radians(incl)
    x = np.cos(nu_r) * np.cos(mu_r - node_r)
    y2 = np.cos(nu_r) * np.sin(mu_r - node_r)
    z2 = np.sin(nu_r)
    y = y2 * np.cos(incl_r) - z2 * np.sin(incl_r)
    z = y2 * np.sin(incl_r) + z2 * np.cos(incl_r)
    ra = (np.degrees(np.arctan2(y, x)) + node) % 360.0
    dec = np.degrees(np.arcsin(np.clip(z, -1.0, 1.0)))
    return ra, dec


@dataclass(frozen=True)
class BandGrid:
    """How one band's pixel grid sits on the r band's: ``r = band - offset``, with a tilted column axis.

    Attributes:
        dx: column offset from r (pixels): the sky at r column ``c`` lands at band column ``c + dx``.
        dy: row offset from r (pixels).
        tilt: rotation of the column axis from r's (radians): one column step moves ``tilt`` rows on r.
        col_scale: relative pixel-size change along columns.
    """

    dx: float = 0.0
    dy: float = 0.0
    tilt: float = 0.0
    col_scale: float = 0.0


def draw_band_grids(rng: np.random.Generator) -> dict[str, BandGrid]:
    """Draw the five bands' grids of one run from the distribution of the real frames (r is the reference).

    Every value stays inside the range the 12 real headers span.
    """
    common = rng.normal(0.0, _COMMON_DX_SD)
    grids = {"r": BandGrid()}
    for band in ("u", "g", "i", "z"):
        mx, sx, lo_x, hi_x = _OFFSET_MODEL[band]["dx"]
        my, sy, lo_y, hi_y = _OFFSET_MODEL[band]["dy"]
        scale_mean, scale_sd = _COL_SCALE[band]
        tilt = np.clip(rng.normal(0.0, _TILT_SD_ARCSEC), -_TILT_MAX_ARCSEC, _TILT_MAX_ARCSEC)
        grids[band] = BandGrid(
            dx=float(np.clip(mx + common + rng.normal(0.0, sx), lo_x, hi_x)),
            dy=float(np.clip(rng.normal(my, sy), lo_y, hi_y)),
            tilt=float(np.radians(tilt / 3600.0)),
            col_scale=float(rng.normal(scale_mean, scale_sd)),
        )
    return {band: grids[band] for band in BANDS}


@dataclass(frozen=True)
class ScanGeometry:
    """The sky geometry of one simulated run and camera column.

    Attributes:
        stripe: SDSS survey stripe whose great circle the run scans.
        camcol: camera column (1-6).
        shape: (rows, columns) of each frame.
        grids: each band's grid relative to r.
    """

    stripe: int
    camcol: int
    shape: tuple[int, int]
    grids: dict[str, BandGrid]

    @property
    def incl(self) -> float:
        """Inclination of the scan great circle (deg)."""
        return stripe_inclination(self.stripe)

    @property
    def step(self) -> int:
        """Rows from one field's first row to the next field's."""
        return self.shape[0] - OVERLAP_ROWS

    @property
    def center(self) -> tuple[int, int]:
        """0-based (column, row) of the reference pixel (CRPIX - 1), as in real frames (1024, 744)."""
        return self.shape[1] // 2, self.shape[0] // 2

    def r_to_scan(self, col: np.ndarray, row: np.ndarray, field: int) -> tuple[np.ndarray, np.ndarray]:
        """(mu, nu) in degrees of 0-based r pixels of ``field`` (rows may run past the frame)."""
        x0, y0 = self.center
        mu = MU_ORIGIN + _PIXEL_DEG * (np.asarray(row, float) - y0 + field * self.step)
        nu = camcol_nu(self.camcol) + _PIXEL_DEG * (np.asarray(col, float) - x0)
        return mu, nu

    def band_to_r(self, band: str, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """r pixel (column, row) of the same field seeing the sky at a band pixel."""
        grid = self.grids[band]
        x0 = self.center[0]
        dcol = np.asarray(col, float) - x0
        return x0 + (dcol - grid.dx) * (1.0 + grid.col_scale), np.asarray(
            row, float
        ) - grid.dy + grid.tilt * dcol

    def r_to_band(self, band: str, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Band pixel (column, row) seeing the sky at an r pixel: the inverse of :meth:`band_to_r`.

        Exact for the simulated grid and independent of any frame's TAN WCS, so what is placed with it (a
        bleed trail) lands on the same scan pixels in the two frames that share them.
        """
        grid = self.grids[band]
        x0 = self.center[0]
        dcol = (np.asarray(col, float) - x0) / (1.0 + grid.col_scale) + grid.dx
        return x0 + dcol, np.asarray(row, float) + grid.dy - grid.tilt * dcol

    def band_to_sky(
        self, band: str, field: int, col: np.ndarray, row: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """RA, Dec (deg) of 0-based pixels of ``band`` in ``field`` along the scan (not via the TAN WCS)."""
        mu, nu = self.r_to_scan(*self.band_to_r(band, col, row), field)
        return gc_to_eq(mu, nu, NODE, self.incl)

    def wcs_cards(self, band: str, field: int) -> list[tuple[str, object, str]]:
        """The TAN WCS header cards of one frame, in the real frames' order and comments.

        The CD matrix is the derivative of the scan mapping at the reference pixel, in the tangent plane.
        """
        x0, y0 = self.center
        ra0, dec0 = self.band_to_sky(band, field, np.array([x0]), np.array([y0]))
        h = 8.0  # pixels; central differences are exact to ~1e-9 px over this step
        cols = np.array([x0 + h, x0 - h, x0, x0], float)
        rows = np.array([y0, y0, y0 + h, y0 - h], float)
        xi, eta = _tangent_plane(*self.band_to_sky(band, field, cols, rows), ra0[0], dec0[0])
        cd = np.array([[xi[0] - xi[1], xi[2] - xi[3]], [eta[0] - eta[1], eta[2] - eta[3]]]) / (2 * h)
        return [
            ("RADECSYS", "ICRS", "International Celestial Ref. System"),
            ("CTYPE1", "RA---TAN", "Coordinate type"),
            ("CTYPE2", "DEC--TAN", "Coordinate type"),
            ("CUNIT1", "deg", "Units"),
            ("CUNIT2", "deg", "Units"),
            ("CRPIX1", float(x0 + 1), "X of reference pixel"),
            ("CRPIX2", float(y0 + 1), "Y of reference pixel"),
            ("CRVAL1", float(ra0[0]), "RA of reference pixel (deg)"),
            ("CRVAL2", float(dec0[0]), "Dec of reference pixel (deg)"),
            ("CD1_1", float(cd[0, 0]), "RA deg per column pixel"),
            ("CD1_2", float(cd[0, 1]), "RA deg per row pixel"),
            ("CD2_1", float(cd[1, 0]), "Dec deg per column pixel"),
            ("CD2_2", float(cd[1, 1]), "Dec deg per row pixel"),
        ]

    def astrometry(self, band: str, field: int) -> dict[str, float]:
        """The asTrans coefficients of a frame: mu = A + B row + C col, nu = D + E row + F col (deg).

        Rows and columns are 0-based pixels of the frame; the map is exact for the simulated grid.
        """
        grid = self.grids[band]
        mu0, nu0 = self.r_to_scan(*self.band_to_r(band, np.array([0.0]), np.array([0.0])), field)
        p = _PIXEL_DEG
        return {
            "A": float(mu0[0]),
            "B": p,
            "C": p * grid.tilt,
            "D": float(nu0[0]),
            "E": 0.0,
            "F": p * (1.0 + grid.col_scale),
        }


def _tangent_plane(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic (TAN) standard coordinates (deg) of ``ra``, ``dec`` about the tangent point."""
    ra_r, dec_r = np.radians(ra), np.radians(dec)
    ra0_r, dec0_r = np.radians(ra0), np.radians(dec0)
    cos_c = np.sin(dec0_r) * np.sin(dec_r) + np.cos(dec0_r) * np.cos(dec_r) * np.cos(ra_r - ra0_r)
    xi = np.cos(dec_r) * np.sin(ra_r - ra0_r) / cos_c
    eta = (np.cos(dec0_r) * np.sin(dec_r) - np.sin(dec0_r) * np.cos(dec_r) * np.cos(ra_r - ra0_r)) / cos_c
    return np.degrees(xi), np.degrees(eta)
