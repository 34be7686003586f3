"""The streaming patch dataset: coverage, sharding, determinism, content and augmentation."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from sgc.config import LoaderConfig, SplitConfig
from sgc.patches.gather import apply_symmetry
from sgc.patches.plan import make_plan
from sgc.patches.planfile import PatchPlan
from sgc.patches.stream import PatchStream, StreamError, patch_loader
from tests.patches.synthetic import SynthField, build_store, tan_header

FIELDS = ("009001-3-0011", "009001-3-0012", "009001-3-0013", "009001-3-0014", "009001-3-0015")
SHAPE = (96, 112)
PATCH = 16


def coded_field(slot: int) -> SynthField:
    """Band ``b`` pixel ``(y, x)`` holds ``b * 1e5 + y * 1000 + x`` (field ``slot`` adds ``slot * 1e4``), so
    every output pixel says where it came from; the label is a function of the position too."""
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]]
    code = (slot * 10_000 + y * 1000 + x).astype(np.float32)
    image = np.stack([code + band * 100_000 for band in range(5)]).astype(np.float32)
    label = ((y * 7 + x) % 3).astype(np.uint8)
    label[0, :5] = 255
    valid = np.ones(SHAPE, dtype=bool)
    return SynthField(image, valid, label, np.zeros(SHAPE, dtype=bool), tan_header(SHAPE, ra=150 + slot))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PatchPlan]:
    """Five fields on 32-pixel chunks; 16-pixel patches every 12 pixels, so patches straddle chunks."""
    store = build_store(
        tmp_path_factory.mktemp("stream") / "s.zarr",
        {f: coded_field(k) for k, f in enumerate(FIELDS)},
        chunk=32,
    )
    plan = make_plan(
        store, SplitConfig(patch=PATCH, stride=12, train_fields=FIELDS[:3], val_fields=FIELDS[3:4])
    )
    return store, plan


def loader(**settings: object) -> LoaderConfig:
    """Loader settings, augmentation off unless asked for."""
    return LoaderConfig(**{"augment": False, **settings})


def collect(stream: PatchStream, workers: int = 0) -> list[tuple[torch.Tensor, ...]]:
    return list(patch_loader(stream, num_workers=workers))


def raw_patches(store: Path, plan: PatchPlan, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    group = zarr.open_group(store, mode="r")
    table = plan.table
    image = np.stack(
        [
            group["image"][table["field_index"][r], :, table["y0"][r] :, table["x0"][r] :][:, :PATCH, :PATCH]
            for r in rows
        ]
    )
    label = np.stack(
        [
            group["label"][table["field_index"][r], table["y0"][r] :, table["x0"][r] :][:PATCH, :PATCH]
            for r in rows
        ]
    )
    return image, label


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("workers", [0, 1, 2])
def test_every_patch_once_per_epoch_in_disjoint_shards(synthetic, world: int, workers: int) -> None:
    store, plan = synthetic
    expected = set(np.flatnonzero(np.asarray(plan.table["split"]) == "train").tolist())
    per_rank = []
    for rank in range(world):
        stream = PatchStream(
            store, plan, "train", loader(batch_size=7), rank=rank, world_size=world, with_index=True
        )
        stream.set_epoch(3)
        batches = collect(stream, workers)
        assert len(batches) == stream.batches_per_epoch(workers)
        per_rank.append(np.concatenate([b[2].numpy() for b in batches]))
    everything = np.concatenate(per_rank)
    assert len(everything) == len(expected)
    assert set(everything.tolist()) == expected
    if world == 2:
        assert not set(per_rank[0].tolist()) & set(per_rank[1].tolist())
        assert abs(len(per_rank[0]) - len(per_rank[1])) <= 1


def test_same_seed_same_order_and_epochs_differ(synthetic) -> None:
    store, plan = synthetic

    def order(seed: int, epoch: int) -> np.ndarray:
        stream = PatchStream(
            store, plan, "train", loader(batch_size=5, augment=True), seed=seed, with_index=True
        )
        stream.set_epoch(epoch)
        batches = collect(stream, workers=2)
        return np.concatenate([b[2].numpy() for b in batches]), torch.cat([b[0] for b in batches])

    first, images = order(1, 0)
    again, images_again = order(1, 0)
    assert np.array_equal(first, again)
    assert torch.equal(images, images_again)
    assert not np.array_equal(first, order(1, 1)[0])
    assert not np.array_equal(first, order(2, 0)[0])


def test_persistent_workers_follow_set_epoch(synthetic) -> None:
    store, plan = synthetic
    stream = PatchStream(store, plan, "train", loader(batch_size=6), seed=3, with_index=True)
    batches = patch_loader(stream, num_workers=2)
    for epoch in (0, 1, 0):
        stream.set_epoch(epoch)
        rows = np.concatenate([b[2].numpy() for b in batches])
        fresh = PatchStream(store, plan, "train", loader(batch_size=6), seed=3, with_index=True)
        fresh.set_epoch(epoch)
        assert np.array_equal(rows, np.concatenate([b[2].numpy() for b in collect(fresh, workers=2)]))
    assert batches._iterator is not None and batches._iterator._persistent_workers


def test_unshuffled_patches_match_the_store(synthetic) -> None:
    store, plan = synthetic
    stream = PatchStream(store, plan, "val", loader(batch_size=9), shuffle=False, with_index=True)
    batches = collect(stream)
    rows = np.concatenate([b[2].numpy() for b in batches])
    assert np.array_equal(rows, np.flatnonzero(np.asarray(plan.table["split"]) == "val"))
    image, label = raw_patches(store, plan, rows)
    scale, offset = stream._scale[:, None, None], stream._offset[:, None, None]
    got = torch.cat([b[0] for b in batches]).numpy()
    np.testing.assert_allclose(got, image * scale + offset, rtol=1e-6, atol=1e-4)
    got_label = torch.cat([b[1] for b in batches])
    assert got_label.dtype == torch.uint8  # widened to int64 on the device by the trainer
    assert np.array_equal(got_label.numpy(), label)
    assert all(b[0].dtype == torch.float32 and b[0].shape[1:] == (5, PATCH, PATCH) for b in batches)


def test_augmentation_moves_image_and_label_together(synthetic) -> None:
    store, plan = synthetic
    stream = PatchStream(store, plan, "train", loader(batch_size=16, augment=True), seed=4, with_index=True)
    image, label, rows = (torch.cat(parts) for parts in zip(*collect(stream), strict=True))
    raw, raw_label = raw_patches(store, plan, rows.numpy())
    scale, offset = stream._scale[:, None, None], stream._offset[:, None, None]
    used = set()
    for k in range(len(rows)):
        # Exactly one symmetry maps the stored patch onto the output, and it maps the label the same way.
        matches = [
            t
            for t in range(8)
            if np.allclose(image[k].numpy(), apply_symmetry(raw[k] * scale + offset, t), rtol=1e-6, atol=1e-4)
        ]
        assert len(matches) == 1
        assert np.array_equal(label[k].numpy(), apply_symmetry(raw_label[k], matches[0]))
        used.add(matches[0])
    assert used == set(range(8))


def test_oversampling_repeats_patches_with_objects(synthetic) -> None:
    store, plan = synthetic
    stream = PatchStream(store, plan, "train", loader(batch_size=8, oversample=3), with_index=True)
    rows = np.concatenate([b[2].numpy() for b in collect(stream)])
    counts = np.bincount(rows, minlength=len(plan.table))
    train = np.asarray(plan.table["split"]) == "train"
    objects = (np.asarray(plan.table["n_star"]) + np.asarray(plan.table["n_galaxy"])) > 0
    assert np.all(counts[train & objects] == 3)
    assert np.all(counts[train & ~objects] == 1)
    assert np.all(counts[~train] == 0)


def test_noise_and_gain_change_images_not_labels(synthetic) -> None:
    store, plan = synthetic
    plain = collect(PatchStream(store, plan, "val", loader(batch_size=50), shuffle=False))[0]
    noisy_settings = loader(batch_size=50, noise=0.5, gain_jitter=0.1)
    noisy = collect(PatchStream(store, plan, "val", noisy_settings, shuffle=False))[0]
    again = collect(PatchStream(store, plan, "val", noisy_settings, shuffle=False))[0]
    assert torch.equal(noisy[0], again[0])
    assert torch.equal(noisy[1], plain[1])
    residual = (noisy[0] - plain[0] * (noisy[0] / plain[0]).median()).std()
    assert residual > 0.1


def test_stream_pickles_and_runs_under_spawn(synthetic) -> None:
    store, plan = synthetic
    stream = PatchStream(store, plan, "val", loader(batch_size=50), shuffle=False, with_index=True)
    next(iter(stream))  # opens the arrays in this process; the pickle must not carry them
    assert stream._arrays is not None
    assert pickle.loads(pickle.dumps(stream))._arrays is None
    spawned = torch.utils.data.DataLoader(
        stream, batch_size=None, num_workers=1, multiprocessing_context="spawn"
    )
    rows = np.concatenate([b[2].numpy() for b in spawned])
    assert np.array_equal(np.sort(rows), np.flatnonzero(np.asarray(plan.table["split"]) == "val"))


def test_a_store_without_labels_is_refused(tmp_path: Path, synthetic) -> None:
    _, plan = synthetic
    copy = build_store(tmp_path / "nolabel.zarr", {f: coded_field(k) for k, f in enumerate(FIELDS)}, chunk=32)
    del zarr.open_group(copy, mode="r+")["label"]
    with pytest.raises(StreamError, match="no labels"):
        PatchStream(copy, plan, "train")


@pytest.mark.parametrize("codec", ["blosc-lz4", "zstd"])
def test_chunks_read_into_buffers_give_the_batches_of_mapped_ones(
    synthetic, tmp_path: Path, codec: str
) -> None:
    store, plan = synthetic  # raw float32 chunks: mapped
    packed = build_store(tmp_path / "p.zarr", {f: coded_field(k) for k, f in enumerate(FIELDS)}, codec=codec)
    settings = loader(batch_size=7, augment=True)
    mapped = collect(PatchStream(store, plan, "train", settings, seed=2, with_index=True))
    read = collect(PatchStream(packed, plan, "train", settings, seed=2, with_index=True))
    assert len(mapped) == len(read)
    for a, b in zip(mapped, read, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_batch_memory_is_reused_only_once_nothing_holds_the_batch(synthetic) -> None:
    store, plan = synthetic
    stream = PatchStream(store, plan, "train", loader(batch_size=5), shuffle=False)
    kept = list(stream)  # every batch held: each in its own memory, with its own values
    assert len({b[0].data_ptr() for b in kept}) == len(kept) > 3
    pointers, values = [], []
    for image, label in stream:  # each batch dropped before the next: its memory comes back
        pointers.append(image.data_ptr())
        values.append((image.clone(), label.clone()))
    assert len(set(pointers)) < len(pointers)
    for (image, label), (again, again_label) in zip(kept, values, strict=True):
        assert torch.equal(image, again) and torch.equal(label, again_label)
    views = [image[0] for image, _ in stream]  # a view keeps its batch's memory from reuse
    assert len({v.data_ptr() for v in views}) == len(views)
