"""``sgc label``: catalogue stars and galaxies painted into ``label (field, y, x)`` of the cube store.

Label values are those of :mod:`sgc.classes` (sky, star, galaxy, ignore); see :mod:`sgc.masks.paint` for
the overlap rule. For every done field, the catalogue objects near it on the sky (a k-d tree on unit
vectors) go through the field's stored WCS (``wcs``, the i-band header of the stored grid) to 0-based
stored pixels; whichever field the catalogue says an object belongs to, it is painted on every stored field
it lands on, so the rows that consecutive fields share are labelled in both.

Radii, in stored pixels (the pixel scale comes from the stored WCS), set by :class:`sgc.config.LabelConfig`:

- star: ``star_radius_fwhm`` times the r-band PSF FWHM (the catalogue's ``PSF_FWHM`` where present and
  positive, else ``default_psf_fwhm_arcsec``).
- galaxy: ``galaxy_radius_fwhm`` times the FWHM of a Gaussian with the object's r-band adaptive second
  moment ``M_RR_CC`` (calibObj and photoObj files; ``2.3548 * sqrt(M_RR_CC / 2)`` pixels of 0.396"), else
  ``default_galaxy_radius_arcsec``; never smaller than a star's radius at the same place, since no object
  is narrower than the PSF (faint galaxies' moments are noisy and can be).
- both clamped to ``[min_radius_px, max_radius_px]``; ``min_radius_px`` of at least ``sqrt(0.5)`` keeps
  the pixel nearest each centre inside its disk.

In ``point`` mode (the 2023 report's labels) each object paints the one pixel nearest its centre (halves
round up), with no ring.

The work runs on the current Dask scheduler (the run's cluster, :mod:`sgc.compute`; threads where there is
none, the kernel releases the GIL): ``dask.array.map_blocks`` over the chunks of ``valid``, each chunk
given the objects whose disk or ring reaches it (bucketed with that halo, so a disk crossing a chunk border
is painted whole on both sides), then ``dask.array.store`` into each done field's region of ``label``.
Workers write their chunks themselves; no pixels travel through the client.

The label array's attributes record the classes, the catalogue files, the settings, the fields labelled
and the objects painted per field; they are cleared before painting and written last, so a run killed
half-way claims no fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from sgc import __version__
from sgc.classes import GALAXY, IGNORE, LABEL_VALUES, STAR
from sgc.config import LabelConfig
from sgc.cube.store import (
    ATTR_CATALOGS,
    ATTR_CLASSES,
    ATTR_FIELDS,
    ATTR_OBJECTS,
    ATTR_SETTINGS,
    ATTR_VERSION,
    LABEL,
    VALID,
    CubeStore,
)
from sgc.errors import SgcError
from sgc.masks.paint import paint_disks, paint_order
from sgc.sdss.catalogs import read_catalogs
from sgc.sdss.names import BANDS
from sgc.sky import grid_cap, pixel_scale_arcsec, unit_vectors

_R = BANDS.index("r")
_EMPTY = np.empty((4, 0), dtype=np.float64)  # the objects of a chunk that no object reaches


class LabelError(SgcError):
    """Labelling that cannot start: no catalogue given, no done field in the store."""


@dataclass
class LabelSummary:
    """What ``label_store`` painted.

    Attributes:
        store: the cube store.
        catalogs: the catalogue files read.
        objects: catalogue stars and galaxies read.
        painted: per labelled field, objects whose centre pixel lies on its grid, per class.
        outside: catalogue objects whose centre lies on no done field of the store.
    """

    store: Path
    catalogs: list[Path]
    objects: int
    painted: dict[str, dict[str, int]]
    outside: int

    def format(self) -> str:
        """A human summary: totals, then one line per field."""
        stars = sum(p["star"] for p in self.painted.values())
        galaxies = sum(p["galaxy"] for p in self.painted.values())
        lines = [
            f"{self.store}: {len(self.painted)} field(s) labelled from {len(self.catalogs)} catalogue(s): "
            f"{stars} star and {galaxies} galaxy centres painted, {self.outside} of {self.objects} "
            "catalogue objects on no stored field"
        ]
        lines += [f"  {f}: {p['star']} stars, {p['galaxy']} galaxies" for f, p in self.painted.items()]
        return "\n".join(lines)


def object_radii(table: Table, pixel_scale: float, settings: LabelConfig) -> np.ndarray:
    """Disk radius of every object, in pixels of a grid of ``pixel_scale`` arcsec.

    Args:
        table: catalogue rows with ``class``, ``psf_fwhm`` and ``moment_fwhm_r``.
        pixel_scale: arcsec per pixel of the grid painted.
        settings: the radius rules.

    Returns:
        float64 radii, by the rules of the module docstring.
    """
    psf = np.asarray(table["psf_fwhm"][:, _R], dtype=np.float64)
    psf = np.where(np.isfinite(psf) & (psf > 0), psf, settings.default_psf_fwhm_arcsec)
    star = settings.star_radius_fwhm * psf
    moment = np.asarray(table["moment_fwhm_r"], dtype=np.float64)
    galaxy = np.where(
        np.isfinite(moment), settings.galaxy_radius_fwhm * moment, settings.default_galaxy_radius_arcsec
    )
    radius = np.where(np.asarray(table["class"]) == "star", star, np.maximum(galaxy, star)) / pixel_scale
    return np.clip(radius, settings.min_radius_px, settings.max_radius_px)


def label_store(store: str | Path, catalogs: Sequence[str | Path], settings: LabelConfig) -> LabelSummary:
    """Paint the catalogues' stars and galaxies into ``label`` for every done field of ``store``.

    Args:
        store: a cube store made by ``sgc ingest``.
        catalogs: catalogue files (:func:`sgc.sdss.discover.find_catalogs` finds them below folders).
        settings: radii, ring and mode.

    Returns:
        Objects painted per field and class, and how many landed on no field.

    Raises:
        LabelError: if no catalogue is found or the store has no done field.
        InputFileError: naming the first catalogue that cannot be read.
    """
    store = Path(store)
    paths = [Path(p) for p in catalogs]
    if not paths:
        raise LabelError(f"{store}: no catalogue to paint labels from")
    table = read_catalogs(paths)
    cube = CubeStore.open(store, mode="r+")
    names = cube.fields
    slots = [int(k) for k in cube.done_slots()]
    if not slots:
        raise LabelError(f"{store}: no field is done; ingest first")
    valid = da.from_zarr(cube[VALID])
    chunk = valid.chunksize[1:]
    objects = np.empty(valid.numblocks, dtype=object)
    objects.fill(_EMPTY)
    ra, dec = np.asarray(table["ra"]), np.asarray(table["dec"])
    tree = cKDTree(unit_vectors(ra, dec))
    on_field = np.zeros(len(table), dtype=bool)
    painted = {}
    ring = settings.ignore_ring_px if settings.mode == "disk" else 0.0
    for slot in slots:
        wcs = cube.field_wcs(slot)
        near = _near_field(tree, wcs, valid.shape[1:], settings)
        y, x, radius, cls, centred = _field_objects(table[near], wcs, valid.shape[1:], settings)
        on_field[near[centred]] = True
        painted[names[slot]] = {
            "star": int(np.count_nonzero(centred & (cls == STAR))),
            "galaxy": int(np.count_nonzero(centred & (cls == GALAXY))),
        }
        order = paint_order(radius, cls)
        objects[slot] = _buckets(
            y[order], x[order], radius[order], cls[order], ring, chunk, valid.numblocks[1:]
        )

    label = cube.pixel_array(LABEL, np.uint8, IGNORE)
    label.attrs.update({ATTR_FIELDS: [], ATTR_OBJECTS: {}})
    painted_blocks = da.map_blocks(
        _paint_chunk,
        valid,
        da.from_array(objects, chunks=1, name=False),
        ring=ring,
        dtype=np.uint8,
        meta=np.empty((0, 0, 0), dtype=np.uint8),
    )
    da.store(
        [painted_blocks[s : s + 1] for s in slots],
        [label] * len(slots),
        regions=[(slice(s, s + 1),) for s in slots],
        lock=False,
    )
    label.attrs.update(
        {
            ATTR_CLASSES: LABEL_VALUES,
            ATTR_CATALOGS: [str(p) for p in paths],
            ATTR_SETTINGS: settings.model_dump(mode="json"),
            ATTR_FIELDS: list(painted),
            ATTR_OBJECTS: painted,
            ATTR_VERSION: __version__,
        }
    )
    return LabelSummary(store, paths, len(table), painted, int(np.count_nonzero(~on_field)))


def _near_field(tree: cKDTree, wcs: WCS, shape: tuple[int, int], settings: LabelConfig) -> np.ndarray:
    """Indices of the catalogue objects within reach of a field: the grid grown by the largest disk."""
    return grid_cap(wcs, shape, settings.max_radius_px + settings.ignore_ring_px + 2).query(tree)


def _field_objects(
    table: Table, wcs: WCS, shape: tuple[int, int], settings: LabelConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stored-pixel positions, radii and classes of a field's nearby objects, and which are centred on it.

    Returns:
        ``(y, x, radius, cls, centred)``: ``centred`` marks objects whose nearest pixel lies on the grid.
    """
    x, y = wcs.world_to_pixel_values(np.asarray(table["ra"]), np.asarray(table["dec"]))
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    cls = np.where(np.asarray(table["class"]) == "star", STAR, GALAXY).astype(np.uint8)
    # Nearest pixel, halves up; the 2023 code truncated (and swapped the axes).
    row, col = np.floor(y + 0.5), np.floor(x + 0.5)
    centred = (row >= 0) & (row < shape[0]) & (col >= 0) & (col < shape[1])
    if settings.mode == "point":
        return row, col, np.zeros(len(table)), cls, centred
    return y, x, object_radii(table, pixel_scale_arcsec(wcs), settings), cls, centred


def _buckets(
    y: np.ndarray,
    x: np.ndarray,
    radius: np.ndarray,
    cls: np.ndarray,
    ring: float,
    chunk: tuple[int, int],
    numblocks: tuple[int, int],
) -> np.ndarray:
    """Per chunk of one field, the (4, n) [y, x, radius, class] of the objects whose ring reaches it.

    The reach is taken from the same widened bounding box the kernel scans, so no chunk misses a pixel;
    objects keep their order, which is the painting order.
    """
    reach = radius + ring
    rows = (np.floor(y - reach) // chunk[0], np.ceil(y + reach) // chunk[0])
    cols = (np.floor(x - reach) // chunk[1], np.ceil(x + reach) // chunk[1])
    packed = np.stack([y, x, radius, cls.astype(np.float64)])
    out = np.empty(numblocks, dtype=object)
    for by in range(numblocks[0]):
        for bx in range(numblocks[1]):
            mine = (rows[0] <= by) & (rows[1] >= by) & (cols[0] <= bx) & (cols[1] >= bx)
            out[by, bx] = np.ascontiguousarray(packed[:, mine])
    return out


def _paint_chunk(
    valid: np.ndarray, objects: np.ndarray, ring: float, block_info: dict | None = None
) -> np.ndarray:
    """Paint one (1, h, w) chunk of ``valid`` with the objects bucketed for it."""
    location = block_info[0]["array-location"]
    y, x, radius, cls = objects[0, 0, 0]
    label = paint_disks(valid[0], location[1][0], location[2][0], y, x, radius, cls.astype(np.uint8), ring)
    return label[None]
