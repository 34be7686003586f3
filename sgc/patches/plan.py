"""Patch planning: the patch grid of every field, the train / val / test split, and the dropping rules.

Two ways to split, chosen by ``split.mode`` (:class:`sgc.config.SplitConfig`; ``auto``: ``rows`` for a
store of one done field, ``fields`` otherwise):

- ``fields``: whole fields go to one split. Test fields are the held-out fields that the store holds;
  validation fields are listed, or drawn with the seed from the fields that are neither test nor listed
  for training; training fields are listed, or every remaining field. Every field is cut on one grid:
  origins at multiples of the stride, every patch inside the field.
- ``rows``: one field (the real sample) is cut into bands of rows, train from row 0, then validation, then
  test, each band's share of the rows set by ``split.row_fractions``, with ``split.guard``
  rows between neighbouring bands that belong to no split, so an object near a band's edge is not seen by
  two splits. Each band is cut on its own grid, anchored at its first row. A store of several fields is
  refused: consecutive fields overlap on the sky, so one field's train band could be another's test band.
  With ``split.folds`` K (``sgc cv``) the rows are cut instead into K equal bands: band ``split.fold`` is the
  test band, the next one (cyclically) the validation band where ``row_fractions`` gives validation a
  share, and every other band is train. The guard rows are taken from the train and validation side of each
  boundary, never from the test band, so the K folds' test bands tile the field's rows exactly.

Dropping rules: a train or validation patch is dropped if any of its pixels is excluded (on held-out sky)
or not valid (not covered by all five bands). Test patches are the held-out field's (or band's) own
patches, kept whole: they may hold invalid pixels, which the metrics leave out (label 255, or ``valid``
false), and only a test patch without a single valid pixel is dropped.

Per-patch counts read ``label``, ``valid`` and ``exclude`` with one Dask task per field (the task reads
that field's chunks of the three arrays, never the whole store) and sum them over every window through an
integral image, so any patch size, stride and band anchoring works. Normalisation statistics per band
come from the train patches alone (their valid, non-excluded pixels), with the exact statistics of
:func:`sgc.cube.quantiles.band_stats`.

The same store, split settings and test fields give the same plan: patches are ordered by field slot, row and
column, and the one random choice (validation fields drawn in ``fields`` mode) ranks fields by a hash
of the seed and the field id, so it does not depend on the order fields were stored in either.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
from astropy.table import Table

from sgc.classes import LABEL_VALUES
from sgc.config import SplitConfig
from sgc.cube.quantiles import band_stats
from sgc.cube.store import ATTR_HELD_OUT, EXCLUDE, IMAGE, LABEL, VALID, CubeStore
from sgc.errors import SgcError
from sgc.patches.planfile import COUNT_COLUMNS, SPLITS, PatchPlan, empty_table
from sgc.sdss.names import FieldId
from sgc.windows import coverage, integral_image, window_sums

PIXEL_ARRAYS = (LABEL, EXCLUDE)


class PlanError(SgcError):
    """A patch plan that cannot be made as asked (settings that do not fit the store, or a store missing
    what it needs)."""


def split_settings(spec: SplitConfig, test_fields: Sequence[str]) -> dict[str, Any]:
    """The split settings a plan records: the split section and the held-out fields, as JSON."""
    return {**spec.model_dump(mode="json"), "test_fields": [str(FieldId.parse(f)) for f in test_fields]}


def make_plan(store: str | Path, spec: SplitConfig, test_fields: Sequence[str] = ()) -> PatchPlan:
    """Plan the patches of a store: grid, split, counts, dropping rules and train normalisation.

    Args:
        store: a cube store with ``label`` and ``exclude`` computed for its done fields.
        spec: how to cut and split.
        test_fields: the held-out fields; those the store holds become the test split (``fields``
            mode), and a ``rows`` field must not be one of them.

    Returns:
        The plan (not yet written; see :func:`sgc.patches.planfile.write_plan`).

    Raises:
        PlanError: if the store lacks ``label`` or ``exclude`` (or they were computed for other
            fields), if the settings do not fit the store, or if no train patch is left.
    """
    cube = CubeStore.open(store)
    names = cube.fields
    done = cube.done_fields()
    if not done:
        raise PlanError(f"{store}: no done field to plan patches on")
    test_fields = [str(FieldId.parse(f)) for f in test_fields]
    _check_pixel_arrays(cube, done, test_fields)
    assignment = assign_splits(done, spec, test_fields, cube.shape[0])
    extents = {name: valid_extent(cube[VALID][names.index(name)]) for name in _split_fields(assignment)}
    candidates = _candidates(assignment, names, extents, spec)
    counts = patch_counts(store, candidates["field_index"], candidates["y0"], candidates["x0"], spec.patch)
    keep, summary = _dropping_rules(candidates["split"], counts, spec.patch)
    table = Table({**candidates, **{name: counts[name].astype(np.int32) for name in COUNT_COLUMNS}})[keep]
    if not np.any(table["split"] == "train"):
        raise PlanError(f"{store}: no train patch left (splits: {summary}); check the split and exclusion")
    _refuse_empty_splits(store, assignment, table, summary)
    plan = PatchPlan(
        table=table,
        patch=spec.patch,
        stride=spec.stride,
        store=str(store),
        store_fields=names,
        seed=spec.seed,
        split={"spec": split_settings(spec, test_fields), "assignment": assignment},
        normalisation={},
        summary=summary,
    )
    plan.normalisation = train_normalisation(store, plan)
    return plan


def assign_splits(
    fields: Sequence[str], spec: SplitConfig, test_fields: Sequence[str], rows: int
) -> dict[str, Any]:
    """Resolve the split of a store's done fields.

    Args:
        fields: the done fields, in slot order.
        spec: the split settings.
        test_fields: the held-out fields.
        rows: rows of every field's grid.

    Returns:
        ``{"mode": "fields", "fields": {split: [field, ...]}}`` or
        ``{"mode": "rows", "field": field, "guard": rows, "bands": {split: [[first row, end row], ...]}}``.

    Raises:
        PlanError: if the lists name fields the store does not hold done, or name one field twice, or
            ``rows`` mode meets several fields or a held-out one.
    """
    mode = spec.mode if spec.mode != "auto" else ("rows" if len(fields) == 1 else "fields")
    if mode == "rows":
        if len(fields) != 1:
            raise PlanError(
                f"rows mode splits a single field, the store has {len(fields)} done fields: consecutive "
                "fields overlap on the sky, so split them by field lists (mode: fields)"
            )
        if fields[0] in test_fields:
            raise PlanError(
                f"field {fields[0]} is held out (a test field): it cannot be split into train rows"
            )
        if spec.folds:
            bands = fold_bands(rows, spec.folds, spec.fold, spec.row_fractions[1] > 0, spec.guard)
        else:
            bands = {split: [band] for split, band in row_bands(rows, spec.row_fractions, spec.guard).items()}
        return {"mode": "rows", "field": fields[0], "guard": spec.guard, "bands": bands}
    for name, listed in (("train_fields", spec.train_fields), ("val_fields", spec.val_fields)):
        unknown = sorted(set(listed) - set(fields))
        if unknown:
            raise PlanError(f"{name} names fields the store does not hold done: {', '.join(unknown)}")
    listed = [*spec.train_fields, *spec.val_fields, *(f for f in test_fields if f in fields)]
    twice = sorted(f for f, n in Counter(listed).items() if n > 1)
    if twice:
        raise PlanError(f"fields listed in more than one split: {', '.join(twice)}")
    test = [f for f in fields if f in test_fields]
    val = [f for f in fields if f in spec.val_fields] or _draw_val(fields, test, spec)
    train = [f for f in fields if f in spec.train_fields] or [f for f in fields if f not in {*val, *test}]
    return {"mode": "fields", "fields": {"train": train, "val": val, "test": test}}


def row_bands(rows: int, fractions: Sequence[float], guard: int) -> dict[str, list[int]]:
    """Split ``rows`` rows into train, val and test bands with ``guard`` rows between neighbours.

    Splits with a zero share get no band (and no guard).

    Returns:
        ``{split: [first row, end row]}`` (end exclusive), in row order.

    Raises:
        PlanError: if the guards leave no rows.
    """
    active = [(split, f) for split, f in zip(SPLITS, fractions, strict=True) if f > 0]
    usable = rows - guard * (len(active) - 1)
    if usable <= 0:
        raise PlanError(f"{rows} rows leave no room for {len(active)} bands with guards of {guard} rows")
    bands: dict[str, list[int]] = {}
    share = 0.0
    start = 0
    for k, (split, fraction) in enumerate(active):
        share += fraction
        stop = round(share * usable) if k < len(active) - 1 else usable
        bands[split] = [start + k * guard, stop + k * guard]
        start = stop
    return bands


def fold_edges(rows: int, folds: int) -> list[int]:
    """Edges of ``folds`` equal bands of ``rows`` rows: band ``k`` is rows ``[edges[k], edges[k + 1])``."""
    return [round(k * rows / folds) for k in range(folds + 1)]


def fold_bands(rows: int, folds: int, fold: int, val: bool, guard: int) -> dict[str, list[list[int]]]:
    """The row bands of one fold: band ``fold`` of ``folds`` equal bands is test, the next validation (if
    ``val``), the others train; ``guard`` rows are taken off the other side of every boundary between splits.

    Returns:
        ``{split: [[first row, end row], ...]}`` (end exclusive), each split's bands in row order; a band the
        guards leave empty is left out.

    Raises:
        PlanError: if the guards leave no train rows.
    """
    edges = fold_edges(rows, folds)
    split_of = ["train"] * folds
    split_of[fold] = "test"
    if val:
        split_of[(fold + 1) % folds] = "val"
    # Neighbouring bands of one split are one band; then each boundary between splits gets its guard,
    # cut from the side that is not test (from train where val meets train).
    runs: list[list[Any]] = []
    for k in range(folds):
        if runs and runs[-1][0] == split_of[k]:
            runs[-1][2] = edges[k + 1]
        else:
            runs.append([split_of[k], edges[k], edges[k + 1]])
    for left, right in zip(runs[:-1], runs[1:], strict=True):
        if right[0] == "test" or (right[0] == "val" and left[0] == "train"):
            left[2] -= guard
        else:
            right[1] += guard
    bands: dict[str, list[list[int]]] = {}
    for split, first, end in runs:
        if end > first:
            bands.setdefault(split, []).append([first, end])
    if "train" not in bands:
        raise PlanError(f"{rows} rows in {folds} folds leave no train rows with guards of {guard} rows")
    return bands


def patch_origins(
    rows: tuple[int, int], columns: tuple[int, int], patch: int, stride: int
) -> tuple[np.ndarray, np.ndarray]:
    """Origins of every patch inside rows ``[first, end)`` and columns ``[first, end)``, row-major.

    Origins step by ``stride`` from the first row and column; the last origin along each axis is the
    last one whose patch still fits.
    """
    ys = np.arange(rows[0], rows[1] - patch + 1, stride, dtype=np.int64)
    xs = np.arange(columns[0], columns[1] - patch + 1, stride, dtype=np.int64)
    y0, x0 = np.meshgrid(ys, xs, indexing="ij")
    return y0.ravel(), x0.ravel()


def valid_extent(valid: np.ndarray, min_fraction: float = 0.5) -> tuple[tuple[int, int], tuple[int, int]]:
    """Rows and columns ``([top, bottom), [left, right))`` of a field's valid area.

    Band offsets leave a frame a few pixels wide uncovered around every field; a patch grid anchored at
    pixel 0 would lose a whole row and column of patches to it on each side. Rows and columns count as
    valid where at least ``min_fraction`` of their pixels are; anything invalid left inside still drops a
    train or validation patch, so this only decides where the grid starts, never what is kept.
    """
    rows = np.flatnonzero(valid.mean(axis=1) >= min_fraction)
    cols = np.flatnonzero(valid.mean(axis=0) >= min_fraction)
    if rows.size == 0 or cols.size == 0:
        return (0, valid.shape[0]), (0, valid.shape[1])
    return (int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1)


def patch_counts(
    store: str | Path, field_index: np.ndarray, y0: np.ndarray, x0: np.ndarray, patch: int
) -> dict[str, np.ndarray]:
    """Pixel counts of each patch: label classes, invalid and excluded pixels (:data:`COUNT_COLUMNS`).

    One Dask task per field reads the field's ``label``, ``valid`` and ``exclude`` and counts every one
    of its patches; tasks run on the current Dask scheduler.

    Args:
        store: the cube store.
        field_index, y0, x0: slot and origin of each patch.
        patch: patch edge.

    Returns:
        For each count column, an int64 array in the order of the patches given.
    """
    field_index = np.asarray(field_index, dtype=np.int64)
    order = np.argsort(field_index, kind="stable")
    slots, starts = np.unique(field_index[order], return_index=True)
    groups = np.split(order, starts[1:]) if len(order) else []
    tasks = [
        dask.delayed(_field_counts)(str(store), int(slot), np.asarray(y0)[rows], np.asarray(x0)[rows], patch)
        for slot, rows in zip(slots, groups, strict=True)
    ]
    counts = np.zeros((len(field_index), len(COUNT_COLUMNS)), dtype=np.int64)
    for rows, result in zip(groups, dask.compute(*tasks), strict=True):
        counts[rows] = result
    return {name: counts[:, k] for k, name in enumerate(COUNT_COLUMNS)}


def train_normalisation(store: str | Path, plan: PatchPlan) -> dict[str, dict[str, Any]]:
    """Per-band statistics of the valid, non-excluded pixels of the train patches, and of nothing else.

    A pixel covered by several train patches counts once. One Dask task per train field builds its
    mask; the statistics are :func:`sgc.cube.quantiles.band_stats`'s (exact median and MAD).

    Returns:
        For each band, the dict :func:`~sgc.cube.quantiles.band_stats` gives (``count``, ``mean``,
        ``std``, ``median``, ``mad``, ``robust_sigma``, ...).
    """
    table = plan.table
    cube = CubeStore.open(store)
    shape = cube.shape
    slots, masks = [], []
    for rows in plan.field_rows(("train",)).values():
        slots.append(int(table["field_index"][rows[0]]))
        y0, x0 = np.asarray(table["y0"])[rows], np.asarray(table["x0"])[rows]
        task = dask.delayed(_train_pixels)(str(store), slots[-1], y0, x0, plan.patch)
        masks.append(da.from_delayed(task, shape=shape, dtype=bool))
    # One Dask chunk per field, as in sgc.cube.stats: few, large partial results.
    image = cube.per_field(IMAGE)[np.asarray(slots, dtype=np.int64)]
    pixels = da.where(da.stack(masks)[:, None], image, np.float32(np.nan))
    return dict(zip(cube.bands, band_stats(pixels), strict=True))


def _check_pixel_arrays(cube: CubeStore, fields: Sequence[str], held_out: Sequence[str]) -> None:
    """``label`` and ``exclude`` must exist and, where their attributes say, have been computed for
    every field, and ``exclude`` for (at least) the held-out fields of the split."""
    for name in PIXEL_ARRAYS:
        if name not in cube:
            raise PlanError(f"the store has no {name!r} array: run the stage that computes it first")
        computed = cube.computed_fields(name)
        if computed is not None:
            missing = sorted(set(fields) - computed)
            if missing:
                raise PlanError(f"{name!r} was not computed for field(s) {', '.join(missing)}: recompute it")
    excluded_for = cube.record(EXCLUDE).get(ATTR_HELD_OUT)
    if excluded_for is not None:
        missing = sorted(set(held_out) - {str(FieldId.parse(str(f))) for f in excluded_for})
        if missing:
            raise PlanError(
                f"'exclude' does not hold out {', '.join(missing)}, a test field of this split: recompute it"
            )


def _draw_val(fields: Sequence[str], test: Sequence[str], spec: SplitConfig) -> list[str]:
    """Validation fields drawn with the seed from the fields that are neither test nor listed for train."""
    pool = [f for f in fields if f not in test and f not in spec.train_fields]
    usable = len(fields) - len(test)
    wanted = math.ceil(spec.val_fraction * usable)
    if not spec.train_fields:
        wanted = min(wanted, usable - 1)  # leave at least one field to train on
    # A hash of seed and field id: the same fields are drawn whatever order the store holds them in.
    ranked = sorted(pool, key=lambda f: hashlib.sha256(f"{spec.seed}:{f}".encode()).hexdigest())
    drawn = set(ranked[: max(0, min(wanted, len(pool)))])
    return [f for f in fields if f in drawn]


def _refuse_empty_splits(
    store: str | Path, assignment: dict[str, Any], table: Table, summary: dict[str, dict[str, int]]
) -> None:
    """Refuse a plan where a split given fields or rows kept no patch (its fields nearly all invalid, say):
    an empty validation split would pick no checkpoint, an empty test split score nothing."""
    given = assignment["fields"] if assignment["mode"] == "fields" else assignment["bands"]
    for split in ("val", "test"):
        if given.get(split) and not np.any(table["split"] == split):
            what = ", ".join(given[split]) if assignment["mode"] == "fields" else f"rows {given[split]}"
            raise PlanError(
                f"{store}: the {split} split ({what}) kept no patch ({summary.get(split)}): its pixels are "
                "invalid or excluded; give it other fields (split.val_fields) or re-ingest them"
            )


def _split_fields(assignment: dict[str, Any]) -> list[str]:
    """The fields a split assignment cuts patches from."""
    if assignment["mode"] == "rows":
        return [assignment["field"]]
    return [f for fields in assignment["fields"].values() for f in fields]


def _candidates(
    assignment: dict[str, Any],
    names: Sequence[str],
    extents: dict[str, tuple[tuple[int, int], tuple[int, int]]],
    spec: SplitConfig,
) -> dict[str, np.ndarray]:
    """Every patch the split allows, before the dropping rules, ordered by slot, row and column.

    Each field's grid is anchored at its valid area (:func:`valid_extent`); a row band keeps its own rows.
    """
    parts: list[tuple[str, str, tuple[np.ndarray, np.ndarray]]] = []
    if assignment["mode"] == "rows":
        name = assignment["field"]
        (top, bottom), columns = extents[name]
        for split, bands in assignment["bands"].items():
            for first, end in bands:
                rows = (max(first, top), min(end, bottom))
                parts.append((name, split, patch_origins(rows, columns, spec.patch, spec.stride)))
        parts.sort(key=lambda part: int(part[2][0][0]) if len(part[2][0]) else 0)  # row order
    else:
        split_of = {f: split for split, fields in assignment["fields"].items() for f in fields}
        for name in names:
            if name in split_of:
                rows, columns = extents[name]
                parts.append((name, split_of[name], patch_origins(rows, columns, spec.patch, spec.stride)))
    if not parts:
        return {
            name: np.asarray(empty_table()[name]) for name in ("field", "field_index", "y0", "x0", "split")
        }
    slot = {name: k for k, name in enumerate(names)}
    return {
        "field": np.concatenate([np.full(len(y0), f) for f, _, (y0, _) in parts]),
        "field_index": np.concatenate([np.full(len(y0), slot[f], np.int32) for f, _, (y0, _) in parts]),
        "y0": np.concatenate([y0 for _, _, (y0, _) in parts]).astype(np.int32),
        "x0": np.concatenate([x0 for _, _, (_, x0) in parts]).astype(np.int32),
        "split": np.concatenate([np.full(len(y0), s) for _, s, (y0, _) in parts]),
    }


def _dropping_rules(
    split: np.ndarray, counts: dict[str, np.ndarray], patch: int
) -> tuple[np.ndarray, dict[str, dict[str, int]]]:
    """Which candidates to keep, and per split how many there were and why others were dropped.

    Train and val: no excluded and no invalid pixel. Test: at least one valid pixel.
    """
    excluded = counts["n_excluded"] > 0
    invalid = counts["n_invalid"] > 0
    is_test = split == "test"
    keep = np.where(is_test, counts["n_invalid"] < patch * patch, ~(excluded | invalid))
    summary = {}
    for name in SPLITS:
        mine = split == name
        summary[name] = {
            "candidates": int(mine.sum()),
            "kept": int((mine & keep).sum()),
            "dropped_excluded": int((mine & ~keep & excluded & ~is_test).sum()),
            "dropped_invalid": int((mine & ~keep & ~(excluded & ~is_test)).sum()),
        }
    return keep, summary


def _field_counts(store: str, slot: int, y0: np.ndarray, x0: np.ndarray, patch: int) -> np.ndarray:
    """The count columns of one field's patches, read from its slot of the store."""
    cube = CubeStore.open(store)
    label = cube[LABEL][slot]
    masks = [label == value for value in LABEL_VALUES.values()]
    masks += [~cube[VALID][slot], cube[EXCLUDE][slot]]
    return np.stack(
        [window_sums(integral_image(mask), y0, x0, y0 + patch, x0 + patch) for mask in masks], axis=1
    )


def _train_pixels(store: str, slot: int, y0: np.ndarray, x0: np.ndarray, patch: int) -> np.ndarray:
    """Pixels of one field that train patches cover and that are valid and not excluded."""
    cube = CubeStore.open(store)
    valid = cube[VALID][slot]
    return coverage(valid.shape, y0, x0, patch) & valid & ~cube[EXCLUDE][slot]
