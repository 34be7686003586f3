"""K-fold cross-validation over the rows of one field (``sgc cv CONFIG --folds K``).

One labelled field is too little to judge a method by a single split: on the real sample the test band holds
37 objects, and a method's figure on it depends as much on which rows were drawn as on the method. ``sgc
cv`` cuts the field's rows into K equal bands (:func:`sgc.patches.plan.fold_bands`); fold ``k`` tests on band
``k``, trains on every other band but the guard rows beside the test band (and validates on the next band
where ``split.row_fractions`` gives validation a share), and is scored on its whole test band
(``evaluate.rows``), so that over the K folds every catalogued object of the field is scored exactly once,
by a model that never saw its pixels.

The stages up to the labels and exclusion run once (they do not depend on the split); each fold then runs
split, audit, training, the 2023 recipe where the config has it, prediction and evaluation into its own
folder, ``OUT/cv/fold-K-of-N`` (:class:`sgc.config.RunPaths`), with its own stage records, so that a killed
cross-validation resumes where it stopped. The summary, ``OUT/cv/cv-N.json`` and ``cv-N.md``, gives for every
method scored (sgc, the 2023 recipe, the classical cut) the mean and spread (sample standard deviation over
the folds) of every object metric, and the same metrics pooled over the folds' objects, by r magnitude too.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table, vstack

from sgc.atomic import atomic_write, read_json, write_json
from sgc.classes import CLASS_NAMES
from sgc.compute import Compute
from sgc.config import CV_FOLDER, RunConfig, RunPaths, cv_dir, merge_settings, save_config, validate_config
from sgc.cube.store import CubeStore
from sgc.errors import SgcError
from sgc.evaluate.metrics import object_scores, scores_by_magnitude
from sgc.evaluate.score import METRICS_JSON, SCORED_CSV, SUMMARY_JSON
from sgc.stages import STAGES, StageContext, run_stages

log = logging.getLogger(__name__)

# What each fold runs, after the stages it shares with the other folds; explanations and the report are the
# full run's (sgc run), not the folds'.
FOLD_STAGES = ("split", "audit", "train", "reference", "predict", "evaluate")
SHARED_STAGES = tuple(name for name in STAGES if name not in FOLD_STAGES and not STAGES[name].folded)
# The object metrics summarised over folds, as dotted paths into a metrics file's ``object`` section.
METRICS = (
    "detection_recall",
    "accuracy",
    "mcc",
    "purity",
    "star.f1",
    "galaxy.f1",
    "star.recall",
    "galaxy.recall",
)


class CvError(SgcError):
    """A cross-validation that cannot be run as asked."""


@dataclass
class CvResult:
    """What ``sgc cv`` measured.

    Attributes:
        folds: K.
        methods: per method, per fold, its object metrics (the ``object`` section of its metrics file).
        pooled: per method, the object scores of every fold's objects together (``by_magnitude`` included).
        out: the folder of the folds and the summary.
        name: the run's name (what a row of an ablation is called).
        raw: the raw folder it was made from (runs on the same data are compared).
        stem: the summary's file name, without suffix.
    """

    folds: int
    methods: dict[str, list[dict[str, Any]]]
    pooled: dict[str, dict[str, Any]] = field(default_factory=dict)
    out: Path = Path()
    name: str = ""
    raw: str = ""
    stem: str = "cv"

    def mean(self, method: str, metric: str) -> float:
        """The mean of one metric (a name of :data:`METRICS`) over the folds of one method."""
        return float(np.mean(self.values(method, metric)))

    def spread(self, method: str, metric: str) -> float:
        """The sample standard deviation of one metric over the folds (0 for one fold)."""
        values = self.values(method, metric)
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    def values(self, method: str, metric: str) -> list[float]:
        """One metric of one method, fold by fold."""
        return [metric_value(fold, metric) for fold in self.methods[method]]

    def to_json(self) -> dict[str, Any]:
        """The summary as strict JSON: mean, spread and per-fold values of every metric, and the pooled."""
        return {
            "name": self.name,
            "raw": self.raw,
            "folds": self.folds,
            "methods": {
                method: {
                    metric: {
                        "mean": self.mean(method, metric),
                        "spread": self.spread(method, metric),
                        "folds": self.values(method, metric),
                    }
                    for metric in METRICS
                }
                for method in self.methods
            },
            "pooled": self.pooled,
        }

    def format(self) -> str:
        """The table of mean +- spread per method, as Markdown."""
        head = ["method", *(m.replace(".", " ").replace("_", " ") for m in METRICS)]
        lines = [
            f"# Cross-validation: {self.folds} folds of rows, mean +- spread (sample std over folds)",
            "",
            "| " + " | ".join(head) + " |",
            "|" + " --- |" * len(head),
        ]
        for method in self.methods:
            cells = [f"{self.mean(method, m):.3f} +- {self.spread(method, m):.3f}" for m in METRICS]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines += ["", "Pooled over the folds' objects (each catalogued object scored once):", ""]
        lines += ["| method | objects | " + " | ".join(head[1:]) + " |", "|" + " --- |" * (len(head) + 1)]
        for method, scores in self.pooled.items():
            cells = ["-" if m == "purity" else f"{metric_value(scores, m):.3f}" for m in METRICS]
            lines.append(f"| {method} | {scores['n']} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def metric_value(scores: Mapping[str, Any], metric: str) -> float:
    """A dotted metric (``star.f1``) of an object metrics section; NaN where it is undefined (None)."""
    value: Any = scores
    for key in metric.split("."):
        value = value[key]
    return math.nan if value is None else float(value)


def fold_config(cfg: RunConfig, folds: int, fold: int, rows: int) -> RunConfig:
    """The config of one fold: ``split.folds`` and ``split.fold`` set, and scored on its whole test band.

    Args:
        cfg: the cross-validated run's config.
        folds: K.
        fold: which fold, from 0.
        rows: rows of the stored grid.
    """
    from sgc.patches.plan import fold_edges

    edges = fold_edges(rows, folds)
    changes = {
        "split": {"folds": folds, "fold": fold},
        "evaluate": {"rows": [edges[fold], edges[fold + 1]]},
    }
    return validate_config(merge_settings(cfg.model_dump(mode="json"), changes), f"fold {fold} of {folds}")


def cross_validate(
    cfg: RunConfig,
    folds: int,
    on_fold: Callable[[int, dict[str, dict[str, Any]]], None] | None = None,
    compute: Compute | None = None,
    variant: str | None = None,
) -> CvResult:
    """Run the K folds of ``cfg`` (resuming those done) and write their summary.

    Args:
        cfg: the run's config; its store must hold one done field (``split.mode`` rows or auto).
        folds: K, at least 2.
        on_fold: called after each fold with its index and each method's metrics; it may raise to stop
            (a pruned trial of ``sgc tune``).
        compute: the Dask client to run on; a new one from ``cfg.compute`` if not given.
        variant: what this cross-validation is called in the ablation (default: the run's name); its
            summary is ``cv-K-VARIANT``, so that settings tried on the same folds keep a summary each (a
            change of prediction settings alone reuses the folds' training).

    Raises:
        CvError: fewer than 2 folds, or a store that is not one field.
        StageError: a stage that left work undone.
    """
    if folds < 2:
        raise CvError(f"--folds {folds}: cross-validation needs at least 2 folds")
    if variant is not None and (not variant or "/" in variant or variant.startswith(".")):
        raise CvError(f"--variant {variant!r}: a plain name, used in a file name")
    if cfg.split.mode == "fields":
        raise CvError("sgc cv cuts one field into bands of rows: split.mode must be rows or auto")
    paths = cfg.paths
    out = cv_dir(paths.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = summary_stem(folds, variant)
    save_config(cfg, out, stem)
    with Compute(cfg.compute) if compute is None else contextlib.nullcontext(compute) as client:
        run_stages(StageContext(cfg, paths, client), [STAGES[name] for name in SHARED_STAGES])
        cube = CubeStore.open(paths.store)
        if len(cube.done_fields()) != 1:
            raise CvError(
                f"{paths.store}: sgc cv splits one field, the store holds {len(cube.done_fields())}"
            )
        methods: dict[str, list[dict[str, Any]]] = {}
        scored: dict[str, list[Table]] = {}
        for fold in range(folds):
            fold_cfg = fold_config(cfg, folds, fold, cube.shape[0])
            ctx = StageContext(fold_cfg, fold_cfg.paths, client)
            log.info("cv: fold %d of %d", fold, folds)
            run_stages(ctx, [STAGES[name] for name in FOLD_STAGES])
            evaluation = ctx.paths.evaluation
            metrics: dict[str, dict[str, Any]] = {}
            for method, folder in (read_json(evaluation / SUMMARY_JSON) or {}).get("methods", {}).items():
                metrics[method] = read_json(evaluation / folder / METRICS_JSON)
                methods.setdefault(method, []).append(metrics[method]["object"])
                table = Table.read(evaluation / folder / SCORED_CSV, format="ascii.csv")
                scored.setdefault(method, []).append(table)
            if on_fold is not None:
                on_fold(fold, metrics)
    pooled = {m: pooled_scores(t) for m, t in scored.items()}
    result = CvResult(folds, methods, pooled, out, variant or cfg.name, str(paths.raw.resolve()), stem)
    write_cv(result)
    return result


def pooled_scores(tables: Sequence[Table]) -> dict[str, Any]:
    """Object scores of the scored objects of every fold together, and per r-magnitude bin."""
    table = vstack(list(tables))
    index = {name: k for k, name in enumerate(CLASS_NAMES)}
    truth = np.array([index[str(v)] for v in table["truth"]], dtype=np.int64)
    predicted = np.array([index[str(v)] for v in table["predicted"]], dtype=np.int64)
    scores = object_scores(truth, predicted)
    scores["by_magnitude"] = scores_by_magnitude(
        truth, predicted, np.asarray(table["mag_r"], dtype=np.float64)
    )
    return scores


def cv_summaries(paths: RunPaths) -> list[dict[str, Any]]:
    """The cross-validation summaries of this run and of every run beside it on the same raw data (its
    variants, ``sgc cv CONFIG --set name=VARIANT --set ...``): the rows of an ablation, this run first."""
    raw = str(paths.raw.resolve())
    found = []
    for path in sorted(paths.out_dir.parent.glob(f"*/{CV_FOLDER}/cv-*.json")):
        summary = read_json(path)
        if summary is not None and summary.get("raw") == raw:
            found.append(summary)
    return sorted(found, key=lambda s: (s["name"] != paths.out_dir.name, s["name"], s["folds"]))


def summary_stem(folds: int, variant: str | None = None) -> str:
    """The file name (without suffix) of a cross-validation's summary: ``cv-K`` or ``cv-K-VARIANT``."""
    return f"cv-{folds}" if variant is None else f"cv-{folds}-{variant}"


def write_cv(result: CvResult) -> list[Path]:
    """Write the summary (:func:`summary_stem`) as strict JSON and as Markdown into the result's folder."""
    path = write_json(result.out / f"{result.stem}.json", result.to_json(), indent=2)
    md = result.out / f"{result.stem}.md"
    with atomic_write(md, "w", sync=False) as f:
        f.write(result.format())
    return [path, md]
