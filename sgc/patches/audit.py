"""Audit a patch plan for test-sky leaks, recomputed from the WCS alone.

The audit shares nothing with the masks stage: it reads neither the ``exclude`` array nor the numba
kernels, only the plan's patch list, the WCS header of each field's stored grid, and the frame headers
of the held-out fields. Every pixel of every train and validation patch is mapped to the sky through its
field's stored WCS (pixel centres, astropy) and tested against every held-out region:

- **Held-out fields**: in each band whose frame or header is found, the frame's pixel rectangle widened by
  ``margin`` pixels: a sky position is inside when it maps onto that frame at ``-0.5 - margin <= x <=
  NAXIS1 - 0.5 + margin`` and likewise in y.
- **The plan's own test patches** (a ``rows`` field's test band, or the test fields' patches): a sky
  position is inside when it maps, on the test patch's field grid, within ``margin`` pixels (along each
  axis) of a pixel that a test patch covers.

A patch with a pixel inside any region is a leak. Only regions whose circle on the sky (the frame's
corners one pixel out, plus the margin) meets the patch field's circle are projected: a cheap, exact cut,
since outside it no pixel can be inside, and it keeps the TAN projection away from points far from its
tangent point. One Dask task per train or validation field, on the current scheduler; each task builds
its own WCS objects from header text, because astropy's WCS objects are not safe to share between threads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dask
import numpy as np
import zarr
from astropy.table import Table
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from sgc.cube.store import field_names, open_store, parse_field_wcs
from sgc.errors import SgcError
from sgc.patches.planfile import PatchPlan
from sgc.sdss.frames import frame_wcs, read_frame_header
from sgc.sdss.names import BANDS, FieldId
from sgc.sky import unit_vectors

HEADER_SUFFIXES = (".hdr", ".txt", ".fits", ".fits.bz2", ".fits.gz")
AUDITED_SPLITS = ("train", "val")
# Pixels projected at once: bounds the memory of a task (a few arrays of this many float64).
_BLOCK = 1 << 20
# Leaks listed in full by AuditResult.format; the table holds them all.
_LISTED = 50


class AuditError(SgcError):
    """An audit that cannot be carried out (headers not found, a plan that does not fit its store)."""


@dataclass(frozen=True)
class HeldOutRegion:
    """A piece of held-out sky: a pixel grid and which of its pixels are held out.

    Attributes:
        name: what it is, for the report (``008162-6-0080 r frame``, ``test patches of ...``).
        header: FITS header text whose celestial WCS defines the grid.
        shape: ``(rows, columns)`` of the grid.
        integral: None when the whole rectangle is held out; else the integral image (summed-area table,
            ``(rows + 1, columns + 1)``) of the held-out pixels.
    """

    name: str
    header: str
    shape: tuple[int, int]
    integral: np.ndarray | None = None


@dataclass
class AuditResult:
    """What an audit found.

    Attributes:
        leaks: one row per leaked patch: ``row`` (index in the plan's table), ``field``, ``y0``, ``x0``,
            ``split``, ``pixels`` (its pixels on held-out sky) and ``regions`` (which, ``; ``-joined).
        patches: train and validation patches checked.
        pixels: distinct pixels checked.
        regions: names of the held-out regions checked against.
        margin: the margin in pixels.
    """

    leaks: Table
    patches: int
    pixels: int
    regions: list[str]
    margin: float

    @property
    def ok(self) -> bool:
        """True when no train or validation patch touches held-out sky."""
        return len(self.leaks) == 0

    def format(self) -> str:
        """A human-readable summary; leaked patches listed (the first fifty)."""
        head = (
            f"audit: {self.patches} train/val patches ({self.pixels} pixels) against "
            f"{len(self.regions)} held-out region(s), margin {self.margin:g} px"
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
    margin: float = 0.0,
) -> AuditResult:
    """Check that no train or validation patch pixel lies on held-out sky.

    Args:
        plan: the plan to audit.
        store: the cube store it was cut from (for the WCS of each field's grid).
        held_out_fields: the held-out (test) fields, any form :meth:`FieldId.parse` reads.
        header_sources: files, and folders searched recursively, holding ``frame-{band}-{field}``
            frames or ``.hdr`` headers of the held-out fields (see :func:`find_headers`); a held-out
            field found in none but stored in the store is checked against its stored grid.
        margin: pixels added around every held-out region. Pixel centres are tested, so the exclusion
            that made the plan must reach at least this far (its margin, in pixels, no smaller).

    Returns:
        The result; ``result.ok`` is False when a patch leaks.

    Raises:
        AuditError: if a held-out field is found neither among the sources nor in the store, or a plan
            patch lies in a field the store does not hold or outside its grid.
    """
    group = open_store(store)
    names = field_names(group)
    shape = tuple(int(n) for n in group["valid"].shape[1:])
    table = plan.table
    _check_patches(table, names, shape, plan.patch)
    regions = held_out_regions(held_out_fields, header_sources, group) + plan_test_regions(plan, group)
    tasks, rows_of = [], []
    for field, rows in plan.field_rows(AUDITED_SPLITS).items():
        header = str(group["wcs"][names.index(field)])
        y0, x0 = np.asarray(table["y0"])[rows], np.asarray(table["x0"])[rows]
        tasks.append(dask.delayed(_field_leaks)(header, shape, y0, x0, plan.patch, regions, margin))
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
        margin=float(margin),
    )


def find_headers(field: str, header_sources: Sequence[str | Path]) -> dict[str, Path]:
    """Frame or header file of each band of a field among the given files and folders.

    Looks for ``frame-{band}-RRRRRR-C-FFFF`` with a suffix of :data:`HEADER_SUFFIXES`, below folders
    recursively; the first source holding a band wins, and within a folder the first path in sorted order.

    Raises:
        AuditError: if a source does not exist.
    """
    name = str(FieldId.parse(field))
    wanted = {f"frame-{band}-{name}{suffix}": band for band in BANDS for suffix in HEADER_SUFFIXES}
    found: dict[str, Path] = {}
    for source in map(Path, header_sources):
        if not source.exists():
            raise AuditError(f"{source}: header source does not exist")
        paths = [source] if source.is_file() else sorted(source.rglob(f"frame-*-{name}.*"))
        for path in paths:
            band = wanted.get(path.name)
            if band is not None and band not in found:
                found[band] = path
    return found


def held_out_regions(
    fields: Sequence[str], header_sources: Sequence[str | Path], group: zarr.Group | None = None
) -> list[HeldOutRegion]:
    """The frame rectangle of every band found of every held-out field.

    A held-out field with no frame or header among the sources, but stored in ``group``, falls back to
    its stored grid (the i frame's), as the exclusion stage does.

    Raises:
        AuditError: if a field has no frame or header among the sources and is not stored either.
    """
    stored = field_names(group) if group is not None else []
    regions = []
    for field in fields:
        name = str(FieldId.parse(field))
        found = find_headers(name, header_sources)
        if not found and name in stored:
            header = str(group["wcs"][stored.index(name)])
            regions.append(HeldOutRegion(f"{name} stored i grid", header, tuple(group["valid"].shape[1:])))
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


def plan_test_regions(plan: PatchPlan, group: zarr.Group) -> list[HeldOutRegion]:
    """The plan's test patches, one region per field holding some, on that field's stored grid."""
    table = plan.table
    names = field_names(group)
    shape = tuple(int(n) for n in group["valid"].shape[1:])
    regions = []
    for field, rows in plan.field_rows(("test",)).items():
        held = np.zeros(shape, dtype=bool)
        for y, x in zip(table["y0"][rows].tolist(), table["x0"][rows].tolist(), strict=True):
            held[y : y + plan.patch, x : x + plan.patch] = True
        integral = np.zeros((shape[0] + 1, shape[1] + 1), dtype=np.int64)
        integral[1:, 1:] = held.cumsum(axis=0).cumsum(axis=1)
        header = str(group["wcs"][names.index(field)])
        regions.append(HeldOutRegion(f"test patches of {field}", header, shape, integral))
    return regions


def _check_patches(table: Table, names: Sequence[str], shape: tuple[int, int], patch: int) -> None:
    unknown = sorted(set(np.asarray(table["field"]).tolist()) - set(names))
    if unknown:
        raise AuditError(f"the plan has patches in fields the store does not hold: {', '.join(unknown)}")
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
    margin: float,
) -> tuple[np.ndarray, list[list[str]], int]:
    """Held-out pixels of each of one field's patches, the regions they lie in, and pixels checked."""
    wcs = _wcs(header)
    circle = _circle(wcs, shape, 0.0)
    near = [(r, _wcs(r.header)) for r in regions]
    near = [(r, w) for r, w in near if _circles_meet(circle, _circle(w, r.shape, margin))]
    covered = np.zeros(shape, dtype=bool)
    for y, x in zip(y0.tolist(), x0.tolist(), strict=True):
        covered[y : y + patch, x : x + patch] = True
    ys, xs = np.nonzero(covered)
    hits = {r.name: np.zeros(shape, dtype=bool) for r, _ in near}
    for start in range(0, len(ys) if near else 0, _BLOCK):
        by, bx = ys[start : start + _BLOCK], xs[start : start + _BLOCK]
        ra, dec = wcs.pixel_to_world_values(bx.astype(np.float64), by.astype(np.float64))
        for region, region_wcs in near:
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
    t = region.integral
    held = t[y_hi, x_hi] - t[y_lo, x_hi] - t[y_hi, x_lo] + t[y_lo, x_lo]
    inside[k] = held > 0
    return inside


def _wcs(header: str) -> WCS:
    return parse_field_wcs(header)


def _circle(wcs: WCS, shape: tuple[int, int], margin: float) -> tuple[np.ndarray, float]:
    """Centre (unit vector) and angular radius (radians) of a circle holding the grid, one pixel out."""
    ny, nx = shape
    pad = 1.5 + margin
    ra, dec = wcs.pixel_to_world_values(
        np.array([(nx - 1) / 2, -pad, nx - 1 + pad, -pad, nx - 1 + pad]),
        np.array([(ny - 1) / 2, -pad, -pad, ny - 1 + pad, ny - 1 + pad]),
    )
    points = unit_vectors(ra, dec)
    radius = float(np.arccos(np.clip(np.min(points[1:] @ points[0]), -1.0, 1.0)))
    # The circle through the corners holds the grid up to the projection's curvature across a frame,
    # far below a pixel; one more pixel of radius makes up for it.
    return points[0], radius + math.radians(float(np.max(proj_plane_pixel_scales(wcs))))


def _circles_meet(a: tuple[np.ndarray, float], b: tuple[np.ndarray, float]) -> bool:
    angle = float(np.arccos(np.clip(a[0] @ b[0], -1.0, 1.0)))
    return angle <= a[1] + b[1]
