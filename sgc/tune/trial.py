"""One trial of ``sgc tune``, as a task on a Dask worker.

The driver (:mod:`sgc.tune.search`) asks the study for a trial, builds its config (:func:`trial_settings`)
and submits :func:`run_trial` with a :class:`TrialJob`. The task opens the study's journal itself: it
records where and when it ran, reports each fold's running mean (a pruner there reads the folds of every
other trial from the same file) and records its own result, so that a finished trial is safe in the journal
even if the driver dies before it hears of it. It returns a short :class:`TrialOutcome` for the driver's log.

Each trial is a run of its own, ``trial-NNNN``, below the search's folder (``tune/trials/trial-NNNN`` for
its stage records, plans, predictions and metrics, ``runs_dir/NAME/tune/trial-NNNN`` for its checkpoints):
trials never share an output, and the run's own outputs are never touched. It reads the run's raw folder,
and starts from a copy of the run's store (a copy, not the store itself: the trial relabels it with its own
label settings), unless the search draws ingest settings, in which case it ingests the field itself. The
copy (about 60 MB for an SDSS field, copied in a fraction of a second where an ingest takes seconds) is
deleted when the trial ends; the rest stays for inspection.

Within the trial, Dask runs in the worker's own process (``compute.workers: 0``) and training loads batches
in the trainer (``train.loader.workers: 0``): a worker process of a local cluster is daemonic and may start
no processes, and one trial per worker already keeps every core busy (workers run torch single-threaded).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from sgc.config import RunConfig, merge_settings, validate_config
from sgc.errors import SgcError
from sgc.stages import pretrain_config
from sgc.tune.files import TRIALS_FOLDER, TUNE_FOLDER, trial_name
from sgc.tune.space import nested
from sgc.tune.study import ENDED, ERROR, FOLDS, STARTED, WORKER, make_pruner, open_storage

log = logging.getLogger(__name__)

# Longest error message kept in the journal and the trials table.
ERROR_CHARS = 500


@dataclass(frozen=True)
class TrialJob:
    """What a trial task needs (pickled to the worker).

    Attributes:
        journal: the study's journal file.
        study: the study's name.
        number: the trial's number in the study.
        settings: the trial's complete config, as plain data (:func:`trial_settings`).
        objective: the picklable objective (:mod:`sgc.tune.objective`).
        pruner: ``median``, ``hyperband`` or ``none``.
        steps: folds per trial, for the pruner.
        startup: finished trials before the median pruner prunes.
        seed_store: the store the trial starts from a copy of; None: it ingests its own.
    """

    journal: str
    study: str
    number: int
    settings: dict[str, Any]
    objective: Any
    pruner: str
    steps: int
    startup: int
    seed_store: str | None = None


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended: ``state`` is an Optuna state name; ``value`` the mean over folds where complete."""

    number: int
    state: str
    value: float | None = None
    error: str | None = None


def trial_settings(cfg: RunConfig, params: dict[str, Any], number: int) -> dict[str, Any]:
    """The config of trial ``number``: ``cfg`` with the drawn ``params`` and the trial's own name and folders.

    Paths are made absolute (from this process's working folder), since the trial may run in a process
    started elsewhere.

    Raises:
        ConfigError: the drawn parameters break a rule of the config (``split.patch`` and
            ``train.model.depth``, say).
    """
    paths = cfg.paths
    data = merge_settings(cfg.model_dump(mode="json"), nested(params))
    reference = cfg.baselines.reference
    data = merge_settings(
        data,
        {
            "name": trial_name(number),
            "workdir": str((paths.out_dir / TUNE_FOLDER / TRIALS_FOLDER).resolve()),
            "runs_dir": str((cfg.runs_dir / cfg.name / TUNE_FOLDER).resolve()),
            "source": "local",
            "raw_dir": str(paths.raw.resolve()),
            "catalogs": [str(p.resolve()) for p in cfg.catalogs],
            "compute": {"workers": 0, "scheduler": None},
            "exclude": {"footprint_sources": [str(p.resolve()) for p in cfg.exclude.footprint_sources]},
            "baselines": {"reference": None if reference is None else str(reference.resolve())},
            "train": {"loader": {"workers": 0}},
        },
    )
    if cfg.pretrain.config is not None:
        # Pretrained once, before the trials (the objective's prepare): each trial starts from those weights
        # rather than pretraining again in a worker.
        pretrained = pretrain_config(cfg).paths.checkpoint.resolve()
        data = merge_settings(data, {"pretrain": {"config": None}, "train": {"init": str(pretrained)}})
    # Refused here, in the driver, so that a draw the config cannot take fails at once with the reason.
    validate_config(data, f"trial {number}")
    return data


def utc_now() -> str:
    """The time now, UTC, ISO 8601 to the millisecond: how trials record when they ran."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _where() -> str:
    """The Dask worker this runs on, else this host and process."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def _finite(values: list[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


class _Reporter:
    """The ``report`` an objective calls after each fold: records it, and stops a trial the pruner stops."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.values: list[float] = []

    def __call__(self, fold: int, value: float) -> None:
        self.values.append(float(value))
        self.trial.set_user_attr(FOLDS, _finite(self.values))
        # The step is the number of folds done: the resource hyperband counts, from 1.
        step = len(self.values)
        self.trial.report(sum(self.values) / step, step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after fold {fold}")


def _one_line(exc: BaseException) -> str:
    """An exception as one line: sgc's own errors as they are (they name what is wrong), others with their
    type."""
    text = " ".join(str(exc).split())
    if not isinstance(exc, SgcError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:ERROR_CHARS]


def _seed(cfg: RunConfig, seed_store: str | None) -> Path | None:
    """Copy the run's store to the trial's, through a temporary name (a killed copy is never taken for a
    store); return the trial's store where one was made."""
    if seed_store is None or not Path(seed_store).is_dir() or cfg.paths.store.exists():
        return None
    store = cfg.paths.store
    partial = store.with_name(f".{store.name}.copying")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(seed_store, partial)
    partial.rename(store)
    return store


def run_trial(job: TrialJob) -> TrialOutcome:
    """Run one trial and record its result in the study (the Dask task of :mod:`sgc.tune.search`).

    The objective's exceptions do not escape: a pruned trial is recorded PRUNED, a failed one FAIL with its
    error (one line) in the trial's ``error`` attribute, as the trials table shows it.
    """
    storage = open_storage(Path(job.journal))
    study = optuna.load_study(
        study_name=job.study,
        storage=storage,
        pruner=make_pruner(job.pruner, job.steps, job.startup),
        sampler=optuna.samplers.RandomSampler(),  # this process samples nothing
    )
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(job.study), job.number
    )
    trial = optuna.Trial(study, trial_id)
    trial.set_user_attr(STARTED, utc_now())
    trial.set_user_attr(WORKER, _where())
    reporter = _Reporter(trial)
    state, value, error = TrialState.FAIL, None, None
    store = None
    try:
        cfg = validate_config(job.settings, f"trial {job.number}")
        store = _seed(cfg, job.seed_store) or cfg.paths.store
        values = [float(v) for v in job.objective(cfg, reporter)]
        trial.set_user_attr(FOLDS, _finite(values))
        mean = sum(values) / len(values) if values else math.nan
        if math.isfinite(mean):
            state, value = TrialState.COMPLETE, mean
        else:
            error = "the objective's value is not a number (no fold, or a metric undefined on a fold)"
    except optuna.TrialPruned:
        state = TrialState.PRUNED
    except Exception as exc:
        error = _one_line(exc)
        # sgc's own errors say what is wrong; anything else may be a bug: its traceback goes to the log.
        bug = not isinstance(exc, SgcError)
        log.warning("trial %d failed: %s", job.number, error, exc_info=bug)
    finally:
        if store is not None:
            shutil.rmtree(store, ignore_errors=True)
        try:
            trial.set_user_attr(ENDED, utc_now())
            if error is not None:
                trial.set_user_attr(ERROR, error)
            study.tell(job.number, value, state=state, skip_if_finished=True)
        except UpdateFinishedTrialError:
            # A later driver took this trial (outliving a killed search) for an interrupted one, failed it and
            # queued it again: this result is not recorded.
            log.warning("trial %d was failed as interrupted meanwhile: its result is dropped", job.number)
    return TrialOutcome(job.number, state.name, value, error)
