"""Statistics of a cube store: per-band pixel statistics, and catalogue objects per field.

Only fields whose ``done`` marker is set count; the slots of failed fields are placeholders. Within a field
only ``valid`` pixels count (and, to be safe, only finite ones). The per-band figures are exact
(:mod:`sgc.cube.quantiles`), computed with one Dask task per field on the run's cluster; objects are placed
on the fields by :mod:`sgc.cube.objects`, each field looking only at the objects a k-d tree over the whole
catalogue finds near it, so that the work per field does not grow with the catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

from sgc.atomic import write_json
from sgc.cube.objects import objects_on_field
from sgc.cube.quantiles import METHOD, band_stats
from sgc.cube.store import IMAGE, VALID, CubeStore
from sgc.sdss.catalogs import read_catalogs
from sgc.sky import grid_cap, unit_vectors

STATS_JSON = "stats.json"
# Pixels around a grid within which objects are taken from the tree before the exact cut: more than the cut's
# own half pixel, so that the tree's cap holds every object the cut could keep.
_NEAR_MARGIN_PX = 2.0


def compute_stats(store: str | Path, catalogs: Sequence[str | Path] | None = None) -> dict[str, Any]:
    """Per-band pixel statistics of a store and, per field, its valid fraction and catalogue counts.

    Args:
        store: the cube store.
        catalogs: catalogue files (any kind :func:`~sgc.sdss.catalogs.read_catalog` reads); None or empty
            leaves the star and galaxy counts out.

    Returns:
        A JSON-able dict: ``store``; ``slots`` and ``done`` (numbers of fields); ``method`` (how the order
        statistics were computed); ``bands``: for each band ``count``, ``mean``, ``std``, ``min``, ``max``,
        ``median``, ``mad``, ``robust_sigma`` and ``percentiles`` (``{"0.5": ..., "99.5": ...}``), all None
        where the band has no valid pixel; ``fields``: for each done field ``valid_fraction`` and, with
        catalogues, ``stars`` and ``galaxies`` (objects whose rounded pixel position is valid);
        with catalogues also ``catalog``: ``paths``, ``stars`` and ``galaxies`` (all objects read).
    """
    cube = CubeStore.open(store)
    done = cube.done_slots()
    table = read_catalogs(catalogs) if catalogs else None
    stats: dict[str, Any] = {
        "store": str(store),
        "slots": len(cube.fields),
        "done": len(done),
        "method": METHOD,
        "bands": dict(zip(cube.bands, band_stats(valid_pixels(cube, done)), strict=True)),
        "fields": field_summaries(cube, table),
    }
    if table is not None:
        stats["catalog"] = {
            "paths": [str(p) for p in catalogs],
            "stars": int(np.count_nonzero(table["class"] == "star")),
            "galaxies": int(np.count_nonzero(table["class"] == "galaxy")),
        }
    return stats


def write_stats(stats: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write ``stats.json`` into ``out_dir`` (created if needed), atomically, as strict JSON.

    Returns:
        The path written.

    Raises:
        ValueError: if ``stats`` holds a NaN or infinity, which strict JSON cannot hold.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_json(out_dir / STATS_JSON, stats, indent=2)


def valid_pixels(store: CubeStore, slots: Sequence[int] | np.ndarray) -> da.Array:
    """The ``image`` of the given slots as a lazy Dask array, NaN wherever ``valid`` is false.

    Args:
        store: the cube store.
        slots: indices along ``field``.

    Returns:
        A float32 array ``(field, band, y, x)``, one chunk per field: one task reads a whole field, so
        there are few, large partial results.
    """
    slots = np.asarray(slots, dtype=np.int64)
    image = store.per_field(IMAGE)[slots]
    valid = store.per_field(VALID)[slots]
    return da.where(valid[:, None], image, np.float32(np.nan))


def field_summaries(store: CubeStore, table: Table | None) -> dict[str, dict[str, Any]]:
    """Valid fraction of every done field and, given a catalogue, its stars and galaxies.

    Args:
        store: the cube store.
        table: a catalogue in the common shape, or None.

    Returns:
        For each done field id: ``valid_fraction`` and, with a table, ``stars`` and ``galaxies``.
    """
    names = store.fields
    summaries: dict[str, dict[str, Any]] = {}
    if table is not None:
        # One tree for the whole catalogue: projecting every object onto every field cost O(objects) per
        # field, which grows with the survey (a run's calibObj holds all its fields' objects).
        ra, dec = np.asarray(table["ra"], np.float64), np.asarray(table["dec"], np.float64)
        tree = cKDTree(unit_vectors(ra, dec))
        all_classes = np.asarray(table["class"])
    for slot in store.done_slots():
        valid = store[VALID][slot]
        summary: dict[str, Any] = {"valid_fraction": float(valid.mean())}
        if table is not None:
            wcs = store.field_wcs(slot)
            near = grid_cap(wcs, valid.shape, _NEAR_MARGIN_PX).query(tree)
            rows, _, _ = objects_on_field(table[near], wcs, valid)
            classes = all_classes[near[rows]]
            summary["stars"] = int(np.count_nonzero(classes == "star"))
            summary["galaxies"] = int(np.count_nonzero(classes == "galaxy"))
        summaries[names[slot]] = summary
    return summaries
