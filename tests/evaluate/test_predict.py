"""Predicting whole fields: on the Dask cluster equal to whole-field inference, the same from raw frames as
from the store, with FITS outputs that astropy opens and a catalogue of predicted objects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from typer.testing import CliRunner

from sgc.classes import IGNORE
from sgc.cli import app
from sgc.compute import Compute
from sgc.config import PredictConfig
from sgc.cube.store import CubeStore, PredictionStore
from sgc.evaluate.catalog import COLUMNS
from sgc.evaluate.predict import PredictError, normalised_window, predict_fields
from sgc.evaluate.tiles import predict_whole
from sgc.train.checkpoint import load_model
from tests.evaluate.conftest import field_frames

runner = CliRunner()


@pytest.mark.parametrize("tile", [100, 320])
def test_predictions_on_the_cluster_equal_whole_field_inference(
    checkpoint: Path, sim: tuple[Path, Path], compute: Compute, tmp_path: Path, tile: int
) -> None:
    # Tile 100: several tiles inside each task's window; 320: one forward pass per task of 2x2 chunks.
    _, store = sim
    cube = CubeStore.open(store)
    field = cube.done_fields()[0]
    summary = predict_fields(checkpoint, store, tmp_path, PredictConfig(tile=tile), compute, [field])
    assert summary.fields == [field] and summary.device == "cpu"
    model, spec = load_model(checkpoint)
    ny, nx = cube.shape
    whole = predict_whole(model, normalised_window(cube, cube.slot(field), spec, (0, ny), (0, nx)))
    predictions = PredictionStore.open(tmp_path / "predictions.zarr")
    valid = cube["valid"][cube.slot(field)]
    prob = predictions["prob"][0].astype(np.float32)
    np.testing.assert_allclose(prob[:, valid], whole[:, valid], atol=1e-3)  # stored as float16
    cls = predictions["class"][0]
    assert (cls[~valid] == IGNORE).all() and np.isnan(prob[:, ~valid]).all()
    assert np.mean(cls[valid] != whole.argmax(axis=0)[valid]) < 1e-4  # ties within float rounding aside
    assert predictions.done_fields() == [field]
    assert predictions.checkpoint["inference"]["bands"] == ["u", "g", "r", "i", "z"]


def test_a_field_given_as_frames_is_predicted_as_from_the_store(
    checkpoint: Path, sim: tuple[Path, Path], tmp_path: Path
) -> None:
    raw, store = sim
    field = CubeStore.open(store).done_fields()[1]
    frames = field_frames(raw, field, tmp_path / "frames")
    common = ["--workers", "1", "-q"]
    from_frames = runner.invoke(
        app,
        [
            "predict",
            str(checkpoint),
            "--frames",
            str(frames),
            "--out",
            str(tmp_path / "a"),
            "--fits",
            *common,
        ],
    )
    assert from_frames.exit_code == 0, from_frames.output
    from_store = runner.invoke(
        app,
        [
            "predict",
            str(checkpoint),
            "--store",
            str(store),
            "--fields",
            field,
            "--out",
            str(tmp_path / "b"),
            *common,
        ],
    )
    assert from_store.exit_code == 0, from_store.output
    a = xr.open_zarr(tmp_path / "a" / "predictions.zarr", consolidated=False)
    b = xr.open_zarr(tmp_path / "b" / "predictions.zarr", consolidated=False)
    assert list(a.field.values) == list(b.field.values) == [field]
    assert a.prob.dims == ("field", "class", "y", "x") and a["class"].dims == ("field", "y", "x")
    np.testing.assert_array_equal(a.prob.values, b.prob.values)
    np.testing.assert_array_equal(a["class"].values, b["class"].values)
    # The WCS of the stored grid travels with the predictions, and the FITS files carry it.
    assert str(a.wcs.values[0]) == str(b.wcs.values[0])
    with fits.open(tmp_path / "a" / "fits" / f"class-{field}.fits") as hdul:
        np.testing.assert_array_equal(hdul[0].data, a["class"].values[0])
        wcs = WCS(hdul[0].header)
    stored = WCS(fits.Header.fromstring(str(a.wcs.values[0])))
    np.testing.assert_allclose(
        wcs.pixel_to_world_values(10.0, 20.0), stored.pixel_to_world_values(10.0, 20.0)
    )
    with fits.open(tmp_path / "a" / "fits" / f"prob-{field}.fits") as hdul:
        assert hdul[0].data.shape == (3, *a["class"].shape[1:])
        celestial = WCS(hdul[0].header).celestial
        np.testing.assert_allclose(
            celestial.pixel_to_world_values(1.0, 2.0), stored.pixel_to_world_values(1.0, 2.0)
        )
        assert hdul[0].header["CLASS1"] == "star"


def test_the_object_catalogue_is_written_as_fits_and_csv(
    checkpoint: Path, sim: tuple[Path, Path], compute: Compute, tmp_path: Path
) -> None:
    _, store = sim
    predict_fields(checkpoint, store, tmp_path, PredictConfig(), compute)
    assert Table.read(tmp_path / "objects.fits").colnames == list(COLUMNS)
    assert Table.read(tmp_path / "objects.csv", format="ascii.csv").colnames == list(COLUMNS)
    assert (
        PredictionStore.open(tmp_path / "predictions.zarr").done_fields()
        == CubeStore.open(store).done_fields()
    )


def test_predictions_of_another_checkpoint_are_not_overwritten(
    checkpoint: Path, sim: tuple[Path, Path], compute: Compute, tmp_path: Path
) -> None:
    _, store = sim
    field = CubeStore.open(store).done_fields()[0]
    predict_fields(checkpoint, store, tmp_path, PredictConfig(), compute, [field])
    other = tmp_path / "other.pt"
    other.write_bytes(checkpoint.read_bytes() + b"")  # the same weights, but not the same file
    import torch

    state = torch.load(checkpoint, weights_only=True)
    state["state"]["epoch"] = 99
    torch.save(state, other)
    with pytest.raises(PredictError, match="another checkpoint"):
        predict_fields(other, store, tmp_path, PredictConfig(), compute, [field])
    # Made with other prediction settings: refused too, and replaced when asked (a stage redoing its output).
    with pytest.raises(PredictError, match="another checkpoint"):
        predict_fields(checkpoint, store, tmp_path, PredictConfig(symmetries=2), compute, [field])
    again = predict_fields(checkpoint, store, tmp_path, PredictConfig(symmetries=2), compute, [field], True)
    assert again.fields == [field]
    assert (
        predict_fields(checkpoint, store, tmp_path, PredictConfig(symmetries=2), compute, [field]).fields
        == []
    )
    bad = tmp_path / "taken"
    (bad / "predictions.zarr").mkdir(parents=True)
    with pytest.raises(PredictError, match="not a prediction store"):
        predict_fields(checkpoint, store, bad, PredictConfig(), compute, [field])
