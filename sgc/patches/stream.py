"""Streaming planned patches from the cube store into PyTorch.

:class:`PatchStream` is an ``IterableDataset`` over the patches of one split of a patch plan. Each epoch:

1. **Order.** The split's patches, grouped by field (row-major inside a field), patches holding star or
   galaxy pixels repeated ``oversample`` times; with ``shuffle`` the fields are permuted by
   ``(seed, epoch)``. The settings are :class:`sgc.config.LoaderConfig`'s.
2. **Shards.** That sequence is cut into ``world_size x num_workers`` contiguous pieces of equal size (to
   one patch); DataLoader worker ``w`` of rank ``r`` takes piece ``r * num_workers + w``. Pieces are
   disjoint and together hold every patch, and being contiguous they touch few chunks.
3. **Blocks.** A piece is read a block at a time: the chunks under a run of one field's patches (at most
   ``max_block_rows`` chunk rows), each chunk read once into a ``(cy, cx, ...)`` buffer
   (:mod:`sgc.patches.chunks`), so one read serves many patches. Image chunks stored as raw float32 in a
   local folder (the default store) are memory-mapped instead of read: patches are cut straight from the
   page cache, and only the pages under them are touched.
4. **Shuffle.** Up to ``buffer_blocks`` blocks are held at once; their patches are mixed and drawn in
   random order, a block is dropped when its last patch has left, and the next one is read. Memory is
   bounded by the blocks held, not by the epoch.
5. **Batches.** Patches are cut straight into the batch by one numba pass that normalises each band
   (``(x - median) / robust_sigma`` of the train pixels, NaN to 0) and applies a random symmetry of the
   square (:mod:`sgc.patches.gather`); optional noise and per-band gain jitter follow. Labels stay uint8,
   as stored: the trainer widens them to int64 on its device (:func:`sgc.train.loop.on_device`), after
   the copy into the batch and the transfer, which int64 would make eight times larger. The stream yields
   whole batches (use ``batch_size=None`` in the DataLoader, as :func:`patch_loader` does): cutting a
   batch at once costs far less per patch than collating patches.

The zarr arrays are opened lazily in the process that iterates (after fork or spawn), and the dataset
object holds only paths and numpy arrays, so it pickles. Every random choice comes from a generator
seeded by ``(seed, epoch, shard)``: the same seed, epoch, world size and worker count give the same
batches. No Dask and no xarray on this path.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numba.typed import List
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from sgc.config import LoaderConfig
from sgc.cube.store import IMAGE, LABEL, CubeStore
from sgc.errors import SgcError
from sgc.patches.chunks import ChunkReader
from sgc.patches.gather import N_SYMMETRIES, chunk_list, gather_patches
from sgc.patches.planfile import SPLITS, PatchPlan, band_scaling, check_slots, holds_objects, read_plan


class StreamError(SgcError):
    """A plan and store that cannot be streamed together."""


@dataclass(eq=False)
class _Block:
    """Chunks read for a run of one field's patches, and what is left to cut from them."""

    chunks: List  # the image chunks, row-major: maps of the chunk files or views of ``buffer``
    buffer: np.ndarray | None  # (ny, nx, bands, C, C) the image chunks were read into, None if mapped
    label: np.ndarray  # (ny, nx, C, C) uint8
    rows: np.ndarray  # plan rows of the patches
    ys: np.ndarray  # patch corners relative to the block
    xs: np.ndarray
    left: int

    @property
    def nx(self) -> int:
        return self.label.shape[1]


class PatchStream(IterableDataset):
    """The patches of one split of a plan, streamed in batches from the store.

    Args:
        store: the cube store (needs ``image`` and ``label``).
        plan: a :class:`PatchPlan` or the path of one.
        split: ``train``, ``val`` or ``test``.
        loader: batching, buffering and augmentation (its ``workers`` are :func:`patch_loader`'s business).
        seed: seed of every random choice.
        shuffle: permute fields and draw patches from the buffer at random; off, the order is the plan's.
        rank, world_size: this process's DDP rank and the number of ranks; by default those of the
            initialised process group, else 0 and 1.
        with_index: also yield the plan rows of each batch's patches (int64), for tests and prediction.

    Yields:
        ``(image, label)`` or ``(image, label, rows)``: float32 ``(B, bands, P, P)``, uint8 ``(B, P, P)``
        (255 where the label is to be ignored) and int64 ``(B,)``.
    """

    def __init__(
        self,
        store: str | Path,
        plan: PatchPlan | str | Path,
        split: str = "train",
        loader: LoaderConfig | None = None,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        with_index: bool = False,
    ) -> None:
        super().__init__()
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
        if not isinstance(plan, PatchPlan):
            plan = read_plan(plan)
        self.store = str(Path(store).resolve())
        self.split = split
        self.settings = loader or LoaderConfig()
        self.seed = seed
        self.shuffle = shuffle
        self.rank, self.world_size = _rank_and_world(rank, world_size)
        self.with_index = with_index
        self.patch = plan.patch
        # In shared memory, so that persistent DataLoader workers (forked or spawned) see set_epoch.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        table = plan.table
        self._field_index = np.asarray(table["field_index"], dtype=np.int64)
        self._y0 = np.asarray(table["y0"], dtype=np.int64)
        self._x0 = np.asarray(table["x0"], dtype=np.int64)
        self._clean = np.asarray(table["n_invalid"]) == 0
        self._objects = holds_objects(table)
        self._units = list(plan.field_rows([split]).values())
        self._scale, self._offset, self._chunk = _check_store(self.store, plan)
        self._arrays: tuple[int, ChunkReader, ChunkReader] | None = None
        self._recycled = _BatchBuffers()

    def __getstate__(self) -> dict:
        # Open arrays stay with the process that opened them; a worker opens its own.
        return {**self.__dict__, "_arrays": None, "_recycled": _BatchBuffers()}

    @property
    def epoch(self) -> int:
        """The epoch whose order the next iteration follows."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration follows: call before ``iter(loader)``.

        Workers of a loader made with :func:`patch_loader` live across epochs and read it from shared
        memory when the next iteration starts.
        """
        self._epoch.fill_(int(epoch))

    def epoch_rows(self, epoch: int | None = None) -> np.ndarray:
        """Plan rows of every patch of an epoch, in the order the shards cut them from."""
        epoch = self.epoch if epoch is None else epoch
        units = [
            np.repeat(rows, np.where(self._objects[rows], self.settings.oversample, 1))
            for rows in self._units
        ]
        if self.shuffle and units:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(units))
            units = [units[k] for k in order]
        return np.concatenate(units) if units else np.empty(0, dtype=np.int64)

    def shard_rows(self, shard: int, n_shards: int, epoch: int | None = None) -> np.ndarray:
        """Plan rows of one shard's piece of an epoch (before the buffer shuffles them)."""
        return np.array_split(self.epoch_rows(epoch), n_shards)[shard]

    def batches_per_epoch(self, num_workers: int = 0, rank: int | None = None) -> int:
        """Batches a rank (this one by default) yields per epoch when read by ``num_workers`` workers."""
        workers = max(1, num_workers)
        rank = self.rank if rank is None else rank
        sizes = [len(p) for p in np.array_split(self.epoch_rows(), self.world_size * workers)]
        mine = sizes[rank * workers : (rank + 1) * workers]
        return sum(-(-n // self.settings.batch_size) for n in mine)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        shard = self.rank * workers + worker
        n_shards = self.world_size * workers
        rng = np.random.default_rng([self.seed, self.epoch, shard])
        rows = self.shard_rows(shard, n_shards)
        yield from self._batches(rows, rng, shared=info is not None)

    def _readers(self) -> tuple[ChunkReader, ChunkReader]:
        """The store's arrays, opened once per process (a forked worker must not reuse its parent's)."""
        if self._arrays is None or self._arrays[0] != os.getpid():
            cube = CubeStore.open(self.store)
            self._arrays = (os.getpid(), ChunkReader(cube[IMAGE]), ChunkReader(cube[LABEL]))
        return self._arrays[1], self._arrays[2]

    def _blocks(self, rows: np.ndarray) -> Iterator[np.ndarray]:
        """Split a piece into runs of one field, each spanning at most ``max_block_rows`` chunk rows."""
        if len(rows) == 0:
            return
        fields = self._field_index[rows]
        starts = np.flatnonzero(np.diff(fields)) + 1
        for run in np.split(rows, starts):
            # Within a field rows are row-major, so chunk rows only grow along the run.
            band = (
                self._y0[run] // self._chunk - self._y0[run[0]] // self._chunk
            ) // self.settings.max_block_rows
            yield from np.split(run, np.flatnonzero(np.diff(band)) + 1)

    def _read_block(self, rows: np.ndarray, spare: list[_Block]) -> _Block:
        """Read the chunks under the patches ``rows`` (all of one field), into a spare block's buffers
        where one of the same shape is at hand."""
        image_reader, label_reader = self._readers()
        c, p = self._chunk, self.patch
        y0, x0 = self._y0[rows], self._x0[rows]
        cy0, cx0 = int(y0.min()) // c, int(x0.min()) // c
        ny = (int(y0.max()) + p - 1) // c + 1 - cy0
        nx = (int(x0.max()) + p - 1) // c + 1 - cx0
        bands = image_reader.chunk_shape[0]
        shape = (ny, nx, bands, c, c)
        mapped = image_reader.mappable and image_reader.dtype == np.float32
        reuse = next((b for b in spare if b.label.shape == shape[:2] + (c, c)), None)
        if reuse is not None and (mapped or reuse.buffer is not None):
            # Fresh buffers cost a page fault per 4 KiB on first touch: 40% of reading a chunk.
            spare.remove(reuse)
            buffer, label = reuse.buffer, reuse.label
        else:
            buffer = None
            label = np.empty((ny, nx, c, c), dtype=np.uint8)
        slot = int(self._field_index[rows[0]])
        for j in range(ny):
            for i in range(nx):
                label_reader.read(slot, (cy0 + j, cx0 + i), label[j, i])
        if mapped:
            # Patches are cut straight from the page cache: no chunk is copied whole into a buffer first.
            views = [image_reader.view(slot, (0, cy0 + j, cx0 + i)) for j in range(ny) for i in range(nx)]
            return _Block(List(views), None, label, rows, y0 - cy0 * c, x0 - cx0 * c, len(rows))
        if buffer is None:
            buffer = np.empty(shape, dtype=image_reader.dtype)
        for j in range(ny):
            for i in range(nx):
                image_reader.read(slot, (0, cy0 + j, cx0 + i), buffer[j, i])
        image = buffer if buffer.dtype == np.float32 else buffer.astype(np.float32)
        return _Block(chunk_list(image), buffer, label, rows, y0 - cy0 * c, x0 - cx0 * c, len(rows))

    def _batches(
        self, rows: np.ndarray, rng: np.random.Generator, shared: bool
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """Read the piece's blocks through the shuffle buffer and cut batches from them."""
        blocks = self._blocks(rows)
        pool = np.empty((0, 2), dtype=np.int64)  # (block serial, patch within block)
        serial: dict[int, _Block] = {}  # the blocks held, by the order they were read in
        spare: list[_Block] = []  # a finished block whose buffers the next read may reuse
        count = 0
        size = self.settings.batch_size
        exhausted = False

        def load() -> None:
            nonlocal pool, count, exhausted
            run = next(blocks, None)
            if run is None:
                exhausted = True
                return
            block = self._read_block(run, spare)
            serial[count] = block
            fresh = np.stack([np.full(len(run), count), np.arange(len(run))], axis=1)
            pool = np.concatenate([pool, fresh])
            if self.shuffle:
                pool = pool[rng.permutation(len(pool))]
            count += 1

        while True:
            while not exhausted and (len(serial) < self.settings.buffer_blocks or len(pool) < size):
                load()
            if len(pool) == 0:
                return
            # Draw from the front: unshuffled, that keeps the plan's order.
            take, pool = pool[:size], pool[size:]
            yield self._cut(take, serial, rng, shared)
            for key in np.unique(take[:, 0]):
                block = serial[int(key)]
                block.left -= int(np.count_nonzero(take[:, 0] == key))
                if block.left == 0:
                    spare[:] = [serial.pop(int(key))]  # one spare is enough: the next read reuses it

    def _cut(
        self, take: np.ndarray, serial: dict[int, _Block], rng: np.random.Generator, shared: bool
    ) -> tuple[torch.Tensor, ...]:
        """One batch: the patches ``take`` (block serial, patch) cut, normalised and augmented."""
        n, p = len(take), self.patch
        bands = len(self._scale)
        if shared:
            image = _empty((n, bands, p, p), torch.float32, shared)
            label = _empty((n, p, p), torch.uint8, shared)
        else:
            image, label = self._recycled.get((n, bands, p, p))
        index = np.empty(n, dtype=np.int64)
        symmetry = rng.integers(0, N_SYMMETRIES, n) if self.settings.augment else np.zeros(n, dtype=np.int64)
        for key in np.unique(take[:, 0]):
            dest = np.flatnonzero(take[:, 0] == key)
            block = serial[int(key)]
            local = take[dest, 1]
            index[dest] = block.rows[local]
            gather_patches(
                block.chunks,
                block.nx,
                block.label,
                block.ys[local],
                block.xs[local],
                symmetry[dest],
                dest,
                self._scale,
                self._offset,
                not bool(self._clean[block.rows[local]].all()),
                image.numpy(),
                label.numpy(),
            )
        self._jitter(image, rng)
        batch = (image, label)
        return (*batch, torch.from_numpy(index)) if self.with_index else batch

    def _jitter(self, image: torch.Tensor, rng: np.random.Generator) -> None:
        """Noise and gain jitter, drawn from the shard's generator."""
        s = self.settings
        if s.noise == 0 and s.gain_jitter == 0:
            return
        generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
        if s.gain_jitter:
            gain = 1 + s.gain_jitter * torch.randn(image.shape[:2], generator=generator)
            image.mul_(gain[:, :, None, None])
        if s.noise:
            image.add_(torch.randn(image.shape, generator=generator), alpha=s.noise)


def patch_loader(stream: PatchStream, num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over a :class:`PatchStream`'s batches, to be iterated once per epoch.

    Workers persist across epochs: forking new ones each epoch costs the trainer a copy-on-write page
    fault for every page of its memory it writes next (measured: 0.8-1.4 s per epoch on 2 cores).

    Args:
        stream: the stream; it yields whole batches, so the loader does not batch again.
        num_workers: worker processes reading shards (0 reads in this process).
        pin_memory: copy batches into page-locked memory (set when training on a GPU).
    """
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if num_workers else None,
        persistent_workers=num_workers > 0,
    )


class _BatchBuffers:
    """Batch tensors handed out again once nothing outside holds them (in the iterating process only).

    A fresh 5 MB batch costs a page fault per 4 KiB on first write: measured, a third of the time of a
    batch cut from mapped chunks. A batch is reused only when neither a Python reference (the tensor
    itself, a numpy array over it) nor a torch view of its storage is left outside this pool, so a caller
    that keeps batches (``list(stream)``) gets fresh ones. Where torch does not expose the storage's use
    count, every batch is fresh.
    """

    KEEP = 4  # enough for a consumer that holds the previous batch or two

    def __init__(self) -> None:
        self._pool: list[tuple[torch.Tensor, torch.Tensor]] = []

    def get(self, shape: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """An image ``(n, bands, P, P)`` float32 and label ``(n, P, P)`` uint8 batch, recycled if possible."""
        for k, pair in enumerate(self._pool):
            if pair[0].shape == shape and all(_unreferenced(t) for t in pair):
                self._pool.append(self._pool.pop(k))
                return pair
        image = torch.empty(shape, dtype=torch.float32)
        pair = (image, torch.empty((shape[0], *shape[2:]), dtype=torch.uint8))
        self._pool = [*self._pool[-(self.KEEP - 1) :], pair]
        return pair


_USE_COUNT = getattr(torch._C, "_storage_Use_Count", None)


def _unreferenced(tensor: torch.Tensor) -> bool:
    """True when only the pool holds ``tensor``: the pool's tuple, the caller's loop and this call reference
    the Python object, and only it (and the storage object made here) its storage."""
    if _USE_COUNT is None or sys.getrefcount(tensor) > 4:
        return False
    return _USE_COUNT(tensor.untyped_storage()._cdata) <= 2


def _empty(shape: tuple[int, ...], dtype: torch.dtype, shared: bool) -> torch.Tensor:
    """A new tensor; in a DataLoader worker, allocated in shared memory, so sending it costs no copy."""
    if not shared:
        return torch.empty(shape, dtype=dtype)
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _check_store(store: str, plan: PatchPlan) -> tuple[np.ndarray, np.ndarray, int]:
    """The per-band normalisation (scale, offset) and chunk edge, checking the store fits the plan."""
    cube = CubeStore.open(store)
    if LABEL not in cube:
        raise StreamError(f"{store}: no labels; run `sgc label` before streaming patches")
    image, label = cube[IMAGE], cube[LABEL]
    chunk = image.chunks[2]
    if (
        image.chunks[:2] != (1, image.shape[1])
        or image.chunks[3] != chunk
        or label.chunks != (1, chunk, chunk)
    ):
        raise StreamError(
            f"{store}: image chunks {image.chunks} and label chunks {label.chunks} are not "
            "(1, bands, C, C) and (1, C, C); the stream reads whole chunks of both"
        )
    if plan.patch > chunk:
        raise StreamError(f"{store}: patches of {plan.patch} pixels are wider than its {chunk}-pixel chunks")
    try:
        scale, offset = band_scaling(plan.normalisation, cube.bands)
    except ValueError as exc:
        raise StreamError(f"plan of {plan.store}: {exc}") from exc
    check_slots(plan, cube.fields, store)
    return scale, offset, chunk
