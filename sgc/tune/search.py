"""The driver of ``sgc tune``: asks the study for trials and keeps the Dask cluster busy with them.

The driver runs in the ``sgc tune`` process with the run's Dask client (:class:`~sgc.compute.Compute`: a
local cluster of ``--workers N`` processes, or ``--scheduler ADDR``). It asks the study for a trial
(``study.ask`` with the search space: TPE, with the "constant liar" that keeps trials asked for at once
from being drawn alike), builds the trial's config, and submits it as one task (:func:`sgc.tune.trial.
run_trial`), keeping at most ``parallel`` in flight (default: one per worker). As each task ends it
rewrites the trials table and the best configuration, and submits the next, until ``--trials`` trials
have finished.

A search is resumable because everything lives in the study's journal (:mod:`sgc.tune.study`): run again,
``sgc tune`` loads the study, keeps every finished trial (they count toward ``--trials``), and fails the
trials that a killed search left running, marked ``interrupted``, queueing their parameters again so that
they are run (and not counted twice). A folder that holds a search of another space, objective or base
config is refused rather than mixed: its trials would not be comparable. One driver per study: a second
``sgc tune`` of the same run would take the first one's running trials for interrupted ones.

With ``--scheduler``, the workers must see the run's folders and the journal at the same paths (a shared
file system), as every other stage's workers must see the store.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from sgc.atomic import atomic_write
from sgc.compute import Compute
from sgc.config import ConfigError, RunConfig, config_digest
from sgc.tune import TuneError
from sgc.tune.files import JOURNAL, SPACE_YAML, tune_dir
from sgc.tune.objective import Objective, describe
from sgc.tune.results import (
    best_trial,
    history_figure,
    importance_figure,
    write_best,
    write_summary,
    write_tables,
)
from sgc.tune.space import SearchSpace
from sgc.tune.study import (
    ENDED,
    ERROR,
    INTERRUPTED,
    RETRY_OF,
    STARTED,
    counts_toward_budget,
    make_pruner,
    open_storage,
)
from sgc.tune.trial import ERROR_CHARS, TrialJob, TrialOutcome, run_trial, trial_settings, utc_now

log = logging.getLogger(__name__)

# The study's user attribute that says what it searches; a resumed search must find it unchanged.
IDENTITY = "sgc_identity"


@dataclass(frozen=True)
class TuneOptions:
    """How to search.

    Attributes:
        trials: finished trials to reach, those of earlier (killed) searches of the same study included.
        parallel: trials in flight at once; None: one per Dask worker.
        pruner: ``median``, ``hyperband`` or ``none`` (:func:`sgc.tune.study.make_pruner`).
        steps: folds per trial, for the hyperband pruner.
        startup: finished trials before the median pruner stops any.
        seed: seed of the sampler (the same seed draws the same first trials).
    """

    trials: int = 20
    parallel: int | None = None
    pruner: str = "median"
    steps: int = 3
    startup: int = 5
    seed: int = 0


@dataclass
class TuneResult:
    """What a search did.

    Attributes:
        out: the search's folder.
        trials: every trial of the study, as it ended.
        ran: trials this call ran (not those found finished).
        about: what a trial's value is, in words.
        files: the outputs written, by kind.
    """

    out: Path
    trials: list[FrozenTrial]
    ran: int
    about: str
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def best(self) -> FrozenTrial | None:
        """The complete trial of highest value."""
        return best_trial(self.trials)

    def format(self) -> str:
        """A few lines for the terminal: counts by state, the best trial and its parameters, the files."""
        states: dict[str, int] = {}
        for t in self.trials:
            name = "interrupted" if t.user_attrs.get(INTERRUPTED) else t.state.name.lower()
            states[name] = states.get(name, 0) + 1
        lines = [
            f"{len(self.trials)} trial(s), {self.ran} run now: "
            + ", ".join(f"{n} {s}" for s, n in states.items()),
            f"value: {self.about}",
        ]
        best = self.best
        if best is None:
            lines.append("no trial complete")
        else:
            params = ", ".join(f"{k}={v!r}" for k, v in best.params.items())
            lines.append(f"best: trial {best.number}, {best.value:.4g} ({params})")
        lines += [f"{kind}: {path}" for kind, path in self.files.items()]
        return "\n".join(lines) + "\n"


def _identity(cfg: RunConfig, space: SearchSpace, objective: Any) -> dict[str, Any]:
    """What a study searches: its space, objective and base config (where it computes left out)."""
    base = cfg.model_dump(mode="json", exclude={"compute"})
    return {"space": space.to_data(), "objective": describe(objective), "config": config_digest(base)}


def _check_identity(study: optuna.Study, identity: dict[str, Any], out: Path) -> None:
    found = study.user_attrs.get(IDENTITY)
    if found is None:
        study.set_user_attr(IDENTITY, identity)
        return
    changed = [what for what in ("space", "objective", "config") if found.get(what) != identity[what]]
    if changed:
        words = {"space": "search space", "objective": "objective", "config": "base config"}
        raise TuneError(
            f"{out} holds a search with another {' and '.join(words[c] for c in changed)}: its trials would "
            "not compare with these; remove that folder to start afresh, or give this search its own name "
            "(--set name=...)"
        )


def _requeue_interrupted(study: optuna.Study, storage: Any) -> int:
    """Fail the trials a killed search left running, and queue their parameters to be run again."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in stale:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, INTERRUPTED, True)
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number}, skip_if_exists=False)
        log.info("tune: trial %d was left running by a killed search: run again", trial.number)
    return len(stale)


def _fail_unfinished(study: optuna.Study, storage: Any, number: int, error: str) -> None:
    """Record the failure of a trial whose task died before it could record its end itself."""
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), number
    )
    if storage.get_trial(trial_id).state.is_finished():
        return
    storage.set_trial_user_attr(trial_id, ERROR, error[:ERROR_CHARS])
    storage.set_trial_user_attr(trial_id, ENDED, utc_now())
    study.tell(number, state=TrialState.FAIL, skip_if_finished=True)


def _params(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in params.items()
    )


def tune(
    cfg: RunConfig,
    objective: Objective,
    space: SearchSpace,
    options: TuneOptions | None = None,
    settings: dict[str, Any] | None = None,
    compute: Compute | None = None,
) -> TuneResult:
    """Search ``space`` for the settings of ``cfg`` that maximise ``objective``, trials on Dask workers.

    Args:
        cfg: the base config; the study is named after it and its outputs go to ``workdir/NAME/tune``.
        objective: a picklable callable (:mod:`sgc.tune.objective`); its ``prepare(cfg, compute)``, if it has
            one, is called once before the trials and returns the store they start from a copy of.
        space: the search space (:func:`sgc.tune.space.load_space`).
        options: budget, parallelism, pruner, seed.
        settings: the base config as written (its file and ``--set``), for ``best.yaml``; default: the
            whole resolved config.
        compute: the Dask client; a new one from ``cfg.compute`` if not given.

    Raises:
        TuneError: a bad option, or a folder holding another search.
        SgcError: from ``prepare`` (data that cannot be made).
    """
    options = options or TuneOptions()
    if options.trials < 1:
        raise TuneError(f"--trials {options.trials}: a search needs at least 1 trial")
    if options.parallel is not None and options.parallel < 1:
        raise TuneError(f"--parallel {options.parallel}: at least 1 trial at a time")
    make_pruner(options.pruner, options.steps, options.startup)  # refuses an unknown pruner before any work
    out = tune_dir(cfg.paths.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    journal = out / JOURNAL
    storage = open_storage(journal)
    about = describe(objective)
    study = optuna.create_study(
        study_name=cfg.name,
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=options.seed, constant_liar=True),
        pruner=make_pruner(options.pruner, options.steps, options.startup),
        load_if_exists=True,
    )
    _check_identity(study, _identity(cfg, space, objective), out)
    with atomic_write(out / SPACE_YAML, "w", sync=False) as f:
        f.write(f"# the search space of {cfg.name}, from {space.source}\n")
        f.write(yaml.safe_dump(space.to_data(), sort_keys=False))
    kept = sum(counts_toward_budget(t) for t in study.get_trials(deepcopy=False))
    requeued = _requeue_interrupted(study, storage)
    if kept or requeued:
        log.info("tune: resuming %s: %d finished trial(s) kept, %d re-queued", journal, kept, requeued)
    settings = settings if settings is not None else cfg.model_dump(mode="json")

    def write(final: bool = False) -> dict[str, Path]:
        """Rewrite the tables, the best config and the summary (and, at the end, the figures)."""
        trials = study.get_trials(deepcopy=False)
        tables = write_tables(trials, space, out, cfg.name, about)
        files = {"trials table": tables[0], "trials (Markdown)": tables[1]}
        best = write_best(trials, settings, cfg.name, out, about)
        if best is not None:
            files["best config"] = best
        if final:
            figures = {
                "history": history_figure(trials, about, out),
                "importances": importance_figure(study, out),
            }
            files.update({kind: path for kind, path in figures.items() if path is not None})
        write_summary(trials, out, cfg.name, about, options.trials, files)
        return files

    ran = 0
    if kept < options.trials:  # else there is nothing to run: no cluster is started
        with Compute(cfg.compute) if compute is None else contextlib.nullcontext(compute) as run_compute:
            prepare = getattr(objective, "prepare", None)
            seed_store = prepare(cfg, run_compute) if prepare is not None else None
            if any(key.startswith("ingest.") for key in space.distributions):
                seed_store = None  # each trial ingests the field with its own settings
            with run_compute.stage("tune") as client:
                parallel = options.parallel or max(len(client.scheduler_info()["workers"]), 1)
                log.info("tune: %d trial(s) at a time, %d to reach, into %s", parallel, options.trials, out)
                driver = _Driver(study, storage, cfg, objective, space, options, journal, seed_store, write)
                ran = driver.run(client, parallel)
    files = write(final=True)
    return TuneResult(out, study.get_trials(), ran, about, files)


@dataclass
class _Driver:
    """Keeps up to ``parallel`` trials in flight until the budget is reached."""

    study: optuna.Study
    storage: Any
    cfg: RunConfig
    objective: Any
    space: SearchSpace
    options: TuneOptions
    journal: Path
    seed_store: Path | None
    write: Callable[[], Any]

    def counted(self) -> int:
        """Finished trials that count toward the budget."""
        return sum(counts_toward_budget(t) for t in self.study.get_trials(deepcopy=False))

    def run(self, client: Any, parallel: int) -> int:
        """Run trials until ``options.trials`` have finished; return how many ran here."""
        from distributed import as_completed

        in_flight: dict[Any, int] = {}
        pending = as_completed()
        ran = 0

        def submit_more() -> None:
            while len(in_flight) < parallel and self.counted() + len(in_flight) < self.options.trials:
                job = self.ask()
                if job is None:
                    continue
                key = f"sgc-tune-{self.study.study_name}-{job.number:04d}-{uuid.uuid4().hex[:8]}"
                future = client.submit(run_trial, job, pure=False, key=key)
                in_flight[future] = job.number
                pending.add(future)

        submit_more()
        for future in pending:
            number = in_flight.pop(future)
            ran += 1
            try:
                outcome: TrialOutcome = future.result()
            except Exception as exc:  # the task died (a lost worker): the trial could not record its end
                outcome = TrialOutcome(number, TrialState.FAIL.name, None, f"{type(exc).__name__}: {exc}")
                _fail_unfinished(self.study, self.storage, number, outcome.error or "")
            if outcome.state == TrialState.COMPLETE.name:
                log.info("tune: trial %d complete: %.4g", number, outcome.value)
            elif outcome.state == TrialState.PRUNED.name:
                log.info("tune: trial %d pruned", number)
            else:
                log.warning("tune: trial %d failed: %s", number, outcome.error)
            self.write()
            submit_more()
        return ran

    def ask(self) -> TrialJob | None:
        """The next trial's job; None where its draw breaks a rule of the config (then failed at once)."""
        trial = self.study.ask(dict(self.space.distributions))
        try:
            settings = trial_settings(self.cfg, trial.params, trial.number)
        except ConfigError as exc:
            now = utc_now()
            for key, value in ((ERROR, str(exc)[:ERROR_CHARS]), (STARTED, now), (ENDED, now)):
                trial.set_user_attr(key, value)
            self.study.tell(trial, state=TrialState.FAIL)
            log.warning("tune: trial %d: %s", trial.number, exc)
            return None
        log.info("tune: trial %d submitted (%s)", trial.number, _params(trial.params))
        return TrialJob(
            journal=str(self.journal.resolve()),
            study=self.study.study_name,
            number=trial.number,
            settings=settings,
            objective=self.objective,
            pruner=self.options.pruner,
            steps=self.options.steps,
            startup=self.options.startup,
            seed_store=None if self.seed_store is None else str(Path(self.seed_store).resolve()),
        )
