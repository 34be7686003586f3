"""What the evaluation tests share: a small trained model, and small simulated fields ingested."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sgc.compute import Compute
from sgc.config import IngestConfig, LabelConfig
from sgc.cube.ingest import ingest
from sgc.masks.labels import label_store
from sgc.sdss.discover import find_catalogs
from sgc.sim.simulate import simulate
from sgc.train.loop import BEST, train
from tests.train.conftest import tiny_config, tiny_run  # noqa: F401 - tiny_run is a fixture used here

SHAPE = (300, 400)


@pytest.fixture(scope="session")
def checkpoint(tiny_run, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """A depth-2 U-Net trained for two epochs on the tiny synthetic store (its weights matter little)."""
    store, plan = tiny_run
    run = tmp_path_factory.mktemp("run")
    train(store, plan, run, tiny_config(epochs=2, model={"depth": 2, "width": 4, "norm": "batch"}))
    return run / BEST


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory, compute: Compute) -> tuple[Path, Path]:
    """Two small simulated fields of one run: their raw folder, and a labelled store of them (128 chunks)."""
    raw = tmp_path_factory.mktemp("raw")
    simulate(raw, n_fields=2, seed=9, shape=SHAPE)
    store = tmp_path_factory.mktemp("store") / "sim.zarr"
    assert ingest(raw, store, IngestConfig(chunk=128), compute).ok
    label_store(store, find_catalogs([raw]), LabelConfig())
    return raw, store


def field_frames(raw: Path, field: str, dest: Path) -> Path:
    """A folder holding only one field's five frames (as a user would give them to sgc predict)."""
    dest.mkdir(parents=True)
    for path in raw.rglob(f"frame-*-{field}.fits.bz2"):
        shutil.copy(path, dest / path.name)
    return dest
