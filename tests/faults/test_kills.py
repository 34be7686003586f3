"""Kill tests: each stage that writes (download, label, exclude, split, predict) SIGKILLed at a random point,
then run again: the outputs equal an uninterrupted run's. Ingest, train and tune have theirs beside their
own tests (tests/cube/test_ingest.py, tests/train/test_loop.py, tests/tune/test_resume.py); a Dask worker
killed mid-ingest is survived below.

The kill points are drawn from a seeded generator over the stage's run time, start-up included, so a kill
may land before the stage writes anything, while it writes, or as it finishes; each case names its seed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from sgc.sdss.mirror import serve_directory
from tests.digests import plan_digest, store_digest
from tests.faults.conftest import FIELDS, HELD_OUT, REPO, World, invoke, sgc_process

pytestmark = pytest.mark.slow


def _kill_at_random(args: list[str], seed: int, span: tuple[float, float]) -> None:
    """Start ``sgc ARGS`` and SIGKILL its process group at a random time within ``span`` seconds."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sgc", *map(str, args), "-q"],
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc.wait(timeout=random.Random(seed).uniform(*span))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _rerun(*args: object) -> None:
    result = invoke(*args)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("seed", [1, 2])
def test_a_killed_download_resumes_to_the_same_files(clean_world: World, tmp_path: Path, seed: int) -> None:
    out = tmp_path / "raw"
    with serve_directory(clean_world.raw) as url:
        _kill_at_random(["download", *FIELDS, "--out", out, "--base-url", url, "-j", 2], seed, (2.0, 5.0))
        _rerun("download", *FIELDS, "--out", out, "--base-url", url)
    sources = sorted(p.relative_to(clean_world.raw) for p in clean_world.raw.rglob("*.gz") if p.is_file())
    sources += sorted(p.relative_to(clean_world.raw) for p in clean_world.raw.rglob("*.bz2"))
    for rel in sources:
        assert (out / rel).read_bytes() == (clean_world.raw / rel).read_bytes(), rel
    assert not list(out.rglob("*.part"))


@pytest.mark.parametrize(("stage", "array", "seed"), [("label", "label", 3), ("exclude", "exclude", 4)])
def test_a_killed_mask_stage_rewrites_the_same_masks(world: World, stage: str, array: str, seed: int) -> None:
    clean = store_digest(world.store)["exact"][array]
    del zarr.open_group(world.store, mode="r+")[array]  # what the killed run must write again
    _kill_at_random([stage, world.store, "--config", world.config], seed, (2.0, 8.0))
    _rerun(stage, world.store, "--config", world.config)
    assert store_digest(world.store)["exact"][array] == clean


def test_a_killed_split_writes_the_same_plan(world: World) -> None:
    clean = plan_digest(world.plan)
    _kill_at_random(["split", world.store, "--config", world.config], 5, (2.0, 8.0))
    _rerun("split", world.store, "--config", world.config)
    assert plan_digest(world.plan) == clean


def _predictions(folder: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(folder / "predictions.zarr", mode="r")
    return {name: group[name][:] for name in ("prob", "class", "done")}


def _run_to_the_end(args: list[object]) -> None:
    """``sgc ARGS`` in a process of its own, as the killed run was: the same torch thread count, so the
    same arithmetic, whichever of the two computed a field."""
    proc = sgc_process(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_killed_prediction_resumes_to_the_same_probabilities(world: World) -> None:
    args = ["predict", world.run_dir / "best.pt", "--store", world.store, "--fields", HELD_OUT]
    _run_to_the_end([*args, "--out", world.root / "clean", "--config", world.config])
    _kill_at_random([*args, "--out", world.root / "killed", "--config", world.config], 6, (2.0, 8.0))
    _run_to_the_end([*args, "--out", world.root / "killed", "--config", world.config])
    clean, resumed = _predictions(world.root / "clean"), _predictions(world.root / "killed")
    for name in clean:
        np.testing.assert_array_equal(resumed[name], clean[name], err_msg=name)


def test_a_dask_worker_killed_mid_ingest_is_survived(clean_world: World, tmp_path: Path) -> None:
    """One of two worker processes SIGKILLed while it ingests: the field is run again on the other."""
    from dask.distributed import Client, LocalCluster

    from sgc.compute import Compute
    from sgc.config import ComputeConfig, IngestConfig
    from sgc.cube.ingest import ingest

    store = tmp_path / "s.zarr"
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
        Compute(ComputeConfig(scheduler=cluster.scheduler_address)) as compute,
    ):
        pids = client.run(os.getpid)

        def kill_one_busy_worker() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                busy = [w for w, ts in client.processing().items() if ts]
                if busy:
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_one_busy_worker, daemon=True)
        killer.start()
        summary = ingest(clean_world.raw, store, IngestConfig(chunk=128), compute)
        killer.join()
    assert summary.ok, summary.format()
    clean, now = zarr.open_group(clean_world.store, mode="r"), zarr.open_group(store, mode="r")
    for name in ("image", "valid", "field", "done"):
        np.testing.assert_array_equal(now[name][:], clean[name][:], err_msg=name)
