"""The study of a search, as the driver and every trial process open it: storage, pruner, states.

The study lives in Optuna's journal storage, one append-only file (``tune/study.journal``) that each process
opens for itself: the driver asks for trials there, and each trial, on whichever Dask worker it runs,
reports its folds and records its result there, so that a pruner in one process sees the folds of trials in
every other, and a search killed at any point resumes from what the file holds. Writers take a file lock
(a symlink, which also works on NFS, where a cluster's workers would share it); a lock left by a killed
process is broken after :data:`LOCK_GRACE_S`, since every write holds it for milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import FrozenTrial, TrialState

from sgc.tune import TuneError

PRUNERS = ("median", "hyperband", "none")
LOCK_GRACE_S = 10
# User attributes of a trial, written by the trial (started, ended, worker, folds, error) or the driver.
STARTED, ENDED, WORKER, FOLDS, ERROR = "started", "ended", "worker", "folds", "error"
# A trial left running by a killed search: failed, and its parameters queued again (RETRY_OF on the new).
INTERRUPTED, RETRY_OF = "interrupted", "retry_of"


def open_storage(journal: Path) -> JournalStorage:
    """The journal storage in ``journal`` (created if missing)."""
    journal.parent.mkdir(parents=True, exist_ok=True)
    lock = JournalFileSymlinkLock(str(journal), grace_period=LOCK_GRACE_S)
    return JournalStorage(JournalFileBackend(str(journal), lock_obj=lock))


def make_pruner(kind: str, steps: int, startup: int) -> optuna.pruners.BasePruner:
    """The pruner, the same in the driver and in every trial process.

    Args:
        kind: ``median`` (stop a trial whose running mean after a fold is below the median of the finished
            trials' after the same fold), ``hyperband`` (successive halving over the folds) or ``none``.
        steps: the folds of a trial (the steps reported are the folds done, 1 to ``steps``).
        startup: finished trials before the median pruner stops any.
    """
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=0)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(steps, 1), reduction_factor=3)
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise TuneError(f"--pruner {kind}: not one of {', '.join(PRUNERS)}")


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Whether a trial used up one of the search's ``--trials``: finished (complete, pruned, or failed on its
    own), not interrupted by a killed search (that one is run again)."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and not trial.user_attrs.get(INTERRUPTED, False)
