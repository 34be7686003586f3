"""The ingest engine: Dask over fields into one store; resumable, appendable, robust to bad input."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from astropy.io import fits

from sgc.compute import Compute
from sgc.config import ComputeConfig, IngestConfig
from sgc.cube.ingest import IngestError, ingest
from sgc.cube.store import CubeStore
from sgc.sdss.discover import find_raw
from sgc.sdss.frames import frame_wcs, read_frame
from sgc.sim.simulate import simulate

SHAPE = (300, 400)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small simulated fields of one run."""
    out = tmp_path_factory.mktemp("raw")
    simulate(out, n_fields=6, seed=3, shape=SHAPE)
    return out


def _cfg(**kw: object) -> IngestConfig:
    return IngestConfig(chunk=128, **kw)


def done_fields(store: Path) -> list[str]:
    return CubeStore.open(store).done_fields()


def _arrays(store: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(store, mode="r")
    order = np.argsort(group["field"][:])
    return {name: group[name][:][order] for name in ("image", "valid", "wcs", "field", "done")}


def _assert_same_stores(a: Path, b: Path) -> None:
    left, right = _arrays(a), _arrays(b)
    for name in left:
        np.testing.assert_array_equal(left[name], right[name], err_msg=name)


@pytest.fixture(scope="module")
def reference_store(raw: Path, tmp_path_factory: pytest.TempPathFactory, compute: Compute) -> Path:
    """An uninterrupted ingest of all six fields, the baseline every other run must equal."""
    store = tmp_path_factory.mktemp("ref") / "ref.zarr"
    summary = ingest(raw, store, _cfg(), compute)
    assert summary.ok, summary.format()
    return store


def test_store_holds_every_field_aligned_on_its_i_grid(raw: Path, reference_store: Path) -> None:
    ds = xr.open_zarr(reference_store, consolidated=False)
    fields = sorted(str(f) for f in find_raw(raw).complete)
    assert sorted(ds.field.values.tolist()) == fields
    assert ds.image.shape == (6, 5, *SHAPE)
    assert bool(ds.done.all())
    valid = ds.valid.values
    assert 0.8 < valid.mean() < 1.0  # band offsets of a few pixels leave edges uncovered
    assert np.isfinite(ds.image.values.transpose(1, 0, 2, 3)[:, valid]).all()
    # the stored header is the i frame's: it maps the sky to the stored pixels with astropy alone
    for k, field in enumerate(ds.field.values):
        stored = frame_wcs(fits.Header.fromstring(str(ds.wcs.values[k])))
        i_frame = read_frame(next(raw.rglob(f"frame-i-{field}.fits.bz2")))
        ra, dec = i_frame.wcs.pixel_to_world_values(100.0, 50.0)
        np.testing.assert_allclose(stored.world_to_pixel_values(ra, dec), (100.0, 50.0), atol=1e-6)
    assert sorted(CubeStore.open(reference_store).attrs["fields_done"]) == fields
    record = json.loads(str(ds.source.values[0]))
    r_path = next(raw.rglob(f"frame-r-{ds.field.values[0]}.fits.bz2"))
    assert record["files"]["r"] == {
        "name": r_path.name,
        "bytes": r_path.stat().st_size,
        "sha256": hashlib.sha256(r_path.read_bytes()).hexdigest(),
    }
    assert set(record["align"]) >= {"u", "g", "r", "z"}


def test_rerun_does_nothing(raw: Path, reference_store: Path, tmp_path: Path, compute: Compute) -> None:
    store = tmp_path / "s.zarr"
    shutil.copytree(reference_store, store)
    summary = ingest(raw, store, _cfg(), compute)
    assert [r.status for r in summary.results] == ["skipped"] * 6
    _assert_same_stores(store, reference_store)


def test_new_fields_are_appended(raw: Path, reference_store: Path, tmp_path: Path, compute: Compute) -> None:
    store = tmp_path / "s.zarr"
    fields = sorted(str(f) for f in find_raw(raw).complete)
    first = ingest(raw, store, _cfg(fields=fields[:2]), compute)
    assert [r.status for r in first.results] == ["stored"] * 2
    second = ingest(raw, store, _cfg(), compute)
    assert sorted(r.status for r in second.results) == ["skipped"] * 2 + ["stored"] * 4
    _assert_same_stores(store, reference_store)


def test_runs_on_a_distributed_scheduler_with_two_worker_processes(
    raw: Path, reference_store: Path, tmp_path: Path
) -> None:
    from dask.distributed import Client, LocalCluster

    store = tmp_path / "s.zarr"
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Compute(ComputeConfig(scheduler=cluster.scheduler_address)) as remote,
    ):
        summary = ingest(raw, store, _cfg(), remote)
        with Client(cluster) as client:
            assert len(client.scheduler_info()["workers"]) == 2
    assert summary.ok, summary.format()
    _assert_same_stores(store, reference_store)


@pytest.mark.slow
def test_sigkill_half_way_then_rerun_gives_the_uninterrupted_store(
    raw: Path, reference_store: Path, tmp_path: Path, compute: Compute
) -> None:
    store = tmp_path / "s.zarr"
    cmd = [
        sys.executable,
        "-m",
        "sgc",
        "ingest",
        str(raw),
        str(store),
        "--workers",
        "1",
        "--chunk",
        "128",
        "-q",
    ]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    done: list[str] = []
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            done = done_fields(store)
        except Exception:  # the store is being created
            continue
        if len(done) >= 2:
            break
    assert proc.poll() is None, f"ingest finished before it could be killed: {proc.stdout.read()!r}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= len(done_fields(store)) < 6
    summary = ingest(raw, store, _cfg(), compute)
    assert summary.ok, summary.format()
    _assert_same_stores(store, reference_store)


def _copy_raw(raw: Path, dest: Path) -> Path:
    shutil.copytree(raw, dest)
    return dest


def test_bad_fields_are_named_and_skipped_and_the_rest_stored(
    raw: Path, tmp_path: Path, compute: Compute
) -> None:
    bad = _copy_raw(raw, tmp_path / "raw")
    fields = sorted(find_raw(bad).complete)
    missing, corrupt, resized = fields[0], fields[1], fields[2]
    next(bad.rglob(f"frame-g-{missing}.fits.bz2")).unlink()
    corrupt_path = next(bad.rglob(f"frame-r-{corrupt}.fits.bz2"))
    corrupt_path.write_bytes(corrupt_path.read_bytes()[:5000])
    resized_path = next(bad.rglob(f"frame-z-{resized}.fits.bz2"))
    with fits.open(resized_path) as hdul:
        hdul[0].data = hdul[0].data[:-10]
        hdul.writeto(tmp_path / "small.fits")
    resized_path.unlink()
    shutil.move(tmp_path / "small.fits", resized_path.with_suffix(""))

    store = tmp_path / "s.zarr"
    summary = ingest(bad, store, _cfg(), compute)
    text = summary.format()
    assert not summary.ok
    assert f"{missing}: missing band(s) g" in text
    assert f"frame-r-{corrupt}.fits.bz2: bzip2 stream is truncated" in text
    assert f"frames of field {resized} differ in size" in text
    assert sorted(done_fields(store)) == [str(f) for f in fields[3:]]

    from typer.testing import CliRunner

    from sgc.cli import app

    result = CliRunner().invoke(app, ["ingest", str(bad), str(tmp_path / "t.zarr"), "--workers", "1", "-q"])
    assert result.exit_code == 1
    assert "2 failed, 1 with bands missing" in result.output
    with pytest.raises(IngestError, match="missing band"):
        ingest(bad, tmp_path / "u.zarr", _cfg(strict=True), compute)


def test_nothing_to_ingest_is_a_clear_error(tmp_path: Path, compute: Compute) -> None:
    with pytest.raises(IngestError, match="no SDSS frames"):
        ingest(tmp_path, tmp_path / "s.zarr", _cfg(), compute)


def test_real_sample_ingests_and_meets_the_alignment_targets(
    sdss_dir: Path, tmp_path: Path, compute: Compute
) -> None:
    from sgc.cube.quality import catalog_stars, star_offsets
    from sgc.sdss.catalogs import read_catalog

    field = sdss_dir / "003918-3-0213"
    store = tmp_path / "sample.zarr"
    summary = ingest(field, store, _cfg(), compute)
    assert summary.ok, summary.format()
    ds = xr.open_zarr(store, consolidated=False)
    assert ds.image.shape == (1, 5, 745, 2048)
    cube = ds.image[0].values
    wcs = frame_wcs(fits.Header.fromstring(str(ds.wcs.values[0])))
    x, y = catalog_stars(read_catalog(field / "catalog-003918-3-0213.fits"), wcs, cube[3])
    offsets = star_offsets(cube, x, y)
    for band in "grz":
        assert offsets[band].systematic <= 0.05, (band, offsets[band])
        assert offsets[band].median_offset <= 0.12, (band, offsets[band])
    assert offsets["u"].median_offset <= 0.45, offsets["u"]
    assert ds.valid[0].values.mean() > 0.97
