"""Footprints of held-out fields on the sky, and their outlines on any other field's pixel grid.

A held-out field's footprint is the union of its bands' pixel rectangles: any sky one of its bands saw is
test sky. Each rectangle (pixel edges, so pixel centres of the frame are well inside) is grown by the
margin, sampled along all four edges every :data:`EDGE_STEP_PX` pixels and taken to RA, Dec with the
band's WCS. On another field's grid the outline is taken back to pixels with that field's WCS; a polygon
fill (:mod:`sgc.masks.polygon`) then marks the pixels inside.

The outline is sampled densely so that it stays right for WCS with distortion terms, whose pixel edges
curve on other grids. On the target grid it is then simplified (Douglas-Peucker) to within
:data:`SIMPLIFY_TOL_PX`, which keeps the curvature where there is some and makes the fill's cost depend
on the pixels, not on the sampling. For pure TAN frames, SDSS's case, the simplified outline is the four
corners: pixel edges are great circles, which every TAN projection draws as straight lines.

The margin grows each rectangle by the same number of pixels on every side (square corners): the margin
is covered everywhere, and over-covered only towards the corners, by up to (sqrt(2) - 1) times the margin.

Footprints come from, in order of preference:

- frames (``frame-{band}-RRRRRR-C-FFFF.fits[.bz2|.gz]``) or text headers (``frame-{band}-...hdr``, as in
  ``shared/sdss/headers``) found below the footprint sources: every band found counts;
- the store, when the held-out field was ingested: its stored i-band header only, since the other bands'
  extents are not kept there.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from sgc.cube.store import CubeStore
from sgc.errors import InputFileError, SgcError
from sgc.sdss.discover import find_frames
from sgc.sdss.frames import frame_wcs, read_frame_header
from sgc.sdss.names import BANDS, FieldId
from sgc.sky import Cap, grid_cap, pixel_scale_arcsec, unit_vectors

log = logging.getLogger(__name__)

EDGE_STEP_PX = 8.0  # spacing of outline vertices along each pixel edge of a held-out frame
SIMPLIFY_TOL_PX = 0.01  # largest distance, in target pixels, from a dropped outline vertex to the outline
# Caps around a footprint and a grid are compared with this much slack: the edges of a grid with
# distortion terms may bow out by a few pixels beyond its cap.
_SLACK_RAD = math.radians(1.0 / 60.0)


class FootprintError(SgcError):
    """A held-out field whose footprint cannot be found or built."""


@dataclass(frozen=True, eq=False)  # arrays inside: compared by identity
class Footprint:
    """The sky of one held-out field, grown by a margin.

    Attributes:
        field: the held-out field id.
        bands: the bands whose rectangles make up the footprint.
        polygons: per band, the outline as an ``(n, 2)`` array of RA, Dec (deg), closing by itself.
        margin_arcsec: how far each rectangle was grown.
        source: where the outline came from (the header or frame files, or the store).
    """

    field: str
    bands: tuple[str, ...]
    polygons: tuple[np.ndarray, ...]
    margin_arcsec: float
    source: str

    @cached_property
    def cap(self) -> Cap:
        """A spherical cap holding the whole footprint.

        Between vertices a few pixels apart the outline stays within the cap holding them (a cap is convex on
        the sphere).
        """
        return Cap.around(unit_vectors(*np.concatenate(self.polygons).T))


class PixelPolygons(NamedTuple):
    """Polygons on one pixel grid, laid out for :func:`sgc.masks.polygon.fill_polygons`.

    Attributes:
        xs: x of every vertex (0-based pixel, centre of pixel 0 at 0), polygons one after another.
        ys: y of every vertex.
        starts: first vertex of each polygon, then ``len(xs)``.
    """

    xs: np.ndarray
    ys: np.ndarray
    starts: np.ndarray


def rectangle_outline(shape: tuple[int, int], margin_px: float, step: float = EDGE_STEP_PX) -> np.ndarray:
    """Pixel coordinates along the edges of a frame grown by a margin, counter-clockwise from a corner.

    Args:
        shape: (rows, columns) of the frame.
        margin_px: how far the outline lies outside the frame's pixel edges.
        step: largest spacing of vertices along an edge.

    Returns:
        ``(n, 2)`` array of (x, y), corners included, the first vertex not repeated at the end.
    """
    rows, cols = shape
    x_lo, x_hi = -0.5 - margin_px, cols - 0.5 + margin_px
    y_lo, y_hi = -0.5 - margin_px, rows - 0.5 + margin_px
    corners = np.array([[x_lo, y_lo], [x_hi, y_lo], [x_hi, y_hi], [x_lo, y_hi]])
    edges = []
    for k in range(4):
        a, b = corners[k], corners[(k + 1) % 4]
        n = max(1, int(np.ceil(np.abs(b - a).max() / step)))
        t = np.arange(n)[:, None] / n  # each edge from its first corner up to, not including, the next
        edges.append(a + t * (b - a))
    return np.concatenate(edges)


def band_outline(wcs: WCS, shape: tuple[int, int], margin_arcsec: float) -> np.ndarray:
    """The sky outline of one frame grown by ``margin_arcsec``: ``(n, 2)`` RA, Dec in degrees."""
    xy = rectangle_outline(shape, margin_arcsec / pixel_scale_arcsec(wcs))
    ra, dec = wcs.pixel_to_world_values(xy[:, 0], xy[:, 1])
    return np.column_stack([ra, dec])


def footprint_from_headers(
    field: str, headers: Mapping[str, fits.Header], margin_arcsec: float, source: str
) -> Footprint:
    """Build a field's footprint from the primary headers of some of its bands.

    Args:
        field: the field id.
        headers: header of each band to include, with WCS and NAXIS1, NAXIS2.
        margin_arcsec: how far to grow each band's rectangle.
        source: where the headers came from, for the record and error messages.

    Raises:
        FootprintError: if a header lacks its image size.
        InputFileError: if a header has no usable celestial WCS.
    """
    polygons = []
    for band, header in headers.items():
        if not ("NAXIS1" in header and "NAXIS2" in header):
            raise FootprintError(f"held-out field {field}: the {band} header from {source} has no NAXIS1/2")
        shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
        polygons.append(band_outline(frame_wcs(header, source), shape, margin_arcsec))
    return Footprint(field, tuple(headers), tuple(polygons), float(margin_arcsec), source)


def find_footprints(
    held_out: Sequence[str],
    sources: Sequence[str | Path],
    margin_arcsec: float,
    bands: Sequence[str] = BANDS,
    store: CubeStore | None = None,
) -> dict[str, Footprint]:
    """Find and build the footprint of every held-out field.

    Frames and ``.hdr`` headers below ``sources`` (files or folders, searched recursively; earlier sources
    win for a band found twice) come first, every band found among ``bands`` counting; a field found in
    none of them falls back to its stored i-band header in ``store``.

    Args:
        held_out: field ids, in any form :meth:`FieldId.parse` reads.
        sources: files and folders holding frames or text headers.
        margin_arcsec: how far to grow each band's rectangle.
        bands: the bands whose rectangles make up a footprint.
        store: an open cube store to fall back on.

    Returns:
        Each held-out field's footprint, keyed by its canonical id.

    Raises:
        FootprintError: if a held-out field is found nowhere, naming the field and where it was looked for.
        InputFileError: if a header or frame found is unreadable or has no usable WCS.
    """
    # Absolute: the sources are recorded with the exclusion, and compared when it is rerun.
    resolved = [Path(s).resolve() for s in sources]
    for source in resolved:
        if not source.exists():
            log.warning("footprint source %s does not exist", source)
    index = find_frames(resolved, headers=True, missing_ok=True)
    footprints = {}
    for name in held_out:
        field = str(FieldId.parse(name))
        paths = {band: path for band, path in index.bands(field).items() if band in bands}
        if paths:
            missing = [band for band in bands if band not in paths]
            if missing:
                log.warning("held-out field %s: no %s header found; footprint from %s", field, missing, paths)
            headers = {band: _checked_header(path, band, field) for band, path in paths.items()}
            source = ", ".join(str(path) for path in paths.values())
            footprints[field] = footprint_from_headers(field, headers, margin_arcsec, source)
        elif (text := _stored_header(store, field)) is not None:
            log.warning("held-out field %s: footprint from its stored i-band grid only", field)
            source = f"{store.path}: stored i-band header"
            footprints[field] = footprint_from_headers(
                field, {"i": fits.Header.fromstring(text)}, margin_arcsec, source
            )
        else:
            looked = [f"{s}{'' if Path(s).exists() else ' (does not exist)'}" for s in sources]
            where = "; ".join(looked) or "no footprint sources given"
            in_store = "" if store is None else f", nor is it a done field of the store {store.path}"
            raise FootprintError(
                f"held-out field {field}: no frame or header (frame-BAND-{field}.fits[.bz2|.gz] or .hdr) "
                f"for bands {', '.join(bands)} under {where}{in_store}; refusing to exclude nothing"
            )
    return footprints


def grid_polygons(footprints: Sequence[Footprint], wcs: WCS, shape: tuple[int, int]) -> PixelPolygons | None:
    """The footprint outlines that come near a pixel grid, in that grid's pixel coordinates.

    Footprints whose cap on the sky does not meet the grid's are skipped before any projection (a TAN
    projection of far-away points is meaningless); outlines whose pixel bounding box misses the grid are
    dropped after it.

    Args:
        footprints: the held-out fields' footprints.
        wcs: the grid's celestial WCS.
        shape: (rows, columns) of the grid.

    Returns:
        The polygons, or None if none comes near the grid.

    Raises:
        FootprintError: if an outline near the grid does not project onto it (non-finite pixels).
    """
    rows, cols = shape
    cap = grid_cap(wcs, shape)
    xs, ys, starts = [], [], [0]
    for footprint in footprints:
        if not cap.meets(footprint.cap, _SLACK_RAD):
            continue
        for band, polygon in zip(footprint.bands, footprint.polygons, strict=True):
            x, y = wcs.world_to_pixel_values(polygon[:, 0], polygon[:, 1])
            if not (np.isfinite(x).all() and np.isfinite(y).all()):
                raise FootprintError(
                    f"held-out field {footprint.field}, band {band}: outline does not project onto the grid"
                )
            if x.max() < -0.5 or x.min() > cols - 0.5 or y.max() < -0.5 or y.min() > rows - 0.5:
                continue
            keep = simplify_ring(x, y, SIMPLIFY_TOL_PX)
            xs.append(x[keep])
            ys.append(y[keep])
            starts.append(starts[-1] + int(keep.sum()))
    if not xs:
        return None
    return PixelPolygons(np.concatenate(xs), np.concatenate(ys), np.array(starts, dtype=np.int64))


def simplify_ring(x: np.ndarray, y: np.ndarray, tol: float) -> np.ndarray:
    """Douglas-Peucker on a closed ring: which vertices to keep so that none dropped is farther than ``tol``.

    Args:
        x: x of the ring's vertices, the first not repeated at the end.
        y: y of the vertices.
        tol: largest distance from a dropped vertex to the simplified ring's edge that replaces it.

    Returns:
        Bool mask of the vertices to keep, in order (at least the first and the one farthest from it).
    """
    n = x.size
    points = np.column_stack([x, y])
    closed = np.vstack([points, points[:1]])  # index n is vertex 0 again, closing the ring
    far = int(np.argmax(np.hypot(x - x[0], y - y[0])))
    keep = np.zeros(n, dtype=bool)
    keep[[0, far]] = True
    stack = [(0, far), (far, n)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        chord = closed[b] - closed[a]
        offsets = closed[a + 1 : b] - closed[a]
        length = np.hypot(*chord)
        if length > 0:
            distance = np.abs(chord[0] * offsets[:, 1] - chord[1] * offsets[:, 0]) / length
        else:
            distance = np.hypot(offsets[:, 0], offsets[:, 1])
        k = int(np.argmax(distance))
        if distance[k] > tol:
            m = a + 1 + k
            keep[m] = True
            stack += [(a, m), (m, b)]
    return keep


def _stored_header(store: CubeStore | None, field: str) -> str | None:
    """The stored i-band header text of a field, if the store holds it done."""
    if store is None or field not in store.done_fields():
        return None
    return store.wcs_text(store.slot(field))


def _checked_header(path: Path, band: str, field: str) -> fits.Header:
    """A frame's or text header's primary header, refused if it describes another band or field."""
    header = read_frame_header(path)
    field_id = FieldId.parse(field)
    expected = {"FILTER": band, "RUN": field_id.run, "CAMCOL": field_id.camcol}
    for key, want in expected.items():
        if key in header and str(header[key]).strip() != str(want):
            raise InputFileError(path, f"header {key} is {header[key]!r}, but the name says {want!r}")
    return header
