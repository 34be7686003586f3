"""Scoring predictions against the labels and the catalogue on a region: ``metrics.json`` and ``metrics.md``.

A region is, per field, the pixels scored and the patches of the per-patch metric: a split of a patch plan
(the pixels its patches cover), or a band of rows of the stored grid. Inside it (:mod:`sgc.evaluate.metrics`
defines every number):

- ``pixel``: the predicted class map against the ``label`` array, pixels labelled ignore or without a
  prediction left out, micro over the region;
- ``per_patch``: the 2023 report's per-patch average, over the region's patches;
- ``object``: every catalogue object whose nearest pixel is in the region, by the mean predicted probability
  around its position, and the purity of the predicted objects (the object catalogue beside the
  predictions) whose centroid is in the region, matched against every catalogue object on those fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from sgc.atomic import atomic_write, read_json, write_json
from sgc.classes import CLASS_NAMES, GALAXY, IGNORE, OBJECT_CLASSES, STAR
from sgc.cube.objects import locate_objects
from sgc.cube.store import CLASS, IMAGE, LABEL, PROB, VALID, CubeStore, PredictionStore
from sgc.errors import SgcError
from sgc.evaluate.metrics import ConfusionMatrix, object_classes, object_metrics, per_patch_scores
from sgc.patches.plan import patch_origins
from sgc.patches.planfile import PatchPlan
from sgc.sdss.names import BANDS, PIXEL_SCALE_ARCSEC
from sgc.windows import coverage, pixels_in

METRICS_JSON = "metrics.json"
METRICS_MD = "metrics.md"
SCORED_CSV = "scored-objects.csv"
# Beside the metrics of every method scored in a run: which folder holds each, and their object scores.
SUMMARY_JSON = "summary.json"
SCORED_COLUMNS = (
    "field",
    "ra",
    "dec",
    "x",
    "y",
    "truth",
    "predicted",
    "mag_r",
    "p_sky",
    "p_star",
    "p_galaxy",
)
_R = BANDS.index("r")
# SDSS's fibre magnitude: the flux within 3 arcsec diameter, what the scores by magnitude use where the
# catalogue has no magnitude.
FIBRE_RADIUS_ARCSEC = 1.5
FIBRE_RADIUS_PX = FIBRE_RADIUS_ARCSEC / PIXEL_SCALE_ARCSEC


class EvaluateError(SgcError):
    """An evaluation that cannot be made (no catalogue object in the region, a field not predicted)."""


@dataclass
class Region:
    """Where predictions are scored.

    Attributes:
        masks: per field, the pixels scored (``(rows, columns)`` bool).
        patches: per field, the origins ``(y0, x0)`` of the per-patch metric's patches.
        patch: patch edge.
        description: what the region is, in words (for the report).
    """

    masks: dict[str, np.ndarray]
    patches: dict[str, list[tuple[int, int]]]
    patch: int
    description: str


def plan_region(plan: PatchPlan, split: str, cube: CubeStore) -> Region:
    """The pixels the patches of a plan's split cover, field by field.

    Args:
        plan: the patch plan.
        split: ``train``, ``val`` or ``test``.
        cube: the cube store the plan was cut from.

    Raises:
        EvaluateError: if the split has no patch.
    """
    table = plan.table
    grouped = plan.field_rows((split,))
    if not grouped:
        raise EvaluateError(f"the plan has no {split} patch to score")
    masks, patches = {}, {}
    for name, rows in grouped.items():
        y0, x0 = np.asarray(table["y0"])[rows], np.asarray(table["x0"])[rows]
        masks[name] = coverage(cube.shape, y0, x0, plan.patch)
        patches[name] = list(zip(y0.tolist(), x0.tolist(), strict=True))
    n = sum(len(p) for p in patches.values())
    return Region(
        masks, patches, plan.patch, f"{split} split: {n} patches of {plan.patch} px in {len(masks)} field(s)"
    )


def rows_region(cube: CubeStore, rows: tuple[int, int] | None, patch: int = 64) -> Region:
    """Rows ``[first, end)`` (all rows by default) of every done field's valid pixels.

    The per-patch metric's patches tile the band of rows from its first row and column.

    Raises:
        EvaluateError: if the rows leave the grid or hold no row.
    """
    ny, nx = cube.shape
    first, end = rows if rows is not None else (0, ny)
    if not 0 <= first < end <= ny:
        raise EvaluateError(f"rows {first}:{end} are not a band of the {ny}-row grid")
    masks, patches = {}, {}
    for slot in cube.done_slots():
        name = cube.fields[slot]
        valid = cube[VALID][slot]
        mask = np.zeros((ny, nx), dtype=bool)
        mask[first:end] = valid[first:end]
        masks[name] = mask
        y0, x0 = patch_origins((first, end), (0, nx), patch, patch)
        patches[name] = [
            (y, x)
            for y, x in zip(y0.tolist(), x0.tolist(), strict=True)
            if mask[y : y + patch, x : x + patch].any()
        ]
    return Region(masks, patches, patch, f"rows {first}:{end} of {len(masks)} field(s)")


def score(
    predictions: PredictionStore, cube: CubeStore, region: Region, catalog: Table, objects: Table
) -> tuple[dict[str, Any], Table]:
    """Pixel, per-patch and object metrics of predictions on a region.

    Args:
        predictions: the prediction store (its fields must hold the region's).
        cube: the cube store with ``label``.
        region: where to score.
        catalog: the catalogue (common shape of :mod:`sgc.sdss.catalogs`).
        objects: the predicted objects (:mod:`sgc.evaluate.catalog`).

    Returns:
        ``{"region", "pixel", "per_patch", "object"}`` as :func:`write_metrics` writes them, and the scored
        catalogue objects (``field``, ``ra``, ``dec``, ``x``, ``y``, ``truth``, ``predicted``, ``mag_r`` and
        the mean probability of each class, ``p_sky``, ``p_star``, ``p_galaxy``).

    Raises:
        EvaluateError: a region field not predicted, or no catalogue object in the region.
    """
    missing = [name for name in region.masks if name not in predictions.done_fields()]
    if missing:
        raise EvaluateError(f"{predictions.path}: field(s) {', '.join(missing)} not predicted")
    matrix = ConfusionMatrix()
    truth_patches, pred_patches = [], []
    located = locate_objects(cube, catalog, list(region.masks))
    found: dict[str, list[np.ndarray]] = {key: [] for key in SCORED_COLUMNS}
    predicted_ra, predicted_dec = [], []
    p = region.patch
    for name, mask in region.masks.items():
        slot, pslot = cube.slot(name), predictions.slot(name)
        label = np.where(mask, cube[LABEL][slot], IGNORE)
        pred = predictions[CLASS][pslot]
        label[pred == IGNORE] = IGNORE  # no prediction where not every band covers the pixel
        matrix.update(_tensor(pred), _tensor(label))
        for y0, x0 in region.patches[name]:
            truth_patches.append(label[y0 : y0 + p, x0 : x0 + p])
            pred_patches.append(pred[y0 : y0 + p, x0 : x0 + p])
        mine = located[(located["field"] == name)]
        inside = mask[np.asarray(mine["y"]), np.asarray(mine["x"])]
        rows = np.asarray(mine["row"])[inside]
        x, y = cube.field_wcs(slot).world_to_pixel_values(catalog["ra"][rows], catalog["dec"][rows])
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        classes, mean = object_classes(predictions[PROB][pslot].astype(np.float32), x, y)
        parts = {
            "field": np.full(len(rows), name, dtype="<U13"),
            "ra": np.asarray(catalog["ra"])[rows],
            "dec": np.asarray(catalog["dec"])[rows],
            "x": x,
            "y": y,
            "truth": np.where(np.asarray(catalog["class"])[rows] == "star", STAR, GALAXY),
            "predicted": classes,
            "mag_r": r_magnitudes(catalog[rows], cube, slot, x, y),
            **{f"p_{c}": mean[:, k] for k, c in enumerate(CLASS_NAMES)},
        }
        for key, value in parts.items():
            found[key].append(value)
        here = objects[objects["field"] == name]
        keep = pixels_in(mask, here["x"], here["y"])
        predicted_ra.append(np.asarray(here["ra"])[keep])
        predicted_dec.append(np.asarray(here["dec"])[keep])
    scored = Table({key: np.concatenate(values) for key, values in found.items()})
    if len(scored) == 0:
        raise EvaluateError(f"no catalogue object lies in the region scored ({region.description})")
    truth, predicted, mag = (np.asarray(scored[key]) for key in ("truth", "predicted", "mag_r"))
    metrics = {
        "region": {
            "description": region.description,
            "fields": list(region.masks),
            "pixels": int(sum(m.sum() for m in region.masks.values())),
        },
        "pixel": {**matrix.per_class(), "confusion": matrix.counts.tolist(), "classes": list(CLASS_NAMES)},
        "per_patch": per_patch_scores(np.stack(truth_patches), np.stack(pred_patches))
        | {"patches": len(truth_patches)},
        "object": object_metrics(
            truth,
            predicted,
            mag,
            (np.concatenate(predicted_ra), np.concatenate(predicted_dec)),
            (np.asarray(located["ra"]), np.asarray(located["dec"])),
        ),
    }
    for key in ("truth", "predicted"):
        scored[key] = np.asarray(CLASS_NAMES)[scored[key]].astype("<U6")
    return metrics, scored


def _tensor(values: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.int64))


def r_magnitudes(table: Table, cube: CubeStore, slot: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each object's r magnitude: its model magnitude, else its PSF magnitude, else (a catalogue without
    fluxes, such as the real sample's) its fibre magnitude on the stored r band (:func:`fibre_magnitudes`).

    Args:
        table: the objects' catalogue rows.
        cube: the cube store, and ``slot`` the objects' field in it.
        x, y: the objects' positions on the stored grid.
    """
    model = np.asarray(table["model_mag"], dtype=np.float64)[:, _R]
    psf = np.asarray(table["psf_mag"], dtype=np.float64)[:, _R]
    mag = np.where(np.isfinite(model), model, psf)
    unknown = ~np.isfinite(mag)
    if unknown.any():
        mag[unknown] = fibre_magnitudes(cube, slot, x[unknown], y[unknown])
    return mag


def fibre_magnitudes(cube: CubeStore, slot: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """r magnitudes in SDSS's fibre aperture (:data:`FIBRE_RADIUS_ARCSEC`) around each position, from the
    stored, sky-subtracted r band in nanomaggies; NaN where the flux is not positive."""
    import sep

    from sgc.sdss.catalogs import nanomaggies_to_mag

    image = np.nan_to_num(np.asarray(cube[IMAGE][slot, cube.bands.index("r")], dtype=np.float64))
    flux, _, _ = sep.sum_circle(image, np.asarray(x, np.float64), np.asarray(y, np.float64), FIBRE_RADIUS_PX)
    return nanomaggies_to_mag(flux)


def write_metrics(metrics: dict[str, Any], scored: Table, out_dir: str | Path) -> list[Path]:
    """Write ``metrics.json`` (strict JSON), ``metrics.md`` and the scored objects (CSV) into ``out_dir``.

    Args:
        metrics: :func:`score`'s metrics (with a ``method`` name, for the Markdown's title).
        scored: :func:`score`'s scored objects.
        out_dir: the output folder.

    Returns:
        The three paths.
    """
    out_dir = Path(out_dir)
    written = [write_json(out_dir / METRICS_JSON, metrics, indent=2)]
    with atomic_write(out_dir / METRICS_MD, "w", sync=False) as f:
        f.write(format_metrics(metrics))
    with atomic_write(out_dir / SCORED_CSV, "w", sync=False) as f:
        scored.write(f, format="ascii.csv")
    return [*written, out_dir / METRICS_MD, out_dir / SCORED_CSV]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_metrics(metrics: dict[str, Any]) -> str:
    """The metrics as Markdown: the object scores first (what a user came for), then pixels and patches."""
    obj, pixel, patch = metrics["object"], metrics["pixel"], metrics["per_patch"]
    title = metrics.get("method", "model")
    lines = [f"# {title}: {metrics['region']['description']}", ""]
    lines += ["## Objects (catalogue positions)", ""]
    lines += [
        "| objects | detection recall | accuracy | MCC | purity | star F1 | galaxy F1 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {obj['n']} | {_fmt(obj['detection_recall'])} | {_fmt(obj['accuracy'])} | {_fmt(obj['mcc'])} | "
        f"{_fmt(obj['purity'])} | {_fmt(obj['star']['f1'])} | {_fmt(obj['galaxy']['f1'])} |",
        "",
        "| class | n | precision | recall | F1 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in OBJECT_CLASSES:
        scores = obj[c]
        lines.append(
            f"| {c} | {scores['n']} | {_fmt(scores['precision'])} | {_fmt(scores['recall'])} | "
            f"{_fmt(scores['f1'])} |"
        )
    lines += [
        "",
        "By r magnitude:",
        "",
        "| r | objects | detection recall | accuracy | star recall | galaxy recall |",
    ]
    lines += ["| --- | --- | --- | --- | --- | --- |"]
    for b in obj["by_magnitude"]:
        low = "" if b["r_min"] is None else f"{b['r_min']:g}"
        high = "" if b["r_max"] is None else f"{b['r_max']:g}"
        lines.append(
            f"| {low}-{high} | {b['n']} | {_fmt(b['detection_recall'])} | {_fmt(b['accuracy'])} | "
            f"{_fmt(b['star']['recall'])} | {_fmt(b['galaxy']['recall'])} |"
        )
    lines += [
        "",
        "## Pixels",
        "",
        "| class | precision | recall | F1 | IoU | pixels |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {c} | {_fmt(pixel[c]['precision'])} | {_fmt(pixel[c]['recall'])} | {_fmt(pixel[c]['f1'])} | "
        f"{_fmt(pixel[c]['iou'])} | {int(pixel[c]['support'])} |"
        for c in CLASS_NAMES
    ]
    lines += ["", f"## Per patch (the 2023 report's average, {patch['patches']} patches)", ""]
    lines += ["| class | patches | precision | recall | F1 |", "| --- | --- | --- | --- | --- |"]
    lines += [
        f"| {c} | {patch[c]['patches']} | {_fmt(patch[c]['precision'])} | {_fmt(patch[c]['recall'])} | "
        f"{_fmt(patch[c]['f1'])} |"
        for c in CLASS_NAMES
    ]
    return "\n".join(lines) + "\n"


def write_summary(
    results: Mapping[str, Mapping[str, Any]], folders: Mapping[str, str], out_dir: Path
) -> Path:
    """Write ``summary.json`` into ``out_dir``: which folder holds each method's metrics, and their object
    scores side by side.

    Args:
        results: each method's metrics (:func:`score`'s first value, with its ``region``), main model first.
        folders: each method's folder, relative to ``out_dir``.
        out_dir: the run's evaluation folder.
    """
    first = next(iter(results.values()))
    summary = {
        "methods": dict(folders),
        "region": first["region"]["description"],
        "object": {method: metrics["object"] for method, metrics in results.items()},
    }
    return write_json(Path(out_dir) / SUMMARY_JSON, summary)


def method_metrics(evaluation: Path) -> dict[str, dict[str, Any]]:
    """The metrics of every method scored, by method name (the main model first)."""
    summary = read_json(evaluation / SUMMARY_JSON) or {}
    found = {}
    for method, folder in summary.get("methods", {}).items():
        metrics = read_json(evaluation / folder / METRICS_JSON)
        if metrics is not None:
            found[method] = metrics
    return found


def headline(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per method with its headline object metrics, for the terminal."""
    lines = []
    for method, m in metrics.items():
        o = m["object"]
        lines.append(
            f"{method}: {o['n']} objects, detection recall {o['detection_recall']:.3f}, "
            f"accuracy {o['accuracy']:.3f}, MCC {o['mcc']:.3f}, purity {o['purity']:.3f}, "
            f"F1 star {o['star']['f1']:.3f} galaxy {o['galaxy']['f1']:.3f}"
        )
    return lines
