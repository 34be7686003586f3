"""Catalogue objects on the stored grids: which objects fall on which field, and where.

An object's position on a field is its RA/Dec taken through the field's stored WCS to 0-based pixels
(astropy's convention: pixel ``(i, j)`` has its centre at ``(i, j)``). It lies on the field when its
nearest pixel (halves up) is on the grid and ``valid``. An object in the overlap of two fields lies on both.
Objects far from a field are cut first with its sky cap (:func:`sgc.sky.grid_cap`): a large catalogue
holds mostly objects far from any one field, and a TAN projection of far-away points means nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from sgc.cube.store import VALID, CubeStore
from sgc.sdss.names import FieldId
from sgc.sky import grid_cap, unit_vectors
from sgc.windows import nearest_pixel


def project_near(
    table: Table, wcs: WCS, shape: tuple[int, int], margin_px: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The catalogue rows near a grid, and their pixel positions on it.

    Args:
        table: a catalogue in the common shape (:mod:`sgc.sdss.catalogs`).
        wcs: the grid's celestial WCS.
        shape: (rows, columns) of the grid.
        margin_px: how far beyond the grid's edges objects are kept.

    Returns:
        ``(rows, x, y)``: indices into ``table`` (sorted) and float64 pixel column and row of each.
    """
    vectors = unit_vectors(
        np.asarray(table["ra"], dtype=np.float64), np.asarray(table["dec"], dtype=np.float64)
    )
    rows = np.flatnonzero(grid_cap(wcs, shape, margin_px).contains(vectors))
    x, y = wcs.world_to_pixel_values(np.asarray(table["ra"])[rows], np.asarray(table["dec"])[rows])
    return rows, np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def objects_on_field(table: Table, wcs: WCS, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Catalogue rows whose nearest pixel on this grid is valid, and that pixel's column and row.

    Returns:
        ``(rows, x, y)``: indices into ``table`` and int64 pixel column and row.
    """
    ny, nx = valid.shape
    near, fx, fy = project_near(table, wcs, (ny, nx))
    # A failed projection (NaN) goes to -1, off the grid.
    x, y = nearest_pixel(np.nan_to_num(fx, nan=-1.0)), nearest_pixel(np.nan_to_num(fy, nan=-1.0))
    inside = (x >= 0) & (x < nx) & (y >= 0) & (y < ny)
    inside[inside] = valid[y[inside], x[inside]]
    return near[inside], x[inside], y[inside]


def locate_objects(store: CubeStore, table: Table, fields: Iterable[str] | None = None) -> Table:
    """Catalogue objects inside the valid area of done fields, with their pixel positions.

    Args:
        store: the cube store.
        table: a catalogue in the common shape.
        fields: field ids to look at; None for every done field.

    Returns:
        A table with ``field``, ``x``, ``y`` (int64 pixel column and row), ``class``, ``ra``, ``dec`` and
        ``row`` (the object's index in ``table``), an object on two fields listed once for each.
    """
    names = store.fields
    wanted = None if fields is None else {str(FieldId.parse(f)) for f in fields}
    found: dict[str, list[np.ndarray]] = {"field": [], "row": [], "x": [], "y": []}
    for slot in store.done_slots():
        if wanted is None or names[slot] in wanted:
            rows, x, y = objects_on_field(table, store.field_wcs(slot), store[VALID][slot])
            for key, value in zip(found, (np.full(len(rows), names[slot], "<U13"), rows, x, y), strict=True):
                found[key].append(value)
    field, rows, x, y = (np.concatenate(found[key]) if found[key] else np.empty(0, np.int64) for key in found)
    return Table(
        {
            "field": field.astype("<U13"),
            "x": x,
            "y": y,
            "class": np.asarray(table["class"], dtype="<U6")[rows],
            "ra": np.asarray(table["ra"], dtype=np.float64)[rows],
            "dec": np.asarray(table["dec"], dtype=np.float64)[rows],
            "row": rows.astype(np.int64),
        }
    )
