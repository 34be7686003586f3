"""The cube store: one Zarr v3 group that xarray opens as a Dataset, and the one owner of its layout.

Layout (dimensions in brackets)::

    image    [field, band, y, x]  float32   five bands resampled onto the field's i-band pixel grid
    valid    [field, y, x]        bool      pixels covered by all five bands
    wcs      [field]              str       FITS header text of the grid the field is stored on
    source   [field]              str       JSON: the files the field came from, their sizes and checksums
    done     [field]              bool      completion marker, written last by the worker storing the field
    field    [field]              str       coordinate: RRRRRR-C-FFFF
    band     [band]               str       coordinate: u g r i z
    label    [field, y, x]        uint8     added by ``sgc label`` (values in :mod:`sgc.classes`)
    exclude  [field, y, x]        bool      added by ``sgc exclude``: the pixel sees held-out sky

Every field owns its own chunks (chunking is 1 along ``field``), so workers write their regions without
coordination and a field whose ``done`` is false is simply redone. Slots of fields that failed stay in the
store with ``done`` false and ``valid`` all false until a later run stores them. Arrays that later stages
add (:meth:`CubeStore.pixel_array`) share the chunk grid of ``valid``, with any dimensions between
``field`` and ``y`` (a ``class`` axis, say) kept whole in each chunk.

A prediction store (:class:`PredictionStore`, written by ``sgc predict``) has the same field slots, grid and
``wcs`` on the same chunk grid, and instead of the pixels::

    prob     [field, class, y, x] float16   per-class probability (classes in the ``classes`` attribute)
    class    [field, y, x]        uint8     the most probable class (values of :mod:`sgc.classes`)

with the checkpoint it came from in its attributes. Every array name and attribute name of both stores is
defined in this module and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from astropy.io import fits
from astropy.wcs import WCS
from zarr.codecs import BloscCodec, ZstdCodec

from sgc.atomic import check_folders_above
from sgc.classes import IGNORE
from sgc.config import IngestConfig
from sgc.errors import SgcError
from sgc.sdss.frames import frame_wcs
from sgc.sdss.names import BANDS, FieldId

# Arrays.
IMAGE = "image"
VALID = "valid"
WCS_HEADER = "wcs"
SOURCE = "source"
DONE = "done"
FIELD = "field"
BAND = "band"
LABEL = "label"
EXCLUDE = "exclude"
PROB = "prob"
CLASS = "class"
_CORE_ARRAYS = (IMAGE, VALID, WCS_HEADER, SOURCE, DONE, FIELD, BAND)
_PREDICTION_ARRAYS = (PROB, CLASS, WCS_HEADER, DONE, FIELD)

# Attributes of the store.
ATTR_FORMAT = "sgc_store"
ATTR_LAYOUT = "layout"
ATTR_VERSION = "sgc_version"
ATTR_RAW_DIR = "raw_dir"
ATTR_INGEST_CONFIG = "ingest_config"
ATTR_FIELDS_DONE = "fields_done"
ATTR_LAST_INGEST = "last_ingest"
# Attributes of an array a stage computed (label, exclude): what it was computed for and from.
ATTR_FIELDS = "fields"
ATTR_CLASSES = "classes"
ATTR_CATALOGS = "catalogs"
ATTR_SETTINGS = "settings"
ATTR_OBJECTS = "objects"
ATTR_HELD_OUT = "held_out"
ATTR_MARGIN = "margin_arcsec"
ATTR_BANDS = "bands"
ATTR_FOOTPRINTS = "footprints"
ATTR_EXCLUDED_PIXELS = "excluded_pixels"
# Attributes of a prediction store.
ATTR_PREDICTIONS = "sgc_predictions"
ATTR_CHECKPOINT = "checkpoint"
ATTR_SOURCE_STORE = "store"

STORE_FORMAT = 1
PREDICTIONS_FORMAT = 1


class StoreError(SgcError):
    """A store that cannot be used as asked (wrong shape, layout, or not a cube store)."""


def image_compressors(codec: str, clevel: int, typesize: int) -> list[Any]:
    """The Zarr codecs of the image under ``ingest.codec``, for elements of ``typesize`` bytes.

    Sky-limited float pixels are mostly noise and compress poorly (blosc-lz4: 1.15x on a simulated field)
    while decoding them halves what one core feeds the training loader, so ``none`` is the default.
    """
    if codec == "none":
        return []
    if codec == "zstd":
        return [ZstdCodec(level=clevel)]
    # Byte shuffle groups the exponent bytes of float pixels together, which is what makes them compress.
    shuffle = "shuffle" if typesize > 1 else "bitshuffle"
    return [BloscCodec(cname=codec.removeprefix("blosc-"), clevel=clevel, shuffle=shuffle, typesize=typesize)]


def mask_compressors() -> list[Any]:
    """The codecs of the one-byte per-pixel arrays (``valid``, ``label``, ``exclude``).

    Masks are long runs of one value: bit-shuffled lz4 shrinks them tens of times and decodes faster
    than the raw bytes would be read, whatever codec the image uses.
    """
    return [BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle", typesize=1)]


def parse_field_wcs(text: str, where: str = "<stored wcs>") -> WCS:
    """The celestial WCS of a stored grid from its header text (the ``wcs`` array's values).

    Raises:
        InputFileError: naming ``where`` if the text holds no usable celestial WCS.
    """
    return frame_wcs(fits.Header.fromstring(text), where)


class FieldStore:
    """What every sgc store has: one slot per field on a shared pixel grid and chunk grid, the ``wcs`` of each
    field's grid, completion markers, and per-pixel arrays added by later stages.

    Open one with its kind's ``open``; the store object holds no pixels, and each process (a Dask worker, a
    DataLoader worker) opens its own.

    Attributes:
        path: the store's folder.
        group: the Zarr group, for reading and writing arrays.
    """

    KIND = "store"
    FORMAT_ATTR = ""
    ARRAYS: tuple[str, ...] = ()

    def __init__(self, group: zarr.Group, path: Path) -> None:
        self.group = group
        self.path = path

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> Any:
        """Open an existing store of this kind (``mode`` ``r`` or ``r+``).

        Raises:
            StoreError: if ``path`` is not such a store.
        """
        path = Path(path)
        try:
            group = zarr.open_group(path, mode=mode, zarr_format=3)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
            raise StoreError(f"{path}: no {cls.KIND} here") from exc
        if cls.FORMAT_ATTR not in group.attrs or any(name not in group for name in cls.ARRAYS):
            raise StoreError(f"{path}: a Zarr group, but not an sgc {cls.KIND}")
        return cls(group, path)

    @classmethod
    def _new(cls, path: str | Path, layout: dict[str, Any], version: int) -> Any:
        """An empty store of this kind with the per-field arrays every store has, its layout recorded."""
        path = Path(path)
        if path.exists():
            raise StoreError(f"{path}: already exists")
        check_folders_above(path)
        group = zarr.open_group(path, mode="w-", zarr_format=3)
        for name in (WCS_HEADER, FIELD):
            group.create_array(name, shape=(0,), chunks=(1,), dtype=str, dimension_names=[FIELD])
        group.create_array(
            DONE, shape=(0,), chunks=(1,), dtype=bool, fill_value=False, dimension_names=[FIELD]
        )
        group.attrs.update({ATTR_LAYOUT: layout, cls.FORMAT_ATTR: version})
        return cls(group, path)

    # Arrays and attributes.

    def __getitem__(self, name: str) -> zarr.Array:
        return self.group[name]

    def __contains__(self, name: str) -> bool:
        return name in self.group

    @property
    def attrs(self) -> Any:
        """The store's attributes."""
        return self.group.attrs

    def record(self, name: str) -> dict[str, Any]:
        """The attributes of array ``name`` (what the stage that computed it recorded), or {} if absent."""
        return dict(self.group[name].attrs) if name in self.group else {}

    def computed_fields(self, name: str) -> set[str] | None:
        """The fields array ``name`` was computed for, None where it records none."""
        fields = self.record(name).get(ATTR_FIELDS)
        return None if fields is None else {str(f) for f in fields}

    # Layout.

    @property
    def layout(self) -> dict[str, Any]:
        """What the store was created with: ``shape``, ``chunk``, ``codec``, ``clevel``, ``dtype``."""
        return dict(self.attrs[ATTR_LAYOUT])

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of every field's grid."""
        return tuple(int(n) for n in self.layout["shape"])

    @property
    def chunk(self) -> int:
        """Chunk edge along y and x."""
        return int(self.layout["chunk"])

    # Fields and slots.

    @property
    def fields(self) -> list[str]:
        """Field ids of every slot, in store order."""
        array = self.group[FIELD]
        return [str(f) for f in array[:]] if array.shape[0] else []

    def slot(self, field: str) -> int:
        """The slot of a field (any form :meth:`FieldId.parse` reads).

        Raises:
            StoreError: if the store holds no such field.
        """
        name = str(FieldId.parse(field))
        try:
            return self.fields.index(name)
        except ValueError:
            raise StoreError(f"{self.path}: holds no field {name}") from None

    def done_slot(self, field: str) -> int:
        """The slot of a field that is done.

        Raises:
            StoreError: if the store holds no such field, or it is not done.
        """
        slot = self.slot(field)
        if not self.group[DONE][slot]:
            raise StoreError(f"{self.path}: field {self.fields[slot]} is not done")
        return slot

    def done_slots(self) -> np.ndarray:
        """Slots whose field is complete, in store order."""
        n = len(self.fields)
        return np.flatnonzero(self.group[DONE][:n]) if n else np.empty(0, np.int64)

    def done_fields(self) -> list[str]:
        """Field ids whose slot is complete, in store order."""
        names = self.fields
        return [names[k] for k in self.done_slots()]

    def wcs_text(self, slot: int) -> str:
        """The header text of a slot's stored grid ('' where the field is not done)."""
        return str(self.group[WCS_HEADER][slot])

    def field_wcs(self, slot: int) -> WCS:
        """The celestial WCS of the grid a field is stored on.

        Raises:
            StoreError: if the slot holds no field yet (not done).
        """
        text = self.wcs_text(slot)
        where = f"{self.path}:{WCS_HEADER}[{self.fields[slot]}]"
        if not text:
            raise StoreError(f"{where}: no stored WCS (the field is not done)")
        return parse_field_wcs(text, where)

    # Writing.

    def allocate(self, fields: Sequence[str]) -> dict[str, int]:
        """Give every field a slot, appending slots for fields the store does not have yet.

        Returns:
            The slot index of each of ``fields``.
        """
        names = self.fields
        index = {name: i for i, name in enumerate(names)}
        new = [f for f in dict.fromkeys(fields) if f not in index]
        if new:
            total = len(names) + len(new)
            # Every array along ``field`` grows, including those later stages added (labels, masks); the
            # ``field`` coordinate last, so a run killed in between leaves the store as it was (longer arrays
            # are cut to the coordinate's length when read, and resized to the same length next time).
            for name, array in self.group.arrays():
                dims = array.metadata.dimension_names
                if name != FIELD and dims and dims[0] == FIELD:
                    array.resize((total, *array.shape[1:]))
            self.group[FIELD].resize((total,))
            self.group[FIELD][len(names) :] = np.array(new)
            index.update({f: len(names) + i for i, f in enumerate(new)})
        return {f: index[f] for f in fields}

    def mark_done(self, slot: int, done: bool = True) -> None:
        """Set (or clear) a slot's completion marker: written last, by whoever finished the field."""
        self.group[DONE][slot] = done

    def mark_undone(self, slot: int) -> None:
        """Clear a slot's completion marker, so that the next run writes the field again."""
        self.mark_done(slot, False)

    def pixel_array(
        self,
        name: str,
        dtype: str | np.dtype,
        fill_value: Any,
        leading: Sequence[tuple[str, int]] = (),
    ) -> zarr.Array:
        """Return the per-pixel array ``name (field, *leading, y, x)``, creating it if absent.

        Every per-pixel array shares the store's chunk grid along y and x, so a chunk-wise Dask computation
        can write it chunk by chunk. An existing array of another dtype or shape is replaced.

        Args:
            name: the array's name.
            dtype: its dtype; one-byte arrays get the mask codecs, wider ones the layout's codec.
            fill_value: the value of chunks never written.
            leading: ``(dimension name, size)`` of each axis between ``field`` and ``y``, kept whole in a
                chunk (the ``class`` axis of per-class probabilities, say).
        """
        dtype = np.dtype(dtype)
        shape = (self.group[FIELD].shape[0], *(size for _, size in leading), *self.shape)
        if name in self.group:
            array = self.group[name]
            if array.dtype == dtype and array.shape == shape:
                return array
            del self.group[name]
        layout, c = self.layout, self.chunk
        return self.group.create_array(
            name,
            shape=shape,
            chunks=(1, *(size for _, size in leading), c, c),
            dtype=dtype,
            fill_value=fill_value,
            compressors=mask_compressors()
            if dtype.itemsize == 1
            else image_compressors(layout["codec"], layout["clevel"], dtype.itemsize),
            dimension_names=[FIELD, *(dim for dim, _ in leading), "y", "x"],
        )

    # Reading with Dask.

    def per_field(self, name: str) -> Any:
        """Array ``name`` as a lazy Dask array with one chunk per field (a task reads its field's chunks)."""
        import dask.array as da  # imported here: the command line opens stores without computing anything

        array = self.group[name]
        return da.from_zarr(array, chunks=(1, *array.shape[1:]))


class CubeStore(FieldStore):
    """A cube store: the five aligned bands of every field, what they cover, and where they came from."""

    KIND = "cube store"
    FORMAT_ATTR = ATTR_FORMAT
    ARRAYS = _CORE_ARRAYS

    @classmethod
    def create(cls, path: str | Path, shape: tuple[int, int], ingest: IngestConfig) -> CubeStore:
        """Create an empty cube store with no fields, laid out as ``ingest`` says.

        Raises:
            StoreError: if something already exists at ``path``.
        """
        ny, nx = shape
        c = ingest.chunk
        layout = {
            "shape": [ny, nx],
            "chunk": c,
            "codec": ingest.codec,
            "clevel": ingest.clevel,
            "dtype": ingest.dtype,
        }
        cube = cls._new(path, layout, STORE_FORMAT)
        dtype = np.dtype(ingest.dtype)
        cube.group.create_array(
            IMAGE,
            shape=(0, len(BANDS), ny, nx),
            chunks=(1, len(BANDS), c, c),
            dtype=dtype,
            fill_value=np.nan,
            compressors=image_compressors(ingest.codec, ingest.clevel, dtype.itemsize),
            dimension_names=[FIELD, BAND, "y", "x"],
        )
        cube.pixel_array(VALID, bool, False)
        cube.group.create_array(SOURCE, shape=(0,), chunks=(1,), dtype=str, dimension_names=[FIELD])
        band = cube.group.create_array(
            BAND, shape=(len(BANDS),), chunks=(len(BANDS),), dtype=str, dimension_names=[BAND]
        )
        band[:] = np.array(BANDS)
        return cube

    @property
    def raw_dir(self) -> Path | None:
        """The raw folder the store was last ingested from."""
        raw = self.attrs.get(ATTR_RAW_DIR)
        return None if raw is None else Path(raw)

    @property
    def bands(self) -> list[str]:
        """Band names, in the order of the image's band axis."""
        return [str(b) for b in self.group[BAND][:]]

    def source(self, slot: int) -> dict[str, Any]:
        """The record of the files a field came from (empty where the field is not done)."""
        text = str(self.group[SOURCE][slot])
        return json.loads(text) if text else {}

    def write_field(
        self, slot: int, image: np.ndarray, valid: np.ndarray, wcs_header: str, source: dict[str, Any]
    ) -> None:
        """Write one field into its slot, then mark it done; called by the worker that computed it."""
        group = self.group
        group[IMAGE][slot] = image.astype(group[IMAGE].dtype, copy=False)
        group[VALID][slot] = valid
        group[WCS_HEADER][slot] = wcs_header
        group[SOURCE][slot] = json.dumps(source, sort_keys=True)
        # Written last: a field killed half-way stays not done and is redone by the next run.
        self.mark_done(slot)


class PredictionStore(FieldStore):
    """The predictions of a model on some fields of a cube store, on the same grids and chunks.

    The fields are added with their ``wcs`` when the store is made; each field's ``prob`` and ``class`` are
    written block by block, and its ``done`` last, once every block is in.
    """

    KIND = "prediction store"
    FORMAT_ATTR = ATTR_PREDICTIONS
    ARRAYS = _PREDICTION_ARRAYS

    @classmethod
    def create(
        cls,
        path: str | Path,
        cube: CubeStore,
        fields: Sequence[str],
        classes: Sequence[str],
        checkpoint: dict[str, Any],
    ) -> PredictionStore:
        """A prediction store for ``fields`` of ``cube``, on their grids, recording the checkpoint.

        Raises:
            StoreError: if something already exists at ``path``, or a field is not done in the cube store.
        """
        slots = [cube.done_slot(f) for f in fields]
        layout = {"shape": list(cube.shape), "chunk": cube.chunk, "codec": "blosc-lz4", "clevel": 5}
        store = cls._new(path, layout, PREDICTIONS_FORMAT)
        names = [cube.fields[k] for k in slots]
        store.allocate(names)
        store[WCS_HEADER][:] = np.array([cube.wcs_text(k) for k in slots])
        prob = store.pixel_array(PROB, np.float16, np.nan, leading=[(CLASS, len(classes))])
        prob.attrs["classes"] = list(classes)
        store.pixel_array(CLASS, np.uint8, IGNORE)
        store.attrs.update({ATTR_CHECKPOINT: checkpoint, ATTR_SOURCE_STORE: str(cube.path.resolve())})
        return store

    @property
    def classes(self) -> list[str]:
        """The class of each index along ``prob``'s class axis."""
        return list(self.group[PROB].attrs["classes"])

    @property
    def checkpoint(self) -> dict[str, Any]:
        """What the predictions were made with: the checkpoint's path, digest and inference settings."""
        return dict(self.attrs[ATTR_CHECKPOINT])
