"""A search killed with SIGKILL (driver and workers) resumes: finished trials are kept and counted, the ones
it left running are marked interrupted and run again, and the budget is reached."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sgc.tune.files import JOURNAL, TRIALS_CSV
from sgc.tune.study import counts_toward_budget, open_storage
from tests.tune.killable import NAME

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 4


def _study(journal: Path) -> optuna.Study | None:
    if not journal.exists():
        return None
    try:
        return optuna.load_study(study_name=NAME, storage=open_storage(journal))
    except KeyError:  # the journal exists, the study not yet
        return None


def _search(tmp_path: Path) -> list[str]:
    return [sys.executable, "-m", "tests.tune.killable", str(tmp_path), str(TRIALS)]


@pytest.mark.slow
def test_a_killed_search_resumes_without_rerunning_finished_trials(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    journal = tmp_path / "stores" / NAME / "tune" / JOURNAL
    with open(tmp_path / "first.log", "w") as log:
        # A session of its own, so that the driver, its nannies and its workers die together, as a machine
        # that loses power would take them.
        search = subprocess.Popen(_search(tmp_path), cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and search.poll() is None:
                study = _study(journal)
                trials = study.get_trials(deepcopy=False) if study is not None else []
                # Kill once a trial is complete and another is running in a worker.
                if any(t.state == TrialState.COMPLETE for t in trials) and any(
                    t.state == TrialState.RUNNING and "started" in t.user_attrs for t in trials
                ):
                    break
                time.sleep(0.05)
        finally:
            os.killpg(search.pid, signal.SIGKILL)
            search.wait()
    assert search.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()
    before = _study(journal).get_trials()
    finished = {t.number: t for t in before if t.state == TrialState.COMPLETE}
    running = {t.number: t for t in before if t.state == TrialState.RUNNING}
    assert finished and running and len(finished) < TRIALS

    again = subprocess.run(_search(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"{len(finished)} finished trial(s) kept, {len(running)} re-queued" in again.stderr
    after = _study(journal).get_trials()
    by_number = {t.number: t for t in after}
    # Finished trials are kept as they were: not run again.
    for number, trial in finished.items():
        kept = by_number[number]
        assert kept.state == TrialState.COMPLETE and kept.value == trial.value
        assert kept.datetime_complete == trial.datetime_complete
        assert kept.user_attrs["started"] == trial.user_attrs["started"]
    # Trials the kill left running are failed as interrupted, and run again with the same parameters.
    for number, trial in running.items():
        assert by_number[number].state == TrialState.FAIL and by_number[number].user_attrs["interrupted"]
        (retry,) = [t for t in after if t.user_attrs.get("retry_of") == number]
        assert retry.params == trial.params and retry.state == TrialState.COMPLETE
    # The budget counts the trials of both runs, interrupted ones not.
    assert sum(counts_toward_budget(t) for t in after) == TRIALS
    assert len(after) == TRIALS + len(running)
    with open(journal.parent / TRIALS_CSV, newline="") as f:
        states = {int(row["number"]): row["state"] for row in csv.DictReader(f)}
    assert {n for n, s in states.items() if s == "INTERRUPTED"} == set(running)
