"""Fault corpus: damaged stores, stores where they cannot be, a full disk, and two writers at once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sgc.cube.store import CubeStore
from sgc.patches.planfile import read_plan
from sgc.train.checkpoint import load_checkpoint, save_checkpoint
from tests.digests import plan_digest, store_digest
from tests.faults.conftest import (
    FIELDS,
    REPO,
    World,
    disk_full_after,
    error_line,
    invoke,
    process_error_line,
    sgc_process,
)


def _chunk(store: Path, array: str, *coords: int) -> Path:
    return store / array / "c" / "/".join(str(c) for c in coords)


def _train_chunk(world: World) -> tuple[int, int, int]:
    """Slot and chunk row and column of a chunk that the first train patch reads."""
    table = read_plan(world.plan).rows("train")
    chunk = CubeStore.open(world.store).chunk
    return int(table["field_index"][0]), int(table["y0"][0]) // chunk, int(table["x0"][0]) // chunk


def test_a_garbage_label_chunk_met_by_split_is_named(world: World) -> None:
    plan_before = plan_digest(world.plan)
    chunk = _chunk(world.store, "label", 0, 0, 0)
    chunk.write_bytes(os.urandom(300))
    line = error_line(invoke("split", world.store, "--config", world.config), str(chunk), "cannot be decoded")
    assert "sgc label" in line
    assert plan_digest(world.plan) == plan_before


def test_a_garbage_valid_chunk_met_by_label_is_named_with_its_fix(world: World) -> None:
    chunk = _chunk(world.store, "valid", 1, 0, 0)
    chunk.write_bytes(os.urandom(300))
    line = error_line(invoke("label", world.store, "--config", world.config), str(chunk), "cannot be decoded")
    assert "ingest the fields again into a new store" in line


def test_a_garbage_label_chunk_met_by_train_is_named(world: World) -> None:
    chunk = _chunk(world.store, "label", *_train_chunk(world))
    chunk.write_bytes(os.urandom(300))
    run = world.root / "run2"
    error_line(
        invoke("train", world.store, world.plan, "--out", run, "--config", world.config),
        str(chunk),
        "cannot be decoded",
    )
    assert not (run / "last.pt").exists()


def test_a_truncated_image_chunk_met_by_train_is_named(world: World) -> None:
    slot, cy, cx = _train_chunk(world)
    chunk = _chunk(world.store, "image", slot, 0, cy, cx)
    chunk.write_bytes(chunk.read_bytes()[:1000])
    error_line(
        invoke("train", world.store, world.plan, "--out", world.root / "run2", "--config", world.config),
        str(chunk),
        "chunk file is not its",
    )


def _poison_train_pixels(world: World) -> None:
    """NaN written over a train field's first image chunk, as random bytes in a raw chunk may decode."""
    slot, cy, cx = _train_chunk(world)
    chunk = _chunk(world.store, "image", slot, 0, cy, cx)
    chunk.write_bytes(np.full(chunk.stat().st_size // 4, np.nan, dtype="<f4").tobytes())


def test_non_finite_pixels_stop_training_before_anything_is_saved(world: World) -> None:
    _poison_train_pixels(world)
    run = world.root / "run2"
    line = error_line(
        invoke("train", world.store, world.plan, "--out", run, "--config", world.config),
        str(run),
        "the loss is nan",
    )
    assert "no checkpoint was written" in line
    assert not (run / "last.pt").exists() and not (run / "best.pt").exists()


def test_non_finite_pixels_met_on_resuming_keep_the_last_good_checkpoint(world: World) -> None:
    # The world's run as if killed after its first epoch: its last.pt says epoch 0, not finished.
    last = world.run_dir / "last.pt"
    state = load_checkpoint(last)
    state["state"].update(epoch=0, finished=False)
    save_checkpoint(last, state)
    before = last.read_bytes()
    _poison_train_pixels(world)
    result = invoke(
        "train", world.store, world.plan, "--out", world.run_dir, "--resume", "--config", world.config
    )
    line = error_line(result, "epoch 1, step 0: the loss is nan")
    assert f"{last} (epoch 0) is kept" in line
    assert last.read_bytes() == before


def test_a_store_below_a_regular_file_is_one_error_line(world: World, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    error_line(
        invoke("ingest", world.raw, blocker / "s.zarr", "--config", world.config),
        str(blocker),
        "is a file, not a folder",
    )
    assert blocker.read_text() == "not a folder"


def test_a_full_disk_while_labelling_is_one_error_line_and_keeps_the_pixels(world: World) -> None:
    before = {k: v for k, v in store_digest(world.store)["exact"].items() if k != "label"}
    proc = sgc_process(
        "label", world.store, "--config", world.config, preexec_fn=disk_full_after(200), timeout=300
    )
    process_error_line(proc, "File too large", str(world.store))
    assert {k: v for k, v in store_digest(world.store)["exact"].items() if k != "label"} == before


@pytest.mark.slow
def test_two_ingests_appending_to_one_store_at_once_both_land(world: World, tmp_path: Path) -> None:
    """Each process appends its own field; the second waits for the first's lock, then appends after it."""
    store = tmp_path / "s.zarr"
    base = [
        sys.executable,
        "-m",
        "sgc",
        "ingest",
        str(world.raw),
        str(store),
        "--chunk",
        "128",
        "--workers",
        "0",
    ]
    assert invoke("ingest", world.raw, store, "--chunk", 128, "--fields", FIELDS[0], "-q").exit_code == 0
    procs = [
        subprocess.Popen(
            [*base, "--fields", field], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for field in FIELDS[1:]
    ]
    outputs = [proc.communicate(timeout=300)[0].decode() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    cube = CubeStore.open(store)
    assert sorted(cube.done_fields()) == sorted(FIELDS) and len(cube.fields) == 3
    clean = CubeStore.open(world.store)
    for field in FIELDS:
        np.testing.assert_array_equal(
            cube["image"][cube.slot(field)], clean["image"][clean.slot(field)], err_msg=field
        )


def test_a_store_copied_without_its_metadata_is_named(world: World, tmp_path: Path) -> None:
    broken = tmp_path / "broken.zarr"
    shutil.copytree(world.store, broken)
    (broken / "zarr.json").unlink()
    error_line(invoke("label", broken, "--config", world.config), str(broken), "no cube store here")
