"""Test-sky exclusion: ``exclude (field, y, x)`` is true where a pixel sees held-out sky.

Exclusion is decided on the sky, not by field id: a pixel of any field, whatever its run or camcol, is
excluded when its centre falls inside the footprint of a held-out field grown by a margin
(:mod:`sgc.masks.footprint`). The client finds the footprints once and projects their outlines onto each
stored field's grid with astropy (a few thousand vertices per field); fields whose sky is far from every
footprint are skipped there. Then one Dask graph, on the current scheduler (the run's cluster), fills the
polygons chunk by chunk with the numba kernel (:func:`sgc.masks.polygon.fill_polygons`), blocks aligned on
the chunk grid of ``valid``, and stores each block straight into the ``exclude`` array; only per-field pixel
counts come back.

The array's attributes record the held-out fields, the margin, the bands, where each footprint came from
and the fields computed. A rerun with the same settings computes only fields not computed yet (appended
since); other settings clear the array and compute every field again.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from astropy.wcs import WCS

from sgc import __version__
from sgc.config import ExcludeConfig
from sgc.cube.store import (
    ATTR_BANDS,
    ATTR_EXCLUDED_PIXELS,
    ATTR_FIELDS,
    ATTR_FOOTPRINTS,
    ATTR_HELD_OUT,
    ATTR_MARGIN,
    ATTR_VERSION,
    EXCLUDE,
    CubeStore,
)
from sgc.masks.footprint import Footprint, PixelPolygons, find_footprints, grid_polygons
from sgc.masks.polygon import fill_polygons
from sgc.sdss.names import BANDS


@dataclass
class ExclusionSummary:
    """What an exclusion run did.

    Attributes:
        store: the cube store.
        footprints: for each held-out field, where its footprint came from.
        margin_arcsec: the margin around each footprint.
        excluded: pixels excluded in each field computed by this run (0 for fields far from every footprint).
        skipped: fields already computed with the same settings.
    """

    store: Path
    footprints: dict[str, str]
    margin_arcsec: float
    excluded: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def format(self) -> str:
        """A human summary: the footprints, then every field with excluded pixels."""
        touched = {f: n for f, n in self.excluded.items() if n}
        lines = [
            f"{self.store}: exclusion around {len(self.footprints)} held-out field(s), margin "
            f"{self.margin_arcsec:g} arcsec: {len(self.excluded)} field(s) computed, {len(touched)} with "
            f"excluded pixels, {len(self.skipped)} already done"
        ]
        lines += [f"  footprint of {f}: {source}" for f, source in self.footprints.items()]
        lines += [f"  {f}: {n} pixel(s) excluded" for f, n in touched.items()]
        return "\n".join(lines)


def exclusion_mask(footprints: Sequence[Footprint], wcs: WCS, shape: tuple[int, int]) -> np.ndarray:
    """The exclusion mask of one pixel grid, computed in this process.

    Args:
        footprints: the held-out fields' footprints.
        wcs: the grid's celestial WCS.
        shape: (rows, columns) of the grid.

    Returns:
        Bool array of ``shape``: true where a pixel centre lies inside a footprint.
    """
    out = np.zeros(shape, dtype=bool)
    polygons = grid_polygons(footprints, wcs, shape)
    if polygons is not None:
        fill_polygons(polygons.xs, polygons.ys, polygons.starts, 0, 0, out)
    return out


def exclude_store(
    store: str | Path,
    held_out: Sequence[str],
    footprint_sources: Sequence[str | Path],
    settings: ExcludeConfig,
    *,
    bands: Sequence[str] = BANDS,
) -> ExclusionSummary:
    """Compute ``exclude`` for every done field of a store.

    Args:
        store: the cube store.
        held_out: field ids of the held-out (test) fields.
        footprint_sources: files and folders holding the held-out fields' frames or ``.hdr`` headers;
            a held-out field found in none of them falls back to its stored i-band grid.
        settings: the margin (how far beyond each held-out frame's edges the sky counts as held out);
            its ``footprint_sources`` are resolved by the caller into ``footprint_sources``.
        bands: the bands whose rectangles make up a footprint (their union).

    Returns:
        Per-field counts of excluded pixels.

    Raises:
        FootprintError: if a held-out field's footprint is found nowhere.
        StoreError: if ``store`` is not a cube store.
    """
    import dask
    import dask.array as da

    margin_arcsec = settings.margin_arcsec
    cube = CubeStore.open(store, mode="r+")
    footprints = find_footprints(held_out, footprint_sources, margin_arcsec, bands, cube)
    record = {
        ATTR_HELD_OUT: list(footprints),
        ATTR_MARGIN: float(margin_arcsec),
        ATTR_BANDS: list(bands),
        ATTR_FOOTPRINTS: {f: {"bands": list(fp.bands), "source": fp.source} for f, fp in footprints.items()},
    }
    target, previous = _target_array(cube, record)
    computed = set(previous.get(ATTR_FIELDS, []))
    done = cube.done_fields()
    summary = ExclusionSummary(
        Path(store), {f: fp.source for f, fp in footprints.items()}, float(margin_arcsec)
    )
    summary.skipped = [f for f in done if f in computed]
    todo = [f for f in done if f not in computed]
    slots = {name: k for k, name in enumerate(cube.fields)}
    shape = tuple(target.shape[1:])
    chunks = da.core.normalize_chunks(target.chunks, (1, *shape))
    blocks, regions, counted = [], [], []
    for name in todo:
        wcs = cube.field_wcs(slots[name])
        polygons = grid_polygons(list(footprints.values()), wcs, shape)
        if polygons is None:
            # Far from every footprint. The slot holds the fill value, as it was never written under these
            # settings (the array is cleared when they change), so there is nothing to write.
            summary.excluded[name] = 0
            continue
        blocks.append(
            da.map_blocks(
                functools.partial(_exclusion_block, polygons),
                chunks=chunks,
                dtype=bool,
                meta=np.empty((0, 0, 0), dtype=bool),
                name=f"exclude-{name}-{dask.base.tokenize(polygons)}",
            )
        )
        regions.append((slice(slots[name], slots[name] + 1), slice(0, shape[0]), slice(0, shape[1])))
        counted.append(name)
    if blocks:
        stored = da.store(blocks, [target] * len(blocks), regions=regions, lock=False, compute=False)
        # Stored and counted in one pass: each block is computed once, written, and summed.
        _, *counts = dask.compute(stored, *[block.sum() for block in blocks])
        summary.excluded.update({name: int(n) for name, n in zip(counted, counts, strict=True)})
    # Recorded last: fields written by a run killed before this line are computed again by the next.
    outcome = {
        ATTR_FIELDS: sorted(computed | set(todo)),
        ATTR_EXCLUDED_PIXELS: previous.get(ATTR_EXCLUDED_PIXELS, {}) | summary.excluded,
        ATTR_VERSION: __version__,
    }
    target.attrs.update(record | outcome)
    return summary


def _target_array(cube: CubeStore, settings: dict[str, Any]) -> tuple[zarr.Array, dict[str, Any]]:
    """The ``exclude`` array, and its attributes if they were written under the same settings.

    An array written under other settings, or by a first run that never got to record its settings, is
    deleted first: none of its values can be trusted.
    """
    previous = cube.record(EXCLUDE)
    if EXCLUDE in cube and any(previous.get(key) != value for key, value in settings.items()):
        del cube.group[EXCLUDE]
        previous = {}
    return cube.pixel_array(EXCLUDE, bool, False), previous


def _exclusion_block(polygons: PixelPolygons, block_info: dict | None = None) -> np.ndarray:
    """One chunk of one field's ``exclude``: the polygons filled over the chunk's pixels."""
    _, (y0, y1), (x0, x1) = block_info[None]["array-location"]
    out = np.zeros((1, y1 - y0, x1 - x0), dtype=bool)
    fill_polygons(polygons.xs, polygons.ys, polygons.starts, y0, x0, out[0])
    return out
