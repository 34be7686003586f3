"""sgc tune on the real sample with the real objective (K-fold cross-validation), through the command line:
one tiny trial on one worker, its value the mean of its folds' object MCC as sgc cv wrote them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sgc.atomic import read_json
from sgc.cli import app
from sgc.config import load_config
from sgc.tune.files import BEST_YAML, TRIALS_CSV, TRIALS_FOLDER, trial_name
from tests.test_cv import TINY as CV_TINY

ROOT = Path(__file__).resolve().parents[2]
# The smallest training that runs every stage of a fold; two folds need no validation. The search pretrains
# once (on two simulated fields, one short epoch) and each trial starts from those weights.
PRETRAIN = ["simulate.fields=2", "train.epochs=1", "train.max_steps=2"]
TINY = [
    *CV_TINY,
    "split.row_fractions=[0.85, 0, 0.15]",
    f"pretrain.config={ROOT / 'configs' / 'pretrain.yaml'}",
    f"pretrain.set={json.dumps(PRETRAIN)}",
]


@pytest.mark.slow
def test_one_trial_cross_validates_the_sample(sdss_dir: Path, tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(
        "train.lr: {low: 1e-3, high: 1e-2, log: true}\nlabel.star_radius_fwhm: {low: 0.8, high: 1.2}\n"
    )
    sets = [f"workdir={tmp_path / 'stores'}", f"runs_dir={tmp_path / 'runs'}", *TINY]
    args = ["tune", str(ROOT / "configs" / "sample.yaml"), "--trials", "1", "--folds", "2", "--workers", "1"]
    args += ["--space", str(space), *(a for s in sets for a in ("--set", s))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "stores" / "sample" / "tune"
    with open(out / TRIALS_CSV, newline="") as f:
        (row,) = csv.DictReader(f)
    assert row["state"] == "COMPLETE", row["error"]
    assert (tmp_path / "runs" / "pretrain" / "best.pt").is_file()  # pretrained once, by the search
    # The trial's folds are those its cross-validation summarised, in its own folder.
    trial = out / TRIALS_FOLDER / trial_name(0)
    summary = read_json(trial / "cv" / "cv-2.json")
    folds = summary["methods"]["sgc"]["mcc"]["folds"]
    assert [float(row["fold 0"]), float(row["fold 1"])] == pytest.approx(folds)
    assert float(row["value"]) == pytest.approx(sum(folds) / 2)
    # Only sgc was scored (the value needs no baseline), with the drawn settings.
    assert set(summary["methods"]) == {"sgc"}
    trial_cfg = load_config(trial / "cv" / "sgc-cv-2.yaml")
    assert trial_cfg.train.lr == pytest.approx(float(row["train.lr"]))
    assert trial_cfg.label.star_radius_fwhm == pytest.approx(float(row["label.star_radius_fwhm"]))
    # The run's store was made once and kept; the trial's copy of it is gone.
    assert (tmp_path / "stores" / "sample.zarr").is_dir()
    assert not (out / TRIALS_FOLDER / f"{trial_name(0)}.zarr").exists()
    assert (tmp_path / "stores" / "sgc-ingest-sample.yaml").is_file()  # the run's ingest
    assert not (out / TRIALS_FOLDER / f"sgc-ingest-{trial_name(0)}.yaml").exists()  # not the trial's
    best = load_config(out / BEST_YAML)
    assert best.name == "sample-tuned" and best.train.lr == pytest.approx(float(row["train.lr"]))
    assert "best: trial 0" in result.output
