"""sgc cv: K folds of one field's rows, each object scored once, resumable, summarised per method."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sgc.cli import app
from sgc.compute import Compute
from sgc.config import cv_dir, fold_name, load_config
from sgc.cv import METRICS, CvError, cross_validate, cv_summaries, fold_config
from sgc.patches.planfile import read_plan
from sgc.stages import read_record

ROOT = Path(__file__).resolve().parents[1]
# The smallest model and training that still run every stage of a fold.
TINY = [
    "train.epochs=1",
    "train.max_steps=2",
    "train.model.depth=2",
    "train.model.width=4",
    "train.loader.batch_size=4",
    "train.loader.workers=0",
    "split.patch=32",
    "split.stride=32",
    "baselines.reference=null",
    "pretrain.config=null",
]


def _sample_config(tmp_path: Path, *extra: str):
    return load_config(
        ROOT / "configs" / "sample.yaml",
        [f"workdir={tmp_path / 'stores'}", f"runs_dir={tmp_path / 'runs'}", *TINY, *extra],
    )


def test_fold_config_scores_its_whole_band(sdss_dir: Path, tmp_path: Path) -> None:
    cfg = _sample_config(tmp_path)
    bands = [fold_config(cfg, 3, k, 745).evaluate.rows for k in range(3)]
    assert bands == [(0, 248), (248, 497), (497, 745)]
    fold = fold_config(cfg, 3, 1, 745)
    assert fold.paths.store == cfg.paths.store and fold.paths.raw == cfg.paths.raw
    assert fold.paths.plan == cv_dir(cfg.paths.out_dir) / fold_name(1, 3) / "plan.zarr"
    assert fold.paths.run == tmp_path / "runs" / "sample" / "cv" / "fold-1-of-3"


@pytest.mark.slow
def test_cv_on_the_sample_scores_every_object_once_and_resumes(sdss_dir: Path, tmp_path: Path) -> None:
    cfg = _sample_config(tmp_path, "compute.workers=1")
    with Compute(cfg.compute) as compute:
        result = cross_validate(cfg, 3, compute=compute)
        assert set(result.methods) == {"sgc", "classical"}
        assert all(len(folds) == 3 for folds in result.methods.values())
        # The three test bands tile the field: every catalogued object on the stored grid (315 of the 319;
        # the i-band grid the bands are aligned on ends a few rows before the r frame's) is scored once.
        assert [fold["n"] for fold in result.methods["sgc"]] == [76, 112, 127]
        assert result.pooled["sgc"]["n"] == result.pooled["classical"]["n"] == 315
        for k in range(3):
            fold = fold_config(cfg, 3, k, 745)
            assert read_record(fold.paths, "audit")["ok"]
            plan = read_plan(fold.paths.plan)
            test_rows = plan.rows("test")
            first, end = fold.evaluate.rows
            assert np.all(np.asarray(test_rows["y0"]) >= first) and np.all(np.asarray(test_rows["y0"]) < end)
            train = np.asarray(plan.rows("train")["y0"])
            assert not np.any((train + 32 > first - 64) & (train < end + 64))  # the guard rows
        summary = (result.out / "cv-3.json").read_text()
        for metric in METRICS:
            values = result.values("classical", metric)
            assert result.mean("classical", metric) == pytest.approx(np.mean(values))
            assert metric in summary
        # A second call finds every fold complete and reads back the same figures.
        again = cross_validate(cfg, 3, compute=compute)
        assert again.to_json() == result.to_json()
        # A variant that changes the prediction alone predicts again with the folds' trained models.
        best = [fold_config(cfg, 3, k, 745).paths.checkpoint.stat().st_mtime_ns for k in range(3)]
        tta = cfg.model_copy(update={"predict": cfg.predict.model_copy(update={"symmetries": 2})})
        variant = cross_validate(tta, 3, compute=compute, variant="tta")
        assert [fold_config(cfg, 3, k, 745).paths.checkpoint.stat().st_mtime_ns for k in range(3)] == best
    assert (result.out / "cv-3-tta.json").is_file() and (result.out / "cv-3.json").is_file()
    assert [s["name"] for s in cv_summaries(cfg.paths)] == ["sample", "tta"]
    assert variant.pooled["sgc"]["n"] == 315


def test_cv_refuses_what_it_cannot_fold(tmp_path: Path) -> None:
    cfg = load_config(None, [f"workdir={tmp_path}", "split.mode=fields"])
    with pytest.raises(CvError, match="split.mode must be rows"):
        cross_validate(cfg, 3)
    with pytest.raises(CvError, match="a plain name"):
        cross_validate(load_config(None, [f"workdir={tmp_path}"]), 3, variant="../x")
    with pytest.raises(CvError, match="at least 2 folds"):
        cross_validate(load_config(None, [f"workdir={tmp_path}"]), 1)
    result = CliRunner().invoke(app, ["cv", str(ROOT / "configs" / "sample.yaml"), "--folds", "1"])
    assert result.exit_code == 1 and "error: --folds 1" in result.output
