"""Training loader throughput: 64x64 patches per second delivered into the model, per core, by design.

A patch delivered is a float32 ``(5, 64, 64)`` image and a uint8 ``(64, 64)`` label in a batch of 64 (sgc's
trainer widens labels to int64 on its device; every design here delivers the same bytes). On the
``train`` split of a patch plan (the plan's patches, oversample 1), from cube stores made by ``sgc run``:

- ``sample``: the real sample (``configs/sample.yaml``, one 745-row field), skipped where the data are absent;
- ``sim``: simulated full-size fields (``configs/demo.yaml`` with ``simulate.fields=6``);

this measures

1. sgc's :class:`~sgc.patches.stream.PatchStream` through :func:`~sgc.patches.stream.patch_loader`, with 0,
   1 and 2 DataLoader workers, augmentation off and on. "steady": epochs chained inside each worker,
   worker start-up and a warm-up epoch left out; "fresh": a new ``patch_loader`` per epoch, as training
   runs it, worker start-up included;
2. the 2023 per-file design: one ``.npy`` per patch (a structured record holding the normalised image and
   the label), a map-style Dataset that ``np.load``'s one file per item, ``DataLoader(batch_size=64,
   shuffle=True)`` with default collation (persistent workers; 0, 1 and 2 workers);
3. xbatcher ``BatchGenerator(input_dims={y: 64, x: 64})`` over one train field, (i) loaded in memory and
   (ii) Zarr-backed (``xr.open_zarr``, dask), every patch turned into numpy and stacked in batches of 64
   (its own grid of the whole field, not the plan's patches; (ii) timed on a few patches);
4. per-patch slicing of the Zarr arrays, ``image[f, :, y:y+64, x:x+64]`` and the label, into a batch;
5. ceilings on one core: reading the train chunks' files from the page cache into one buffer (codec
   ``none``: the bytes are the pixels; nominally 16 patches per 256x256 chunk), image alone and with the
   label chunks decoded; blosc-lz4 (byte shuffle, the old default) decoding the same image chunks in memory
   with one thread; copying each patch out of the train fields held in memory into a batch buffer; a
   plain large memcpy in GB/s, converted to patches/s; and (5g) the copies no design can avoid: every
   chunk under the train patches read once (image and label) plus every patch written once into a batch
   at memcpy speed, per train patch: the ceiling the targets count.

"Cores" is the number of CPUs the process (and its DataLoader workers, which inherit it) is pinned to with
``os.sched_setaffinity``: one for everything but the 2-worker rows, which get two. The store files are
read once before timing, so every figure is from a warm page cache. Numba kernels are compiled before
timing (and inherited by forked workers). Figures are the best of ``--repeat`` runs of at least
``--patches`` patches.

    python bench/loader.py [--workdir stores/bench-loader] [--stores sample,sim] [--quick]

Prints a table per store and saves ``bench/results/loader.json``. Stores are built in ``--workdir`` with
``sgc run`` unless already there, and reused by later runs.
"""

from __future__ import annotations

import os

# Serial kernels and one-thread libraries: cores are given by the affinity mask, not by thread pools.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numcodecs.blosc  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402
import xbatcher  # noqa: E402
import zarr  # noqa: E402
from timing import best_of, figure, machine  # noqa: E402
from torch.utils.data import DataLoader, Dataset, IterableDataset  # noqa: E402

from sgc.compute import Compute  # noqa: E402
from sgc.config import LoaderConfig, load_config  # noqa: E402
from sgc.patches.planfile import read_plan  # noqa: E402
from sgc.patches.stream import PatchStream, patch_loader  # noqa: E402
from sgc.stages import STAGES, StageContext, run_stages  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SDSS_DIR = Path(os.environ.get("SGC_SDSS_DIR", REPO.parent / "shared" / "sdss"))
SAMPLE_FIELD = "003918-3-0213"
BATCH = 64
PATCH_BYTES = 5 * 64 * 64 * 4
DELIVERED_BYTES = PATCH_BYTES + 64 * 64  # the image and the uint8 label
MARKER = ".sgc-bench-loader"  # marks folders this bench made, the only ones it may delete
PACKAGES = ("numpy", "torch", "zarr", "numcodecs", "numba", "xarray", "dask", "xbatcher")
CPUS = sorted(os.sched_getaffinity(0))


@dataclass
class Case:
    """A store and its plan, and what the bench measures on."""

    name: str
    what: str
    store: Path
    plan: Path
    command: list[str]
    rows: np.ndarray  # plan rows of the train patches
    field_index: np.ndarray
    y0: np.ndarray
    x0: np.ndarray


@contextmanager
def pinned(cores: int) -> Iterator[int]:
    """Run the block (and processes it forks) on the first ``cores`` CPUs of the original mask."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(CPUS[:cores]))
    try:
        yield cores
    finally:
        os.sched_setaffinity(0, old)


# --- stores -------------------------------------------------------------------------------------------


def ensure_store(name: str, workdir: Path, sim_fields: int) -> Case | None:
    """Build (or reuse) the store and plan of ``sample`` or ``sim`` in ``workdir``; None with a reason."""
    overrides = [f"workdir={workdir}"]
    if name == "sample":
        raw = SDSS_DIR / SAMPLE_FIELD
        frames = sorted(raw.glob(f"frame-*-{SAMPLE_FIELD}.fits*")) if raw.is_dir() else []
        if len(frames) < 5:
            print(f"skipping the real sample: no five frames in {raw} (set SGC_SDSS_DIR to the sdss folder)")
            return None
        config, stem, what = "configs/sample.yaml", "sample", "real SDSS sample"
        overrides += [f"raw_dir={raw}", f"exclude.footprint_sources=[{SDSS_DIR / 'headers'}]"]
    else:
        config, stem, what = "configs/demo.yaml", f"sim{sim_fields}", f"simulated, {sim_fields} fields"
        overrides += [f"name={stem}", f"simulate.fields={sim_fields}"]
    store, plan = workdir / f"{stem}.zarr", workdir / stem / "plan.zarr"
    command = ["sgc run", str(REPO / config), "--set", *overrides, f"(stages {', '.join(STORE_STAGES)})"]
    if not _complete(store, plan, sim_fields if name == "sim" else 1):
        print(f"building the {name} store: {' '.join(command)}")
        build_store(REPO / config, overrides)
    table = read_plan(plan).table
    rows = np.flatnonzero(np.asarray(table["split"]) == "train")
    return Case(
        name=name,
        what=what,
        store=store,
        plan=plan,
        command=command,
        rows=rows,
        field_index=np.asarray(table["field_index"], dtype=np.int64)[rows],
        y0=np.asarray(table["y0"], dtype=np.int64)[rows],
        x0=np.asarray(table["x0"], dtype=np.int64)[rows],
    )


STORE_STAGES = ("simulate", "download", "ingest", "stats", "label", "exclude", "split")


def build_store(config: Path, overrides: list[str]) -> None:
    """The stages of ``sgc run`` up to the patch plan (no training, prediction or report), in this process."""
    cfg = load_config(config, overrides)
    cfg.paths.out_dir.mkdir(parents=True, exist_ok=True)
    with Compute(cfg.compute) as compute:
        run_stages(StageContext(cfg, cfg.paths, compute), [STAGES[name] for name in STORE_STAGES])


def _complete(store: Path, plan: Path, fields: int) -> bool:
    if not (store.is_dir() and plan.is_dir()):
        return False
    group = zarr.open_group(store, mode="r", zarr_format=3)
    return "label" in group and len(group.attrs.get("fields_done", [])) == fields


def layout(store: Path) -> dict:
    """Shape, chunks, dtype and codecs of the image and label arrays."""
    group = zarr.open_group(store, mode="r", zarr_format=3)
    return {
        name: {
            "shape": list(group[name].shape),
            "chunks": list(group[name].chunks),
            "dtype": str(group[name].dtype),
            "codecs": [c.to_dict() for c in group[name].metadata.codecs],
        }
        for name in ("image", "label")
    }


def warm_cache(store: Path) -> None:
    """Read every chunk file of the store once, so that timings see a warm page cache."""
    for path in (store / "image").rglob("*"), (store / "label").rglob("*"):
        for file in path:
            if file.is_file():
                file.read_bytes()


# --- measuring ----------------------------------------------------------------------------------------


def loader_rate(make: Callable[[], Iterator], warm: int, repeat: int) -> tuple[float, int]:
    """Best patches/s over ``repeat`` fresh iterators, after ``warm`` batches of each; and patches timed."""
    best, timed = 0.0, 0
    for _ in range(repeat):
        batches = make()
        for _ in range(warm):
            next(batches)
        start = time.perf_counter()
        n = sum(int(batch[0].shape[0]) for batch in batches)
        rate = n / (time.perf_counter() - start)
        if rate > best:
            best, timed = rate, n
    return best, timed


def fixed_rate(fn: Callable[[], object], patches: int, repeat: int) -> float:
    """Patches/s of ``fn``, which delivers ``patches`` patches, best of ``repeat`` (after one warm-up)."""
    fn()
    return patches / best_of(fn, repeat)


def row(design: str, workers: int | None, cores: int, rate: float, patches: int, **extra: object) -> dict:
    return {
        "design": design,
        "workers": workers,
        "cores": cores,
        "patches_per_s": rate,
        "patches_per_s_per_core": rate / cores,
        "patches_timed": patches,
        **extra,
    }


# --- 1. sgc's stream ----------------------------------------------------------------------------------


class Epochs(IterableDataset):
    """Epochs ``first, first + 1, ...`` of a stream, one after the other in the same worker."""

    def __init__(self, stream: PatchStream, first: int, count: int) -> None:
        super().__init__()
        self.stream, self.first, self.count = stream, first, count

    def __iter__(self) -> Iterator:
        for epoch in range(self.first, self.first + self.count):
            self.stream.set_epoch(epoch)
            yield from iter(self.stream)


def new_stream(case: Case, augment: bool) -> PatchStream:
    settings = LoaderConfig(batch_size=BATCH, augment=augment, noise=0.0, gain_jitter=0.0, oversample=1)
    return PatchStream(case.store, case.plan, "train", settings, seed=0, shuffle=True, rank=0, world_size=1)


def steady_loader(stream: PatchStream, workers: int, epochs: int) -> Callable[[], Iterator]:
    """Epochs 1.. chained in the workers of one ``patch_loader``."""
    return lambda: iter(patch_loader(Epochs(stream, 1, epochs), num_workers=workers))


def fresh_loaders(stream: PatchStream, workers: int, epochs: int) -> Callable[[], None]:
    """A new ``patch_loader`` (and new workers) per epoch, as training runs it."""

    def run() -> None:
        for epoch in range(epochs):
            stream.set_epoch(epoch)
            for _ in patch_loader(stream, num_workers=workers):
                pass

    return run


def measure_stream(case: Case, target: int, repeat: int) -> list[dict]:
    n = len(case.rows)
    rows = []
    for augment in (False, True):
        stream = new_stream(case, augment)
        with pinned(1):
            for _ in stream:  # compiles the numba kernel here, before any worker is forked
                pass
        for workers in (0, 1, 2):
            cores = max(1, workers)
            if cores > len(CPUS):
                continue
            per_epoch = stream.batches_per_epoch(workers)
            epochs = math.ceil(target / n) + 1
            with pinned(cores):
                steady = steady_loader(stream, workers, epochs)
                rate, timed = loader_rate(steady, warm=per_epoch, repeat=repeat)
                fresh_epochs = max(2, math.ceil(target / 4 / n))
                fresh_rate = fixed_rate(
                    fresh_loaders(stream, workers, fresh_epochs), fresh_epochs * n, repeat
                )
            label = f"1 sgc PatchStream, augment {'on' if augment else 'off'}"
            rows.append(row(label, workers, cores, rate, timed, fresh_epoch_patches_per_s=fresh_rate))
    return rows


# --- 2. the 2023 per-file design ----------------------------------------------------------------------

RECORD = np.dtype([("image", "<f4", (5, 64, 64)), ("label", "u1", (64, 64))])


def write_patch_files(case: Case, folder: Path) -> int:
    """One .npy per train patch (normalised image and label, as the stream cuts them unaugmented)."""
    if folder.exists():
        if not (folder / MARKER).exists():
            raise SystemExit(f"{folder}: exists and was not made by this bench; give another --workdir")
        if len(list(folder.glob("*.npy"))) == len(case.rows):
            return len(case.rows)
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by bench/loader.py; safe to delete\n")
    settings = LoaderConfig(batch_size=BATCH, augment=False)
    stream = PatchStream(
        case.store, case.plan, "train", settings, shuffle=False, rank=0, world_size=1, with_index=True
    )
    record = np.zeros((), dtype=RECORD)
    for image, label, index in stream:
        for k in range(len(index)):
            record["image"] = image[k].numpy()
            record["label"] = label[k].numpy()
            np.save(folder / f"{int(index[k]):07d}.npy", record)
    return len(case.rows)


class PatchFiles(Dataset):
    """Map-style: item ``k`` is the k-th file, loaded with ``np.load``."""

    def __init__(self, folder: Path) -> None:
        self.paths = sorted(folder.glob("*.npy"))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        record = np.load(self.paths[k])
        return torch.from_numpy(record["image"]), torch.from_numpy(record["label"])


def measure_per_file(case: Case, folder: Path, target: int, repeat: int) -> list[dict]:
    n = write_patch_files(case, folder)
    rows = []
    for workers in (0, 1, 2):
        cores = max(1, workers)
        if cores > len(CPUS):
            continue
        epochs = math.ceil(target / n)
        with pinned(cores):
            files = PatchFiles(folder)
            loader = DataLoader(
                files, batch_size=BATCH, shuffle=True, num_workers=workers, persistent_workers=workers > 0
            )

            def run(loader: DataLoader = loader, epochs: int = epochs) -> None:
                for _ in range(epochs):
                    for _ in loader:
                        pass

            rate = fixed_rate(run, epochs * n, repeat)
            del loader
        rows.append(row("2 per-file .npy, np.load + default collate", workers, cores, rate, epochs * n))
    return rows


# --- 3. xbatcher and 4. per-patch Zarr slicing --------------------------------------------------------


def xbatcher_batches(ds: xr.Dataset, limit: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of 64 patches as numpy, from xbatcher's 64x64 windows of one field."""
    images, labels = [], []
    for k, patch in enumerate(xbatcher.BatchGenerator(ds, input_dims={"y": 64, "x": 64})):
        if limit is not None and k == limit:
            break
        images.append(patch["image"].values)
        labels.append(patch["label"].values)
        if len(images) == BATCH:
            yield np.stack(images), np.stack(labels)
            images, labels = [], []
    if images:
        yield np.stack(images), np.stack(labels)


def xbatcher_passes(ds: xr.Dataset, passes: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(passes):
            for _ in xbatcher_batches(ds):
                pass

    return run


def measure_xbatcher(case: Case, target: int, repeat: int, lazy_patches: int) -> list[dict]:
    field = int(case.field_index[0])
    lazy = xr.open_zarr(case.store, consolidated=False)[["image", "label"]].isel(field=field)
    grid = (lazy.sizes["y"] // 64) * (lazy.sizes["x"] // 64)
    rows = []
    with pinned(1):
        passes = math.ceil(target / grid)
        rate = fixed_rate(xbatcher_passes(lazy.compute(), passes), passes * grid, repeat)
        rows.append(row("3i xbatcher, in-memory xarray (1 field)", None, 1, rate, passes * grid, grid=grid))
        for _ in xbatcher_batches(lazy, limit=2):  # opens the arrays, builds the first graphs
            pass
        rate = lazy_patches / best_of(lambda: list(xbatcher_batches(lazy, limit=lazy_patches)), repeat)
        note = f"timed on {lazy_patches} patches; the field's {grid} would take {grid / rate:.1f} s"
        rows.append(row("3ii xbatcher, Zarr-backed dask xarray", None, 1, rate, lazy_patches, note=note))
    return rows


def measure_zarr_slices(case: Case, target: int, repeat: int) -> list[dict]:
    group = zarr.open_group(case.store, mode="r", zarr_format=3)
    image, label = group["image"], group["label"]
    order = np.random.default_rng(0).permutation(len(case.rows))[: max(BATCH, target)]
    out_image = np.empty((BATCH, 5, 64, 64), dtype=np.float32)
    out_label = np.empty((BATCH, 64, 64), dtype=np.uint8)

    def run() -> None:
        for i, k in enumerate(order):
            f, y, x = int(case.field_index[k]), int(case.y0[k]), int(case.x0[k])
            out_image[i % BATCH] = image[f, :, y : y + 64, x : x + 64]
            out_label[i % BATCH] = label[f, y : y + 64, x : x + 64]

    with pinned(1):
        rate = fixed_rate(run, len(order), repeat)
    return [row("4 zarr array[f, :, y:y+64, x:x+64] per patch", None, 1, rate, len(order))]


# --- 5. ceilings --------------------------------------------------------------------------------------


def train_chunks(case: Case, chunk: int) -> list[tuple[int, int, int]]:
    """(field, chunk row, chunk column) of every chunk under a train patch, in field and row order."""
    coords = set()
    for f, y, x in zip(case.field_index, case.y0, case.x0, strict=True):
        for cy in range(y // chunk, (y + 63) // chunk + 1):
            for cx in range(x // chunk, (x + 63) // chunk + 1):
                coords.add((int(f), cy, cx))
    return sorted(coords)


@dataclass
class Chunks:
    """The chunk files under the train patches, and buffers of one chunk."""

    image_files: list[Path]
    label_files: list[Path]
    blocks: list[list[Path]]  # image files per run of up to 8 chunk rows of a field, as the stream reads
    image_buf: np.ndarray
    label_buf: np.ndarray
    per_chunk: int

    @property
    def nominal(self) -> int:
        return self.per_chunk * len(self.image_files)


def chunk_files(case: Case) -> Chunks:
    group = zarr.open_group(case.store, mode="r", zarr_format=3)
    image, label = group["image"], group["label"]
    chunk = image.chunks[2]
    coords = train_chunks(case, chunk)
    blocks: dict[tuple[int, int], list[Path]] = {}
    image_files, label_files = [], []
    for f, cy, cx in coords:
        image_files.append(case.store / "image" / image.metadata.encode_chunk_key((f, 0, cy, cx)))
        label_files.append(case.store / "label" / label.metadata.encode_chunk_key((f, cy, cx)))
        blocks.setdefault((f, cy // 8), []).append(image_files[-1])
    return Chunks(
        image_files,
        label_files,
        list(blocks.values()),
        np.empty(image.chunks[1:], dtype=image.dtype),
        np.empty(label.chunks[1:], dtype=label.dtype),
        (chunk // 64) ** 2,
    )


def read_images(chunks: Chunks) -> None:
    """Each image chunk file into the same buffer."""
    view = memoryview(chunks.image_buf).cast("B")
    for path in chunks.image_files:
        with open(path, "rb", buffering=0) as handle:
            handle.readinto(view)


def read_labels(chunks: Chunks) -> None:
    """Each label chunk file decoded into the same buffer."""
    for path in chunks.label_files:
        with open(path, "rb", buffering=0) as handle:
            numcodecs.blosc.decompress(handle.read(), chunks.label_buf)


def read_fresh_blocks(chunks: Chunks) -> None:
    """Image chunks read into a new buffer per block, as the stream allocates them (a diagnostic)."""
    for block in chunks.blocks:
        buffer = np.empty((len(block), *chunks.image_buf.shape), dtype=chunks.image_buf.dtype)
        for k, path in enumerate(block):
            with open(path, "rb", buffering=0) as handle:
                handle.readinto(memoryview(buffer[k]).cast("B"))


def copy_patches(case: Case, order: np.ndarray, passes: int, with_label: bool) -> Callable[[], None]:
    """Copying each patch out of the train fields held in memory into a batch buffer."""
    group = zarr.open_group(case.store, mode="r", zarr_format=3)
    fields = {int(f): group["image"][int(f)] for f in np.unique(case.field_index)}
    labels = {f: group["label"][f] for f in fields}
    out_image = np.empty((BATCH, 5, 64, 64), dtype=np.float32)
    out_label = np.empty((BATCH, 64, 64), dtype=np.uint8)

    def run() -> None:
        for _ in range(passes):
            for i, k in enumerate(order):
                f, y, x = int(case.field_index[k]), int(case.y0[k]), int(case.x0[k])
                out_image[i % BATCH] = fields[f][:, y : y + 64, x : x + 64]
                if with_label:
                    out_label[i % BATCH] = labels[f][y : y + 64, x : x + 64]

    return run


def memcpy_gbps(repeat: int) -> float:
    """GB/s of one large copy between two touched buffers."""
    source = np.ones(64 << 20, dtype=np.float32)  # 256 MB
    dest = np.zeros_like(source)
    return source.nbytes / best_of(lambda: np.copyto(dest, source), repeat) / 1e9


def measure_ceilings(case: Case, target: int, repeat: int) -> tuple[list[dict], dict]:
    chunks = chunk_files(case)
    nominal = chunks.nominal
    raw = zarr.open_group(case.store, mode="r", zarr_format=3)["image"].metadata.codecs
    if len(raw) != 1:
        raise SystemExit(f"{case.store}: image is compressed ({raw}); this bench measures codec none")
    info = {
        "chunks": len(chunks.image_files),
        "patches_per_chunk_nominal": chunks.per_chunk,
        "train_patches_per_chunk_read": len(case.rows) / len(chunks.image_files),
    }
    passes = max(1, math.ceil(target / nominal))
    rows = []

    def repeated(fn: Callable[[], object]) -> Callable[[], None]:
        return lambda: [fn() for _ in range(passes)]

    old_threads = numcodecs.blosc.set_nthreads(1)
    try:
        with pinned(1):
            for name, fn in (
                ("5a read image chunk files into one buffer", lambda: read_images(chunks)),
                (
                    "5b  + decode label chunks (blosc bitshuffle)",
                    lambda: (read_images(chunks), read_labels(chunks)),
                ),
                ("5c read image chunks into a new block buffer", lambda: read_fresh_blocks(chunks)),
            ):
                rate = fixed_rate(repeated(fn), passes * nominal, repeat)
                rows.append(row(name, None, 1, rate, passes * nominal))
            info["label_chunk_decode_patches_per_s"] = fixed_rate(
                repeated(lambda: read_labels(chunks)), passes * nominal, repeat
            )

            # blosc-lz4 with byte shuffle (the old image default) on the same chunks, decoded in memory.
            raw_chunks = [np.fromfile(p, dtype=chunks.image_buf.dtype) for p in chunks.image_files]
            packed = [numcodecs.blosc.compress(c, b"lz4", 5, numcodecs.blosc.SHUFFLE) for c in raw_chunks]
            info["blosc_lz4_ratio"] = sum(c.nbytes for c in raw_chunks) / sum(len(p) for p in packed)
            raw_chunks.clear()

            def blosc_decode() -> None:
                for blob in packed:
                    numcodecs.blosc.decompress(blob, chunks.image_buf)

            rate = fixed_rate(repeated(blosc_decode), passes * nominal, repeat)
            rows.append(row("5d blosc-lz4 decode alone, float32, 1 thread", None, 1, rate, passes * nominal))
            packed.clear()

            order = np.random.default_rng(0).permutation(len(case.rows))
            copies = math.ceil(target / len(order))
            for name, with_label in (("image", False), ("image + label", True)):
                rate = fixed_rate(copy_patches(case, order, copies, with_label), copies * len(order), repeat)
                rows.append(row(f"5e patch copy from memory, {name}", None, 1, rate, copies * len(order)))

            gbps = memcpy_gbps(repeat + 2)
            info["memcpy_gb_per_s"] = gbps
            rows.append(row(f"5f memcpy 256 MB ({gbps:.1f} GB/s)", None, 1, gbps * 1e9 / PATCH_BYTES, 0))

            # What no design avoids: every chunk under the train patches read once (image from its file,
            # label decoded), and every patch written once into a batch at memcpy speed.
            read_s = best_of(lambda: (read_images(chunks), read_labels(chunks)), repeat + 2)
            write_s = DELIVERED_BYTES / (gbps * 1e9)
            info["read_once_s_per_patch"] = read_s / len(case.rows)
            info["write_once_s_per_patch"] = write_s
            rate = 1 / (read_s / len(case.rows) + write_s)
            rows.append(row("5g every train chunk read once + every patch written once", None, 1, rate, 0))
    finally:
        numcodecs.blosc.set_nthreads(old_threads)
    info["ceilings_count"] = f"nominal {chunks.per_chunk} patches per chunk read"
    return rows, info


# --- report -------------------------------------------------------------------------------------------


def find(rows: list[dict], prefix: str, workers: int | None = None) -> dict | None:
    for r in rows:
        if r["design"].startswith(prefix) and (workers is None or r["workers"] == workers):
            return r
    return None


def ratios(rows: list[dict]) -> dict:
    """sgc (0 workers, augment off) against the ceilings and the per-file design."""
    sgc = find(rows, "1 sgc PatchStream, augment off", 0)
    out = {}
    if sgc is None:
        return out
    for key, prefix in (
        ("vs_image_chunk_read", "5a"),
        ("vs_image_and_label_chunk_read", "5b"),
        ("vs_blosc_lz4_decode", "5d"),
        ("vs_patch_copy_image_label", "5e patch copy from memory, image + label"),
        ("vs_read_once_write_once", "5g"),
        ("vs_memcpy", "5f"),
        ("vs_per_file_0_workers", "2 per-file"),
    ):
        other = find(rows, prefix, 0 if prefix.startswith("2") else None)
        if other:
            out[key] = sgc["patches_per_s"] / other["patches_per_s"]
    return out


# Issue 12's targets for sgc's stream (0 workers, augment off), per core, per store.
TARGETS = {"sample": 30000, "sim": 25000}


def summary(name: str, rows: list[dict]) -> list[dict]:
    """RESULTS.md's rows for one store: sgc's stream beside the per-file design and the 5g ceiling."""
    ceiling = find(rows, "5g")
    top = ("every chunk read once + every patch written once", ceiling["patches_per_s_per_core"])
    out = []
    for workers, augment in ((0, "off"), (0, "on"), (2, "on")):
        sgc = find(rows, f"1 sgc PatchStream, augment {augment}", workers)
        per_file = find(rows, "2 per-file", workers)
        if sgc is None or per_file is None:
            continue
        target = None
        if (workers, augment) == (0, "off"):
            target = f">= {TARGETS[name]}; >= 0.6x ceiling; >= 3x anchor"
        out.append(
            figure(
                f"sgc PatchStream, {name}, {workers} workers, augment {augment}",
                sgc["patches_per_s_per_core"],
                "patches/s/core",
                anchor=(f"one .npy per patch, {workers} workers", per_file["patches_per_s_per_core"]),
                ceiling=top,
                target=target,
            )
        )
    for prefix, label in (
        ("4 zarr", "zarr array slice per patch"),
        ("3i xbatcher", "xbatcher over an in-memory field"),
    ):
        other = find(rows, prefix)
        if other is not None:
            rate = other["patches_per_s_per_core"]
            out.append(figure(f"{label}, {name}", rate, "patches/s/core", ceiling=top))
    return out


def print_table(case: Case, record: dict) -> None:
    print()
    print(f"{case.name}: {case.what}, {len(case.rows)} train patches, store {case.store}")
    header = f"{'design':<52} {'workers':>7} {'cores':>5} {'patches/s':>11} {'/core':>10} {'fresh/epoch':>11}"
    print(header)
    print("-" * len(header))
    for r in record["results"]:
        workers = "" if r["workers"] is None else str(r["workers"])
        fresh = r.get("fresh_epoch_patches_per_s")
        print(
            f"{r['design']:<52} {workers:>7} {r['cores']:>5} {r['patches_per_s']:>11,.0f} "
            f"{r['patches_per_s_per_core']:>10,.0f} {'' if fresh is None else f'{fresh:,.0f}':>11}"
        )
        if r.get("note"):
            print(f"{'':<4}{r['note']}")
    c = record["ceilings"]
    print(
        f"ceilings over {c['chunks']} train chunks; nominal {c['patches_per_chunk_nominal']} patches per "
        "chunk, "
        f"{c['train_patches_per_chunk_read']:.1f} train patches per chunk in this plan; label chunk decode "
        f"alone {c['label_chunk_decode_patches_per_s']:,.0f} patches/s; blosc-lz4 ratio "
        f"{c.get('blosc_lz4_ratio', float('nan')):.2f}"
    )
    text = ", ".join(f"{k} {v:.2f}" for k, v in record["ratios"].items())
    print(f"sgc (0 workers, augment off): {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("stores/bench-loader"))
    parser.add_argument("--stores", default="sample,sim", help="comma-separated: sample, sim")
    parser.add_argument("--sim-fields", type=int, default=None, help="simulated fields (default 6, quick 2)")
    parser.add_argument("--quick", action="store_true", help="few patches and one repetition: a smoke run")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (default 3, quick 1)")
    parser.add_argument("--patches", type=int, default=None, help="patches per timing (default 20000)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "loader.json")
    args = parser.parse_args()
    repeat = args.repeat or (1 if args.quick else 3)
    target = args.patches or (2000 if args.quick else 20000)
    lazy_patches = 16 if args.quick else 64
    sim_fields = args.sim_fields or (2 if args.quick else 6)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(f"note: load average {load_before[0]:.2f} before the run; other work disturbs per-core figures")

    names = [name.strip() for name in args.stores.split(",")]
    cases = [case for name in names if (case := ensure_store(name, workdir, sim_fields))]
    records = {}
    # DataLoader designs first, forking workers from a process without dask's thread pool in it.
    for case in cases:
        warm_cache(case.store)
        rows = measure_stream(case, target, repeat)
        rows += measure_per_file(case, workdir / f"perfile-{case.name}", target // 2, repeat)
        records[case.name] = {"results": rows}
    for case in cases:
        rows = records[case.name]["results"]
        rows += measure_zarr_slices(case, min(target // 10, 2000), repeat)
        rows += measure_xbatcher(case, target // 2, repeat, lazy_patches)
        ceiling_rows, ceilings = measure_ceilings(case, target, repeat)
        rows += ceiling_rows
        records[case.name] = {
            "what": case.what,
            "store": str(case.store),
            "plan": str(case.plan),
            "store_command": " ".join(case.command),
            "layout": layout(case.store),
            "split": "train",
            "train_patches": len(case.rows),
            "train_fields": int(np.unique(case.field_index).size),
            "results": rows,
            "ceilings": ceilings,
            "ratios": ratios(rows),
            "summary": summary(case.name, rows),
        }
        print_table(case, records[case.name])

    record = {
        "command": " ".join([sys.executable, *sys.argv]),
        "quick": args.quick,
        "repeat": repeat,
        "patches_per_timing": target,
        "batch_size": BATCH,
        "patch": "float32 (5, 64, 64) image + uint8 (64, 64) label",
        "stores": records,
        "summary": [r for name in records for r in records[name]["summary"]],
        "machine": {
            **machine(PACKAGES),
            "load_average_1_5_15": {"before": load_before, "after": os.getloadavg()},
        },
        "notes": [
            "cores: CPUs the process and its DataLoader workers are pinned to (sched_setaffinity)",
            "sgc steady: epochs chained inside the workers after a warm-up epoch; fresh/epoch: a new "
            "patch_loader each epoch, worker start-up included",
            "per-file: one .npy per patch holding a record of the normalised image and the uint8 label",
            "xbatcher: its own grid of one whole field, not the plan's patches",
            "warm page cache; chunk-read ceilings count 16 patches per 256x256 chunk",
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
