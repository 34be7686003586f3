"""The cube store: creation, slots, appending, completion markers, added arrays, and xarray's view of it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sgc.config import IngestConfig
from sgc.cube.store import CubeStore, StoreError

SHAPE = (40, 48)
LAYOUT = IngestConfig(chunk=16, codec="blosc-lz4", clevel=5)


def _field_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(5, *SHAPE)).astype(np.float32)
    valid = np.ones(SHAPE, bool)
    valid[:, :3] = False
    return image, valid


@pytest.mark.parametrize("codec", ["blosc-lz4", "blosc-zstd", "zstd", "none"])
def test_fields_round_trip_through_xarray(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "s.zarr"
    cube = CubeStore.create(path, SHAPE, IngestConfig(chunk=16, codec=codec))
    slots = cube.allocate(["000001-1-0011", "000001-1-0012"])
    assert slots == {"000001-1-0011": 0, "000001-1-0012": 1}
    image, valid = _field_data(0)
    CubeStore.open(path, "r+").write_field(1, image, valid, "HEADER TEXT", {"files": {"i": {"name": "x"}}})

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
    opened = CubeStore.open(path)
    assert opened.done_fields() == ["000001-1-0012"]
    assert opened.source(1)["files"]["i"]["name"] == "x" and opened.source(0) == {}


def test_appending_keeps_existing_slots(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    CubeStore.create(path, SHAPE, LAYOUT).allocate(["000001-1-0011"])
    image, valid = _field_data(1)
    cube = CubeStore.open(path, mode="r+")
    cube.write_field(0, image, valid, "A", {})
    slots = cube.allocate(["000001-1-0011", "000002-3-0100"])
    assert slots == {"000001-1-0011": 0, "000002-3-0100": 1}
    assert cube.fields == ["000001-1-0011", "000002-3-0100"]
    np.testing.assert_array_equal(cube["image"][0], image)
    assert cube["image"].shape == (2, 5, *SHAPE)
    assert cube.layout == {
        "shape": list(SHAPE),
        "chunk": 16,
        "codec": "blosc-lz4",
        "clevel": 5,
        "dtype": "float32",
    }
    assert (cube.shape, cube.chunk) == (SHAPE, 16)


def test_slots_are_looked_up_by_any_form_of_field_id(tmp_path: Path) -> None:
    cube = CubeStore.create(tmp_path / "s.zarr", SHAPE, LAYOUT)
    cube.allocate(["000001-1-0011", "000002-3-0100"])
    assert cube.slot("2-3-100") == 1 and cube.slot("frame-r-000001-1-0011.fits") == 0
    with pytest.raises(StoreError, match="holds no field 000009-1-0001"):
        cube.slot("9-1-1")
    with pytest.raises(StoreError, match="field 000002-3-0100 is not done"):
        cube.done_slot("2-3-100")


def test_refuses_to_overwrite_or_open_what_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    CubeStore.create(path, SHAPE, LAYOUT)
    with pytest.raises(StoreError, match="already exists"):
        CubeStore.create(path, SHAPE, LAYOUT)
    with pytest.raises(StoreError, match="no cube store here"):
        CubeStore.open(tmp_path / "missing.zarr")
    import zarr

    zarr.open_group(tmp_path / "other.zarr", mode="w", zarr_format=3)
    with pytest.raises(StoreError, match="not an sgc cube store"):
        CubeStore.open(tmp_path / "other.zarr")


def test_float16_layout_stores_float16(tmp_path: Path) -> None:
    path = tmp_path / "h.zarr"
    cube = CubeStore.create(path, SHAPE, IngestConfig(chunk=16, dtype="float16"))
    cube.allocate(["000001-1-0011"])
    image, valid = _field_data(2)
    cube.write_field(0, image, valid, "A", {})
    stored = CubeStore.open(path)["image"][0]
    assert stored.dtype == np.float16
    np.testing.assert_allclose(stored, image, rtol=1e-3, atol=1e-3)


def test_pixel_arrays_share_the_chunk_grid_and_are_replaced_when_their_dtype_changes(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    cube = CubeStore.create(path, SHAPE, LAYOUT)
    cube.allocate(["000001-1-0011", "000001-1-0012"])
    label = cube.pixel_array("label", "uint8", 255)
    assert label.shape == (2, *SHAPE) and label.chunks == cube["valid"].chunks
    label[1, :2, :2] = 1
    assert cube.pixel_array("label", "uint8", 255)[1, 0, 0] == 1  # kept as it is
    replaced = cube.pixel_array("label", "bool", False)
    assert replaced.dtype == np.bool_ and not replaced[:].any()
    assert xr.open_zarr(path, consolidated=False).label.dims == ("field", "y", "x")
    cube.allocate(["000001-1-0013"])
    assert cube["label"].shape == (3, *SHAPE)


def test_pixel_arrays_take_leading_dimensions_kept_whole_in_each_chunk(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    cube = CubeStore.create(path, SHAPE, LAYOUT)
    cube.allocate(["000001-1-0011"])
    prob = cube.pixel_array("prob", "float16", np.nan, leading=[("class", 3)])
    assert prob.shape == (1, 3, *SHAPE) and prob.chunks == (1, 3, 16, 16)
    prob[0, 2] = 0.25
    ds = xr.open_zarr(path, consolidated=False)
    assert ds.prob.dims == ("field", "class", "y", "x") and ds.prob.dtype == np.float16
    assert float(ds.prob[0, 2, 5, 5]) == 0.25 and np.isnan(float(ds.prob[0, 0, 5, 5]))
    cube.allocate(["000001-1-0012"])  # appending a field grows it too
    assert cube["prob"].shape == (2, 3, *SHAPE)
