"""The simulated sky: stars and galaxies with realistic numbers, magnitudes, colours, sizes and shapes.

Sources are drawn per *segment*: the rows of a run that SDSS assigns to one field (its rows 64 to
``step + 64``, half the overlap on each side), so a source in an overlap is drawn once, shows in both
frames at the same sky position, and belongs to one field in the catalogue. A segment's generator depends
only on (seed, run, camcol, field), so any field can be rendered alone.

Numbers and magnitudes follow power-law counts, normalised to the real sample (``shared/sdss/003918-3-0213``:
5.0 catalogued objects per square arcmin, 43% stars, counted in its rows 64-744). Sources are drawn down
to r = 24, well below the catalogue's completeness limit (r ~ 22.2), as in real images, and stars up to
r = 9, bright enough to saturate (r < ~14) and bleed: the counts then give 2.1 stars a field brighter
than r = 14, 1.1 brighter than 13 and 0.55 brighter than 12 (500 simulated fields), where the real calibObj
sweep (``calibObj-004510-4``, fields 29-31) has 2.7, 1.3 and 1.0 (8, 4 and 3 stars in its 3 fields; its
brightest is r = 11.4). Before, stars stopped at r = 13.5, and a field had 0.5 brighter than 14.

Colours: stars lie along the stellar locus; galaxies are early (45%) or late types whose colours redden
with r as their redshift grows, fitted to the g-r of the real sample's galaxies (see ``_EARLY_COLOURS``).

Profiles are mixtures of Gaussians, so convolving with the (Gaussian-mixture) PSF is exact and cheap:
exponential and de Vaucouleurs profiles truncated as SDSS truncates them (exp smoothly to zero between 3 and
4 r_e, deV between 7 and 8 r_e), fitted once by least squares on the surface brightness and cumulative flux.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sgc.sdss.names import PIXEL_SCALE_ARCSEC
from sgc.sim.geometry import NODE, ScanGeometry, gc_to_eq

# Amplitudes (summing to 1) and variances (in units of r_e^2) of circular Gaussians approximating the
# SDSS exponential and de Vaucouleurs profiles of half-light radius r_e: the flux they enclose is within
# 1% of the truncated profiles' at every radius.
EXP_MIXTURE = (
    np.array([0.010498, 0.083062, 0.362975, 0.543465]),
    np.array([0.018542, 0.105567, 0.410126, 1.435626]),
)
DEV_MIXTURE = (
    np.array([0.005522, 0.020198, 0.049027, 0.092533, 0.144600, 0.195765, 0.239805, 0.252550]),
    np.array([1.053812e-04, 1.149831e-03, 6.526395e-03, 2.857266e-02, 1.093610e-01, 3.970229e-01,
              1.541652, 8.571234]),
)  # fmt: skip

STAR_TYPE = 6  # SDSS OBJC_TYPE
GALAXY_TYPE = 3

MAG_ZERO = 22.5  # nanomaggies: flux = 10 ** ((22.5 - mag) / 2.5)
FAINT_LIMIT = 24.0  # r, faintest source drawn
COMPLETENESS_MAG = 22.2  # r where half the sources make the catalogue
COMPLETENESS_WIDTH = 0.2  # mag, width of the logistic completeness
EDGE_MARGIN = 32  # pixels beyond the frame's columns where sources are still drawn (their light spills in)
PRIMARY_START = 64  # first row a field owns in the catalogue: half the 128-row overlap

# Cumulative counts per square arcmin brighter than r = 22.2 and their log slopes d log N / dm.
_STAR_COUNTS = (2.10, 0.25, 9.0)  # density at 22.2, slope, brightest r
_GALAXY_COUNTS = (2.60, 0.45, 15.5)

# Stellar locus in (u-g, g-r, r-i, i-z), from hot halo turn-off stars to M dwarfs; stars are spread
# evenly along it, which gives the median g-r ~ 0.9 and r-i ~ 0.35 of the real calibObj star sweep.
_LOCUS = np.array(
    [
        [0.85, 0.25, 0.08, 0.02],
        [1.15, 0.45, 0.15, 0.06],
        [1.90, 0.95, 0.35, 0.18],
        [2.45, 1.35, 0.85, 0.45],
        [2.60, 1.45, 1.55, 0.85],
    ]
)
_STAR_COLOUR_SCATTER = np.array([0.08, 0.04, 0.04, 0.04])
# Galaxy colours at r = 17 and their reddening per magnitude fainter (redshift), early and late types.
# The g-r reddening (0.25 and 0.10 a magnitude) puts the red sequence at g-r ~ 1.6 and the blue cloud at
# ~ 0.8 by r = 20.5 (z ~ 0.3-0.4). Measured in 8-pixel apertures on the real sample, its galaxies brighter
# than r = 21 have g-r quartiles 0.66, 1.07, 1.55 (63 galaxies); the same measurement on 4 simulated fields
# gave 0.59, 0.75, 1.15 with slopes of 0.17 and 0.05, 35% early types and a g-r scatter of 0.10, and gives
# 0.74, 1.00, 1.44 (395 galaxies) with these.
_EARLY_COLOURS = (np.array([1.75, 0.75, 0.40, 0.30]), np.array([0.10, 0.25, 0.06, 0.04]))
_LATE_COLOURS = (np.array([1.20, 0.45, 0.28, 0.15]), np.array([0.02, 0.10, 0.03, 0.02]))
_GALAXY_COLOUR_SCATTER = np.array([0.20, 0.15, 0.08, 0.08])
_EARLY_FRACTION = 0.45


@dataclass(frozen=True)
class Sources:
    """Sources of one segment (or several stacked), the truth behind images and catalogue.

    Attributes:
        ra: right ascension (deg).
        dec: declination (deg).
        field: the field whose primary rows hold the source.
        row: 0-based r-band row of the source in ``field``'s frame.
        col: 0-based r-band column.
        is_star: True for stars, False for galaxies.
        flux: (n, 5) total flux in nanomaggies per band u, g, r, i, z.
        r_e: half-light radius (arcsec) along the major axis, 0 for stars.
        q: minor-to-major axis ratio.
        pa: position angle of the major axis, degrees east of north.
        frac_dev: fraction of the flux in the de Vaucouleurs component (rest exponential).
        detected: whether the source makes the catalogue (completeness drawn, not yet the footprint).
    """

    ra: np.ndarray
    dec: np.ndarray
    field: np.ndarray
    row: np.ndarray
    col: np.ndarray
    is_star: np.ndarray
    flux: np.ndarray
    r_e: np.ndarray
    q: np.ndarray
    pa: np.ndarray
    frac_dev: np.ndarray
    detected: np.ndarray

    def __len__(self) -> int:
        return int(self.ra.size)

    def take(self, index: np.ndarray) -> Sources:
        """The sources selected by a boolean mask or index array."""
        return Sources(**{name: getattr(self, name)[index] for name in self.__dataclass_fields__})

    @staticmethod
    def concatenate(parts: list[Sources]) -> Sources:
        """Stack several source sets into one."""
        names = Sources.__dataclass_fields__
        return Sources(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in names})


def segment_rng(seed: int, run: int, camcol: int, field: int) -> np.random.Generator:
    """The generator of one segment's sources; ``field`` may be -1 (the segment before field 0)."""
    return np.random.default_rng(np.random.SeedSequence([seed, run, camcol, 3, field + 1]))


def draw_segment(geometry: ScanGeometry, rng: np.random.Generator, field: int) -> Sources:
    """Draw the sources whose centres lie in the primary rows of ``field``, columns plus a margin.

    Args:
        geometry: the run's scan geometry.
        rng: the segment's generator (see :func:`segment_rng`).
        field: the field number.

    Returns:
        Stars then galaxies, positions uniform over the segment.
    """
    rows, cols = geometry.shape
    width = cols + 2 * EDGE_MARGIN
    area = geometry.step * width * (PIXEL_SCALE_ARCSEC / 60.0) ** 2  # arcmin^2
    n_star = rng.poisson(area * _density(*_STAR_COUNTS))
    n_gal = rng.poisson(area * _density(*_GALAXY_COUNTS))
    n = n_star + n_gal
    row = PRIMARY_START + rng.uniform(0.0, geometry.step, n)
    col = rng.uniform(-EDGE_MARGIN, cols + EDGE_MARGIN, n)
    ra, dec = gc_to_eq(*geometry.r_to_scan(col, row, field), NODE, geometry.incl)
    is_star = np.arange(n) < n_star
    mag_r = np.concatenate(
        [_power_law_mags(rng, n_star, *_STAR_COUNTS[1:]), _power_law_mags(rng, n_gal, *_GALAXY_COUNTS[1:])]
    )
    early = ~is_star & (rng.random(n) < _EARLY_FRACTION)
    colours = np.where(is_star[:, None], _star_colours(rng, n), _galaxy_colours(rng, mag_r, early))
    frac_dev = np.where(early, _early_frac_dev(rng, n), _late_frac_dev(rng, n)) * ~is_star
    r_e = _half_light_radii(rng, mag_r, frac_dev) * ~is_star
    q = np.where(frac_dev >= 0.5, np.clip(rng.normal(0.75, 0.15, n), 0.35, 1.0), rng.uniform(0.15, 1.0, n))
    detected = rng.random(n) < 1.0 / (1.0 + np.exp((mag_r - COMPLETENESS_MAG) / COMPLETENESS_WIDTH))
    return Sources(
        ra=ra,
        dec=dec,
        field=np.full(n, field),
        row=row,
        col=col,
        is_star=is_star,
        flux=mag_to_flux(_band_mags(mag_r, colours)),
        r_e=r_e,
        q=np.where(is_star, 1.0, q),
        pa=rng.uniform(0.0, 180.0, n),
        frac_dev=frac_dev,
        detected=detected,
    )


def mag_to_flux(mag: np.ndarray) -> np.ndarray:
    """Pogson magnitudes to nanomaggies."""
    return 10.0 ** ((MAG_ZERO - mag) / 2.5)


def _density(density_22: float, slope: float, bright: float) -> float:
    """Sources per arcmin^2 between ``bright`` and the faint limit for counts N(<m) ~ 10^(slope m)."""
    return density_22 * (
        10 ** (slope * (FAINT_LIMIT - COMPLETENESS_MAG)) - 10 ** (slope * (bright - COMPLETENESS_MAG))
    )


def _power_law_mags(rng: np.random.Generator, n: int, slope: float, bright: float) -> np.ndarray:
    """Magnitudes between ``bright`` and the faint limit with cumulative counts ~ 10^(slope m)."""
    lo, hi = 10 ** (slope * bright), 10 ** (slope * FAINT_LIMIT)
    return np.log10(lo + rng.random(n) * (hi - lo)) / slope


def _band_mags(mag_r: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """(n, 5) magnitudes in u, g, r, i, z from r and the colours u-g, g-r, r-i, i-z."""
    g = mag_r + colours[:, 1]
    u = g + colours[:, 0]
    i = mag_r - colours[:, 2]
    z = i - colours[:, 3]
    return np.stack([u, g, mag_r, i, z], axis=1)


def _star_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    t = rng.random(n) * (len(_LOCUS) - 1)
    k = np.minimum(t.astype(int), len(_LOCUS) - 2)
    w = (t - k)[:, None]
    return (1 - w) * _LOCUS[k] + w * _LOCUS[k + 1] + rng.normal(0.0, 1.0, (n, 4)) * _STAR_COLOUR_SCATTER


def _galaxy_colours(rng: np.random.Generator, mag_r: np.ndarray, early: np.ndarray) -> np.ndarray:
    depth = np.clip(mag_r - 17.0, 0.0, 5.0)[:, None]
    early_c = _EARLY_COLOURS[0] + depth * _EARLY_COLOURS[1]
    late_c = _LATE_COLOURS[0] + depth * _LATE_COLOURS[1]
    scatter = rng.normal(0.0, 1.0, (mag_r.size, 4)) * _GALAXY_COLOUR_SCATTER
    return np.where(early[:, None], early_c, late_c) + scatter


def _early_frac_dev(rng: np.random.Generator, n: int) -> np.ndarray:
    """Early types: pure de Vaucouleurs or bulge-dominated."""
    return np.where(rng.random(n) < 0.6, 1.0, rng.uniform(0.5, 1.0, n))


def _late_frac_dev(rng: np.random.Generator, n: int) -> np.ndarray:
    """Late types: pure exponential discs or discs with a small bulge."""
    return np.where(rng.random(n) < 0.7, 0.0, rng.uniform(0.0, 0.5, n))


def _half_light_radii(rng: np.random.Generator, mag_r: np.ndarray, frac_dev: np.ndarray) -> np.ndarray:
    """Log-normal half-light radii (arcsec): ~1.3" at r = 19, smaller when fainter, bulges more compact."""
    log_re = np.log10(1.3) - 0.11 * (mag_r - 19.0) + rng.normal(0.0, 0.2, mag_r.size)
    return np.clip(10**log_re * (1.0 - 0.2 * frac_dev), 0.15, 12.0)


def galaxy_components(sources: Sources) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian components of each source's intrinsic profile on the sky.

    Returns:
        ``(owner, weight, cov)``: the source index of each component, its share of the source's flux, and
        its (2, 2) covariance in arcsec^2 on the tangent plane (east, north). A star is one component of
        zero covariance; components of zero weight are left out.
    """
    n = len(sources)
    amps = np.concatenate([EXP_MIXTURE[0], DEV_MIXTURE[0]])
    variances = np.concatenate([EXP_MIXTURE[1], DEV_MIXTURE[1]])
    is_dev = np.arange(amps.size) >= EXP_MIXTURE[0].size
    frac = np.where(is_dev[None, :], sources.frac_dev[:, None], 1.0 - sources.frac_dev[:, None])
    weight = np.where(sources.is_star[:, None], 0.0, frac * amps[None, :])
    owner = np.repeat(np.arange(n), amps.size).reshape(n, amps.size)
    pa = np.radians(sources.pa)
    major = np.stack([np.sin(pa), np.cos(pa)], axis=1)  # unit vector (east, north)
    q2 = sources.q**2
    shape = (1.0 - q2)[:, None, None] * major[:, :, None] * major[:, None, :] + q2[:, None, None] * np.eye(2)
    cov = (variances[None, :, None, None] * (sources.r_e**2)[:, None, None, None]) * shape[:, None, :, :]
    keep = weight > 0
    stars = np.flatnonzero(sources.is_star)
    return (
        np.concatenate([owner[keep], stars]),
        np.concatenate([weight[keep], np.ones(stars.size)]),
        np.concatenate([cov[keep], np.zeros((stars.size, 2, 2))]),
    )
