"""The patch plan in memory and on disk.

A plan is one row per patch, ``(field, field_index, y0, x0, split)`` and the pixel counts of that patch,
plus what is needed to use it: the patch size and stride, the store it was cut from (path and field
list), the split settings with their seed and resolved assignment, and the per-band normalisation
statistics of the train pixels.

On disk a plan is a Zarr v3 group (``PLAN.zarr``): one 1-D array per column and the rest as group
attributes. Zarr is already a dependency, the training loader reads it without Dask, and a column can be
read alone. :func:`write_plan` writes into a temporary sibling folder and renames it into place, so a
reader never sees half a plan; replacing an existing plan takes two renames, between which the path is
briefly absent.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from astropy.table import Table

from sgc.classes import LABEL_VALUES
from sgc.errors import SgcError

SPLITS: tuple[str, ...] = ("train", "val", "test")
# Per-patch pixel counts: each label value (sky, star, galaxy, ignore), then pixels that are not valid and
# pixels on held-out sky.
COUNT_COLUMNS: tuple[str, ...] = (*(f"n_{name}" for name in LABEL_VALUES), "n_invalid", "n_excluded")
PLAN_COLUMNS: dict[str, str] = {
    "field": "str",
    "field_index": "int32",
    "y0": "int32",
    "x0": "int32",
    "split": "str",
    **dict.fromkeys(COUNT_COLUMNS, "int32"),
}
PLAN_FORMAT = 1
# Rows per Zarr chunk: a plan of a thousand fields (~10^6 patches) is a few dozen chunks per column.
_ROWS_PER_CHUNK = 1 << 16


class PlanFileError(SgcError):
    """A path that does not hold a patch plan, or that a plan must not overwrite."""


@dataclass
class PatchPlan:
    """A patch plan: the patches and everything needed to reproduce and use them.

    Attributes:
        table: one row per patch, columns :data:`PLAN_COLUMNS`; ``field_index`` is the field's slot in
            the store, ``y0``, ``x0`` the patch's first row and column on the field's grid.
        patch: patch edge in pixels.
        stride: step between neighbouring patch origins in pixels.
        store: path of the cube store the plan was cut from.
        store_fields: the store's field ids in slot order when the plan was made.
        seed: the seed of the split.
        split: the split settings (JSON-able) and their resolved assignment.
        normalisation: per band, statistics of the valid, non-excluded pixels of the train patches
            (keys as :func:`sgc.cube.quantiles.band_stats` gives them).
        summary: per split, candidate patches and how many were dropped and why.
    """

    table: Table
    patch: int
    stride: int
    store: str
    store_fields: list[str]
    seed: int
    split: dict[str, Any]
    normalisation: dict[str, dict[str, Any]]
    summary: dict[str, dict[str, int]]

    def rows(self, split: str) -> Table:
        """The patches of one split (``train``, ``val`` or ``test``)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
        return self.table[self.table["split"] == split]

    def field_rows(self, splits: Sequence[str] = SPLITS) -> dict[str, np.ndarray]:
        """Row indices of the patches of the given splits, grouped by field.

        Returns:
            For each field, in order of first appearance in the table, its rows in table order.
        """
        rows = np.flatnonzero(np.isin(np.asarray(self.table["split"]), list(splits)))
        names, first, inverse = np.unique(
            np.asarray(self.table["field"])[rows], return_index=True, return_inverse=True
        )
        # One sort for all fields, rather than one pass over the table per field.
        groups = np.split(rows[np.argsort(inverse, kind="stable")], np.cumsum(np.bincount(inverse))[:-1])
        return {str(names[k]): groups[k] for k in np.argsort(first)}

    def attrs(self) -> dict[str, Any]:
        """Everything but the table, as JSON-able group attributes."""
        return {
            "sgc_plan": PLAN_FORMAT,
            "patch": self.patch,
            "stride": self.stride,
            "store": self.store,
            "store_fields": self.store_fields,
            "seed": self.seed,
            "split": self.split,
            "normalisation": self.normalisation,
            "summary": self.summary,
        }


def band_scaling(
    normalisation: dict[str, dict[str, Any]], bands: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The per-band affine map ``x * scale + offset`` that gives ``(x - median) / robust_sigma``.

    Args:
        normalisation: per band, statistics with ``median`` and ``robust_sigma`` (a plan's, or a
            checkpoint's copy of them).
        bands: the bands, in the order of the image's band axis.

    Returns:
        ``(scale, offset)``, float32 arrays of one value per band.

    Raises:
        ValueError: if a band has no statistics, or a robust sigma that is not positive.
    """
    missing = [b for b in bands if b not in normalisation]
    if missing:
        raise ValueError(f"no normalisation for band(s) {', '.join(missing)}")
    median = np.array([normalisation[b]["median"] for b in bands], dtype=np.float64)
    sigma = np.array([normalisation[b]["robust_sigma"] for b in bands], dtype=np.float64)
    if not np.all(np.isfinite(sigma) & (sigma > 0)):
        raise ValueError(f"robust sigma of some band is not positive ({sigma})")
    return (1 / sigma).astype(np.float32), (-median / sigma).astype(np.float32)


def check_slots(plan: PatchPlan, store_fields: Sequence[str], store: str | Path) -> None:
    """Refuse a store whose slots do not hold the fields the plan's patches name.

    A reader takes a patch from slot ``field_index``, and the plan names the patch's field as well. A plan
    made on one store and used with another that holds other fields, or the same fields in another order,
    would read other sky than it names, held-out sky included; so every patch's slot must hold its field.

    Args:
        plan: the plan.
        store_fields: the store's field ids in slot order.
        store: the store, for the message.

    Raises:
        PlanFileError: naming the store, a slot and the two fields where they disagree.
    """
    table = plan.table
    if not len(table):
        return
    slots = np.asarray(table["field_index"], dtype=np.int64)
    names = np.asarray(table["field"]).astype(str)
    held = np.asarray(list(store_fields), dtype=str)
    outside = (slots < 0) | (slots >= len(held))
    wrong = outside.copy()
    wrong[~outside] = held[slots[~outside]] != names[~outside]
    if not wrong.any():
        return
    k = int(np.flatnonzero(wrong)[0])
    there = "no field" if outside[k] else f"field {held[slots[k]]}"
    fields = len(set(names[wrong].tolist()))
    raise PlanFileError(
        f"{store}: slot {slots[k]} holds {there}, but the plan puts patches of {names[k]} there "
        f"({int(wrong.sum())} patch(es) of {fields} field(s) disagree): the plan was made on a store with "
        f"other fields or another order ({plan.store}); make the plan again on this store (sgc split)"
    )


def holds_objects(table: Table) -> np.ndarray:
    """Per row, whether the patch holds star or galaxy pixels (what oversampling repeats)."""
    return (np.asarray(table["n_star"]) + np.asarray(table["n_galaxy"])) > 0


def empty_table() -> Table:
    """A plan table with no rows."""
    return Table({name: np.empty(0, dtype=_numpy_dtype(kind)) for name, kind in PLAN_COLUMNS.items()})


def write_plan(plan: PatchPlan, path: str | Path) -> Path:
    """Write a plan as a Zarr v3 group at ``path``, atomically, replacing an older plan there.

    Returns:
        ``path``.

    Raises:
        PlanFileError: if ``path`` exists and is not a patch plan (a store, say): it is never overwritten.
    """
    path = Path(path)
    if path.exists() and not _is_plan(path):
        raise PlanFileError(f"{path}: exists and is not a patch plan; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    group = zarr.open_group(tmp, mode="w-", zarr_format=3)
    n = len(plan.table)
    for name, kind in PLAN_COLUMNS.items():
        array = group.create_array(
            name,
            shape=(n,),
            chunks=(max(1, min(n, _ROWS_PER_CHUNK)),),
            dtype=str if kind == "str" else kind,
            dimension_names=["patch"],
        )
        if n:
            array[:] = _as_column(plan.table[name], kind)
    # Attributes last: a temporary folder without them is not a plan, whatever else it holds.
    group.attrs.update(plan.attrs())
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old)
    else:
        os.replace(tmp, path)
    return path


def read_plan(path: str | Path) -> PatchPlan:
    """Read a plan written by :func:`write_plan`.

    Raises:
        PlanFileError: if ``path`` does not hold a patch plan.
    """
    path = Path(path)
    if not _is_plan(path):
        raise PlanFileError(f"{path}: no patch plan here")
    group = zarr.open_group(path, mode="r", zarr_format=3)
    attrs = dict(group.attrs)
    table = Table({name: _as_column(group[name][:], kind) for name, kind in PLAN_COLUMNS.items()})
    return PatchPlan(
        table=table,
        patch=int(attrs["patch"]),
        stride=int(attrs["stride"]),
        store=str(attrs["store"]),
        store_fields=[str(f) for f in attrs["store_fields"]],
        seed=int(attrs["seed"]),
        split=dict(attrs["split"]),
        normalisation=dict(attrs["normalisation"]),
        summary=dict(attrs["summary"]),
    )


def _numpy_dtype(kind: str) -> np.dtype:
    return np.dtype(str) if kind == "str" else np.dtype(kind)


def _as_column(values: Any, kind: str) -> np.ndarray:
    """Values as a fixed-width column; Zarr gives strings as numpy's StringDType, which does not cast."""
    if kind == "str":
        return np.array(np.asarray(values).tolist(), dtype=str)
    return np.asarray(values, dtype=kind)


def _is_plan(path: Path) -> bool:
    try:
        group = zarr.open_group(path, mode="r", zarr_format=3)
    except (FileNotFoundError, zarr.errors.BaseZarrError):  # nothing there, not Zarr, or an array
        return False
    return group.attrs.get("sgc_plan") == PLAN_FORMAT and all(name in group for name in PLAN_COLUMNS)
