"""The catalogue of predicted objects: connected star and galaxy regions of a class map, split by a watershed.

A pixel predicted star or galaxy belongs to an object. Touching objects share one connected region, so each
region is split by a watershed on the r-band flux (smoothed by :data:`SMOOTH_PX`), from the flux peaks
inside it at least :data:`PEAK_DISTANCE_PX` apart: the same deblending idea as Source Extractor's, on the
model's mask instead of a threshold. A region with no peak stays whole.

Each object gets its pixel centroid (the mean position of its pixels, weighted by their probability of
being an object), RA and Dec through the field's WCS, its class (the object class with the higher mean
probability over its pixels), that mean probability, its area and its r-band flux (the sum of the aligned
r band over its pixels, nanomaggies) with the Pogson magnitude of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import Table, vstack
from astropy.wcs import WCS
from scipy import ndimage

from sgc.atomic import atomic_write
from sgc.classes import CLASS_NAMES, GALAXY, SKY, STAR
from sgc.sdss.catalogs import nanomaggies_to_mag

SMOOTH_PX = 1.0
PEAK_DISTANCE_PX = 3
CATALOG_STEM = "objects"
COLUMNS: tuple[str, ...] = ("field", "id", "ra", "dec", "x", "y", "class", "prob", "area", "flux_r", "mag_r")


def find_objects(
    cls_map: np.ndarray,
    prob: np.ndarray,
    flux_r: np.ndarray,
    wcs: WCS,
    field: str,
    min_area: int = 3,
) -> Table:
    """The objects of one field's class map.

    Args:
        cls_map: ``(rows, columns)`` predicted class (values of :mod:`sgc.classes`).
        prob: ``(classes, rows, columns)`` probabilities in the order of ``CLASS_NAMES``.
        flux_r: the aligned r band, nanomaggies (NaN where not covered).
        wcs: the field's grid WCS.
        field: the field id, for the table.
        min_area: smallest object kept, pixels.

    Returns:
        One row per object, columns :data:`COLUMNS`, ids from 1 in order of position.
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    objects = (cls_map == STAR) | (cls_map == GALAXY)
    regions, n = ndimage.label(objects)
    if n == 0:
        return empty_catalog()
    flux = ndimage.gaussian_filter(np.nan_to_num(flux_r, nan=0.0).astype(np.float64), SMOOTH_PX)
    peaks = peak_local_max(flux, min_distance=PEAK_DISTANCE_PX, labels=regions, exclude_border=False)
    markers = np.zeros(cls_map.shape, dtype=np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # A region without a peak (flat, or all at the border) keeps its own marker: its first pixel.
    unmarked = np.setdiff1d(np.arange(1, n + 1), np.unique(regions[markers > 0]))
    if unmarked.size:
        firsts = ndimage.find_objects(regions)
        for k, label in enumerate(unmarked, start=len(peaks) + 1):
            box = firsts[label - 1]
            ys, xs = np.nonzero(regions[box] == label)
            markers[box[0].start + ys[0], box[1].start + xs[0]] = k
    segments = watershed(-flux, markers, mask=objects)
    return _measure(segments, prob, flux_r, wcs, field, min_area)


def _measure(
    segments: np.ndarray, prob: np.ndarray, flux_r: np.ndarray, wcs: WCS, field: str, min_area: int
) -> Table:
    """Area, centroid, class, mean probability and flux of every labelled segment."""
    index = np.arange(1, int(segments.max()) + 1)
    area = ndimage.sum_labels(np.ones(segments.shape), segments, index)
    keep = area >= min_area
    index, area = index[keep], area[keep]
    if index.size == 0:
        return empty_catalog()
    weight = np.nan_to_num(1.0 - prob[SKY].astype(np.float64), nan=0.0)
    ys, xs = np.indices(segments.shape, dtype=np.float64)
    total = ndimage.sum_labels(weight, segments, index)
    total = np.where(total > 0, total, 1.0)
    x = ndimage.sum_labels(weight * xs, segments, index) / total
    y = ndimage.sum_labels(weight * ys, segments, index) / total
    star = ndimage.mean(np.nan_to_num(prob[STAR].astype(np.float64)), segments, index)
    galaxy = ndimage.mean(np.nan_to_num(prob[GALAXY].astype(np.float64)), segments, index)
    flux = ndimage.sum_labels(np.nan_to_num(flux_r, nan=0.0).astype(np.float64), segments, index)
    order = np.lexsort((x, y))
    classes = np.where(star >= galaxy, STAR, GALAXY)
    prob = np.maximum(star, galaxy)
    return make_catalog(field, wcs, *(v[order] for v in (x, y, classes, prob, area, flux)))


def make_catalog(
    field: str,
    wcs: WCS,
    x: np.ndarray,
    y: np.ndarray,
    classes: np.ndarray,
    prob: np.ndarray,
    area: np.ndarray,
    flux_r: np.ndarray,
) -> Table:
    """An object catalogue of one field, columns :data:`COLUMNS`, ids from 1 in the order given.

    Args:
        field: the field id.
        wcs: the field's grid WCS, which gives RA and Dec.
        x, y: centroids, 0-based pixels.
        classes: class values (star or galaxy).
        prob: the probability of each object's class.
        area: pixels of each object.
        flux_r: r-band flux, nanomaggies.
    """
    if len(x) == 0:
        return empty_catalog()
    ra, dec = wcs.pixel_to_world_values(x, y)
    return Table(
        {
            "field": np.full(len(x), field, dtype="<U13"),
            "id": np.arange(1, len(x) + 1, dtype=np.int64),
            "ra": np.asarray(ra, dtype=np.float64),
            "dec": np.asarray(dec, dtype=np.float64),
            "x": np.asarray(x, dtype=np.float64),
            "y": np.asarray(y, dtype=np.float64),
            "class": np.asarray(CLASS_NAMES)[np.asarray(classes)].astype("<U6"),
            "prob": np.asarray(prob, dtype=np.float32),
            "area": np.asarray(area).astype(np.int64),
            "flux_r": np.asarray(flux_r, dtype=np.float32),
            "mag_r": nanomaggies_to_mag(flux_r).astype(np.float32),
        }
    )


def empty_catalog() -> Table:
    """An object catalogue with no rows."""
    kinds = {"field": "<U13", "id": np.int64, "ra": np.float64, "dec": np.float64, "x": np.float64}
    kinds |= {"y": np.float64, "class": "<U6", "prob": np.float32, "area": np.int64}
    kinds |= {"flux_r": np.float32, "mag_r": np.float32}
    return Table({name: np.empty(0, dtype=kinds[name]) for name in COLUMNS})


def write_catalog(tables: list[Table], folder: str | Path) -> list[Path]:
    """Write the objects of every field as ``FOLDER/objects.fits`` and ``FOLDER/objects.csv``, atomically.

    Returns:
        The two paths.
    """
    folder = Path(folder)
    table = vstack(tables) if tables else empty_catalog()
    table.meta = {"EXTNAME": "OBJECTS"}
    written = []
    for suffix, fmt in ((".fits", "fits"), (".csv", "ascii.csv")):
        path = folder / f"{CATALOG_STEM}{suffix}"
        with atomic_write(path, "wb" if fmt == "fits" else "w", sync=False) as f:
            table.write(f, format=fmt)
        written.append(path)
    return written


def read_catalog_file(path: str | Path) -> Table:
    """A predicted-object catalogue written by :func:`write_catalog` (FITS)."""
    return Table.read(path, format="fits")
