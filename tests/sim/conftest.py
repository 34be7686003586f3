"""Fixtures the simulator's test modules share: two full-size simulated fields (~8 s to render, once a
session) and the real sample field they are compared with."""

from __future__ import annotations

from pathlib import Path

import pytest
from astropy.table import Table

from sgc.sdss.catalogs import read_catalog, read_catalogs
from sgc.sdss.frames import Frame, read_frame
from sgc.sdss.names import BANDS, FieldId, calibobj_path
from sgc.sim.simulate import simulate
from tests.sim.measure import SAMPLE, SEED


@pytest.fixture(scope="session")
def full_sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[FieldId]]:
    """Two consecutive full-size fields of the default run."""
    root = tmp_path_factory.mktemp("full")
    return root, simulate(root, 2, seed=SEED, workers=2)


@pytest.fixture(scope="session")
def full_frames(full_sim: tuple[Path, list[FieldId]]) -> list[dict[str, Frame]]:
    """The full-size fields' frames, read back with the sgc reader."""
    root, ids = full_sim
    return [{band: read_frame(root / field.frame_path(band)) for band in BANDS} for field in ids]


@pytest.fixture(scope="session")
def full_catalog(full_sim: tuple[Path, list[FieldId]]) -> Table:
    """The full-size run's star and galaxy catalogues, read back with the sgc reader."""
    root, ids = full_sim
    run, camcol = ids[0].run, ids[0].camcol
    return read_catalogs([root / calibobj_path(run, camcol, kind) for kind in ("star", "gal")])


@pytest.fixture(scope="session")
def real_sample(sdss_dir: Path) -> tuple[dict[str, Frame], Table]:
    """The real sample field's five frames (its rows 0-744) and its catalogue."""
    frames = {band: read_frame(sdss_dir / SAMPLE / f"frame-{band}-{SAMPLE}.fits.bz2") for band in BANDS}
    return frames, read_catalog(sdss_dir / SAMPLE / f"catalog-{SAMPLE}.fits")
