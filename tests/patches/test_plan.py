"""Patch planning: grid geometry, counts against numpy, field-list and row-band splits, dropping rules,
determinism, normalisation from train alone, and the plan file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sgc.config import SplitConfig
from sgc.cube.store import CubeStore
from sgc.patches.plan import (
    PlanError,
    fold_bands,
    fold_edges,
    make_plan,
    patch_counts,
    patch_origins,
    row_bands,
    valid_extent,
)
from sgc.patches.planfile import PLAN_COLUMNS, PlanFileError, read_plan, write_plan
from tests.patches.synthetic import build_store, random_field

FIELDS = ("009001-3-0011", "009001-3-0012", "009001-3-0013", "009001-3-0014", "009001-3-0015")
SHAPE = (48, 64)


def _store(tmp_path: Path, n: int = 4, shape: tuple[int, int] = SHAPE, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    fields = {name: random_field(rng, shape) for name in FIELDS[:n]}
    return build_store(tmp_path / "s.zarr", fields)


def split_spec(test_fields: tuple[str, ...] = (), **settings: object) -> tuple[SplitConfig, tuple[str, ...]]:
    """The split section and the held-out fields, as make_plan takes them."""
    return SplitConfig(**settings), tuple(test_fields)


def _direct_counts(store: Path, slot: int, y0: int, x0: int, p: int) -> dict[str, int]:
    group = CubeStore.open(store)
    window = (slot, slice(y0, y0 + p), slice(x0, x0 + p))
    label = group["label"][window]
    return {
        "n_sky": int((label == 0).sum()),
        "n_star": int((label == 1).sum()),
        "n_galaxy": int((label == 2).sum()),
        "n_ignore": int((label == 255).sum()),
        "n_invalid": int((~group["valid"][window]).sum()),
        "n_excluded": int(group["exclude"][window].sum()),
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ny=st.integers(8, 70),
    nx=st.integers(8, 70),
    patch=st.integers(1, 24),
    stride=st.integers(1, 30),
    chunk=st.sampled_from([8, 16, 32, 64]),
    seed=st.integers(0, 2**16),
)
def test_patches_tile_the_grid_and_counts_equal_numpy(
    tmp_path_factory: pytest.TempPathFactory, ny: int, nx: int, patch: int, stride: int, chunk: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    fields = {}
    for name in FIELDS[:2]:
        f = random_field(rng, (ny, nx))
        f.valid = rng.random((ny, nx)) > 0.1
        f.exclude = rng.random((ny, nx)) < 0.1
        fields[name] = f
    store = build_store(tmp_path_factory.mktemp("geo") / "s.zarr", fields, chunk=chunk)
    y0, x0 = patch_origins((0, ny), (0, nx), patch, stride)
    if patch > ny or patch > nx:
        assert len(y0) == 0
        return
    # inside the field, on the stride grid, and no further patch fits along either axis
    assert (y0 >= 0).all() and (x0 >= 0).all() and (y0 + patch <= ny).all() and (x0 + patch <= nx).all()
    assert (y0 % stride == 0).all() and (x0 % stride == 0).all()
    assert y0.max() + stride + patch > ny and x0.max() + stride + patch > nx
    assert len(y0) == len(set(zip(y0.tolist(), x0.tolist(), strict=True)))
    assert len(y0) == len(range(0, ny - patch + 1, stride)) * len(range(0, nx - patch + 1, stride))
    slots = np.repeat([1, 0], len(y0))
    counts = patch_counts(store, slots, np.tile(y0, 2), np.tile(x0, 2), patch)
    for k in rng.choice(len(slots), size=min(len(slots), 12), replace=False):
        direct = _direct_counts(store, int(slots[k]), int(np.tile(y0, 2)[k]), int(np.tile(x0, 2)[k]), patch)
        assert {name: int(counts[name][k]) for name in direct} == direct


def test_plan_counts_and_grid_of_a_clean_store(tmp_path: Path) -> None:
    store = _store(tmp_path, n=2)
    plan = make_plan(store, *split_spec(patch=16, stride=8, train_fields=FIELDS[:1], val_fields=FIELDS[1:2]))
    table = plan.table
    assert list(table.colnames) == list(PLAN_COLUMNS)
    per_field = (len(range(0, 48 - 16 + 1, 8))) * len(range(0, 64 - 16 + 1, 8))
    assert len(table) == 2 * per_field
    assert sorted(set(zip(table["field"], table["split"], strict=True))) == [
        (FIELDS[0], "train"),
        (FIELDS[1], "val"),
    ]
    for row in table[::7]:
        direct = _direct_counts(store, int(row["field_index"]), int(row["y0"]), int(row["x0"]), 16)
        assert {name: int(row[name]) for name in direct} == direct


def test_field_list_split_and_checks(tmp_path: Path) -> None:
    store = _store(tmp_path, n=5)
    spec = split_spec(
        train_fields=FIELDS[:2], val_fields=FIELDS[2:3], test_fields=(FIELDS[3], "8162-6-80"), patch=16
    )
    plan = make_plan(store, *spec)
    split_of = dict(zip(plan.table["field"], plan.table["split"], strict=True))
    assert split_of == {FIELDS[0]: "train", FIELDS[1]: "train", FIELDS[2]: "val", FIELDS[3]: "test"}
    assert plan.split["assignment"] == {
        "mode": "fields",
        "fields": {"train": list(FIELDS[:2]), "val": [FIELDS[2]], "test": [FIELDS[3]]},
    }
    with pytest.raises(PlanError, match="more than one split"):
        make_plan(store, *split_spec(train_fields=FIELDS[:2], test_fields=FIELDS[1:2]))
    with pytest.raises(ValidationError, match="both list"):
        split_spec(train_fields=FIELDS[:2], val_fields=FIELDS[1:2])
    with pytest.raises(PlanError, match="does not hold done: 009001-3-0099"):
        make_plan(store, *split_spec(train_fields=("9001-3-99",)))


def test_validation_fields_are_drawn_by_the_seed(tmp_path: Path) -> None:
    store = _store(tmp_path, n=5)
    draws = {}
    for seed in range(6):
        spec = split_spec(seed=seed, val_fraction=0.3, test_fields=(FIELDS[4],), patch=16)
        plan = make_plan(store, *spec)
        fields = plan.split["assignment"]["fields"]
        assert fields["test"] == [FIELDS[4]]
        assert len(fields["val"]) == 2  # ceil(0.3 x 4 non-test fields)
        assert sorted(fields["train"] + fields["val"]) == list(FIELDS[:4])
        draws[seed] = tuple(fields["val"])
        again = make_plan(store, *spec)
        assert again.split == plan.split
        np.testing.assert_array_equal(np.asarray(again.table["split"]), np.asarray(plan.table["split"]))
    assert len(set(draws.values())) > 1  # the seed matters


def test_same_seed_same_plan(tmp_path: Path) -> None:
    store = _store(tmp_path, n=4)
    spec = split_spec(seed=5, patch=16, stride=12)
    a, b = make_plan(store, *spec), make_plan(store, *spec)
    assert a.attrs() == b.attrs()
    for name in PLAN_COLUMNS:
        np.testing.assert_array_equal(np.asarray(a.table[name]), np.asarray(b.table[name]))


@given(
    rows=st.integers(50, 3000),
    fractions=st.sampled_from([(0.7, 0.15, 0.15), (0.8, 0.2, 0.0), (0.5, 0.0, 0.5), (1.0, 0.0, 0.0)]),
    guard=st.integers(0, 16),
)
def test_row_bands_are_ordered_with_guards_between(rows: int, fractions: tuple, guard: int) -> None:
    bands = row_bands(rows, fractions, guard)
    assert list(bands) == [s for s, f in zip(("train", "val", "test"), fractions, strict=True) if f > 0]
    edges = list(bands.values())
    assert edges[0][0] == 0 and edges[-1][1] == rows
    for (_, end), (start, _) in zip(edges, edges[1:], strict=False):
        assert start - end == guard
    usable = rows - guard * (len(edges) - 1)
    for (start, end), f in zip(edges, [f for f in fractions if f > 0], strict=True):
        assert abs((end - start) - f * usable) <= 1


@given(
    rows=st.integers(200, 3000),
    folds=st.integers(2, 8),
    val=st.booleans(),
    guard=st.integers(0, 16),
    data=st.data(),
)
def test_fold_bands_tile_the_rows_with_test_bands_and_keep_guards(
    rows: int, folds: int, val: bool, guard: int, data: st.DataObject
) -> None:
    fold = data.draw(st.integers(0, folds - 1))
    if val and folds == 2:
        with pytest.raises(PlanError, match="no train rows"):
            fold_bands(rows, folds, fold, val, guard)
        return
    bands = fold_bands(rows, folds, fold, val, guard)
    edges = fold_edges(rows, folds)
    assert bands["test"] == [[edges[fold], edges[fold + 1]]]  # the guards never eat into the test band
    assert ("val" in bands) == val
    pieces = sorted((first, end, split) for split, spans in bands.items() for first, end in spans)
    for (first, end, split), (start, _, other) in zip(pieces, pieces[1:], strict=False):
        assert first < end <= start
        assert start - end >= (guard if split != other else 0)
    covered = sum(end - first for first, end, _ in pieces)
    boundaries = sum(a[2] != b[2] for a, b in zip(pieces, pieces[1:], strict=False))
    assert covered == rows - guard * boundaries  # only guard rows are in no split
    # over the folds, every row is a test row exactly once
    tested = np.zeros(rows, dtype=int)
    for k in range(folds):
        for first, end in fold_bands(rows, folds, k, val, guard)["test"]:
            tested[first:end] += 1
    assert (tested == 1).all()


def test_fold_plan_tests_its_band_and_trains_around_it(tmp_path: Path) -> None:
    store = _store(tmp_path, n=1, shape=(320, 64))
    plan = make_plan(
        store, *split_spec(patch=16, stride=16, guard=16, folds=4, fold=1, row_fractions=(0.8, 0, 0.2))
    )
    table = plan.table
    test = table[table["split"] == "test"]
    train = table[table["split"] == "train"]
    assert test["y0"].min() == 80 and test["y0"].max() + 16 <= 160
    assert not np.any(table["split"] == "val")
    assert set(train["y0"][train["y0"] < 80]) == {0, 16, 32, 48}  # rows 64-79 are the guard
    assert train["y0"][train["y0"] >= 160].min() == 176
    assert list(table["y0"]) == sorted(table["y0"])  # row order, as in every plan
    with pytest.raises(ValidationError, match="split.folds"):
        SplitConfig(folds=3, fold=3)
    with pytest.raises(ValidationError, match="split.folds"):
        SplitConfig(folds=3, mode="fields")


def test_row_band_split_keeps_a_guard(tmp_path: Path) -> None:
    store = _store(tmp_path, n=1, shape=(300, 64))
    spec = split_spec(patch=16, stride=8, guard=20, row_fractions=(0.6, 0.2, 0.2))
    plan = make_plan(store, *spec)
    assert plan.split["assignment"]["mode"] == "rows"
    table = plan.table
    rows = {s: table[table["split"] == s] for s in ("train", "val", "test")}
    assert all(len(r) for r in rows.values())
    for first, second in (("train", "val"), ("val", "test"), ("train", "test")):
        gap = rows[second]["y0"].min() - (rows[first]["y0"].max() + 16)
        assert gap >= 20, (first, second, gap)
    bands = plan.split["assignment"]["bands"]
    for split, [(start, end)] in bands.items():
        assert rows[split]["y0"].min() == start  # each band's grid is anchored at its first row
        assert (rows[split]["y0"] + 16 <= end).all()
    with pytest.raises(PlanError, match="held out"):
        make_plan(store, *split_spec(patch=16, test_fields=FIELDS[:1]))


def test_rows_mode_refuses_several_fields(tmp_path: Path) -> None:
    store = _store(tmp_path, n=2)
    with pytest.raises(PlanError, match="rows mode splits a single field"):
        make_plan(store, *split_spec(mode="rows", patch=16))


def test_train_and_val_patches_touching_excluded_or_invalid_pixels_are_dropped(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    fields = {name: random_field(rng, SHAPE) for name in FIELDS[:3]}
    fields[FIELDS[0]].exclude[5, 40] = True  # train: one excluded pixel
    fields[FIELDS[0]].valid[30, 3] = False  # train: one invalid pixel
    fields[FIELDS[1]].valid[17, 17] = False  # val: one invalid pixel
    fields[FIELDS[2]].valid[:16, :16] = False  # test: a whole patch invalid
    fields[FIELDS[2]].valid[20, 20] = False  # test: one invalid pixel, kept
    fields[FIELDS[2]].exclude[:] = True  # the held-out field is all held-out sky, and still its test patches
    store = build_store(tmp_path / "s.zarr", fields)
    spec = split_spec(
        patch=16, stride=16, train_fields=FIELDS[:1], val_fields=FIELDS[1:2], test_fields=FIELDS[2:3]
    )
    plan = make_plan(store, *spec)
    origins = {
        s: set(zip(*(plan.rows(s)[c].tolist() for c in ("y0", "x0")), strict=True))
        for s in ("train", "val", "test")
    }
    grid = {(y, x) for y in (0, 16, 32) for x in (0, 16, 32, 48)}
    assert origins["train"] == grid - {(0, 32), (16, 0)}
    assert origins["val"] == grid - {(16, 16)}
    assert origins["test"] == grid - {(0, 0)}
    assert plan.rows("test")["n_invalid"].max() == 1
    assert (plan.rows("train")["n_excluded"] == 0).all() and (plan.rows("train")["n_invalid"] == 0).all()
    assert plan.summary == {
        "train": {"candidates": 12, "kept": 10, "dropped_excluded": 1, "dropped_invalid": 1},
        "val": {"candidates": 12, "kept": 11, "dropped_excluded": 0, "dropped_invalid": 1},
        "test": {"candidates": 12, "kept": 11, "dropped_excluded": 0, "dropped_invalid": 1},
    }


def test_normalisation_comes_from_train_pixels_alone(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    fields = {name: random_field(rng, SHAPE) for name in FIELDS[:3]}
    fields[FIELDS[0]].exclude[40:, :] = True  # rows 40-47: no train patch there, not in the statistics
    spec = split_spec(
        patch=16, stride=16, train_fields=FIELDS[:1], val_fields=FIELDS[1:2], test_fields=FIELDS[2:3]
    )
    store = build_store(tmp_path / "a.zarr", fields)
    plan = make_plan(store, *spec)
    train_pixels = fields[FIELDS[0]].image[:, :32, :]  # patches at rows 0 and 16 cover rows 0-31
    for b, band in enumerate("ugriz"):
        stats = plan.normalisation[band]
        assert stats["count"] == train_pixels[b].size
        assert stats["median"] == pytest.approx(float(np.median(train_pixels[b])), abs=1e-7)
        assert stats["mean"] == pytest.approx(float(np.mean(train_pixels[b], dtype=np.float64)), rel=1e-9)
    # Change every val and test pixel, and train-field pixels outside train patches: nothing moves.
    fields[FIELDS[1]].image *= 100
    fields[FIELDS[2]].image += 7
    fields[FIELDS[0]].image[:, 40:, :] = 1e6
    other = build_store(tmp_path / "b.zarr", fields)
    assert make_plan(other, *spec).normalisation == plan.normalisation
    fields[FIELDS[0]].image[:, 3, 3] = 1e6  # a train pixel: it does
    changed = build_store(tmp_path / "c.zarr", fields)
    assert make_plan(changed, *spec).normalisation["r"]["max"] == pytest.approx(1e6)


def test_store_without_label_or_exclude_computed_as_planned_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path, n=2)
    group = zarr.open_group(store, mode="r+")
    group["label"].attrs["fields"] = [FIELDS[0]]
    with pytest.raises(PlanError, match="'label' was not computed for field.*0012"):
        make_plan(store, *split_spec(patch=16))
    group["label"].attrs["fields"] = list(FIELDS[:2])
    group["exclude"].attrs["held_out"] = ["8162-6-80"]
    make_plan(store, *split_spec(patch=16, test_fields=("8162-6-80",)))
    with pytest.raises(PlanError, match="'exclude' does not hold out 009001-3-0012"):
        make_plan(store, *split_spec(patch=16, test_fields=(FIELDS[1],)))
    del group["exclude"]
    with pytest.raises(PlanError, match="no 'exclude' array"):
        make_plan(store, *split_spec(patch=16))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="patch"):
        SplitConfig(patch=0)
    with pytest.raises(ValidationError, match="summing to 1"):
        SplitConfig(row_fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ValidationError, match="val_fraction"):
        SplitConfig(val_fraction=1.0)


def test_plan_file_round_trip_atomic_and_safe(tmp_path: Path) -> None:
    store = _store(tmp_path, n=3)
    plan = make_plan(store, *split_spec(patch=16, stride=16, test_fields=FIELDS[2:3]))
    path = write_plan(plan, tmp_path / "plan.zarr")
    back = read_plan(path)
    assert back.attrs() == plan.attrs()
    for name in PLAN_COLUMNS:
        np.testing.assert_array_equal(np.asarray(back.table[name]), np.asarray(plan.table[name]))
        assert back.table[name].dtype.kind == plan.table[name].dtype.kind
    # overwriting a plan replaces it and leaves no temporary folder behind
    smaller = make_plan(store, *split_spec(patch=32, test_fields=FIELDS[2:3]))
    write_plan(smaller, path)
    assert read_plan(path).patch == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.zarr", "s.zarr"]
    # a store is never overwritten by a plan, nor read as one
    with pytest.raises(PlanFileError, match="not a patch plan"):
        write_plan(plan, store)
    with pytest.raises(PlanFileError, match="no patch plan"):
        read_plan(store)
    shutil.rmtree(path)
    with pytest.raises(PlanFileError):
        read_plan(path)


def test_field_rows_groups_the_table_by_field(tmp_path: Path) -> None:
    store = _store(tmp_path, n=3)
    plan = make_plan(store, *split_spec(patch=16, stride=16, test_fields=FIELDS[2:3], val_fraction=0.5))
    table = plan.table
    grouped = plan.field_rows()
    assert list(grouped) == list(dict.fromkeys(table["field"].tolist()))
    for field, rows in grouped.items():
        np.testing.assert_array_equal(rows, np.flatnonzero(table["field"] == field))
    assert list(plan.field_rows(("test",))) == [FIELDS[2]]
    plan.table = table[:0]
    assert plan.field_rows() == {}


def test_grid_is_anchored_at_the_valid_area_so_an_uncovered_frame_costs_no_patches(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    shape = (3 * 16 + 6, 4 * 16 + 6)  # room for 3 x 4 patches inside a 3-pixel uncovered frame
    fields = {name: random_field(rng, shape) for name in FIELDS[:3]}
    for field in fields.values():
        field.valid[:] = False
        field.valid[3:-3, 3:-3] = True
    assert valid_extent(fields[FIELDS[0]].valid) == ((3, shape[0] - 3), (3, shape[1] - 3))
    store = build_store(tmp_path / "s.zarr", fields)
    spec = split_spec(
        patch=16, stride=16, train_fields=FIELDS[:1], val_fields=FIELDS[1:2], test_fields=FIELDS[2:]
    )
    train = make_plan(store, *spec).rows("train")
    # anchored at pixel 0, the first row and column of patches would touch the frame and be dropped
    assert set(zip(train["y0"].tolist(), train["x0"].tolist(), strict=True)) == {
        (y, x) for y in (3, 19, 35) for x in (3, 19, 35, 51)
    }
    assert (train["n_invalid"] == 0).all()


def test_valid_extent_ignores_partial_rows_and_falls_back_to_the_grid_when_nothing_is_valid() -> None:
    valid = np.ones((10, 12), dtype=bool)
    valid[:4, :3] = False  # a corner: the rows and columns stay mostly valid
    assert valid_extent(valid) == ((0, 10), (0, 12))
    assert valid_extent(np.zeros((10, 12), dtype=bool)) == ((0, 10), (0, 12))
