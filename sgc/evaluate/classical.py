"""The classical baseline an astronomer reaches for first: source detection and a concentration cut.

On the aligned r band of each field, Source Extractor's algorithm (``sep``): a background map (64-pixel
meshes) subtracted, sources detected :data:`DETECT_SIGMA` sigma above it over at least :data:`MIN_AREA`
connected pixels, deblended; then each source's concentration, the magnitude difference between apertures
of :data:`INNER_PX` and :data:`OUTER_PX` pixels radius. A point source keeps most of its light inside the PSF
core, so stars have the larger concentration: a source is a star above a threshold, a galaxy below. The
threshold is the one that classifies the train region's catalogue-matched sources best (the baseline is
tuned on the same train data as the model, and scored on the same test region).

Its predictions take the same form as the model's (:class:`~sgc.cube.store.PredictionStore`): each detected
source's pixels (its segmentation) get its class with probability one, every other pixel sky; and the
detections form its object catalogue. So the same scorer, with the same metrics, scores it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from sgc.classes import CLASS_NAMES, GALAXY, IGNORE, SKY, STAR
from sgc.cube.objects import locate_objects
from sgc.cube.store import CLASS, IMAGE, PROB, VALID, CubeStore, PredictionStore
from sgc.evaluate.catalog import make_catalog, write_catalog
from sgc.evaluate.metrics import MATCH_ARCSEC
from sgc.evaluate.predict import STORE_NAME
from sgc.evaluate.score import Region
from sgc.sky import match_positions
from sgc.windows import pixels_in

DETECT_SIGMA = 1.5
MIN_AREA = 5
INNER_PX = 1.5
OUTER_PX = 5.0
BACKGROUND_MESH = 64
METHOD = "classical: sep detection + concentration cut"


@dataclass
class Detections:
    """The sources of one field.

    Attributes:
        x, y: positions (0-based pixels).
        concentration: ``mag(INNER_PX) - mag(OUTER_PX)``, larger for more concentrated sources.
        flux: flux in the outer aperture, nanomaggies.
        area: pixels of each source's segmentation.
        segmentation: ``(rows, columns)`` int, source index + 1 on its pixels, 0 elsewhere.
    """

    x: np.ndarray
    y: np.ndarray
    concentration: np.ndarray
    flux: np.ndarray
    area: np.ndarray
    segmentation: np.ndarray


def detect(cube: CubeStore, field: str) -> Detections:
    """Detect and measure the sources of one field's aligned r band."""
    import sep

    slot = cube.slot(field)
    image = np.ascontiguousarray(cube[IMAGE][slot, cube.bands.index("r")], dtype=np.float64)
    invalid = ~cube[VALID][slot] | ~np.isfinite(image)
    image[invalid] = 0.0
    background = sep.Background(image, mask=invalid, bw=BACKGROUND_MESH, bh=BACKGROUND_MESH)
    data = image - background.back()
    data[invalid] = 0.0
    found, segmentation = sep.extract(
        data,
        DETECT_SIGMA,
        err=background.globalrms,
        mask=invalid,
        minarea=MIN_AREA,
        segmentation_map=True,
    )
    x, y = np.asarray(found["x"], dtype=np.float64), np.asarray(found["y"], dtype=np.float64)
    inner, _, _ = sep.sum_circle(data, x, y, INNER_PX, mask=invalid)
    outer, _, _ = sep.sum_circle(data, x, y, OUTER_PX, mask=invalid)
    with np.errstate(divide="ignore", invalid="ignore"):
        concentration = np.where((inner > 0) & (outer > 0), 2.5 * np.log10(inner / outer), -np.inf)
    return Detections(x, y, concentration, np.asarray(outer), np.asarray(found["npix"]), segmentation)


def _match(cube: CubeStore, field: str, found: Detections, catalog: Table) -> tuple[np.ndarray, np.ndarray]:
    """Catalogue class of every detection with a catalogue object within the match radius, and which."""
    located = locate_objects(cube, catalog, [field])
    ra, dec = cube.field_wcs(cube.slot(field)).pixel_to_world_values(found.x, found.y)
    matched, nearest = match_positions(ra, dec, located["ra"], located["dec"], MATCH_ARCSEC)
    return matched, np.asarray(located["class"], dtype="<U6")[nearest[matched]]


def tune_threshold(concentration: np.ndarray, is_star: np.ndarray) -> float:
    """The concentration threshold (star at or above) that classifies the given sources best.

    Ties go to the middle of the best interval; with no source of one class, the threshold puts every
    source in the other.
    """
    order = np.argsort(concentration)
    c, star = concentration[order], is_star[order]
    if c.size == 0:
        return 0.0
    # Threshold between c[k-1] and c[k]: galaxies below (the first k), stars from k on.
    galaxies_below = np.concatenate([[0], np.cumsum(~star)])
    stars_above = np.concatenate([np.cumsum(star[::-1])[::-1], [0]])
    correct = galaxies_below + stars_above
    k = int(np.argmax(correct))
    if k == 0:
        return float(c[0]) - 1.0
    if k == c.size:
        return float(c[-1]) + 1.0
    return float((c[k - 1] + c[k]) / 2)


def classical_predictions(
    cube: CubeStore, train: Region, scored: Region, catalog: Table, out: str | Path
) -> dict[str, Any]:
    """Detect, tune the cut on ``train``, classify the fields of ``scored``, and write predictions to ``out``.

    Args:
        cube: the cube store (the aligned r band).
        train: the region whose catalogue-matched sources tune the threshold.
        scored: the region whose fields are classified.
        catalog: the catalogue (common shape of :mod:`sgc.sdss.catalogs`).
        out: the output folder: a prediction store and an object catalogue, as :mod:`sgc.evaluate.predict`
            writes them.

    Returns:
        What the baseline was: its method, threshold and the train sources it was tuned on.
    """
    out = Path(out)
    fields = sorted(set(train.masks) | set(scored.masks), key=cube.fields.index)
    found = {name: detect(cube, name) for name in fields}
    concentration, stars = [], []
    for name, mask in train.masks.items():
        matched, classes = _match(cube, name, found[name], catalog)
        inside = pixels_in(mask, found[name].x, found[name].y)
        keep = inside[matched]
        concentration.append(found[name].concentration[matched][keep])
        stars.append(classes[keep] == "star")
    c = np.concatenate(concentration) if concentration else np.empty(0)
    is_star = np.concatenate(stars) if stars else np.empty(0, dtype=bool)
    finite = np.isfinite(c)
    threshold = tune_threshold(c[finite], is_star[finite])
    record = {
        "method": METHOD,
        "threshold_mag": threshold,
        "train_sources": int(finite.sum()),
        "detect_sigma": DETECT_SIGMA,
        "apertures_px": [INNER_PX, OUTER_PX],
    }
    store_path = out / STORE_NAME
    if store_path.exists():
        shutil.rmtree(store_path)
    names = list(scored.masks)
    predictions = PredictionStore.create(store_path, cube, names, CLASS_NAMES, record)
    tables = []
    for name in names:
        slot = predictions.slot(name)
        classes = np.where(found[name].concentration >= threshold, STAR, GALAXY)
        seg = found[name].segmentation
        cls = np.full(seg.shape, SKY, dtype=np.uint8)
        cls[seg > 0] = classes[seg[seg > 0] - 1]
        valid = cube[VALID][cube.slot(name)]
        cls[~valid] = IGNORE
        prob = np.stack([cls == k for k in range(len(CLASS_NAMES))]).astype(np.float16)
        prob[:, ~valid] = np.nan
        predictions[PROB][slot] = prob
        predictions[CLASS][slot] = cls
        predictions.mark_done(slot)
        d = found[name]
        wcs = cube.field_wcs(cube.slot(name))
        tables.append(make_catalog(name, wcs, d.x, d.y, classes, np.ones(len(d.x)), d.area, d.flux))
    write_catalog(tables, out)
    return record
