"""The cube store: one Zarr v3 group that xarray opens as a Dataset.

Layout (dimensions in brackets)::

    image   [field, band, y, x]  float32   five bands resampled onto the field's i-band pixel grid
    valid   [field, y, x]        bool      pixels covered by all five bands
    wcs     [field]              str       FITS header text of the grid the field is stored on
    source  [field]              str       JSON: the files the field came from, their sizes and checksums
    done    [field]              bool      completion marker, written last by the worker that stored the field
    field   [field]              str       coordinate: RRRRRR-C-FFFF
    band    [band]               str       coordinate: u g r i z

Every field owns its own chunks (chunking is 1 along ``field``), so workers write their regions without
coordination and a field whose ``done`` is false is simply redone. Slots of fields that failed stay in the
store with ``done`` false and ``valid`` all false until a later run stores them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from astropy.io import fits
from astropy.wcs import WCS
from zarr.codecs import BloscCodec, ZstdCodec

from sgc.errors import SgcError
from sgc.sdss.frames import frame_wcs
from sgc.sdss.names import BANDS

FIELD_ARRAYS = ("image", "valid", "wcs", "source", "done")


class StoreError(SgcError):
    """A store that cannot be used as asked (wrong shape, layout, or not a cube store)."""


@dataclass(frozen=True)
class StoreLayout:
    """How the image array is chunked, compressed and typed.

    Attributes:
        shape: (rows, columns) of every field's grid.
        chunk: chunk edge along y and x.
        codec: compression of ``image``: ``none`` (the default), ``blosc-lz4``, ``blosc-zstd`` or ``zstd``.
            Sky-limited float pixels are mostly noise and compress poorly (blosc-lz4: 1.15x on a simulated
            field) while decoding them halves what one core feeds the training loader, so the image is
            stored raw by default. The per-pixel masks always use :func:`mask_compressors`.
        clevel: compression level.
        dtype: dtype of ``image``.
    """

    shape: tuple[int, int]
    chunk: int = 256
    codec: str = "none"
    clevel: int = 5
    dtype: str = "float32"

    def compressors(self, typesize: int) -> list[Any]:
        """The Zarr codecs for an array whose elements are ``typesize`` bytes."""
        if self.codec == "none":
            return []
        if self.codec == "zstd":
            return [ZstdCodec(level=self.clevel)]
        cname = self.codec.removeprefix("blosc-")
        # Byte shuffle groups the exponent bytes of float pixels together, which is what makes them compress.
        shuffle = "shuffle" if typesize > 1 else "bitshuffle"
        return [BloscCodec(cname=cname, clevel=self.clevel, shuffle=shuffle, typesize=typesize)]


def mask_compressors() -> list[Any]:
    """The codecs of the one-byte per-pixel arrays (``valid``, ``label``, ``exclude``).

    Masks are long runs of one value: bit-shuffled lz4 shrinks them tens of times and decodes faster
    than the raw bytes would be read, whatever codec the image uses.
    """
    return [BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle", typesize=1)]


def create_store(path: str | Path, layout: StoreLayout) -> zarr.Group:
    """Create an empty cube store with no fields.

    Raises:
        StoreError: if something already exists at ``path``.
    """
    path = Path(path)
    if path.exists():
        raise StoreError(f"{path}: already exists")
    ny, nx = layout.shape
    c = layout.chunk
    group = zarr.open_group(path, mode="w-", zarr_format=3)
    dtype = np.dtype(layout.dtype)
    group.create_array(
        "image",
        shape=(0, len(BANDS), ny, nx),
        chunks=(1, len(BANDS), c, c),
        dtype=dtype,
        fill_value=np.nan,
        compressors=layout.compressors(dtype.itemsize),
        dimension_names=["field", "band", "y", "x"],
    )
    group.create_array(
        "valid",
        shape=(0, ny, nx),
        chunks=(1, c, c),
        dtype=bool,
        fill_value=False,
        compressors=mask_compressors(),
        dimension_names=["field", "y", "x"],
    )
    for name in ("wcs", "source", "field"):
        group.create_array(name, shape=(0,), chunks=(1,), dtype=str, dimension_names=["field"])
    group.create_array(
        "done", shape=(0,), chunks=(1,), dtype=bool, fill_value=False, dimension_names=["field"]
    )
    band = group.create_array(
        "band", shape=(len(BANDS),), chunks=(len(BANDS),), dtype=str, dimension_names=["band"]
    )
    band[:] = np.array(BANDS)
    group.attrs.update({"sgc_store": 1, "layout": layout.__dict__ | {"shape": list(layout.shape)}})
    return group


def open_store(path: str | Path, mode: str = "r") -> zarr.Group:
    """Open an existing cube store.

    Raises:
        StoreError: if ``path`` is not a cube store.
    """
    path = Path(path)
    try:
        group = zarr.open_group(path, mode=mode, zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise StoreError(f"{path}: no cube store here") from exc
    if "sgc_store" not in group.attrs or any(name not in group for name in (*FIELD_ARRAYS, "field", "band")):
        raise StoreError(f"{path}: a Zarr group, but not an sgc cube store")
    return group


def store_layout(group: zarr.Group) -> StoreLayout:
    """The layout a store was created with."""
    data = dict(group.attrs["layout"])
    data["shape"] = tuple(data["shape"])
    return StoreLayout(**data)


def field_names(group: zarr.Group) -> list[str]:
    """Field ids of every slot, in store order."""
    return [str(f) for f in group["field"][:]] if group["field"].shape[0] else []


def parse_field_wcs(text: str, where: str = "<stored wcs>") -> WCS:
    """The celestial WCS of a stored grid from its header text (the ``wcs`` array's values).

    Raises:
        InputFileError: naming ``where`` if the text holds no usable celestial WCS.
    """
    return frame_wcs(fits.Header.fromstring(text), where)


def field_wcs(group: zarr.Group, slot: int) -> WCS:
    """The celestial WCS of the grid a field is stored on.

    Raises:
        StoreError: if the slot holds no field yet (not done).
    """
    text = str(group["wcs"][slot])
    where = f"{group.store_path}:wcs[{field_names(group)[slot]}]"
    if not text:
        raise StoreError(f"{where}: no stored WCS (the field is not done)")
    return parse_field_wcs(text, where)


def done_fields(group: zarr.Group) -> list[str]:
    """Field ids whose slot is complete."""
    names = field_names(group)
    if not names:
        return []
    done = group["done"][: len(names)]
    return [name for name, ok in zip(names, done, strict=True) if ok]


def allocate_fields(group: zarr.Group, fields: Sequence[str]) -> dict[str, int]:
    """Give every field a slot, appending slots for fields the store does not have yet.

    Returns:
        The slot index of each of ``fields``.
    """
    names = field_names(group)
    index = {name: i for i, name in enumerate(names)}
    new = [f for f in dict.fromkeys(fields) if f not in index]
    if new:
        total = len(names) + len(new)
        # Every array along ``field`` grows, including those later stages added (labels, masks); the
        # ``field`` coordinate last, so a run killed in between leaves the store as it was (longer arrays
        # are cut to the coordinate's length when read, and resized to the same length next time).
        for name, array in group.arrays():
            if (
                name != "field"
                and array.metadata.dimension_names
                and array.metadata.dimension_names[0] == "field"
            ):
                array.resize((total, *array.shape[1:]))
        group["field"].resize((total,))
        group["field"][len(names) :] = np.array(new)
        index.update({f: len(names) + i for i, f in enumerate(new)})
    return {f: index[f] for f in fields}


def write_field(
    path: str | Path,
    slot: int,
    image: np.ndarray,
    valid: np.ndarray,
    wcs_header: str,
    source: dict[str, Any],
) -> None:
    """Write one field into its slot, then mark it done; called by the worker that computed it."""
    group = zarr.open_group(path, mode="r+", zarr_format=3)
    group["image"][slot] = image.astype(group["image"].dtype, copy=False)
    group["valid"][slot] = valid
    group["wcs"][slot] = wcs_header
    group["source"][slot] = json.dumps(source, sort_keys=True)
    # Written last: a field killed half-way stays not done and is redone by the next run.
    group["done"][slot] = True


def mark_undone(group: zarr.Group, slot: int) -> None:
    """Clear a slot's completion marker, so that the next ingest stores the field again."""
    group["done"][slot] = False


def ensure_pixel_array(group: zarr.Group, name: str, dtype: str | np.dtype, fill_value: Any) -> zarr.Array:
    """Return the per-pixel array ``name (field, y, x)``, creating it chunked like ``valid`` if absent.

    Later stages (labels, exclusion masks) add their arrays this way, so every per-pixel array shares the
    chunk grid of ``valid`` and ``image`` and a chunk-wise Dask computation can write it chunk by chunk.
    An existing array of another dtype or shape is replaced.
    """
    valid = group["valid"]
    dtype = np.dtype(dtype)
    if name in group:
        array = group[name]
        if array.dtype == dtype and array.shape == valid.shape:
            return array
        del group[name]
    return group.create_array(
        name,
        shape=valid.shape,
        chunks=valid.chunks,
        dtype=dtype,
        fill_value=fill_value,
        compressors=mask_compressors()
        if dtype.itemsize == 1
        else store_layout(group).compressors(dtype.itemsize),
        dimension_names=["field", "y", "x"],
    )
