"""What a search leaves in ``tune/``: the trials table, the best configuration, a summary and two figures.

The trials table (``trials.csv`` and ``trials.md``) has one row per trial: its number and state, its value
(the mean over folds; for a pruned trial the running mean it was stopped at), its parameters, each fold's
value, when and on which Dask worker it ran, and why it failed. It is rewritten after every trial, so that
it is current while a search runs and after it is killed. ``best.yaml`` is a config that ``sgc run`` takes:
the base config's settings (the file and ``--set``) with the best trial's parameters merged in, under the
name ``NAME-tuned`` so that its run does not land on the base run's folders. The figures (the optimisation
history, and each parameter's importance by PED-ANOVA, which unlike fANOVA needs no scikit-learn) are drawn
once the search ends.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState

from sgc.atomic import atomic_write, write_json
from sgc.config import merge_settings, validate_config
from sgc.report.png import save_png
from sgc.report.style import DPI
from sgc.tune.files import (
    BEST_YAML,
    HISTORY_PNG,
    IMPORTANCE_PNG,
    SUMMARY_JSON,
    TRIALS_CSV,
    TRIALS_MD,
)
from sgc.tune.space import SearchSpace, nested
from sgc.tune.study import ENDED, ERROR, FOLDS, INTERRUPTED, RETRY_OF, STARTED, WORKER

log = logging.getLogger(__name__)

TUNED_SUFFIX = "-tuned"
# Fewer complete trials than this say nothing about which parameter matters: no importance figure.
IMPORTANCE_MIN_TRIALS = 4


def best_trial(trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The complete trial of highest value (the first of equals), None before any is complete."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def _time(trial: FrozenTrial, attr: str, fallback: dt.datetime | None) -> str:
    """When the trial's task started or ended (recorded by the task), else when the driver asked for or
    closed it."""
    if attr in trial.user_attrs:
        return str(trial.user_attrs[attr])
    if fallback is None:
        return ""
    return fallback.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")


def _seconds(start: str, end: str) -> float | None:
    try:
        return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return None


def _value(trial: FrozenTrial) -> float | None:
    if trial.value is not None:
        return float(trial.value)
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        return float(trial.intermediate_values[max(trial.intermediate_values)])
    return None


def trial_rows(trials: Sequence[FrozenTrial], space: SearchSpace) -> tuple[list[str], list[list[Any]]]:
    """The trials table: its header and one row per trial (None for what a trial does not have)."""
    folds = max((len(t.user_attrs.get(FOLDS) or []) for t in trials), default=0)
    header = [
        "number",
        "state",
        "value",
        *space.distributions,
        *(f"fold {k}" for k in range(folds)),
        "started",
        "ended",
        "seconds",
        "worker",
        "retry of",
        "error",
    ]
    rows = []
    for t in trials:
        values = list(t.user_attrs.get(FOLDS) or [])
        started = _time(t, STARTED, t.datetime_start)
        ended = _time(t, ENDED, t.datetime_complete)
        state = "INTERRUPTED" if t.user_attrs.get(INTERRUPTED) else t.state.name
        rows.append(
            [
                t.number,
                state,
                _value(t),
                *(t.params.get(key) for key in space.distributions),
                *(values + [None] * (folds - len(values))),
                started,
                ended,
                _seconds(started, ended),
                t.user_attrs.get(WORKER),
                t.user_attrs.get(RETRY_OF),
                t.user_attrs.get(ERROR),
            ]
        )
    return header, rows


def _md_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def write_tables(
    trials: Sequence[FrozenTrial], space: SearchSpace, out: Path, title: str, about: str
) -> list[Path]:
    """Write ``trials.csv`` and ``trials.md`` into ``out``.

    Args:
        trials: every trial of the study.
        space: the search space (its keys are the parameter columns).
        out: the search's folder.
        title: the study's name.
        about: what a trial's value is, in words.
    """
    header, rows = trial_rows(trials, space)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    with atomic_write(out / TRIALS_CSV, "w", sync=False) as f:
        f.write(text.getvalue())
    states = [row[1] for row in rows]
    best = best_trial(trials)
    lines = [
        f"# sgc tune: {title}",
        "",
        f"Value: {about} (higher is better; a pruned trial shows the running mean it was stopped at).",
        f"Trials: {len(rows)}: "
        + ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states), key=states.index)),
        "",
        f"Best: trial {best.number}, {best.value:.4g}."
        if best is not None
        else "Best: no trial complete yet.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
    ]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in rows]
    with atomic_write(out / TRIALS_MD, "w", sync=False) as f:
        f.write("\n".join(lines) + "\n")
    return [out / TRIALS_CSV, out / TRIALS_MD]


def write_best(
    trials: Sequence[FrozenTrial], settings: dict[str, Any], name: str, out: Path, about: str
) -> Path | None:
    """Write ``best.yaml``: ``settings`` (the base config's, as in its file) with the best trial's parameters
    merged in, named ``NAME-tuned``; None (and nothing written) before any trial is complete.

    Raises:
        ConfigError: the merged config is not valid (it was, as the trial's config; checked again).
    """
    best = best_trial(trials)
    if best is None:
        return None
    data = merge_settings(settings, nested(best.params))
    data["name"] = f"{name}{TUNED_SUFFIX}"
    validate_config(data, f"best trial {best.number}")
    head = (
        f"# sgc tune {name}: trial {best.number} of {len(trials)}, {about} {best.value:.4g}.\n"
        "# The base config's settings with the trial's parameters merged in: sgc run this file (from where\n"
        "# sgc tune ran: its paths are the base config's, relative to there).\n"
    )
    path = out / BEST_YAML
    with atomic_write(path, "w", sync=False) as f:
        f.write(head + yaml.safe_dump(data, sort_keys=False))
    return path


def write_summary(
    trials: Sequence[FrozenTrial], out: Path, title: str, about: str, budget: int, files: dict[str, Path]
) -> Path:
    """Write ``summary.json`` (strict JSON): the counts by state, the best trial, the files; what the HTML
    report shows."""
    counts: dict[str, int] = {}
    for t in trials:
        state = "interrupted" if t.user_attrs.get(INTERRUPTED) else t.state.name.lower()
        counts[state] = counts.get(state, 0) + 1
    best = best_trial(trials)
    summary = {
        "study": title,
        "objective": about,
        "direction": "maximize",
        "budget": budget,
        "trials": counts,
        "best": None
        if best is None
        else {"number": best.number, "value": best.value, "params": dict(best.params)},
        "files": {key: path.name for key, path in files.items()},
    }
    return write_json(out / SUMMARY_JSON, summary, indent=2)


def history_figure(trials: Sequence[FrozenTrial], about: str, out: Path) -> Path | None:
    """Each trial's value by trial number, pruned ones at the running mean they stopped at, and the best so
    far; None where no trial has a value."""
    points = [(t.number, _value(t), t.state) for t in trials]
    points = [(n, v, s) for n, v, s in points if v is not None and math.isfinite(v)]
    if not points:
        return None
    fig = Figure(figsize=(7, 4), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    complete = [(n, v) for n, v, s in points if s == TrialState.COMPLETE]
    pruned = [(n, v) for n, v, s in points if s == TrialState.PRUNED]
    if complete:
        numbers, values = [n for n, _ in complete], [v for _, v in complete]
        ax.plot(numbers, values, "o", color="tab:blue", label="complete")
        # The best so far holds to the last trial, pruned or failed ones included.
        best = np.maximum.accumulate(values)
        last = max(n for n, _, _ in points)
        ax.step([*numbers, last], [*best, best[-1]], where="post", color="tab:red", label="best so far")
    if pruned:
        numbers, values = [n for n, _ in pruned], [v for _, v in pruned]
        ax.plot(numbers, values, "x", color="0.5", label="pruned (running mean)")
    ax.set_xlabel("trial")
    ax.set_ylabel("value")
    ax.set_title(about, fontsize="medium")
    ax.legend(loc="best", fontsize="small")
    return save_png(fig, out / HISTORY_PNG)


def importance_figure(study: optuna.Study, out: Path) -> Path | None:
    """Each parameter's importance (PED-ANOVA over the complete trials); None with fewer than
    :data:`IMPORTANCE_MIN_TRIALS` complete trials or nothing to rank."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < IMPORTANCE_MIN_TRIALS:
        return None
    try:
        importances = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
        )
    except (ValueError, RuntimeError) as exc:  # too few distinct values to estimate anything
        log.info("tune: no parameter importances (%s)", exc)
        return None
    if not importances:
        return None
    names = list(importances)[::-1]
    fig = Figure(figsize=(7, 0.5 * len(names) + 1.5), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (PED-ANOVA, share of the total)")
    ax.set_title(f"parameter importances over {len(complete)} complete trials", fontsize="medium")
    return save_png(fig, out / IMPORTANCE_PNG)
