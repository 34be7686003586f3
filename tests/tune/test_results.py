"""What a search leaves: the trials table, the best config, the summary, the figures, and their section of
the HTML report; from a study made in memory, so that no cluster is needed."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sgc.atomic import read_json
from sgc.config import RunConfig, load_config
from sgc.report.html import write_report
from sgc.tune.files import BEST_YAML, SUMMARY_JSON, TRIALS_CSV, TRIALS_MD, tune_dir
from sgc.tune.results import (
    best_trial,
    history_figure,
    importance_figure,
    write_best,
    write_summary,
    write_tables,
)
from sgc.tune.space import parse_space
from sgc.tune.study import ENDED, ERROR, FOLDS, INTERRUPTED, STARTED, WORKER


def _study(interrupted: bool = False) -> optuna.Study:
    """Five complete trials (value 1 - |log10(lr / 3e-3)|, two folds around it), one pruned after a fold,
    and one failed (or interrupted by a killed search)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    space = {
        "train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
        "train.loss.kind": optuna.distributions.CategoricalDistribution(["ce", "ce+dice"]),
    }
    drawn = [(3e-3, "ce"), (1e-2, "ce+dice"), (1e-3, "ce"), (2e-3, "ce+dice"), (5e-2, "ce"), (1e-4, "ce")]
    for lr, kind in [*drawn, (3e-2, "ce")]:
        study.enqueue_trial({"train.lr": lr, "train.loss.kind": kind})
        trial = study.ask(space)
        score = 1 - abs(math.log10(lr / 3e-3))
        trial.set_user_attr(STARTED, f"2026-01-01T00:00:0{trial.number}+00:00")
        trial.set_user_attr(ENDED, f"2026-01-01T00:00:1{trial.number}+00:00")
        trial.set_user_attr(WORKER, f"tcp://127.0.0.1:{4000 + trial.number % 2}")
        if trial.number == 5:
            trial.report(score, 1)
            trial.set_user_attr(FOLDS, [score])
            study.tell(trial, state=TrialState.PRUNED)
        elif trial.number == 6:
            trial.set_user_attr(
                INTERRUPTED if interrupted else ERROR, True if interrupted else "RuntimeError: oom"
            )
            study.tell(trial, state=TrialState.FAIL)
        else:
            trial.set_user_attr(FOLDS, [score - 0.01, score + 0.01])
            study.tell(trial, score)
    return study


def test_the_trials_table_best_config_and_summary(tmp_path: Path) -> None:
    study = _study()
    trials = study.get_trials()
    cfg = RunConfig()
    space = parse_space(
        {"train.lr": {"low": 1e-4, "high": 1e-1, "log": True}, "train.loss.kind": ["ce", "ce+dice"]}, "s", cfg
    )
    write_tables(trials, space, tmp_path, "study", "mean object mcc of sgc over 2 folds")
    with open(tmp_path / TRIALS_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["state"] for r in rows] == ["COMPLETE"] * 5 + ["PRUNED", "FAIL"]
    assert float(rows[0]["value"]) == 1.0 and float(rows[0]["fold 0"]) == pytest.approx(0.99)
    # A pruned trial shows the running mean it stopped at, and the one fold it ran.
    assert float(rows[5]["value"]) == pytest.approx(0.0 - math.log10(30) + 1) and rows[5]["fold 1"] == ""
    assert rows[6]["error"] == "RuntimeError: oom" and rows[6]["value"] == ""
    assert [float(r["seconds"]) for r in rows] == [10.0] * 7
    assert rows[1]["worker"] == "tcp://127.0.0.1:4001" and rows[1]["train.loss.kind"] == "ce+dice"
    md = (tmp_path / TRIALS_MD).read_text()
    assert "Trials: 7: 5 complete, 1 pruned, 1 fail" in md and "Best: trial 0, 1." in md

    assert best_trial(trials).number == 0
    settings = {"name": "study", "train": {"epochs": 7, "loss": {"aux_weight": 0.5}}}
    path = write_best(trials, settings, "study", tmp_path, "mean object mcc")
    best = load_config(path)
    assert (best.name, best.train.epochs, best.train.lr) == ("study-tuned", 7, 3e-3)
    assert (best.train.loss.kind, best.train.loss.aux_weight) == ("ce", 0.5)
    assert path.read_text().startswith("# sgc tune study: trial 0 of 7, mean object mcc 1.")

    # An interrupted trial is shown as such, and counted apart.
    summary_path = write_summary(
        _study(True).get_trials(), tmp_path, "study", "mean object mcc", 7, {"best": path}
    )
    summary = read_json(summary_path)
    assert summary["trials"] == {"complete": 5, "pruned": 1, "interrupted": 1}
    assert summary["best"] == {
        "number": 0,
        "value": 1.0,
        "params": {"train.lr": 3e-3, "train.loss.kind": "ce"},
    }


def test_no_best_config_before_a_trial_is_complete(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    study.tell(study.ask(), state=TrialState.FAIL)
    assert write_best(study.get_trials(), {}, "study", tmp_path, "x") is None
    assert not (tmp_path / BEST_YAML).exists()
    assert history_figure(study.get_trials(), "x", tmp_path) is None
    assert importance_figure(study, tmp_path) is None


def test_the_report_shows_the_search(tmp_path: Path) -> None:
    cfg = load_config(None, [f"workdir={tmp_path}", "name=run"])
    paths = cfg.paths
    page = write_report(cfg, paths).read_text()
    assert "<h2>Hyper-parameter search</h2><p class='note'>No search of this run" in page

    study = _study()
    out = tune_dir(paths.out_dir)
    out.mkdir(parents=True)
    files = {"history": history_figure(study.get_trials(), "mean object mcc", out)}
    files["importances"] = importance_figure(study, out)
    assert all(p is not None and p.stat().st_size > 10_000 for p in files.values())
    write_best(study.get_trials(), {}, "run", out, "mean object mcc")
    write_summary(study.get_trials(), out, "run", "mean object mcc of sgc over 2 folds", 7, files)
    assert (out / SUMMARY_JSON).is_file()
    page = write_report(cfg, paths).read_text()
    section = page[page.index("<h2>Hyper-parameter search</h2>") :]
    assert (
        "mean object mcc of sgc over 2 folds, maximised; 5 complete, 1 pruned, 1 fail; best: trial 0, 1"
        in section
    )
    assert "<td>train.lr</td><td>0.003</td>" in section
    for name in ("history.png", "importance.png"):
        assert f'src="img/{name}"' in section and (paths.report / "img" / name).is_file()
