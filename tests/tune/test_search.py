"""sgc tune on a real two-worker Dask cluster, with cheap objectives (tests/tune/objectives.py): trials at the
same time on both workers, pruning decided in the trial processes, failures recorded, the best config one
that sgc run takes, and a folder holding another search refused."""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from sgc.cli import app
from sgc.compute import Compute
from sgc.config import ComputeConfig, RunConfig, load_config
from sgc.tune import TuneError
from sgc.tune.files import BEST_YAML, HISTORY_PNG, IMPORTANCE_PNG, JOURNAL, TRIALS_CSV, TRIALS_MD
from sgc.tune.search import TuneOptions, tune
from sgc.tune.space import parse_space
from sgc.tune.study import open_storage
from tests.tune.objectives import BEST_LR, FOLDS, fails_on_focal, lr_peak

LR_SPACE = {"train.lr": {"low": 1e-4, "high": 1e-1, "log": True}, "train.loss.kind": ["ce", "ce+dice"]}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Compute]:
    """A local cluster of two worker processes, as `sgc tune --workers 2` starts."""
    with Compute(ComputeConfig(workers=2)) as compute:
        yield compute


def _config(tmp_path: Path, name: str = "search") -> RunConfig:
    return load_config(
        None, [f"name={name}", f"workdir={tmp_path / 'stores'}", f"runs_dir={tmp_path / 'runs'}"]
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _expected(lr: float) -> list[float]:
    """What tests.tune.objectives.lr_peak gives on each fold."""
    return [1 - abs(math.log10(lr / BEST_LR)) + 0.01 * fold for fold in range(FOLDS)]


@pytest.mark.slow
def test_trials_run_at_once_on_two_workers_and_the_best_config_runs(cluster: Compute, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    space = parse_space(LR_SPACE, "space", cfg)
    settings = {"name": "search", "workdir": str(tmp_path / "stores"), "train": {"epochs": 3}}
    options = TuneOptions(trials=4, pruner="none", steps=FOLDS)
    result = tune(cfg, lr_peak, space, options, settings, compute=cluster)
    out = tmp_path / "stores" / "search" / "tune"
    assert result.out == out and result.ran == 4
    assert [t.state for t in result.trials] == [TrialState.COMPLETE] * 4

    rows = _rows(out / TRIALS_CSV)
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3]
    for row, trial in zip(rows, result.trials, strict=True):
        # Each fold's value, and the trial's (their mean), as the objective computed them in the worker.
        folds = [float(row[f"fold {k}"]) for k in range(FOLDS)]
        assert folds == pytest.approx(_expected(float(row["train.lr"])))
        assert float(row["value"]) == pytest.approx(sum(folds) / FOLDS) == pytest.approx(trial.value)
        assert row["train.loss.kind"] == trial.params["train.loss.kind"]
        assert row["state"] == "COMPLETE" and row["error"] == ""
        assert float(row["seconds"]) >= FOLDS * 0.4
    # Both workers ran trials, and two trials ran at the same time.
    assert len({r["worker"] for r in rows}) == 2
    spans = [(dt.datetime.fromisoformat(r["started"]), dt.datetime.fromisoformat(r["ended"])) for r in rows]
    overlapping = [
        (a, b)
        for a in range(4)
        for b in range(a + 1, 4)
        if spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]
    ]
    assert overlapping, spans
    assert "| 0 | COMPLETE |" in (out / TRIALS_MD).read_text()

    # The best config: the settings given with the best trial's parameters, a config sgc run takes.
    best = result.best
    assert best is not None and best.value == max(t.value for t in result.trials)
    tuned = load_config(out / BEST_YAML)
    assert tuned.name == "search-tuned" and tuned.train.epochs == 3
    assert tuned.train.lr == best.params["train.lr"]
    assert tuned.train.loss.kind == best.params["train.loss.kind"]
    assert CliRunner().invoke(app, ["config", str(out / BEST_YAML)]).exit_code == 0
    assert (out / HISTORY_PNG).stat().st_size > 0 and (out / IMPORTANCE_PNG).stat().st_size > 0

    # Run again: every finished trial counts toward the budget, none is run again.
    again = tune(cfg, lr_peak, space, options, settings, compute=cluster)
    assert again.ran == 0
    assert [(t.number, t.value) for t in again.trials] == [(t.number, t.value) for t in result.trials]
    # A larger budget goes on from there.
    more = tune(cfg, lr_peak, space, TuneOptions(trials=5, pruner="none"), settings, compute=cluster)
    assert more.ran == 1 and len(more.trials) == 5
    # Another space (or objective) in the same folder would mix trials that do not compare: refused.
    other = parse_space({"train.lr": {"low": 1e-3, "high": 1e-2}}, "space", cfg)
    with pytest.raises(TuneError, match=f"^{out} holds a search with another search space"):
        tune(cfg, lr_peak, other, options, settings, compute=cluster)
    with pytest.raises(TuneError, match="another objective"):
        tune(cfg, fails_on_focal, space, options, settings, compute=cluster)


@pytest.mark.slow
def test_the_trial_processes_prune_against_each_other(cluster: Compute, tmp_path: Path) -> None:
    cfg = _config(tmp_path, "pruned")
    space = parse_space({"train.lr": {"low": 1e-4, "high": 1e-1, "log": True}}, "space", cfg)
    # One trial at a time, so that which trials each one is compared with does not depend on timing.
    options = TuneOptions(trials=6, parallel=1, pruner="median", steps=FOLDS, startup=2, seed=3)
    result = tune(cfg, lr_peak, space, options, compute=cluster)
    complete = [t for t in result.trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in result.trials if t.state == TrialState.PRUNED]
    assert len(complete) + len(pruned) == 6
    assert pruned, [(t.number, t.state, t.params) for t in result.trials]
    for trial in pruned:
        # Stopped before its last fold, in its worker, where its running mean was below the median of the
        # trials complete before it after as many folds.
        step = max(trial.intermediate_values)
        assert step < FOLDS and len(trial.user_attrs["folds"]) == step
        assert trial.user_attrs["worker"].startswith("tcp://")
        earlier = sorted(t.intermediate_values[step] for t in complete if t.number < trial.number)
        assert len(earlier) >= 2
        median = (earlier[(len(earlier) - 1) // 2] + earlier[len(earlier) // 2]) / 2
        assert trial.intermediate_values[step] < median
    rows = _rows(result.out / TRIALS_CSV)
    assert [r["state"] for r in rows] == [t.state.name for t in result.trials]
    assert all(r["fold 2"] == "" for r in rows if r["state"] == "PRUNED")


def test_failed_trials_are_recorded_and_counted(cluster: Compute, tmp_path: Path) -> None:
    cfg = _config(tmp_path, "failing")
    # split.patch 40 breaks a rule with the default depth 4 (40 is not a multiple of 16): such a draw fails
    # in the driver; the focal loss fails in the worker (the objective raises).
    space = parse_space({"split.patch": [40, 64], "train.loss.kind": ["ce", "ce+focal"]}, "space", cfg)
    result = tune(cfg, fails_on_focal, space, TuneOptions(trials=6, pruner="none", seed=0), compute=cluster)
    assert len(result.trials) == 6
    errors = {row["number"]: row["error"] for row in _rows(result.out / TRIALS_CSV)}
    kinds = set()
    for trial in result.trials:
        error = errors[str(trial.number)]
        if trial.params["split.patch"] == 40:
            assert trial.state == TrialState.FAIL
            assert "split.patch (40) must be a multiple of 2**train.model.depth (16)" in error
            kinds.add("config")
        elif trial.params["train.loss.kind"] == "ce+focal":
            assert trial.state == TrialState.FAIL
            assert error == "RuntimeError: focal loss refused by the test objective"
            assert trial.user_attrs["worker"].startswith("tcp://")
            kinds.add("objective")
        else:
            assert trial.state == TrialState.COMPLETE and error == ""
            kinds.add("complete")
    assert kinds == {"config", "objective", "complete"}
    study = optuna.load_study(study_name="failing", storage=open_storage(result.out / JOURNAL))
    assert len(study.trials) == 6
