"""``sgc evaluate``: the metrics file's sections and keys, the rows of a field given as frames, and a clear
error when the catalogue has no object in the region scored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from typer.testing import CliRunner

from sgc.cli import app
from sgc.cube.store import CubeStore
from sgc.evaluate.score import EvaluateError, rows_region
from sgc.sdss.discover import find_catalogs
from tests.evaluate.conftest import field_frames

runner = CliRunner()
PIXEL_KEYS = {"precision", "recall", "f1", "iou", "support"}
OBJECT_CLASS_KEYS = {"precision", "recall", "f1", "n"}


def _evaluate_frames(checkpoint: Path, frames: Path, catalog: Path, out: Path, *extra: str):
    args = [
        "evaluate",
        str(checkpoint),
        "--frames",
        str(frames),
        "--catalog",
        str(catalog),
        "--out",
        str(out),
    ]
    return runner.invoke(app, [*args, "--workers", "1", "-q", *extra])


def test_metrics_of_a_field_given_as_frames_have_every_section(
    checkpoint: Path, sim: tuple[Path, Path], tmp_path: Path
) -> None:
    raw, store = sim
    field = CubeStore.open(store).done_fields()[0]
    frames = field_frames(raw, field, tmp_path / "frames")
    catalogs = find_catalogs([raw])
    result = _evaluate_frames(
        checkpoint, frames, catalogs[0], tmp_path / "out", "--catalog", str(catalogs[1]), "--rows", "40:250"
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {"pixel", "per_patch", "object"} <= set(metrics)
    assert metrics["region"]["description"] == "rows 40:250 of 1 field(s)"
    for name in ("sky", "star", "galaxy"):
        assert set(metrics["pixel"][name]) == PIXEL_KEYS
        assert set(metrics["per_patch"][name]) == {"precision", "recall", "f1", "patches"}
    assert np.asarray(metrics["pixel"]["confusion"]).shape == (3, 3)
    obj = metrics["object"]
    assert {"n", "detection_recall", "accuracy", "mcc", "star", "galaxy", "purity", "by_magnitude"} <= set(
        obj
    )
    assert set(obj["star"]) == set(obj["galaxy"]) == OBJECT_CLASS_KEYS
    assert obj["n"] == obj["star"]["n"] + obj["galaxy"]["n"] > 0
    assert sum(b["n"] for b in obj["by_magnitude"]) <= obj["n"]
    assert all({"r_min", "r_max", "n", "accuracy"} <= set(b) for b in obj["by_magnitude"])
    assert "## Objects" in (tmp_path / "out" / "metrics.md").read_text()
    scored = Table.read(tmp_path / "out" / "scored-objects.csv", format="ascii.csv")
    assert len(scored) == obj["n"] and (scored["y"] >= 39.5).all() and (scored["y"] < 250.5).all()


def test_a_catalogue_with_no_object_in_the_region_is_a_clear_error(
    checkpoint: Path, sim: tuple[Path, Path], tmp_path: Path
) -> None:
    raw, store = sim
    field = CubeStore.open(store).done_fields()[0]
    frames = field_frames(raw, field, tmp_path / "frames")
    far = tmp_path / "catalog-far.fits"
    Table({"RA": [10.0, 200.0], "DEC": [-60.0, 80.0], "OBJC_TYPE": [6, 3]}).write(far)
    result = _evaluate_frames(checkpoint, frames, far, tmp_path / "out")
    assert result.exit_code == 1
    assert "no catalogue object lies in the region scored (rows 0:300 of 1 field(s))" in result.output
    assert "Traceback" not in result.output


def test_bad_rows_are_refused(sim: tuple[Path, Path]) -> None:
    _, store = sim
    with pytest.raises(EvaluateError, match="rows 200:100 are not a band"):
        rows_region(CubeStore.open(store), (200, 100))
    result = runner.invoke(
        app, ["evaluate", "x.pt", "--frames", "f", "--catalog", "c", "--out", "o", "--rows", "1-2"]
    )
    assert result.exit_code == 1 and "--rows '1-2': expected FIRST:END" in result.output


def test_fibre_magnitudes_of_bright_stars_follow_their_psf_magnitudes(sim: tuple[Path, Path]) -> None:
    from sgc.cube.objects import locate_objects
    from sgc.evaluate.score import fibre_magnitudes, r_magnitudes
    from sgc.sdss.catalogs import read_catalogs

    raw, store = sim
    cube = CubeStore.open(store)
    catalog = read_catalogs(find_catalogs([raw]))
    field = cube.done_fields()[0]
    located = locate_objects(cube, catalog, [field])
    rows = np.asarray(located["row"])
    table = catalog[rows]
    psf = np.asarray(table["psf_mag"])[:, 2]
    stars = (np.asarray(table["class"]) == "star") & (psf > 15) & (psf < 21)
    x, y = cube.field_wcs(cube.slot(field)).world_to_pixel_values(table["ra"][stars], table["dec"][stars])
    assert stars.sum() >= 3
    fibre = fibre_magnitudes(cube, cube.slot(field), x, y)
    # A 3-arcsec aperture holds most but not all of a star's light: fainter by an aperture correction of a
    # few tenths, the same for every star of one seeing.
    offset = fibre - psf[stars]
    assert 0.0 < np.median(offset) < 0.6 and np.std(offset) < 0.1
    # Where the catalogue has magnitudes they are used as they are; without, the fibre magnitude.
    assert np.array_equal(r_magnitudes(table[stars], cube, cube.slot(field), x, y), psf[stars])
    table["model_mag"][:] = np.nan
    table["psf_mag"][:] = np.nan
    np.testing.assert_allclose(r_magnitudes(table[stars], cube, cube.slot(field), x, y), fibre)
