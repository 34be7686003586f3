"""Naming the chunk that broke a read: a damaged store reported as one line, not a codec's traceback.

Zarr reads chunks through an asyncio pipeline, and a chunk that fails to decode (garbage bytes, a file cut
short) surfaces as a codec's exception (``RuntimeError: error during blosc decompression``) that names no
file, under hundreds of lines of event-loop frames. A stage that fails that way is stopped by
:func:`damage_error`, which scans the store for chunks that do not decode and names them, with what to do.
The scan reads every chunk until it finds the damage: costly on a survey-sized store, but only ever done
on this error path.
"""

from __future__ import annotations

import itertools
import traceback
from collections.abc import Iterable
from pathlib import Path

import zarr

from sgc.errors import SgcError

# Where a decoding failure is raised: numcodecs (compiled, so its frames name .pyx files) and zarr's codecs.
_CODEC_FRAMES = ("numcodecs", "/zarr/codecs/", "/zarr/core/codec_pipeline")
# What rewrites each array of a store.
_REPAIR = {
    "label": "run `sgc label` again, which rewrites every label chunk",
    "exclude": "run `sgc exclude` again, which rewrites every exclusion chunk",
    "prob": "predict into a new folder",
    "class": "predict into a new folder",
}
_REINGEST = "ingest the fields again into a new store (its pixels come from the raw frames)"


class DamagedStoreError(SgcError):
    """A store holding a chunk that cannot be decoded."""


def is_decode_error(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, came out of a codec decoding a chunk."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for frame, _ in traceback.walk_tb(current.__traceback__):
            if any(part in frame.f_code.co_filename.replace("\\", "/") for part in _CODEC_FRAMES):
                return True
        current = current.__cause__ or current.__context__
    return False


def damaged_chunks(store: str | Path, limit: int = 3) -> tuple[list[str], int]:
    """Chunks of the store that cannot be decoded.

    Args:
        store: a Zarr v3 group.
        limit: stop after this many damaged chunks.

    Returns:
        ``(damaged, checked)``: the damaged chunks as paths (``STORE/ARRAY/c/...``), and the chunks read.
    """
    group = zarr.open_group(store, mode="r", zarr_format=3)
    damaged: list[str] = []
    checked = 0
    for name, array in sorted(group.arrays()):
        for coords in itertools.product(*(range(n) for n in array.cdata_shape)):
            checked += 1
            try:
                array.get_block_selection(coords)
            except Exception:  # whatever the codec raises: this chunk does not decode
                damaged.append(f"{Path(store) / name / array.metadata.encode_chunk_key(coords)}")
                if len(damaged) >= limit:
                    return damaged, checked
    return damaged, checked


def damage_error(stores: Iterable[str | Path], exc: BaseException) -> DamagedStoreError:
    """The one-line error for a stage stopped by a chunk that does not decode: the chunks named, and the fix.

    Args:
        stores: the stores the stage read (those that do not exist are skipped).
        exc: the decoding failure.
    """
    cause = (str(exc).strip().splitlines() or [""])[0]
    what = f"{type(exc).__name__}: {cause}" if cause else type(exc).__name__
    checked = 0
    for store in (Path(s) for s in stores):
        if not store.exists():
            continue
        found, n = damaged_chunks(store)
        checked += n
        if found:
            array = Path(found[0]).relative_to(store).parts[0]
            return DamagedStoreError(
                f"{', '.join(found)}: chunk cannot be decoded ({what}): the store is damaged; "
                f"{_REPAIR.get(array, _REINGEST)}"
            )
    return DamagedStoreError(
        f"a chunk could not be decoded ({what}), but none of the {checked} chunks read again is damaged now"
    )
