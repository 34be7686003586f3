"""``sgc report``: one static HTML page of a run, its PNG figures beside it (no server: it opens from disk).

It reads the run's finished outputs and computes nothing new: the statistics and their figures, the split
report, the training log, the metrics of every method scored (sgc, the 2023 recipe, the classical cut), the
predictions and the scored objects, and the Grad-CAM maps. Figures made by earlier stages are copied into
``report/img/``; the result figures are drawn there from those outputs (:mod:`sgc.report.figures`). A
section whose outputs are missing says so instead of showing an empty table.
"""

from __future__ import annotations

import datetime as dt
import html
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from astropy.table import Table

from sgc import __version__
from sgc.atomic import atomic_write, read_json
from sgc.classes import CLASS_NAMES, OBJECT_CLASSES
from sgc.config import RunConfig, RunPaths
from sgc.cube.stats import STATS_JSON
from sgc.cube.store import CubeStore, PredictionStore
from sgc.cv import METRICS as CV_METRICS
from sgc.cv import cv_summaries
from sgc.evaluate.explain import INDEX_NAME
from sgc.evaluate.metrics import OBJECT_RADIUS_PX
from sgc.evaluate.predict import STORE_NAME
from sgc.evaluate.score import SCORED_CSV, method_metrics
from sgc.report import figures
from sgc.report.split import REPORT_JSON, report_table
from sgc.stages import read_record
from sgc.train.log import read_metrics
from sgc.tune.files import BEST_YAML, HISTORY_PNG, IMPORTANCE_PNG, tune_dir
from sgc.tune.files import SUMMARY_JSON as TUNE_SUMMARY

INDEX = "index.html"
IMAGES = "img"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f0f0f0; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.4em 0; }
.note { color: #666; font-size: 0.9em; }
"""


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.4g}"
    return str(value)


def _figure(path: Path | None, alt: str, caption: str = "") -> str:
    if path is None or not path.is_file():
        return f'<p class="note">{html.escape(alt)}: not made in this run.</p>'
    text = f"<p class='note'>{html.escape(caption)}</p>" if caption else ""
    return f'<figure><img src="{IMAGES}/{path.name}" alt="{html.escape(alt)}">{text}</figure>'


def _copy(source: Path, images: Path) -> Path | None:
    if not source.is_file():
        return None
    target = images / source.name
    shutil.copyfile(source, target)
    return target


def write_report(cfg: RunConfig, paths: RunPaths) -> Path:
    """Write the run's report into ``paths.report`` and return the page's path."""
    out = paths.report
    images = out / IMAGES
    images.mkdir(parents=True, exist_ok=True)
    sections = [
        _fields_section(paths),
        _data_section(paths, images),
        _training_section(paths, images),
        _results_section(paths, images),
        _cv_section(paths),
        _tune_section(paths, images),
        _explain_section(paths, images),
    ]
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>sgc report: {html.escape(cfg.name)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>sgc report: {html.escape(cfg.name)}</h1>"
        f"<p class='note'>sgc {html.escape(__version__)}, {now}. Held-out test field(s): "
        f"{html.escape(', '.join(cfg.test_fields) or 'none')}. Store {html.escape(str(paths.store))}.</p>"
        + "".join(sections)
        + "</body></html>\n"
    )
    path = out / INDEX
    with atomic_write(path, "w", sync=False) as f:
        f.write(page)
    return path


def _fields_section(paths: RunPaths) -> str:
    parts = ["<h2>Fields and splits</h2>"]
    split = read_json(paths.plan_report / REPORT_JSON)
    if split:
        parts.append(_table(*report_table(split)))
        parts.append(
            f"<p class='note'>{html.escape(split['mode'])} split, {split['patch']} px patches; class columns "
            "are shares of the patches' pixels, stars and galaxies are catalogue objects.</p>"
        )
    stats = read_json(paths.stats / STATS_JSON)
    if stats:
        rows = [
            [
                band,
                b["count"],
                b["median"],
                b["robust_sigma"],
                b["percentiles"].get("0.5"),
                b["percentiles"].get("99.5"),
            ]
            for band, b in stats["bands"].items()
        ]
        parts.append("<h3>Band statistics (valid pixels, nanomaggies)</h3>")
        parts.append(_table(["band", "pixels", "median", "robust sigma", "0.5%", "99.5%"], rows))
        fields = [
            [f, s["valid_fraction"], s.get("stars"), s.get("galaxies")] for f, s in stats["fields"].items()
        ]
        parts.append(_table(["field", "valid share", "stars", "galaxies"], fields))
    if not split and not stats:
        parts.append("<p class='note'>No statistics or split report in this run.</p>")
    return "".join(parts)


def _data_section(paths: RunPaths, images: Path) -> str:
    parts = ["<h2>Alignment, catalogue and patches</h2>"]
    for source, alt, caption in (
        (
            paths.stats / "irg-before-after.png",
            "before and after alignment",
            "The raw frames each on their own grid, then aligned onto the i band: colour fringes go.",
        ),
        (
            paths.stats / "catalog-overlay.png",
            "catalogue positions",
            "Catalogue stars and galaxies on the aligned r band.",
        ),
        (
            paths.stats / "object-positions.png",
            "object positions",
            "Where catalogued objects fall on the pixel grid.",
        ),
        (
            paths.plan_report / "patch_grid.png",
            "patch grid",
            "The patch grid of a field, by split, held-out sky in purple.",
        ),
        (paths.plan_report / "patch_label.png", "label map", "A patch beside its label map."),
    ):
        parts.append(_figure(_copy(source, images), alt, caption))
    return "".join(parts)


def _training_section(paths: RunPaths, images: Path) -> str:
    rows = read_metrics(paths.run)
    if not rows:
        return "<h2>Training</h2><p class='note'>No training log in this run.</p>"
    curves = figures.training_curves(rows, images / "training.png")
    # The epoch training kept (best.pt), as the train stage recorded it: by validation F1 where there is a
    # validation split, by training loss where there is none.
    record = (read_record(paths, "train") or {}).get("record") or {}
    best = next((r for r in rows if r["epoch"] == record.get("best_epoch")), {})
    table = _table(
        ["epochs", "best epoch", "val F1 star", "val F1 galaxy", "val F1 sky"],
        [
            [
                len(rows),
                record.get("best_epoch"),
                *(best.get(f"val_f1_{c}") for c in ("star", "galaxy", "sky")),
            ]
        ],
    )
    return (
        "<h2>Training</h2>"
        + table
        + _figure(curves, "training curves", "Loss and validation pixel F1 by epoch.")
    )


def _results_section(paths: RunPaths, images: Path) -> str:
    metrics = method_metrics(paths.evaluation)
    if not metrics:
        return "<h2>Results</h2><p class='note'>Nothing was scored in this run.</p>"
    first = next(iter(metrics.values()))
    parts = [
        "<h2>Results</h2>",
        f"<p class='note'>Scored on the {html.escape(first['region']['description'])}.</p>",
    ]
    parts.append(
        "<h3>Objects (each catalogue object by the mean predicted probability within "
        f"{OBJECT_RADIUS_PX:g} px of it)</h3>"
    )
    rows = [
        [
            method,
            m["object"]["n"],
            m["object"]["detection_recall"],
            m["object"]["accuracy"],
            m["object"]["mcc"],
            m["object"]["purity"],
            m["object"]["star"]["f1"],
            m["object"]["galaxy"]["f1"],
        ]
        for method, m in metrics.items()
    ]
    parts.append(
        _table(
            ["method", "objects", "detection recall", "accuracy", "MCC", "purity", "star F1", "galaxy F1"],
            rows,
        )
    )
    parts.append("<h3>Pixels and patches</h3>")
    rows = [
        [
            method,
            *(m["pixel"][c]["f1"] for c in CLASS_NAMES),
            *(m["per_patch"][c]["f1"] for c in OBJECT_CLASSES),
        ]
        for method, m in metrics.items()
    ]
    parts.append(
        _table(
            [
                "method",
                "pixel F1 sky",
                "pixel F1 star",
                "pixel F1 galaxy",
                "per-patch F1 star",
                "per-patch F1 galaxy",
            ],
            rows,
        )
    )
    parts.append(_figure(figures.confusion_figure(metrics, images / "confusion.png"), "confusion matrices"))
    parts.append(
        _figure(
            figures.completeness_figure(metrics, images / "completeness.png"), "completeness by magnitude"
        )
    )
    parts.append(_predictions(paths, images))
    return "".join(parts)


def _cv_section(paths: RunPaths) -> str:
    """The cross-validations (sgc cv) of this run and of its variants on the same data: the ablation."""
    summaries = cv_summaries(paths)
    if not summaries:
        return (
            "<h2>Cross-validation</h2><p class='note'>No cross-validation of this data yet "
            "(<code>sgc cv CONFIG --folds K</code>).</p>"
        )
    header = [
        "run",
        "method",
        "folds",
        "objects",
        *(m.replace("_", " ").replace(".", " ") for m in CV_METRICS),
    ]
    rows = [
        [
            summary["name"],
            method,
            summary["folds"],
            summary["pooled"].get(method, {}).get("n"),
            *(f"{values[m]['mean']:.3f} ± {values[m]['spread']:.3f}" for m in CV_METRICS),
        ]
        for summary in summaries
        for method, values in summary["methods"].items()
    ]
    return (
        "<h2>Cross-validation</h2><p class='note'>Each fold trains without one band of rows (and the guard "
        "rows beside it) and is scored on that whole band, so every catalogued object is scored once, by a "
        "model that never saw its pixels: mean ± spread (sample standard deviation) over the folds. Runs "
        "named otherwise are variants of this one on the same data (the ablation).</p>" + _table(header, rows)
    )


def _tune_section(paths: RunPaths, images: Path) -> str:
    """The hyper-parameter search (sgc tune) of this run, where there is one: its best trial and figures."""
    out = tune_dir(paths.out_dir)
    summary = read_json(out / TUNE_SUMMARY)
    if summary is None:
        return (
            "<h2>Hyper-parameter search</h2><p class='note'>No search of this run "
            "(<code>sgc tune CONFIG --trials N</code>).</p>"
        )
    counts = ", ".join(f"{n} {state}" for state, n in summary["trials"].items())
    best = summary["best"]
    table = (
        _table(["parameter", "best value"], [[key, value] for key, value in best["params"].items()])
        if best
        else ""
    )
    text = f"best: trial {best['number']}, {best['value']:.4g}" if best else "no trial complete"
    return (
        "<h2>Hyper-parameter search</h2><p class='note'>"
        + html.escape(f"sgc tune: {summary['objective']}, maximised; {counts}; {text} ({out / BEST_YAML}).")
        + "</p>"
        + table
        + _figure(_copy(out / HISTORY_PNG, images), "optimisation history", "Each trial's value, by trial.")
        + _figure(_copy(out / IMPORTANCE_PNG, images), "parameter importances", "PED-ANOVA.")
    )


def _predictions(paths: RunPaths, images: Path) -> str:
    scored_path = paths.evaluation / SCORED_CSV
    store = paths.predictions / STORE_NAME
    if not (scored_path.is_file() and store.exists()):
        return "<p class='note'>No predictions to show.</p>"
    scored = Table.read(scored_path, format="ascii.csv")
    cube, predictions = CubeStore.open(paths.store), PredictionStore.open(store)
    field = str(max(set(scored["field"]), key=lambda f: int((scored["field"] == f).sum())))
    parts = ["<h3>Predicted against the catalogue</h3>"]
    parts.append(
        _figure(
            figures.prediction_figure(cube, predictions, scored, field, images / "predictions.png"),
            "predictions",
        )
    )
    wrong = figures.wrong_objects_figure(cube, predictions, scored, images / "wrong-objects.png")
    parts.append(
        _figure(wrong, "wrongly classified objects")
        if wrong
        else "<p class='note'>No object was classified wrongly.</p>"
    )
    return "".join(parts)


def _explain_section(paths: RunPaths, images: Path) -> str:
    index = read_json(paths.explain / INDEX_NAME)
    if not index:
        return "<h2>Grad-CAM</h2><p class='note'>No Grad-CAM maps in this run.</p>"
    parts = [
        "<h2>Grad-CAM</h2>",
        "<p class='note'>Where the model looks when it calls pixels stars or galaxies "
        "(the bottleneck's features, weighted by the gradient of the class's logits over its pixels).</p>",
    ]
    parts += [
        _figure(_copy(paths.explain / item["figure"], images), f"Grad-CAM of {item['field']}")
        for item in index
    ]
    return "".join(parts)
