"""Grad-CAM: maps in [0, 1] over the region explained, and the patches shown picked by their objects."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from sgc.cli import app
from sgc.config import SplitConfig
from sgc.cube.store import CubeStore
from sgc.evaluate.explain import busiest_patches, explain_region, gradcam, write_explained
from sgc.patches.plan import make_plan
from sgc.train.checkpoint import load_model


def test_gradcam_maps_cover_the_image_in_zero_to_one(checkpoint: Path) -> None:
    model, _ = load_model(checkpoint)
    image = torch.randn(5, 32, 48)
    for cls in (1, 2):
        cam = gradcam(model, image, cls)
        assert cam.shape == (32, 48) and cam.dtype == np.float32
        assert cam.min() >= 0 and cam.max() <= 1


def test_a_region_is_explained_and_drawn(checkpoint: Path, sim: tuple[Path, Path], tmp_path: Path) -> None:
    _, store = sim
    model, spec = load_model(checkpoint)
    cube = CubeStore.open(store)
    field = cube.done_fields()[0]
    explained = explain_region(model, spec, cube, field, (50, 83), (100, 150))  # 33 x 50: not multiples of 4
    assert explained.shape == (33, 50) and explained.prediction.shape == (33, 50)
    assert set(explained.maps) == {"star", "galaxy"} and explained.maps["star"].shape == (33, 50)
    figures = write_explained([explained], cube, tmp_path)
    assert figures[0].stat().st_size > 10_000 and (tmp_path / "gradcam.json").is_file()


def test_the_busiest_patches_are_those_with_most_objects(sim: tuple[Path, Path], tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    shutil.copytree(sim[1], store)
    cube_fields = CubeStore.open(store).done_fields()
    CubeStore.open(store, "r+").pixel_array("exclude", bool, False)
    plan = make_plan(store, SplitConfig(patch=64, train_fields=cube_fields[:1]), cube_fields[1:])
    picked = busiest_patches(plan, "test", 2)
    rows = plan.rows("test")
    objects = np.asarray(rows["n_star"]) + np.asarray(rows["n_galaxy"])
    assert len(picked) == 2 and all(field == cube_fields[1] for field, _, _ in picked)
    best = rows[int(np.argmax(objects + np.minimum(rows["n_star"], rows["n_galaxy"])))]
    assert picked[0] == (str(best["field"]), int(best["y0"]), int(best["x0"]))
    assert busiest_patches(plan, "test", 0) == []


def test_sgc_explain_refuses_a_region_off_the_grid(
    checkpoint: Path, sim: tuple[Path, Path], tmp_path: Path
) -> None:
    _, store = sim
    field = CubeStore.open(store).done_fields()[0]
    args = ["explain", str(checkpoint), "--store", str(store), "--out", str(tmp_path / "x"), "--field", field]
    result = CliRunner().invoke(app, [*args, "--region", "200:400,0:64", "-q"])
    assert result.exit_code == 1
    assert result.output.startswith("error: explain.box [200, 400, 0, 64] is not inside the 300 x 400 grid")
    assert not (tmp_path / "x").exists()
