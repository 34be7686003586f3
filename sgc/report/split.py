"""The split report: per split, patches, class pixel fractions and catalogue objects, and three figures.

What is counted, so that the splits' distributions can be compared:

- **Class pixel fractions** sum the plan's per-patch counts (``n_sky``, ``n_star``, ``n_galaxy``,
  ``n_ignore``): the pixels the model is shown, so a pixel in two overlapping patches (stride below the
  patch size) counts twice.
- **Objects** are catalogue objects (any file :func:`~sgc.sdss.catalogs.read_catalog` reads), placed on
  each field's grid by :func:`~sgc.cube.objects.locate_objects` (rounded pixel position, on a valid pixel)
  and counted for a split when one of its patches covers that pixel: once per split and field however
  many patches overlap there, and once for each stored field where fields overlap. The catalogue, not
  connected components of the labels, because the labels were painted from it, neighbouring objects'
  disks touch and merge into one component, and a component cut by a patch edge would count in every
  patch it reaches. Without a catalogue the object counts are left out.

Figures (PNG, matplotlib's Agg through a bare :class:`~matplotlib.figure.Figure`): a patch beside its label
map, the exclusion mask over a field, and the patch grid of a field coloured by split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.visualization import AsinhStretch, ImageNormalize, ZScaleInterval
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from sgc.atomic import atomic_write, write_json
from sgc.classes import GALAXY, IGNORE, LABEL_VALUES, STAR
from sgc.cube.objects import locate_objects
from sgc.cube.store import EXCLUDE, IMAGE, LABEL, VALID, CubeStore
from sgc.patches.planfile import SPLITS, PatchPlan, check_slots
from sgc.report.cube_figures import irg_window
from sgc.report.png import save_png
from sgc.report.style import CLASS_COLOURS, DPI, SPLIT_COLOURS
from sgc.sdss.catalogs import read_catalogs
from sgc.sdss.names import BANDS, FieldId
from sgc.windows import coverage

CLASSES = tuple(LABEL_VALUES)
REPORT_JSON = "split_report.json"
REPORT_MD = "split_report.md"
EXCLUDED_RGBA = (0.6, 0.1, 0.75, 0.45)  # purple: red is the test split's colour
INVALID_RGBA = (1.0, 0.85, 0.0, 0.7)
PATCH_FIGURE_SIZE = (10.0, 5.4)
# Field figures are this wide, and as tall as the field's aspect needs plus room for titles and labels.
FIELD_FIGURE_WIDTH = 12.0
FIELD_FIGURE_EXTRA = 1.5


def split_report(
    plan: PatchPlan, store: str | Path, catalogs: Sequence[str | Path] | None = None
) -> dict[str, Any]:
    """Patches, fields, class pixel fractions and (with catalogues) objects of each split.

    Args:
        plan: the patch plan.
        store: the cube store it was cut from.
        catalogs: catalogue files; None or empty leaves object counts out.

    Returns:
        A JSON-able dict: ``store``, ``patch``, ``stride``, ``seed``, ``mode``, ``objects_counted``
        (whether catalogues were given), ``normalisation`` (per band median, robust sigma, mean, std of
        the train pixels) and ``splits``: for each split ``fields``, ``patches``, ``pixels``,
        ``class_fractions`` (sky, star, galaxy, ignore; None without pixels), ``invalid_fraction``,
        ``objects`` (``star``, ``galaxy``; None without catalogues) and ``dropped`` (the plan's summary).
    """
    table = plan.table
    objects = _object_counts(plan, store, catalogs) if catalogs else None
    splits: dict[str, Any] = {}
    for split in SPLITS:
        rows = table[table["split"] == split]
        pixels = len(rows) * plan.patch**2
        counts = {c: int(np.sum(rows[f"n_{c}"], dtype=np.int64)) for c in CLASSES}
        splits[split] = {
            "fields": len(set(np.asarray(rows["field"]).tolist())),
            "patches": len(rows),
            "pixels": pixels,
            "class_fractions": {c: n / pixels for c, n in counts.items()} if pixels else None,
            "invalid_fraction": int(np.sum(rows["n_invalid"], dtype=np.int64)) / pixels if pixels else None,
            "objects": objects[split] if objects else None,
            "dropped": plan.summary.get(split),
        }
    return {
        "store": str(store),
        "patch": plan.patch,
        "stride": plan.stride,
        "seed": plan.seed,
        "mode": plan.split["assignment"]["mode"],
        "objects_counted": bool(catalogs),
        "normalisation": {
            band: {key: stats.get(key) for key in ("count", "median", "robust_sigma", "mean", "std")}
            for band, stats in plan.normalisation.items()
        },
        "splits": splits,
    }


def report_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The report's table: its column names, and one row of cells per split."""
    columns = ["split", "fields", "patches", *CLASSES, "invalid", "stars", "galaxies"]
    columns.append("dropped: excluded / invalid")
    rows = []
    for split, s in report["splits"].items():
        fractions = s["class_fractions"] or {}
        objects = s["objects"] or {}
        dropped = s["dropped"] or {}
        cells = [
            split,
            str(s["fields"]),
            str(s["patches"]),
            *(_percent(fractions.get(c)) for c in CLASSES),
            _percent(s["invalid_fraction"]),
            str(objects.get("star", "-")),
            str(objects.get("galaxy", "-")),
            f"{dropped.get('dropped_excluded', '-')} / {dropped.get('dropped_invalid', '-')}",
        ]
        rows.append(cells)
    return columns, rows


def format_report(report: dict[str, Any]) -> str:
    """The report as a Markdown table, one row per split."""
    columns, rows = report_table(report)
    lines = [
        f"Patch plan of {report['store']}: {report['patch']} px patches, stride {report['stride']}, "
        f"{report['mode']} split, seed {report['seed']}",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + " --- |" * len(columns),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    lines += ["", "Class fractions are over patch pixels (overlapping patches count twice)."]
    if not report["objects_counted"]:
        lines.append("Objects were not counted: no catalogue given.")
    return "\n".join(lines) + "\n"


def write_report_files(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``split_report.json`` and ``split_report.md`` into ``out_dir``, atomically.

    Returns:
        The two paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_json(out_dir / REPORT_JSON, report, indent=2)]
    with atomic_write(out_dir / REPORT_MD, "w", sync=False) as f:
        f.write(format_report(report))
    written.append(out_dir / REPORT_MD)
    return written


def write_split_report(
    plan: PatchPlan,
    store: str | Path,
    out_dir: str | Path,
    catalogs: Sequence[str | Path] | None = None,
    field: str | None = None,
) -> dict[str, Path]:
    """The whole split report: JSON, Markdown and the three figures.

    Args:
        plan: the patch plan.
        store: the cube store it was cut from.
        out_dir: folder to write into (created if needed).
        catalogs: catalogue files for the object counts, or None.
        field: the field drawn in the field figures; None picks the first train or validation field
            with excluded pixels (where the mask and the dropped patches show), else the plan's first.

    Returns:
        Paths by name: ``json``, ``markdown``, ``patch_label``, ``exclusion``, ``patch_grid``.
    """
    out_dir = Path(out_dir)
    json_path, md_path = write_report_files(split_report(plan, store, catalogs), out_dir)
    field = str(FieldId.parse(field)) if field else _figure_field(plan, CubeStore.open(store))
    return {
        "json": json_path,
        "markdown": md_path,
        "patch_label": patch_label_figure(store, plan, out_dir / "patch_label.png"),
        "exclusion": exclusion_figure(store, field, out_dir / "exclusion.png"),
        "patch_grid": patch_grid_figure(store, plan, field, out_dir / "patch_grid.png"),
    }


def patch_label_figure(store: str | Path, plan: PatchPlan, out: str | Path, row: int | None = None) -> Path:
    """Save one patch (IRG composite) beside its label map, stars and galaxies coloured.

    Args:
        store: the cube store.
        plan: the patch plan.
        out: the PNG to write (1000 x 540 pixels).
        row: the patch's row in the plan's table; None picks the train patch (else any) with both
            stars and galaxies and the most object pixels.

    Returns:
        ``out``.
    """
    table = plan.table
    if row is None:
        pool = np.flatnonzero(table["split"] == "train")
        pool = pool if len(pool) else np.arange(len(table))
        score = [
            (
                bool(table["n_star"][k] and table["n_galaxy"][k]),
                int(table["n_star"][k] + table["n_galaxy"][k]),
            )
            for k in pool
        ]
        row = int(pool[max(range(len(pool)), key=score.__getitem__)])
    patch = table[row]
    cube = CubeStore.open(store)
    check_slots(plan, cube.fields, store)
    slot, y0, x0, p = int(patch["field_index"]), int(patch["y0"]), int(patch["x0"]), plan.patch
    window = (slice(y0, y0 + p), slice(x0, x0 + p))
    label = cube[LABEL][slot, window[0], window[1]]
    # Colour index of each pixel: the classes in the order of CLASSES.
    classes = np.select([label == STAR, label == GALAXY, label == IGNORE], [1, 2, 3], 0)
    colours = [CLASS_COLOURS[c] for c in CLASSES]
    fig = Figure(figsize=PATCH_FIGURE_SIZE, dpi=DPI, layout="constrained")
    left, right = fig.subplots(1, 2)
    extent = (x0 - 0.5, x0 + p - 0.5, y0 - 0.5, y0 + p - 0.5)
    left.imshow(irg_window(cube, slot, *window), origin="lower", extent=extent, interpolation="nearest")
    left.set(title="image (IRG composite)", xlabel="x (pixel)", ylabel="y (pixel)")
    right.imshow(classes, origin="lower", extent=extent, cmap=ListedColormap(colours), vmin=-0.5, vmax=3.5)
    right.set(title="label", xlabel="x (pixel)")
    handles = [Patch(color=CLASS_COLOURS[n], label=n) for n in CLASSES]
    right.legend(handles=handles, loc="upper right", framealpha=0.8)
    fig.suptitle(f"{patch['split']} patch of {patch['field']} at y0={y0}, x0={x0} ({p}x{p} px)")
    return save_png(fig, out)


def exclusion_figure(store: str | Path, field: str, out: str | Path) -> Path:
    """Save a field's i band with its exclusion mask (held-out sky) and invalid pixels over it.

    Returns:
        ``out`` (1200 pixels wide, as tall as the field's aspect needs).

    Raises:
        StoreError: if the store does not hold the field.
    """
    fig, ax, cube, slot, exclude = _field_over_i_band(store, field)
    name = cube.fields[slot]
    invalid = ~cube[VALID][slot]
    _overlay(ax, (exclude, EXCLUDED_RGBA), (invalid, INVALID_RGBA))
    handles = [
        Patch(color=EXCLUDED_RGBA, label=f"excluded: held-out sky ({exclude.mean():.1%})"),
        Patch(color=INVALID_RGBA, label=f"not valid ({invalid.mean():.1%})"),
    ]
    ax.legend(handles=handles, loc="upper right", framealpha=0.8)
    ax.set(title=f"{name}: exclusion mask over the i band", xlabel="x (pixel)", ylabel="y (pixel)")
    return save_png(fig, out)


def patch_grid_figure(store: str | Path, plan: PatchPlan, field: str, out: str | Path) -> Path:
    """Save a field's i band with its plan patches outlined and tinted by split, held-out sky in purple.

    Returns:
        ``out`` (1200 pixels wide, as tall as the field's aspect needs).

    Raises:
        StoreError: if the store does not hold the field.
    """
    fig, ax, cube, slot, exclude = _field_over_i_band(store, field)
    name = cube.fields[slot]
    rows = plan.table[plan.table["field"] == name]
    _overlay(ax, (exclude, EXCLUDED_RGBA))
    p = plan.patch
    for patch in rows:
        colour = SPLIT_COLOURS[str(patch["split"])]
        corner = (int(patch["x0"]) - 0.5, int(patch["y0"]) - 0.5)
        ax.add_patch(Rectangle(corner, p, p, facecolor=colour, alpha=0.2, edgecolor="none"))
        ax.add_patch(Rectangle(corner, p, p, facecolor="none", edgecolor=colour, linewidth=0.6))
    handles = [
        Patch(color=c, alpha=0.6, label=f"{s} ({int(np.sum(rows['split'] == s))})")
        for s, c in SPLIT_COLOURS.items()
    ]
    handles.append(Patch(color=EXCLUDED_RGBA, label="excluded (held-out sky)"))
    ax.legend(handles=handles, loc="upper right", framealpha=0.8)
    ax.set(
        title=f"{name}: {len(rows)} patches of {p}x{p} px, stride {plan.stride}, by split",
        xlabel="x (pixel)",
        ylabel="y (pixel)",
    )
    return save_png(fig, out)


def _object_counts(
    plan: PatchPlan, store: str | Path, catalogs: Sequence[str | Path]
) -> dict[str, dict[str, int]]:
    """Catalogue stars and galaxies whose pixel a patch of the split covers, per split."""
    table = plan.table
    cube = CubeStore.open(store)
    located = locate_objects(cube, read_catalogs(catalogs), list(plan.field_rows()))
    by_field = {str(group["field"][0]): group for group in located.group_by("field").groups}
    shape = cube.shape
    counts = {split: {"star": 0, "galaxy": 0} for split in SPLITS}
    for split in SPLITS:
        for field, rows in plan.field_rows((split,)).items():
            objects = by_field.get(field)
            if objects is None:
                continue
            covered = coverage(
                shape, np.asarray(table["y0"])[rows], np.asarray(table["x0"])[rows], plan.patch
            )
            inside = covered[np.asarray(objects["y"]), np.asarray(objects["x"])]
            for cls in ("star", "galaxy"):
                counts[split][cls] += int(np.count_nonzero(inside & (objects["class"] == cls)))
    return counts


def _figure_field(plan: PatchPlan, cube: CubeStore) -> str:
    """The first train or validation field with excluded pixels, else the plan's first field."""
    names = cube.fields
    for field in plan.field_rows(("train", "val")):
        if cube[EXCLUDE][names.index(field)].any():
            return field
    return str(plan.table["field"][0])


def _field_over_i_band(store: str | Path, field: str) -> tuple[Figure, Any, CubeStore, int, np.ndarray]:
    """A figure showing a field's i band, and the field's slot and exclusion mask to draw over it.

    Raises:
        StoreError: if the store does not hold the field.
    """
    cube = CubeStore.open(store)
    slot = cube.slot(field)
    exclude = cube[EXCLUDE][slot]
    fig = _field_figure(exclude.shape)
    ax = fig.subplots()
    _show_i_band(ax, cube, slot)
    return fig, ax, cube, slot, exclude


def _field_figure(shape: tuple[int, int]) -> Figure:
    height = FIELD_FIGURE_WIDTH * shape[0] / shape[1] + FIELD_FIGURE_EXTRA
    return Figure(figsize=(FIELD_FIGURE_WIDTH, height), dpi=DPI, layout="constrained")


def _show_i_band(ax: Any, cube: CubeStore, slot: int) -> None:
    """The field's i band, asinh-stretched between z-scale limits, NaN on invalid pixels."""
    image = np.where(cube[VALID][slot], cube[IMAGE][slot, BANDS.index("i")], np.nan)
    finite = image[np.isfinite(image)]
    norm = ImageNormalize(finite, interval=ZScaleInterval(), stretch=AsinhStretch()) if finite.size else None
    ax.imshow(image, origin="lower", cmap="gray", norm=norm, interpolation="antialiased")


def _overlay(ax: Any, *layers: tuple[np.ndarray, tuple[float, float, float, float]]) -> None:
    """Paint each boolean mask in its RGBA colour over the image, later layers on top."""
    rgba = np.zeros((*layers[0][0].shape, 4))
    for mask, colour in layers:
        rgba[mask] = colour
    ax.imshow(rgba, origin="lower", interpolation="nearest")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"
