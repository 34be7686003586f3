"""What a trial of ``sgc tune`` measures: a picklable callable from a trial's config to its fold values.

An objective is called in a Dask worker as ``objective(cfg, report)`` with the trial's complete config
(its drawn parameters merged in, its own name and folders) and returns one value per fold, higher being
better; the trial's value is their mean. After each fold it calls ``report(fold, value)``, which records the
fold, gives the pruner the running mean and raises :class:`optuna.TrialPruned` where the trial should stop
(the objective lets it through). A fold whose metric is undefined (NaN) makes the running mean NaN, which
the median pruner stops, and a trial whose mean is NaN fails. Objectives are module-level functions or
instances of module-level classes, since Dask pickles them by reference to run them on another process.

:class:`CvObjective` is the one ``sgc tune`` uses: K-fold cross-validation of one field's rows
(:func:`sgc.cv.cross_validate`), each fold's value one object metric of one method. Before the trials it
readies the data every trial reads (the simulated or downloaded raw files, and the ingested store that
each trial starts from a copy of), in the ``sgc tune`` process, on the whole cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sgc.compute import Compute
from sgc.config import RunConfig, merge_settings, validate_config
from sgc.tune import TuneError

# report(fold, value): record one fold's value; raises optuna.TrialPruned where the trial should stop.
FoldReport = Callable[[int, float], None]

METHODS = ("sgc", "2023 recipe", "classical")


class Objective(Protocol):
    """A trial's measure (see the module's docstring); ``prepare`` is optional."""

    def __call__(self, cfg: RunConfig, report: FoldReport) -> Sequence[float]:
        """The trial's value on each fold, reported as each fold ends."""
        ...


def describe(objective: Any) -> str:
    """A stable description of an objective, which a resumed search must find unchanged."""
    if hasattr(objective, "describe"):
        return str(objective.describe())
    return f"{getattr(objective, '__module__', '?')}.{getattr(objective, '__qualname__', repr(objective))}"


@dataclass(frozen=True)
class CvObjective:
    """The mean over K folds of one object metric of one method (``sgc tune --folds --metric --method``).

    Attributes:
        folds: K, the bands of rows of :func:`sgc.cv.cross_validate`.
        metric: a name of :data:`sgc.cv.METRICS` (``mcc``, ``star.f1``, ...); each is higher-better.
        method: which method's metric: ``sgc`` (the model with the drawn settings), ``2023 recipe`` or
            ``classical`` (these two see only the label settings).
    """

    folds: int = 3
    metric: str = "mcc"
    method: str = "sgc"

    def __post_init__(self) -> None:
        from sgc.cv import METRICS

        if self.folds < 2:
            raise TuneError(f"--folds {self.folds}: cross-validation needs at least 2 folds")
        if self.metric not in METRICS:
            raise TuneError(f"--metric {self.metric}: not one of {', '.join(METRICS)}")
        if self.method not in METHODS:
            raise TuneError(f"--method {self.method}: not one of {', '.join(METHODS)}")

    def describe(self) -> str:
        """What the value is, in words (the trials table's header says it too)."""
        return f"mean object {self.metric} of {self.method} over {self.folds} folds"

    def prepare(self, cfg: RunConfig, compute: Compute) -> Path:
        """Make the raw data, the store and the pretrained weights that every trial reads, once, before the
        trials; return the store.

        A trial starts from a copy of this store (:mod:`sgc.tune.trial`) instead of ingesting the field
        again; the stages are those of ``sgc run``, so the store is the run's own and is reused by it.

        Raises:
            TuneError: a config that cannot be cross-validated (``split.mode: fields``, a store of more than
                one field, the recipe's method without a recipe).
        """
        from sgc.cube.store import CubeStore
        from sgc.stages import STAGES, StageContext, run_stages

        # Refused here rather than by every trial's cross-validation.
        if cfg.split.mode == "fields":
            raise TuneError("sgc tune cross-validates one field's rows: split.mode must be rows or auto")
        if self.method == "2023 recipe" and cfg.baselines.reference is None:
            raise TuneError("--method '2023 recipe' needs baselines.reference in the config")
        paths = cfg.paths
        paths.out_dir.mkdir(parents=True, exist_ok=True)
        # Pretraining too, once: every trial starts from its weights (sgc.tune.trial.trial_settings).
        stages = [STAGES[name] for name in ("simulate", "download", "ingest", "pretrain")]
        run_stages(StageContext(cfg, paths, compute), stages)
        done = CubeStore.open(paths.store).done_fields()
        if len(done) != 1:
            raise TuneError(f"{paths.store}: sgc tune cross-validates one field, the store holds {len(done)}")
        return paths.store

    def __call__(self, cfg: RunConfig, report: FoldReport) -> Sequence[float]:
        """Cross-validate ``cfg`` (scoring only the methods the value needs), reporting each fold."""
        from sgc.cv import cross_validate, metric_value

        # The baselines the value does not need cost a training (the recipe) or a fit per fold.
        changes = {
            "baselines": {
                "reference": cfg.baselines.reference if self.method == "2023 recipe" else None,
                "classical": self.method == "classical",
            }
        }
        cfg = validate_config(merge_settings(cfg.model_dump(mode="json"), changes), cfg.name)

        def on_fold(fold: int, metrics: Mapping[str, Mapping[str, Any]]) -> None:
            report(fold, metric_value(metrics[self.method]["object"], self.metric))

        result = cross_validate(cfg, self.folds, on_fold=on_fold)
        return result.values(self.method, self.metric)
