"""Whole-chunk reads: straight from the chunk files, or through zarr, give the same values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from sgc.cube.store import image_compressors
from sgc.patches.chunks import ChunkReader


def make_array(path: Path, codec: str, dtype: str = "float32") -> tuple[zarr.Array, np.ndarray]:
    """A (field, band, y, x) array with ragged edge chunks and one chunk never written."""
    data = np.random.default_rng(0).normal(size=(2, 3, 40, 50)).astype(dtype)
    array = zarr.create_array(
        path,
        shape=data.shape,
        chunks=(1, 3, 16, 16),
        dtype=dtype,
        fill_value=np.nan,
        compressors=image_compressors(codec, 5, np.dtype(dtype).itemsize),
    )
    array[0] = data[0]
    array[1, :, :16, :16] = data[1, :, :16, :16]
    return array, data


def read(reader: ChunkReader, slot: int, cy: int, cx: int) -> np.ndarray:
    out = np.full((3, 16, 16), -1.0, dtype=reader.dtype)
    reader.read(slot, (0, cy, cx), out)
    return out


@pytest.mark.parametrize("codec", ["none", "blosc-lz4", "zstd"])
def test_direct_reads_equal_zarr_reads(tmp_path: Path, codec: str) -> None:
    array, data = make_array(tmp_path / "a.zarr", codec)
    reader = ChunkReader(array)
    assert reader.direct == (codec != "zstd")
    for cy in range(3):
        for cx in range(4):
            got = read(reader, 0, cy, cx)
            h, w = min(16, 40 - 16 * cy), min(16, 50 - 16 * cx)
            assert np.array_equal(got[:, :h, :w], data[0, :, 16 * cy : 16 * cy + h, 16 * cx : 16 * cx + w])


@pytest.mark.parametrize("codec", ["none", "blosc-lz4", "zstd"])
def test_unwritten_chunks_read_as_the_fill_value(tmp_path: Path, codec: str) -> None:
    array, data = make_array(tmp_path / "a.zarr", codec)
    reader = ChunkReader(array)
    assert np.array_equal(read(reader, 1, 0, 0), data[1, :, :16, :16])
    assert np.isnan(read(reader, 1, 1, 2)).all()


def test_a_big_endian_array_goes_through_zarr(tmp_path: Path) -> None:
    data = np.arange(2 * 3 * 16 * 16, dtype=">f4").reshape(2, 3, 16, 16)
    array = zarr.create_array(tmp_path / "b.zarr", shape=data.shape, chunks=(1, 3, 16, 16), dtype=">f4")
    array[:] = data
    reader = ChunkReader(array)
    assert not reader.direct
    out = np.empty((3, 16, 16), dtype=np.float32)
    reader.read(1, (0, 0, 0), out)
    assert np.array_equal(out, data[1])


def test_a_short_chunk_file_is_an_error_naming_it(tmp_path: Path) -> None:
    array, _ = make_array(tmp_path / "a.zarr", "none")
    chunk = tmp_path / "a.zarr" / array.metadata.encode_chunk_key((0, 0, 1, 1))
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(OSError, match=str(chunk)):
        read(ChunkReader(array), 0, 1, 1)


@pytest.mark.parametrize("codec", ["none", "blosc-lz4", "zstd"])
def test_raw_chunks_map_to_the_values_read(tmp_path: Path, codec: str) -> None:
    array, _ = make_array(tmp_path / "a.zarr", codec)
    reader = ChunkReader(array)
    assert reader.mappable == (codec == "none")
    if not reader.mappable:
        return
    for slot, cy, cx in ((0, 0, 0), (0, 2, 3), (1, 0, 0), (1, 1, 2)):  # (1, 1, 2) was never written
        view = reader.view(slot, (0, cy, cx))
        assert not view.flags.writeable and view.shape == (3, 16, 16)
        assert np.array_equal(view, read(reader, slot, cy, cx), equal_nan=True)


def test_a_short_chunk_file_is_an_error_naming_it_when_mapped(tmp_path: Path) -> None:
    array, _ = make_array(tmp_path / "a.zarr", "none")
    chunk = tmp_path / "a.zarr" / array.metadata.encode_chunk_key((0, 0, 1, 1))
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(OSError, match=str(chunk)):
        ChunkReader(array).view(0, (0, 1, 1))
