"""Figures of a cube store, saved as PNG.

- :func:`irg_before_after`: an IRG colour composite of a field's raw frames as published (each band on its
  own pixel grid) beside the same crop of the aligned store; misalignment shows as colour fringes.
- :func:`catalog_overlay`: a field's aligned r band with catalogue stars and galaxies marked.
- :func:`object_positions`: where catalogued objects fall on the pixel grid, over all fields.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` (rendered by Agg), never through pyplot, so
no global backend is switched and nothing is left open. Each figure has a fixed size in pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from astropy.table import Table
from astropy.visualization import make_lupton_rgb
from matplotlib.figure import Figure

from sgc.classes import OBJECT_CLASSES
from sgc.cube.objects import locate_objects
from sgc.cube.quantiles import ROBUST_SIGMA_PER_MAD
from sgc.cube.store import IMAGE, VALID, CubeStore
from sgc.errors import InputFileError
from sgc.report.png import save_png
from sgc.report.style import CLASS_COLOURS, DPI, OBJECT_MARKERS, PLURALS
from sgc.sdss.discover import find_frames
from sgc.sdss.frames import read_frame
from sgc.sdss.names import BANDS, FieldId
from sgc.windows import integral_image, window_sums

IRG_BANDS = ("i", "r", "g")
# Per-band weights before the stretch (SDSS's irg previews scale each band too), chosen on the real sample
# so that the sky and typical stars come out close to grey and colour fringes stand out.
IRG_WEIGHTS: Mapping[str, float] = {"i": 1.0, "r": 1.4, "g": 2.2}
# Lupton et al. (2004) asinh stretch: about linear below IRG_STRETCH nanomaggies (faint objects visible above
# the sky noise of about 0.02-0.04), logarithmic above it, so bright stars keep their colour.
IRG_STRETCH = 0.3
IRG_Q = 10.0
# Pixels above median + BRIGHT_SIGMA robust sigma count as bright when choosing the crop.
BRIGHT_SIGMA = 20.0

BEFORE_AFTER_SIZE = (12.0, 6.6)
OVERLAY_SIZE = (12.0, 9.0)
POSITIONS_SIZE = (15.0, 4.5)


def irg_composite(i: np.ndarray, r: np.ndarray, g: np.ndarray) -> np.ndarray:
    """An SDSS-like IRG colour image: i to red, r to green, g to blue, one fixed asinh stretch.

    Args:
        i, r, g: images in nanomaggies, of one shape; NaN shows black.

    Returns:
        ``(rows, columns, 3)`` uint8 RGB.
    """
    bands = [
        np.nan_to_num(image * IRG_WEIGHTS[b], nan=0.0) for b, image in zip(IRG_BANDS, (i, r, g), strict=True)
    ]
    return make_lupton_rgb(*bands, stretch=IRG_STRETCH, Q=IRG_Q)


def irg_window(cube: CubeStore, slot: int, rows: slice, cols: slice) -> np.ndarray:
    """The IRG composite (:func:`irg_composite`) of a window of a stored field, ``(rows, columns, 3)``."""
    i, r, g = cube[IMAGE].oindex[slot, [cube.bands.index(b) for b in IRG_BANDS], rows, cols]
    return irg_composite(i, r, g)


def irg_panels(
    store: str | Path,
    field: str,
    raw: str | Path | Mapping[str, str | Path],
    *,
    size: int = 400,
    corner: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """The before and after IRG composites of a crop of one field.

    Args:
        store: the cube store.
        field: a done field of the store (any form :meth:`FieldId.parse` reads).
        raw: the i, r and g frame paths by band, or a folder holding the files that the field's
            ``source`` record names.
        size: edge of the square crop in pixels (smaller where the grid is).
        corner: ``(row, column)`` of the crop's first pixel; None picks the mostly valid crop with the
            most bright pixels, where misalignment shows best.

    Returns:
        ``(before, after, corner)``: the raw frames' composite, each band on its own pixel grid as
        published, and the aligned store's composite, both ``(rows, columns, 3)`` uint8.

    Raises:
        StoreError: if the field is not a done field of the store.
        InputFileError: if a raw frame cannot be found or read.
    """
    cube = CubeStore.open(store)
    slot = cube.done_slot(field)
    name = cube.fields[slot]
    band_index = [BANDS.index(b) for b in IRG_BANDS]
    ny, nx = cube.shape
    h, w = min(size, ny), min(size, nx)
    if corner is None:
        corner = _bright_corner(cube[IMAGE][slot, BANDS.index("r")], cube[VALID][slot], h, w)
    y0, x0 = corner
    after = cube[IMAGE].oindex[slot, band_index, y0 : y0 + h, x0 : x0 + w]
    paths = _raw_paths(cube, slot, name, raw)
    before = [_crop(read_frame(paths[b]).image, y0, x0, h, w) for b in IRG_BANDS]
    return irg_composite(*before), irg_composite(*after), (y0, x0)


def irg_before_after(
    store: str | Path,
    field: str,
    raw: str | Path | Mapping[str, str | Path],
    out: str | Path,
    *,
    size: int = 400,
    corner: tuple[int, int] | None = None,
) -> Path:
    """Save the IRG composites of a crop before and after alignment, side by side.

    Args:
        store, field, raw, size, corner: as for :func:`irg_panels`.
        out: the PNG to write (1200 x 660 pixels).

    Returns:
        ``out``.
    """
    before, after, (y0, x0) = irg_panels(store, field, raw, size=size, corner=corner)
    fig = Figure(figsize=BEFORE_AFTER_SIZE, dpi=DPI, layout="constrained")
    extent = (x0 - 0.5, x0 + before.shape[1] - 0.5, y0 - 0.5, y0 + before.shape[0] - 0.5)
    titles = ("before: raw frames, each on its own grid", "after: aligned onto the i-band grid")
    for ax, image, title in zip(fig.subplots(1, 2), (before, after), titles, strict=True):
        ax.imshow(image, origin="lower", extent=extent, interpolation="nearest")
        ax.set(title=title, xlabel="x (i-band pixel)", ylabel="y (i-band pixel)")
    fig.suptitle(f"{_field_name(field)}: IRG composite (i red, r green, g blue), same asinh stretch")
    return save_png(fig, out)


def catalog_overlay(store: str | Path, field: str, catalog: Table, out: str | Path) -> Path:
    """Save a field's aligned r band with the catalogue's stars and galaxies marked.

    Only objects inside the field's valid area are marked (see :func:`~sgc.cube.objects.locate_objects`);
    invalid pixels show red.

    Args:
        store: the cube store.
        field: a done field of the store.
        catalog: a catalogue in the common shape.
        out: the PNG to write (1200 x 900 pixels).

    Returns:
        ``out``.

    Raises:
        StoreError: if the field is not a done field of the store.
    """
    cube = CubeStore.open(store)
    slot = cube.done_slot(field)
    name = cube.fields[slot]
    r = np.where(cube[VALID][slot], cube[IMAGE][slot, BANDS.index("r")], np.nan)
    objects = locate_objects(cube, catalog, [name])
    fig = Figure(figsize=OVERLAY_SIZE, dpi=DPI, layout="constrained")
    ax = fig.subplots()
    ax.set_facecolor("darkred")
    ax.imshow(_asinh_grey(r), origin="lower", cmap="gray", interpolation="antialiased")
    for cls in OBJECT_CLASSES:
        rows = objects[objects["class"] == cls]
        ax.scatter(
            rows["x"],
            rows["y"],
            s=60,
            marker=OBJECT_MARKERS[cls],
            facecolors="none",
            edgecolors=CLASS_COLOURS[cls],
            linewidths=0.8,
            label=f"{PLURALS[cls]} ({len(rows)})",
        )
    ax.set(title=f"{name}: catalogue objects on the aligned r band", xlabel="x (pixel)", ylabel="y (pixel)")
    ax.legend(loc="upper right", framealpha=0.8)
    return save_png(fig, out)


def object_positions(store: str | Path, catalog: Table, out: str | Path) -> Path:
    """Save the distribution of catalogued objects over pixel coordinates, across all done fields.

    Three panels: histograms of x and of y per class, and a hexbin map of all objects on the grid.

    Args:
        store: the cube store.
        catalog: a catalogue in the common shape.
        out: the PNG to write (1500 x 450 pixels).

    Returns:
        ``out``.
    """
    cube = CubeStore.open(store)
    ny, nx = cube.shape
    objects = locate_objects(cube, catalog)
    nfields = len(set(objects["field"]))
    fig = Figure(figsize=POSITIONS_SIZE, dpi=DPI, layout="constrained")
    ax_x, ax_y, ax_xy = fig.subplots(1, 3)
    for ax, axis, extent in ((ax_x, "x", nx), (ax_y, "y", ny)):
        bins = np.linspace(0, extent, 33)
        for cls in OBJECT_CLASSES:
            values = objects[axis][objects["class"] == cls]
            ax.hist(
                values,
                bins=bins,
                histtype="step",
                color=CLASS_COLOURS[cls],
                label=f"{PLURALS[cls]} ({len(values)})",
            )
        ax.set(xlabel=f"{axis} (pixel)", ylabel="objects per bin", xlim=(0, extent))
        ax.legend(loc="lower center")
    gridsize = (32, max(1, round(32 * ny / nx)))
    image = ax_xy.hexbin(objects["x"], objects["y"], gridsize=gridsize, extent=(0, nx, 0, ny), mincnt=1)
    fig.colorbar(image, ax=ax_xy, label="objects")
    ax_xy.set(xlabel="x (pixel)", ylabel="y (pixel)", xlim=(0, nx), ylim=(0, ny), aspect="equal")
    fig.suptitle(
        f"catalogue objects over pixel coordinates: {len(objects)} in the valid area of {nfields} field(s)"
    )
    return save_png(fig, out)


def _field_name(field: str) -> str:
    return str(FieldId.parse(field))


def _raw_paths(
    cube: CubeStore, slot: int, name: str, raw: str | Path | Mapping[str, str | Path]
) -> dict[str, Path]:
    """Paths of the field's raw i, r and g frames: given, or those below ``raw`` that the store was made from.

    Raises:
        InputFileError: if ``raw`` holds no frame of a band under the name the store records.
    """
    if isinstance(raw, Mapping):
        return {b: Path(raw[b]) for b in IRG_BANDS}
    files = cube.source(slot).get("files", {})
    found = find_frames([raw], missing_ok=True).bands(name)
    paths = {b: found[b] for b in IRG_BANDS if b in found and found[b].name == files.get(b, {}).get("name")}
    missing = [b for b in IRG_BANDS if b not in paths]
    if missing:
        what = f"no raw {'/'.join(missing)} frame of field {name} with the name the store records"
        raise InputFileError(raw, f"holds {what}")
    return paths


def _crop(image: np.ndarray, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """``image[y0:y0+h, x0:x0+w]``, NaN where the window leaves the image."""
    out = np.full((h, w), np.nan, dtype=np.float32)
    part = image[y0 : y0 + h, x0 : x0 + w]
    out[: part.shape[0], : part.shape[1]] = part
    return out


def _bright_corner(r: np.ndarray, valid: np.ndarray, h: int, w: int) -> tuple[int, int]:
    """Corner of the h x w window, at least 95% valid, that holds the most bright r pixels.

    Where no window is that valid, the most valid one.
    """
    good = valid & np.isfinite(r)
    if not good.any():
        return (valid.shape[0] - h) // 2, (valid.shape[1] - w) // 2
    median = np.median(r[good])
    sigma = ROBUST_SIGMA_PER_MAD * np.median(np.abs(r[good] - median))
    bright = good & (np.nan_to_num(r, nan=-np.inf) > median + BRIGHT_SIGMA * sigma)
    step = max(1, min(h, w) // 8)
    ys = np.arange(0, valid.shape[0] - h + 1, step)
    xs = np.arange(0, valid.shape[1] - w + 1, step)
    y, x = ys[:, None], xs[None, :]
    cover = window_sums(integral_image(good), y, x, y + h, x + w)
    score = np.where(cover >= 0.95 * h * w, window_sums(integral_image(bright), y, x, y + h, x + w), -1)
    if score.max() < 0:
        score = cover
    iy, ix = np.unravel_index(np.argmax(score), score.shape)
    return int(ys[iy]), int(xs[ix])


def _asinh_grey(image: np.ndarray) -> np.ndarray:
    """An asinh stretch in units of the image's robust sigma: noise visible, bright cores not clipped."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return image
    median = np.median(finite)
    sigma = ROBUST_SIGMA_PER_MAD * np.median(np.abs(finite - median)) or 1.0
    return np.arcsinh((image - median) / sigma)
