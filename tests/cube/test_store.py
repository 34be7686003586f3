"""The cube store: creation, slots, appending, completion markers, and xarray's view of it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sgc.cube.store import (
    StoreError,
    StoreLayout,
    allocate_fields,
    create_store,
    done_fields,
    field_names,
    open_store,
    store_layout,
    write_field,
)

LAYOUT = StoreLayout(shape=(40, 48), chunk=16, codec="blosc-lz4", clevel=5)


def _field_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(5, 40, 48)).astype(np.float32)
    valid = np.ones((40, 48), bool)
    valid[:, :3] = False
    return image, valid


@pytest.mark.parametrize("codec", ["blosc-lz4", "blosc-zstd", "zstd", "none"])
def test_fields_round_trip_through_xarray(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "s.zarr"
    group = create_store(path, StoreLayout(shape=(40, 48), chunk=16, codec=codec))
    slots = allocate_fields(group, ["000001-1-0011", "000001-1-0012"])
    assert slots == {"000001-1-0011": 0, "000001-1-0012": 1}
    image, valid = _field_data(0)
    write_field(path, 1, image, valid, "HEADER TEXT", {"files": {"i": {"name": "x"}}})

    ds = xr.open_zarr(path, consolidated=False)
    assert list(ds.band.values) == ["u", "g", "r", "i", "z"]
    assert list(ds.field.values) == ["000001-1-0011", "000001-1-0012"]
    assert ds.image.dims == ("field", "band", "y", "x")
    assert ds.image.dtype == np.float32
    np.testing.assert_array_equal(ds.image.sel(field="000001-1-0012").values, image)
    np.testing.assert_array_equal(ds.valid[1].values, valid)
    assert ds.wcs.values[1] == "HEADER TEXT"
    assert json.loads(str(ds.source.values[1]))["files"]["i"]["name"] == "x"
    # the slot never written is a placeholder: not done, nothing valid, NaN pixels
    assert not ds.done.values[0] and ds.done.values[1]
    assert not ds.valid[0].values.any()
    assert np.isnan(ds.image[0].values).all()
    assert done_fields(open_store(path)) == ["000001-1-0012"]


def test_appending_keeps_existing_slots(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    group = create_store(path, LAYOUT)
    allocate_fields(group, ["000001-1-0011"])
    image, valid = _field_data(1)
    write_field(path, 0, image, valid, "A", {})
    group = open_store(path, mode="r+")
    slots = allocate_fields(group, ["000001-1-0011", "000002-3-0100"])
    assert slots == {"000001-1-0011": 0, "000002-3-0100": 1}
    assert field_names(group) == ["000001-1-0011", "000002-3-0100"]
    np.testing.assert_array_equal(group["image"][0], image)
    assert group["image"].shape == (2, 5, 40, 48)
    assert store_layout(group) == LAYOUT


def test_refuses_to_overwrite_or_open_what_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    create_store(path, LAYOUT)
    with pytest.raises(StoreError, match="already exists"):
        create_store(path, LAYOUT)
    with pytest.raises(StoreError, match="no cube store here"):
        open_store(tmp_path / "missing.zarr")
    import zarr

    zarr.open_group(tmp_path / "other.zarr", mode="w", zarr_format=3)
    with pytest.raises(StoreError, match="not an sgc cube store"):
        open_store(tmp_path / "other.zarr")


def test_float16_layout_stores_float16(tmp_path: Path) -> None:
    path = tmp_path / "h.zarr"
    group = create_store(path, StoreLayout(shape=(40, 48), chunk=16, dtype="float16"))
    allocate_fields(group, ["000001-1-0011"])
    image, valid = _field_data(2)
    write_field(path, 0, image, valid, "A", {})
    stored = open_store(path)["image"][0]
    assert stored.dtype == np.float16
    np.testing.assert_allclose(stored, image, rtol=1e-3, atol=1e-3)


def test_pixel_arrays_share_the_chunk_grid_and_are_replaced_when_their_dtype_changes(tmp_path: Path) -> None:
    from sgc.cube.store import ensure_pixel_array

    path = tmp_path / "s.zarr"
    group = create_store(path, LAYOUT)
    allocate_fields(group, ["000001-1-0011", "000001-1-0012"])
    label = ensure_pixel_array(group, "label", "uint8", 255)
    assert label.shape == (2, 40, 48) and label.chunks == group["valid"].chunks
    label[1, :2, :2] = 1
    assert ensure_pixel_array(group, "label", "uint8", 255)[1, 0, 0] == 1  # kept as it is
    replaced = ensure_pixel_array(group, "label", "bool", False)
    assert replaced.dtype == np.bool_ and not replaced[:].any()
    assert xr.open_zarr(path, consolidated=False).label.dims == ("field", "y", "x")
    allocate_fields(group, ["000001-1-0013"])
    assert group["label"].shape == (3, 40, 48)
