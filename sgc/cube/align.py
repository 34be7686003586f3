"""Aligning the five bands of a field onto the pixel grid of its reference (i) band.

Each band is resampled through the mapping its WCS and the reference WCS define (:mod:`sgc.cube.resample`).
SDSS band WCS are good to about 0.1 px, not to the 0.05 px wanted, so by default the mapping is refined
with the stars in the images themselves: stars found in the reference band (:mod:`sgc.cube.stars`) are
centroided in each band at the position the WCS predicts, and a shift or affine correction is fitted to
the differences with sigma clipping (galaxies and blends that slipped through are rejected as outliers)
and added to the mapping. With too few stars the band falls back to a smaller model, then to the WCS
alone, and says so in its diagnostics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import numpy as np
from astropy.wcs import WCS

from sgc.cube.centroid import DEFAULT_SIGMA, Centroids, located_centroids, robust_noise
from sgc.cube.resample import DEFAULT_KERNEL, DEFAULT_STEP, PixelMap, resample, wcs_pixel_map
from sgc.cube.stars import detect_stars
from sgc.sdss.names import BANDS

Method = Literal["wcs", "stars"]
Model = Literal["cubic", "affine", "shift"]
METHODS: tuple[str, ...] = ("wcs", "stars")
MODELS: tuple[str, ...] = ("cubic", "affine", "shift")

# Fewest stars (after clipping) to fit each model; below the shift's minimum the WCS is used alone.
MIN_STARS: dict[str, int] = {"cubic": 40, "affine": 20, "shift": 5}
# Terms of each model (columns of _design): constant, the two slopes, then quadratic and cubic terms.
TERMS: dict[str, int] = {"cubic": 10, "affine": 3, "shift": 1}
# Pixels per unit of the normalised offsets in the quadratic and cubic terms (keeps the fit well conditioned).
_POLY_SCALE = 1000.0
DEFAULT_SEARCH = 3.0  # px: how far a star may sit from where the WCS puts it
_CLIP = 3.0
# Added in quadrature to the noise-based centroid errors when weighting the fit: colour-dependent
# refraction and PSF asymmetries move stars by a few hundredths of a pixel whatever their brightness.
_ERROR_FLOOR = 0.02
_MAX_CLIP_ROUNDS = 10


class BandImage(Protocol):
    """What alignment needs of a band: its pixels and its WCS (:class:`sgc.sdss.frames.Frame` has both)."""

    image: np.ndarray
    wcs: WCS


@dataclass(frozen=True)
class BandAlignment:
    """How one band was put on the reference grid.

    Attributes:
        band: the band.
        method: ``'reference'``, ``'wcs'`` or ``'stars'`` (the method actually used).
        model: the correction fitted (``'affine'`` or ``'shift'``), None without one.
        correction: ``(2, 3)`` coefficients added to the WCS mapping: source ``dx`` and ``dy`` (rows) =
            ``c0 + c1 (x - xc) + c2 (y - yc)`` in reference pixels about the image centre ``(xc, yc)``;
            ``(2, 10)`` for a cubic, whose further terms are ``u^2, uv, v^2, u^3, u^2 v, u v^2, v^3`` with
            ``u = (x - xc) / 1000``, ``v = (y - yc) / 1000``.
        n_stars: stars the correction rests on (after clipping).
        n_rejected: stars clipped as outliers.
        rms: root mean square of the star residuals after the correction, px per axis (NaN without one).
        warning: why the band fell back to a smaller model or to the WCS alone, empty otherwise.
    """

    band: str
    method: str
    model: str | None = None
    correction: np.ndarray = field(default_factory=lambda: np.zeros((2, 3)))
    n_stars: int = 0
    n_rejected: int = 0
    rms: float = float("nan")
    warning: str = ""


@dataclass(frozen=True)
class AlignedField:
    """The five bands of a field on the reference band's pixel grid.

    Attributes:
        cube: float32 ``(5, ny, nx)`` in band order u, g, r, i, z; NaN where a band does not cover.
        valid: bool ``(ny, nx)``, pixels covered by all five bands (with finite values).
        bands: the band order of ``cube``.
        diagnostics: per band, how it was aligned.
    """

    cube: np.ndarray
    valid: np.ndarray
    bands: tuple[str, ...]
    diagnostics: dict[str, BandAlignment]


def align_field(
    frames: Mapping[str, BandImage],
    reference: str = "i",
    method: Method = "stars",
    model: Model = "affine",
    kernel: str = DEFAULT_KERNEL,
    sigma: float = DEFAULT_SIGMA,
    step: int = DEFAULT_STEP,
    colour: bool = False,
) -> AlignedField:
    """Resample the five bands of a field onto the reference band's pixel grid.

    Args:
        frames: the frames by band letter; all of u, g, r, i, z.
        reference: the band whose grid the others are put on.
        method: ``'wcs'`` (the two WCS alone) or ``'stars'`` (WCS refined with the stars in the images).
        model: the correction fitted with ``'stars'``: ``'cubic'`` (for optical distortion the WCS does
            not hold; falls back to ``'affine'`` with fewer than ``MIN_STARS['cubic']`` stars),
            ``'affine'`` (falls back to ``'shift'`` with fewer than ``MIN_STARS['affine']``) or ``'shift'``.
        kernel: interpolation kernel, ``'lanczos3'`` or ``'cubic'``.
        sigma: centroid window width in pixels (about the PSF's sigma).
        step: spacing in pixels of the grid on which the WCS mapping is evaluated exactly.
        colour: with ``'stars'``, fit a term linear in each star's colour (band minus reference magnitude,
            from the windowed fluxes) beside the affine, and align the band for a star of the median
            colour: differential chromatic refraction moves stars by their colour, which no mapping of
            pixels can follow, so the best a single mapping does is to put the typical star right.

    Returns:
        The aligned cube, the mask of pixels all bands cover, and per-band diagnostics.

    Raises:
        ValueError: for a missing band, an unknown method or model.
    """
    missing = [band for band in BANDS if band not in frames]
    if missing or reference not in BANDS:
        raise ValueError(
            f"align_field needs all of {', '.join(BANDS)} (missing {missing}, ref {reference!r})"
        )
    if method not in METHODS or model not in MODELS:
        raise ValueError(f"unknown method {method!r} or model {model!r}: expected {METHODS} and {MODELS}")
    ref = frames[reference]
    shape = ref.image.shape
    stars = detect_stars(ref.image, sigma=sigma) if method == "stars" else None
    cube = np.empty((len(BANDS), *shape), dtype=np.float32)
    valid = np.isfinite(ref.image)
    diagnostics: dict[str, BandAlignment] = {}
    for index, band in enumerate(BANDS):
        if band == reference:
            cube[index] = ref.image
            diagnostics[band] = BandAlignment(band=band, method="reference")
            continue
        pixel_map = wcs_pixel_map(ref.wcs, shape, frames[band].wcs, step)
        if stars is None:
            diagnostics[band] = BandAlignment(band=band, method="wcs")
        else:
            pixel_map, diagnostics[band] = _refine_with_stars(
                pixel_map, frames[band].image, stars, band, model, sigma, colour
            )
        _, covered = resample(frames[band].image, pixel_map, kernel, out=cube[index])
        valid &= covered
        if np.isnan(frames[band].image).any():  # rare: most frames hold no NaN, and the check is cheap
            valid &= np.isfinite(cube[index])
    return AlignedField(cube=cube, valid=valid, bands=BANDS, diagnostics=diagnostics)


def fit_correction(
    x: np.ndarray,
    y: np.ndarray,
    dx: np.ndarray,
    dy: np.ndarray,
    error: np.ndarray,
    centre: tuple[float, float],
    model: Model = "affine",
    clip: float = _CLIP,
    colour: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``(dx, dy)`` as a shift or affine function of position, by weighted least squares with clipping.

    Stars are weighted by ``1 / (error^2 + 0.02^2)``; a star is clipped when either normalised residual
    (residual over ``sqrt(error^2 + 0.02^2)``) exceeds ``clip`` times their robust (MAD) scale, or ``clip``
    if that scale is below 1; refit until no star changes side.

    Args:
        x, y: star positions on the reference grid.
        dx, dy: the offsets to explain, in source pixels.
        error: 1-sigma error of each offset along one axis.
        centre: the point ``(xc, yc)`` the affine terms are taken about.
        model: ``'cubic'`` (20 coefficients), ``'affine'`` (6) or ``'shift'`` (2).
        clip: rejection threshold in robust sigmas.
        colour: each star's colour, if a term linear in it is to be fitted too; its median is subtracted
            first (from the stars kept), so the returned coefficients are those of a star of median colour.

    Returns:
        ``(coef, used)``: ``(2, 3)`` coefficients (``(2, 10)`` for a cubic; :attr:`BandAlignment.correction`;
        zero slopes for a shift) and the bool mask of stars kept.
    """
    columns = TERMS[model]
    design = _design(x, y, centre, columns)
    if colour is not None:
        design = np.column_stack([design, np.zeros_like(x)])
    scale = 1.0 / np.sqrt(error**2 + _ERROR_FLOOR**2)
    target = np.stack([dx, dy], axis=1)
    used = np.ones(x.shape, dtype=bool)
    coef = np.zeros((2, max(columns, 3)))
    for _ in range(_MAX_CLIP_ROUNDS):
        if colour is not None:
            # Centred on the kept stars' median colour: the constant term is then the typical star's offset.
            design[:, -1] = colour - np.median(colour[used])
        solution = np.linalg.lstsq(design[used] * scale[used, None], target[used] * scale[used, None])[0]
        coef[:, :columns] = solution.T[:, :columns]
        normalised = (target - design @ solution) * scale[:, None]
        spread = 1.4826 * np.median(np.abs(normalised[used]))
        # A spread below 1 means the errors are overestimated: never clip within clip x (error + floor).
        keep = np.all(np.abs(normalised) <= clip * max(spread, 1.0), axis=1)
        if np.array_equal(keep, used) or keep.sum() < columns + 1:
            break
        used = keep
    return coef, used


def _refine_with_stars(
    pixel_map: PixelMap,
    image: np.ndarray,
    stars: Centroids,
    band: str,
    model: Model,
    sigma: float,
    colour: bool = False,
) -> tuple[PixelMap, BandAlignment]:
    """The WCS mapping plus the correction that puts the reference stars on their centroids in ``image``."""
    predicted_x, predicted_y = pixel_map.at(stars.x, stars.y)
    found = located_centroids(
        image, predicted_x, predicted_y, search=DEFAULT_SEARCH, sigma=sigma, noise=robust_noise(image)
    )
    ok = found.ok
    if colour:
        ok = ok & (found.flux > 0)
    x, y = stars.x[ok], stars.y[ok]
    colours = -2.5 * np.log10(found.flux[ok] / stars.flux[ok]) if colour else None
    dx, dy = found.x[ok] - predicted_x[ok], found.y[ok] - predicted_y[ok]
    error = np.hypot(found.error, stars.error)[ok]
    centre = ((pixel_map.shape[1] - 1) / 2, (pixel_map.shape[0] - 1) / 2)
    warnings = []
    for candidate in MODELS[MODELS.index(model) :]:
        needed = MIN_STARS[candidate]
        if x.size < needed:
            warnings.append(f"{x.size} stars found in {band}, fewer than the {needed} a {candidate} needs")
            continue
        coef, used = fit_correction(x, y, dx, dy, error, centre, candidate, colour=colours)
        if used.sum() < needed:
            warnings.append(
                f"{used.sum()} stars left in {band} after clipping, fewer than a {candidate} needs"
            )
            continue
        residual = np.stack([dx, dy]) - coef @ _design(x, y, centre, coef.shape[1]).T
        diagnostics = BandAlignment(
            band=band,
            method="stars",
            model=candidate,
            correction=coef,
            n_stars=int(used.sum()),
            n_rejected=int(used.size - used.sum()),
            rms=float(np.sqrt(np.mean(residual[:, used] ** 2))),
            warning="; ".join(warnings),
        )
        return _plus_correction(pixel_map, coef, centre), diagnostics
    warnings.append("aligned with the WCS alone")
    return pixel_map, BandAlignment(band=band, method="wcs", warning="; ".join(warnings))


def _plus_correction(pixel_map: PixelMap, coef: np.ndarray, centre: tuple[float, float]) -> PixelMap:
    """The mapping plus a fitted correction, evaluated at its nodes.

    An affine is exact between nodes; a cubic's curvature over 2048 px is a few 1e-7 px^-1, so bilinear
    interpolation between nodes 64 px apart errs by below 1e-3 px.
    """
    if coef.shape[1] == 3:
        return pixel_map.plus_affine(coef, centre)
    node_y, node_x = np.mgrid[0 : pixel_map.x.shape[0], 0 : pixel_map.x.shape[1]] * float(pixel_map.step)
    basis = _design(node_x.ravel(), node_y.ravel(), centre, coef.shape[1])
    shift = (coef @ basis.T).reshape(2, *node_x.shape)
    return replace(pixel_map, x=pixel_map.x + shift[0], y=pixel_map.y + shift[1])


def _design(x: np.ndarray, y: np.ndarray, centre: tuple[float, float], terms: int = 3) -> np.ndarray:
    """Rows ``[1, x - xc, y - yc, u^2, uv, v^2, u^3, u^2 v, u v^2, v^3][:terms]``: the basis of
    :attr:`BandAlignment.correction` (``u, v`` the offsets from the centre over 1000 px)."""
    dx, dy = x - centre[0], y - centre[1]
    u, v = dx / _POLY_SCALE, dy / _POLY_SCALE
    columns = [np.ones_like(x), dx, dy, u * u, u * v, v * v, u**3, u * u * v, u * v * v, v**3]
    return np.stack(columns[:terms], axis=1)
