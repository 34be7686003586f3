"""Audit a patch plan for test-sky leaks, recomputed from the WCS alone.

The audit shares nothing with the masks stage: it reads neither the ``exclude`` array nor the numba
kernels, only the plan's patch list, the WCS header of each field's stored grid, and the frame headers
of the held-out fields. Every pixel of every train and validation patch is mapped to the sky through its
field's stored WCS (pixel centres, astropy) and tested against every held-out region:

- **Held-out fields**: in each band whose frame or header is found, the frame's pixel rectangle widened by
  ``m`` pixels: a sky position is inside when it maps onto that frame at ``-0.5 - m <= x <=
  NAXIS1 - 0.5 + m`` and likewise in y.
- **The plan's own test patches** (a ``rows`` field's test band, or the test fields' patches): a sky
  position is inside when it maps, on the test patch's field grid, within ``m`` pixels (along each
  axis) of a pixel that a test patch covers.

``m`` is the exclusion margin in the region's own pixels (its WCS's pixel scale) less one pixel, so that a
plan the exclusion made correctly passes with room to spare, while a leak of more than a pixel is caught.

A patch with a pixel inside any region is a leak. Only regions whose circle on the sky (the frame's
corners one pixel out, plus the margin) meets the patch field's circle are projected: a cheap, exact cut,
since outside it no pixel can be inside, and it keeps the TAN projection away from points far from its
tangent point. One Dask task per train or validation field, on the current scheduler (the run's cluster);
each task builds
its own WCS objects from header text, because astropy's WCS objects are not safe to share between threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import dask
import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from sgc.cube.store import CubeStore, parse_field_wcs
from sgc.errors import SgcError
from sgc.patches.planfile import PatchPlan, check_slots
from sgc.sdss.discover import find_frames
from sgc.sdss.frames import frame_wcs, read_frame_header
from sgc.sdss.names import BANDS, FieldId
from sgc.sky import grid_cap, pixel_scale_arcsec
from sgc.windows import coverage, integral_image, window_sums

AUDITED_SPLITS = ("train", "val")
# Pixels projected at once: bounds the memory of a task (a few arrays of this many float64).
_BLOCK = 1 << 20
# Leaks listed in full by AuditResult.format; the table holds them all.
_LISTED = 50


class AuditError(SgcError):
    """An audit that cannot be carried out (headers not found, a plan that does not fit its store)."""


@dataclass(frozen=True, eq=False)  # arrays inside: compared by identity
class HeldOutRegion:
    """A piece of held-out sky: a pixel grid and which of its pixels are held out.

    Attributes:
        name: what it is, for the report (``008162-6-0080 r frame``, ``test patches of ...``).
        header: FITS header text whose celestial WCS defines the grid.
        shape: ``(rows, columns)`` of the grid.
        patches: None when the whole rectangle is held out; else the held-out patches as ``(y0, x0,
            size)``: the pixels they cover are held out. Origins, not a mask, so that a region travels
            to the audit's tasks in a few bytes.
    """

    name: str
    header: str
    shape: tuple[int, int]
    patches: tuple[np.ndarray, np.ndarray, int] | None = None

    @cached_property
    def integral(self) -> np.ndarray | None:
        """The integral image of the held-out pixels, None when the whole rectangle is held out."""
        if self.patches is None:
            return None
        return integral_image(coverage(self.shape, *self.patches))


@dataclass
class AuditResult:
    """What an audit found.

    Attributes:
        leaks: one row per leaked patch: ``row`` (index in the plan's table), ``field``, ``y0``, ``x0``,
            ``split``, ``pixels`` (its pixels on held-out sky) and ``regions`` (which, ``; ``-joined).
        patches: train and validation patches checked.
        pixels: distinct pixels checked.
        regions: names of the held-out regions checked against.
        margin_arcsec: the exclusion margin checked (less one pixel of each region's grid).
    """

    leaks: Table
    patches: int
    pixels: int
    regions: list[str]
    margin_arcsec: float

    @property
    def ok(self) -> bool:
        """True when no train or validation patch touches held-out sky."""
        return len(self.leaks) == 0

    def format(self) -> str:
        """A human-readable summary; leaked patches listed (the first fifty)."""
        head = (
            f"{self.patches} train/val patches ({self.pixels} pixels) against "
            f"{len(self.regions)} held-out region(s), margin {self.margin_arcsec:g} arcsec less one pixel"
        )
        if self.ok:
            return f"{head}: OK, no patch touches held-out sky"
        lines = [f"{head}: LEAK, {len(self.leaks)} patch(es) on held-out sky"]
        for leak in self.leaks[:_LISTED]:
            lines.append(
                f"  row {leak['row']} {leak['split']} {leak['field']} y0={leak['y0']} x0={leak['x0']}: "
                f"{leak['pixels']} px on {leak['regions']}"
            )
        if len(self.leaks) > _LISTED:
            lines.append(f"  ... and {len(self.leaks) - _LISTED} more")
        return "\n".join(lines)


def audit_plan(
    plan: PatchPlan,
    store: str | Path,
    held_out_fields: Sequence[str],
    header_sources: Sequence[str | Path],
    margin_arcsec: float = 0.0,
) -> AuditResult:
    """Check that no train or validation patch pixel lies on held-out sky.

    Args:
        plan: the plan to audit.
        store: the cube store it was cut from (for the WCS of each field's grid).
        held_out_fields: the held-out (test) fields, any form :meth:`FieldId.parse` reads.
        header_sources: files, and folders searched recursively, holding ``frame-{band}-{field}``
            frames or ``.hdr`` headers of the held-out fields; a held-out field found in none but stored in
            the store is checked against its stored grid.
        margin_arcsec: the exclusion margin the plan was made with; every held-out region is widened by
            it less one pixel of its own grid.

    Returns:
        The result; ``result.ok`` is False when a patch leaks.

    Raises:
        AuditError: if a held-out field is found neither among the sources nor in the store, or a plan
            patch lies outside the grid.
        PlanFileError: if a patch's slot in the store does not hold the field the plan names (the loader
            would read other sky than the plan says).
        DiscoveryError: if a header source does not exist.
    """
    cube = CubeStore.open(store)
    shape = cube.shape
    table = plan.table
    # What the loader will read: each patch from its slot, which must hold the field the plan names.
    check_slots(plan, cube.fields, store)
    _check_patches(table, shape, plan.patch)
    regions = held_out_regions(held_out_fields, header_sources, cube) + plan_test_regions(plan, cube)
    tasks, rows_of = [], []
    for rows in plan.field_rows(AUDITED_SPLITS).values():
        header = cube.wcs_text(int(table["field_index"][rows[0]]))
        y0, x0 = np.asarray(table["y0"])[rows], np.asarray(table["x0"])[rows]
        tasks.append(dask.delayed(_field_leaks)(header, shape, y0, x0, plan.patch, regions, margin_arcsec))
        rows_of.append(rows)
    leaks: dict[str, list] = {key: [] for key in ("row", "pixels", "regions")}
    checked = 0
    for rows, (pixels, hit, n_checked) in zip(rows_of, dask.compute(*tasks), strict=True):
        checked += n_checked
        for k in np.flatnonzero(pixels):
            leaks["row"].append(int(rows[k]))
            leaks["pixels"].append(int(pixels[k]))
            leaks["regions"].append("; ".join(hit[k]))
    row = np.asarray(leaks["row"], dtype=np.int64)
    leak_table = Table(
        {
            "row": row,
            "field": np.asarray(table["field"])[row].astype(str),
            "y0": np.asarray(table["y0"])[row],
            "x0": np.asarray(table["x0"])[row],
            "split": np.asarray(table["split"])[row].astype(str),
            "pixels": np.asarray(leaks["pixels"], dtype=np.int64),
            "regions": np.asarray(leaks["regions"], dtype=str),
        }
    )
    return AuditResult(
        leaks=leak_table,
        patches=sum(len(rows) for rows in rows_of),
        pixels=checked,
        regions=[r.name for r in regions],
        margin_arcsec=float(margin_arcsec),
    )


def held_out_regions(
    fields: Sequence[str], header_sources: Sequence[str | Path], store: CubeStore | None = None
) -> list[HeldOutRegion]:
    """The frame rectangle of every band found of every held-out field.

    Frames and text headers are searched for below ``header_sources`` (files, or folders searched
    recursively; the first source holding a band wins). A held-out field with none there, but stored in
    ``store``, falls back to its stored grid (the i frame's), as the exclusion stage does.

    Raises:
        AuditError: if a field has no frame or header among the sources and is not stored either.
        DiscoveryError: if a header source does not exist.
    """
    stored = store.fields if store is not None else []
    index = find_frames(header_sources, headers=True)
    regions = []
    for field in fields:
        name = str(FieldId.parse(field))
        found = index.bands(name)
        if not found and name in stored:
            header = store.wcs_text(stored.index(name))
            regions.append(HeldOutRegion(f"{name} stored i grid", header, store.shape))
            continue
        if not found:
            sources = ", ".join(str(d) for d in header_sources) or "(none given)"
            raise AuditError(f"held-out field {name}: no frame or header found in {sources}, nor stored")
        for band, path in sorted(found.items(), key=lambda item: BANDS.index(item[0])):
            header = read_frame_header(path)
            frame_wcs(header, path)  # validated at the door: a header without WCS is named here
            shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
            regions.append(HeldOutRegion(f"{name} {band} frame", header.tostring(), shape))
    return regions


def plan_test_regions(plan: PatchPlan, store: CubeStore) -> list[HeldOutRegion]:
    """The plan's test patches, one region per field holding some, on that field's stored grid."""
    table = plan.table
    shape = store.shape
    regions = []
    for field, rows in plan.field_rows(("test",)).items():
        patches = (np.asarray(table["y0"][rows]), np.asarray(table["x0"][rows]), plan.patch)
        header = store.wcs_text(int(table["field_index"][rows[0]]))
        regions.append(HeldOutRegion(f"test patches of {field}", header, shape, patches))
    return regions


def _check_patches(table: Table, shape: tuple[int, int], patch: int) -> None:
    y0, x0 = np.asarray(table["y0"]), np.asarray(table["x0"])
    outside = (y0 < 0) | (x0 < 0) | (y0 + patch > shape[0]) | (x0 + patch > shape[1])
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise AuditError(
            f"{int(outside.sum())} plan patch(es) leave the {shape[0]}x{shape[1]} grid, "
            f"e.g. row {k} at y0={y0[k]}, x0={x0[k]}"
        )


def _field_leaks(
    header: str,
    shape: tuple[int, int],
    y0: np.ndarray,
    x0: np.ndarray,
    patch: int,
    regions: Sequence[HeldOutRegion],
    margin_arcsec: float,
) -> tuple[np.ndarray, list[list[str]], int]:
    """Held-out pixels of each of one field's patches, the regions they lie in, and pixels checked."""
    wcs = parse_field_wcs(header)
    cap = grid_cap(wcs, shape, 1.0)
    near: list[tuple[HeldOutRegion, WCS, float]] = []
    for region in regions:
        region_wcs = parse_field_wcs(region.header)
        margin = max(0.0, margin_arcsec / pixel_scale_arcsec(region_wcs) - 1.0)
        if cap.meets(grid_cap(region_wcs, region.shape, 1.0 + margin)):
            near.append((region, region_wcs, margin))
    covered = coverage(shape, y0, x0, patch)
    ys, xs = np.nonzero(covered)
    hits = {r.name: np.zeros(shape, dtype=bool) for r, _, _ in near}
    for start in range(0, len(ys) if near else 0, _BLOCK):
        by, bx = ys[start : start + _BLOCK], xs[start : start + _BLOCK]
        ra, dec = wcs.pixel_to_world_values(bx.astype(np.float64), by.astype(np.float64))
        for region, region_wcs, margin in near:
            inside = _inside(region, region_wcs, ra, dec, margin)
            hits[region.name][by[inside], bx[inside]] = True
    leaked = np.zeros(shape, dtype=bool)
    for hit in hits.values():
        leaked |= hit
    pixels = np.zeros(len(y0), dtype=np.int64)
    names: list[list[str]] = [[] for _ in y0]
    for k, (y, x) in enumerate(zip(y0.tolist(), x0.tolist(), strict=True)):
        window = (slice(y, y + patch), slice(x, x + patch))
        pixels[k] = np.count_nonzero(leaked[window])
        if pixels[k]:
            names[k] = [name for name, hit in hits.items() if hit[window].any()]
    return pixels, names, len(ys)


def _inside(region: HeldOutRegion, wcs: WCS, ra: np.ndarray, dec: np.ndarray, margin: float) -> np.ndarray:
    """Which sky positions lie on the region's held-out pixels, widened by ``margin`` pixels."""
    px, py = wcs.world_to_pixel_values(ra, dec)
    ny, nx = region.shape
    # NaN (a failed projection) compares false: never inside.
    inside = (
        (px >= -0.5 - margin) & (px <= nx - 0.5 + margin) & (py >= -0.5 - margin) & (py <= ny - 0.5 + margin)
    )
    if region.integral is None or not inside.any():
        return inside
    # Pixel i spans [i - 0.5, i + 0.5]: within the margin of it when i is in [p - 0.5 - m, p + 0.5 + m].
    k = np.flatnonzero(inside)
    x_lo = np.clip(np.ceil(px[k] - 0.5 - margin), 0, nx - 1).astype(np.int64)
    x_hi = np.clip(np.floor(px[k] + 0.5 + margin), 0, nx - 1).astype(np.int64) + 1
    y_lo = np.clip(np.ceil(py[k] - 0.5 - margin), 0, ny - 1).astype(np.int64)
    y_hi = np.clip(np.floor(py[k] + 0.5 + margin), 0, ny - 1).astype(np.int64) + 1
    inside[k] = window_sums(region.integral, y_lo, x_lo, y_hi, x_hi) > 0
    return inside
