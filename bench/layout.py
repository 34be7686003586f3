"""Store layout at survey scale: the cube's image array unsharded (sgc today) against Zarr v3 sharding.

A DR17-sized store has hundreds of thousands of field slots. With one file per 256x256 chunk (chunks
``(1, 5, 256, 256)``, 48 per 1489x2048 field) that is tens of millions of files or S3 objects for the image
alone; with the sharding codec, one shard per field slot (shards ``(1, 5, 1536, 2048)``) holds the same 48
inner chunks in one file, which keeps one writer per field (a shard is written whole by the task that
ingests its field) and the loader's unit of reading (one inner chunk). This bench writes and reads both
layouts here, ``--slots`` field slots each, and measures:

1. compression of the image (what a survey store costs on disk): ratio and single-thread decode speed of
   each codec on float32 and float16 pixels, over whole fields;
2. writing each layout slot by slot through zarr (MB/s of uncompressed pixels);
3. the files it makes: files and folders, the most entries in one folder, bytes on disk;
4. reading, from a warm page cache (the files were just written; nothing is dropped, since other jobs
   share this machine): whole slots through zarr; the loader's pattern, whole 256x256 inner chunks in
   random order into a chunk-shaped buffer, through :class:`sgc.patches.chunks.ChunkReader` (direct file
   reads when unsharded, zarr's pipeline when sharded) and through a direct shard reader prototyped here
   (the shard index read once per shard, then one ``os.pread`` per inner chunk); and the ceiling, the
   same files read whole into one buffer with no zarr at all.

The pixels are real: the sample field (``../shared/sdss/003918-3-0213``, 745 rows) aligned onto its i-band
grid by :func:`sgc.cube.align.align_field` as the ingest does, so the resampled bands have lost the
truncated mantissas of the published frames and compress as the store's pixels do. Each slot is that cube
and its vertical mirror stacked to 1489 rows, rolled along x by a random amount, so slots differ byte for
byte but keep the sample's noise and sources. Without the sample, one simulated field is used the same way.

    python bench/layout.py [--slots 64] [--quick] [--workdir stores/bench-layout] [--keep]

Prints the tables and saves ``bench/results/layout.json`` (with a ``"summary"`` list of
:func:`timing.figure` rows). ``--quick`` (12 slots, one repeat) takes about a minute here.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numcodecs.blosc  # noqa: E402
import numpy as np  # noqa: E402
import zarr  # noqa: E402
from numcodecs import BitRound, Blosc, Zstd  # noqa: E402
from timing import best_of, figure, machine  # noqa: E402
from zarr.codecs import BloscCodec  # noqa: E402

from sgc.cube.align import align_field  # noqa: E402
from sgc.patches.chunks import ChunkReader  # noqa: E402
from sgc.sdss.names import BANDS  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SDSS_DIR = Path(os.environ.get("SGC_SDSS_DIR", REPO.parent / "shared" / "sdss"))
SAMPLE_FIELD = "003918-3-0213"
FIELD_SHAPE = (1489, 2048)
CHUNK = 256
SHARD_ROWS = -(-FIELD_SHAPE[0] // CHUNK) * CHUNK  # 1536: whole inner chunks covering the field's rows
SHARD_COLS = -(-FIELD_SHAPE[1] // CHUNK) * CHUNK  # 2048
PATCHES_PER_CHUNK = (CHUNK // 64) ** 2
MARKER = ".sgc-bench-layout"  # marks folders this bench made, the only ones it may delete
PACKAGES = ("numpy", "zarr", "numcodecs")
MB = 1e6


# --- pixels -------------------------------------------------------------------------------------------


def source_cube(workdir: Path) -> tuple[np.ndarray, str]:
    """The aligned five-band cube the slots are made from, cached in ``workdir``, and what it is."""
    cache = workdir / "source.npy"
    raw = SDSS_DIR / SAMPLE_FIELD
    what = f"real SDSS field {SAMPLE_FIELD} (745 rows) aligned onto its i-band grid"
    if not raw.is_dir():
        what = "one simulated full field aligned onto its i-band grid (real sample absent)"
    if cache.exists():
        return np.load(cache), what
    if raw.is_dir():
        from sgc.sdss.frames import read_frame

        frames = {b: read_frame(raw / f"frame-{b}-{SAMPLE_FIELD}.fits.bz2") for b in BANDS}
        np.save(workdir / "published.npy", np.stack([frames[b].image for b in BANDS]))
    else:
        from types import SimpleNamespace

        from astropy.wcs import WCS

        from sgc.sim.simulate import SimRun, render_field

        hduls = render_field(SimRun(), 20)
        frames = {
            b: SimpleNamespace(image=h[0].data.astype(np.float32), wcs=WCS(h[0].header))
            for b, h in hduls.items()
        }
    cube = align_field(frames).cube.astype(np.float32)
    np.save(cache, cube)
    return cube, what


def make_slot(source: np.ndarray, k: int) -> np.ndarray:
    """Field slot ``k``: the source and its vertical mirror stacked to 1489 rows, rolled along x."""
    rows = FIELD_SHAPE[0]
    stacked = np.concatenate([source, source[:, ::-1]], axis=1)
    while stacked.shape[1] < rows:
        stacked = np.concatenate([stacked, stacked[:, ::-1]], axis=1)
    shift = int(np.random.default_rng(k).integers(FIELD_SHAPE[1]))
    return np.ascontiguousarray(np.roll(stacked[:, :rows, : FIELD_SHAPE[1]], shift, axis=2))


# --- compression --------------------------------------------------------------------------------------

CODECS: dict[str, Any] = {
    "none": None,
    "blosc-lz4 shuffle": Blosc("lz4", 5, Blosc.SHUFFLE),
    "blosc-lz4 bitshuffle": Blosc("lz4", 5, Blosc.BITSHUFFLE),
    "blosc-zstd shuffle (clevel 3)": Blosc("zstd", 3, Blosc.SHUFFLE),
    "zstd (level 3)": Zstd(3),
}


def field_chunks(slot: np.ndarray) -> Iterator[np.ndarray]:
    """The 256x256 chunks of one slot as the store holds them (edge chunks padded with NaN)."""
    padded = np.full((slot.shape[0], SHARD_ROWS, SHARD_COLS), np.nan, dtype=slot.dtype)
    padded[:, : slot.shape[1], : slot.shape[2]] = slot
    for y in range(0, SHARD_ROWS, CHUNK):
        for x in range(0, SHARD_COLS, CHUNK):
            yield np.ascontiguousarray(padded[:, y : y + CHUNK, x : x + CHUNK])


def published_frames() -> dict | None:
    """Sizes of the sample's published frames: ``.bz2`` bytes per band and the rows of their HDU0."""
    raw = SDSS_DIR / SAMPLE_FIELD
    if not raw.is_dir():
        return None
    sizes = {b: (raw / f"frame-{b}-{SAMPLE_FIELD}.fits.bz2").stat().st_size for b in BANDS}
    return {
        "field": SAMPLE_FIELD,
        "hdu0_rows": 745,
        "hdu0_cols": FIELD_SHAPE[1],
        "bz2_bytes": sizes,
        "bz2_bytes_field": sum(sizes.values()),
        "note": "HDU0 cropped to rows 0-744 of 1489 (header SGCCROP); HDU1-3 as published",
    }


def published_mantissa_bits(workdir: Path) -> int | None:
    """Mantissa bits the published frames keep: 23 less the fewest median trailing zero bits of a band.

    SDSS zeroes the low mantissa bits of the published frames (bits below the noise), which is why they
    compress; resampling fills them again. Rounding the aligned bands back to this many bits
    (``numcodecs.BitRound``) is the lossy option measured beside the lossless codecs.
    """
    published = workdir / "published.npy"
    if not published.exists():
        return None
    zeros = []
    for band in np.load(published):
        bits = band[np.isfinite(band) & (band != 0)].view(np.uint32).astype(np.int64)
        zeros.append(int(np.median(np.log2(bits & -bits))))
    return 23 - min(zeros)


def measure_compression(source: np.ndarray, slots: int, workdir: Path) -> list[dict]:
    """Ratio (raw / stored bytes) and one-thread decode MB/s of each codec on whole slots' chunks.

    Rows with ``pixels`` ``"aligned"`` are the store's pixels; ``"published"`` rows are the sample's
    frames as SDSS publishes them (not resampled), for comparison.
    """
    numcodecs.blosc.set_nthreads(1)
    out = []
    published = workdir / "published.npy"
    if published.exists():
        frames = np.load(published)
        # Whole chunks inside the published rows only: padding would add chunks of NaN that compress away.
        height = frames.shape[1] // CHUNK * CHUNK
        chunks = [
            np.ascontiguousarray(frames[:, y : y + CHUNK, x : x + CHUNK])
            for y in range(0, height, CHUNK)
            for x in range(0, FIELD_SHAPE[1], CHUNK)
        ]
        for name, codec in CODECS.items():
            if codec is not None:
                ratio = sum(c.nbytes for c in chunks) / sum(len(codec.encode(c)) for c in chunks)
                out.append({"pixels": "published", "dtype": "float32", "codec": name, "ratio": ratio})
    for keepbits in (published_mantissa_bits(workdir), 12):
        if keepbits is None:
            continue
        rounder = BitRound(keepbits)
        chunks = [rounder.encode(c) for k in range(slots) for c in field_chunks(make_slot(source, k))]
        raw = sum(c.nbytes for c in chunks)
        for name in ("blosc-lz4 bitshuffle", "blosc-zstd shuffle (clevel 3)", "zstd (level 3)"):
            ratio = raw / sum(len(CODECS[name].encode(c)) for c in chunks)
            out.append(
                {"pixels": f"aligned, bitround {keepbits}", "dtype": "float32", "codec": name, "ratio": ratio}
            )
    for dtype in ("float32", "float16"):
        chunks = [c.astype(dtype) for k in range(slots) for c in field_chunks(make_slot(source, k))]
        raw = sum(c.nbytes for c in chunks)
        for name, codec in CODECS.items():
            if codec is None:
                out.append(
                    {"pixels": "aligned", "dtype": dtype, "codec": name, "ratio": 1.0, "decode_mb_s": None}
                )
                continue
            encoded = [codec.encode(c) for c in chunks]
            stored = sum(len(e) for e in encoded)
            seconds = best_of(lambda enc=encoded, cod=codec: [cod.decode(e) for e in enc], 2)
            out.append(
                {
                    "pixels": "aligned",
                    "dtype": dtype,
                    "codec": name,
                    "ratio": raw / stored,
                    "decode_mb_s": raw / seconds / MB,
                }
            )
    return out


# --- stores -------------------------------------------------------------------------------------------

LAYOUTS: dict[str, dict[str, Any]] = {
    "unsharded, no codec (sgc today)": {"shards": None, "compressors": None},
    "sharded per field, no codec": {"shards": (1, len(BANDS), SHARD_ROWS, SHARD_COLS), "compressors": None},
    "sharded per field, blosc-lz4 shuffle": {
        "shards": (1, len(BANDS), SHARD_ROWS, SHARD_COLS),
        "compressors": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle", typesize=4)],
    },
}


def create(path: Path, slots: int, layout: dict[str, Any]) -> zarr.Array:
    """An empty image array of ``slots`` fields in ``layout``, as the cube store's would be."""
    return zarr.create_array(
        store=str(path),
        shape=(slots, len(BANDS), *FIELD_SHAPE),
        chunks=(1, len(BANDS), CHUNK, CHUNK),
        shards=layout["shards"],
        dtype="float32",
        fill_value=float("nan"),
        compressors=layout["compressors"],
        dimension_names=["field", "band", "y", "x"],
        zarr_format=3,
    )


def write_store(path: Path, source: np.ndarray, slots: int, layout: dict[str, Any]) -> float:
    """Write every slot (one ``array[k] = ...`` each, as one ingest task does); seconds spent writing."""
    array = create(path, slots, layout)
    seconds = 0.0
    for k in range(slots):
        data = make_slot(source, k)
        start = time.perf_counter()
        array[k] = data
        seconds += time.perf_counter() - start
    return seconds


def count_files(path: Path) -> dict:
    """Files, folders, the most entries in one folder, and bytes of the files below ``path``."""
    files = folders = most = size = 0
    for _, dirs, names in os.walk(path):
        folders += len(dirs)
        files += len(names)
        most = max(most, len(dirs) + len(names))
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return {"files": files, "folders": folders, "most_entries_in_a_folder": most, "bytes": size}


def chunk_files(path: Path) -> list[Path]:
    """Every file of the array's data (chunks or shards), in folder order."""
    return sorted(p for p in (path / "c").rglob("*") if p.is_file())


def read_files(paths: list[Path], buffer: np.ndarray) -> int:
    """Read each file whole into ``buffer`` (the raw-read ceiling); bytes read."""
    view = memoryview(buffer).cast("B")
    total = 0
    for p in paths:
        with open(p, "rb", buffering=0) as handle:
            total += handle.readinto(view[: p.stat().st_size])
    return total


class ShardChunkReader:
    """Whole inner chunks of a sharded local array read straight from the shard files (a prototype).

    The sharding codec (index at the end, codecs ``bytes`` + ``crc32c``) ends each shard with a table of
    (offset, length) pairs, one per inner chunk. Reading that table once per shard, then one ``os.pread``
    per inner chunk into the caller's buffer, is what :class:`sgc.patches.chunks.ChunkReader` does for
    unsharded arrays, one level down. Raw bytes only, or Blosc (decoded into the buffer).
    """

    def __init__(self, array: zarr.Array, folder: Path) -> None:
        self.array = array
        self.folder = folder
        sharding = array.metadata.codecs[0]
        self.inner = tuple(sharding.chunk_shape)
        self.per_shard = tuple(s // c for s, c in zip(array.shards, self.inner, strict=True))
        self.blosc = any(isinstance(c, BloscCodec) for c in sharding.codecs)
        self.index_bytes = int(np.prod(self.per_shard)) * 16 + 4  # uint64 pairs + crc32c
        self._index: dict[tuple[int, ...], tuple[int, np.ndarray]] = {}

    def _shard(self, coords: tuple[int, ...]) -> tuple[int, np.ndarray]:
        if coords not in self._index:
            path = self.folder / self.array.metadata.encode_chunk_key(coords)
            fd = os.open(path, os.O_RDONLY)
            size = os.fstat(fd).st_size
            table = np.frombuffer(os.pread(fd, self.index_bytes, size - self.index_bytes)[:-4], dtype="<u8")
            self._index[coords] = (fd, table.reshape(*self.per_shard, 2))
        return self._index[coords]

    def read(self, chunk: tuple[int, ...], out: np.ndarray) -> None:
        """Read inner chunk ``chunk`` (chunk-grid coordinates over all axes) into ``out``."""
        shard = tuple(c // n for c, n in zip(chunk, self.per_shard, strict=True))
        fd, table = self._shard(shard)
        offset, length = table[tuple(c % n for c, n in zip(chunk, self.per_shard, strict=True))]
        if offset == np.iinfo(np.uint64).max:
            out[...] = self.array.metadata.fill_value
            return
        if self.blosc:
            numcodecs.blosc.decompress(os.pread(fd, int(length), int(offset)), out)
        elif os.preadv(fd, [memoryview(out).cast("B")], int(offset)) != out.nbytes:
            raise OSError(f"inner chunk {chunk}: shorter than {out.nbytes} bytes")

    def close(self) -> None:
        """Close the shard files."""
        for fd, _ in self._index.values():
            os.close(fd)
        self._index.clear()


def inner_chunks(slots: int, count: int) -> list[tuple[int, int, int]]:
    """``count`` (slot, cy, cx) inner chunks in random order, as a shuffled epoch visits them."""
    grid = [
        (k, cy, cx)
        for k in range(slots)
        for cy in range(SHARD_ROWS // CHUNK)
        for cx in range(SHARD_COLS // CHUNK)
    ]
    order = np.random.default_rng(0).permutation(len(grid))[:count]
    return [grid[i] for i in order]


def measure_reads(path: Path, slots: int, repeat: int, chunks: int) -> dict:
    """Read MB/s (uncompressed pixels) of one written store, by pattern."""
    array = zarr.open_array(str(path), mode="r")
    chunk_bytes = len(BANDS) * CHUNK * CHUNK * 4
    picks = inner_chunks(slots, chunks)
    out: dict[str, float | bool | None] = {}

    field_slots = list(range(min(slots, 8)))
    seconds = best_of(lambda: [array[k] for k in field_slots], repeat)
    out["whole_slot_zarr_mb_s"] = (
        len(field_slots) * len(BANDS) * FIELD_SHAPE[0] * FIELD_SHAPE[1] * 4 / seconds / MB
    )

    reader = ChunkReader(array)
    buffer = np.empty((len(BANDS), CHUNK, CHUNK), dtype=np.float32)
    out["chunk_reader_direct"] = reader.direct
    seconds = best_of(lambda: [reader.read(k, (0, cy, cx), buffer) for k, cy, cx in picks], repeat)
    out["inner_chunk_chunkreader_mb_s"] = len(picks) * chunk_bytes / seconds / MB

    if array.shards is not None:
        shard_reader = ShardChunkReader(array, path)
        seconds = best_of(lambda: [shard_reader.read((k, 0, cy, cx), buffer) for k, cy, cx in picks], repeat)
        out["inner_chunk_shard_direct_mb_s"] = len(picks) * chunk_bytes / seconds / MB
        # Same values as zarr's own read of that chunk.
        same = True
        for k, cy, cx in picks[:20]:
            shard_reader.read((k, 0, cy, cx), buffer)
            y, x = cy * CHUNK, cx * CHUNK
            expect = array[k, :, y : y + CHUNK, x : x + CHUNK]
            got = buffer[:, : expect.shape[1], : expect.shape[2]]
            same &= bool(np.array_equal(got, expect, equal_nan=True))
        out["shard_direct_identical"] = same
        shard_reader.close()
    else:
        out["inner_chunk_shard_direct_mb_s"] = None

    files = chunk_files(path)
    big = np.empty(max(p.stat().st_size for p in files), dtype=np.uint8)
    total = sum(p.stat().st_size for p in files)
    seconds = best_of(lambda: read_files(files, big), repeat)
    out["raw_file_read_mb_s"] = total / seconds / MB
    return out


# --- main ---------------------------------------------------------------------------------------------


def summary(result: dict) -> list[dict]:
    """The rows of the layout table in ``bench/RESULTS.md``."""
    rows = []
    stores = result["stores"]
    flat, shard, lz4 = (stores[name] for name in LAYOUTS)
    raw_ceiling = ("raw read of the unsharded chunk files", flat["reads"]["raw_file_read_mb_s"])
    anchor = ("unsharded, ChunkReader direct (sgc today)", flat["reads"]["inner_chunk_chunkreader_mb_s"])
    rows.append(
        figure(
            "inner 256x256 chunks, random order, sharded: ChunkReader through zarr",
            shard["reads"]["inner_chunk_chunkreader_mb_s"],
            "MB/s",
            anchor=anchor,
            ceiling=raw_ceiling,
        )
    )
    rows.append(
        figure(
            "inner 256x256 chunks, random order, sharded: shard index + pread (prototype)",
            shard["reads"]["inner_chunk_shard_direct_mb_s"],
            "MB/s",
            anchor=anchor,
            ceiling=raw_ceiling,
        )
    )
    rows.append(
        figure(
            "inner 256x256 chunks, random order, sharded blosc-lz4: shard index + pread + decode",
            lz4["reads"]["inner_chunk_shard_direct_mb_s"],
            "MB/s",
            anchor=anchor,
            ceiling=raw_ceiling,
        )
    )
    rows.append(
        figure(
            "whole field slots through zarr, sharded",
            shard["reads"]["whole_slot_zarr_mb_s"],
            "MB/s",
            anchor=("unsharded", flat["reads"]["whole_slot_zarr_mb_s"]),
            ceiling=("raw read of the shard files", shard["reads"]["raw_file_read_mb_s"]),
        )
    )
    rows.append(
        figure(
            "write one slot per call through zarr, sharded",
            shard["write_mb_s"],
            "MB/s",
            anchor=("unsharded", flat["write_mb_s"]),
        )
    )
    rows.append(
        figure(
            "files per field slot, sharded",
            shard["files_per_slot"],
            "files",
            anchor=("unsharded", flat["files_per_slot"]),
        )
    )
    for row in result["compression"]:
        if row["codec"] != "none" and row["pixels"].startswith("aligned"):
            rounded = row["pixels"].removeprefix("aligned").removeprefix(", ")
            codec = f"{rounded} + {row['codec']}" if rounded else row["codec"]
            rows.append(
                figure(
                    f"image compression ratio, {row['dtype']}, {codec}",
                    row["ratio"],
                    "x",
                    anchor=("no codec", 1.0),
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=64, help="field slots per store")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many reads")
    parser.add_argument("--quick", action="store_true", help="12 slots, one repeat (about a minute)")
    parser.add_argument("--workdir", type=Path, default=REPO / "stores" / "bench-layout")
    parser.add_argument("--keep", action="store_true", help="keep the stores written")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "layout.json")
    args = parser.parse_args()
    slots, repeat = (12, 1) if args.quick else (args.slots, args.repeat)
    workdir = args.workdir.resolve()
    if workdir.exists() and not (workdir / MARKER).exists():
        raise SystemExit(f"{workdir} exists and was not made by this bench; choose another --workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).touch()
    load_before = os.getloadavg()

    source, what = source_cube(workdir)
    compression = measure_compression(source, 1 if args.quick else 4, workdir)
    print(f"{'pixels':10} {'dtype':8} {'codec':32} {'ratio':>6} {'decode MB/s':>12}")
    for row in compression:
        decode = "" if row.get("decode_mb_s") is None else f"{row['decode_mb_s']:12.0f}"
        print(f"{row['pixels']:10} {row['dtype']:8} {row['codec']:32} {row['ratio']:6.2f} {decode}")

    stores = {}
    for k, (name, layout) in enumerate(LAYOUTS.items()):
        path = workdir / f"layout-{k}.zarr"
        shutil.rmtree(path, ignore_errors=True)
        seconds = write_store(path, source, slots, layout)
        files = count_files(path)
        raw_bytes = slots * len(BANDS) * FIELD_SHAPE[0] * FIELD_SHAPE[1] * 4
        reads = measure_reads(path, slots, repeat, min(slots * 48, 2000 if args.quick else 4000))
        stores[name] = {
            "chunks": [1, len(BANDS), CHUNK, CHUNK],
            "shards": None if layout["shards"] is None else list(layout["shards"]),
            "codec": "none" if layout["compressors"] is None else "blosc-lz4 shuffle",
            "write_s": seconds,
            "write_mb_s": raw_bytes / seconds / MB,
            **files,
            "files_per_slot": files["files"] / slots,
            "bytes_per_slot": files["bytes"] / slots,
            "reads": reads,
        }
        print(
            f"{name:38} write {stores[name]['write_mb_s']:6.0f} MB/s  files {files['files']:6d}"
            f" (most in a folder {files['most_entries_in_a_folder']})  {files['bytes'] / MB:8.0f} MB  "
            + "  ".join(
                f"{key} {value:.0f}" if isinstance(value, float) else f"{key} {value}"
                for key, value in reads.items()
            )
        )
        if not args.keep:
            shutil.rmtree(path)

    result = {
        "command": "python bench/layout.py" + (" --quick" if args.quick else f" --slots {slots}"),
        "quick": args.quick,
        "slots": slots,
        "repeat": repeat,
        "pixels": what,
        "field_shape": list(FIELD_SHAPE),
        "page_cache": "warm: stores read right after being written, nothing dropped",
        "load_average_before_after": [list(load_before), list(os.getloadavg())],
        "compression": compression,
        "published_frames": published_frames(),
        "published_mantissa_bits": published_mantissa_bits(workdir),
        "stores": stores,
        "machine": machine(PACKAGES),
    }
    result["summary"] = summary(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
