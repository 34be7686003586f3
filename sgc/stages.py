"""The stage table: what each stage reads and writes, whether it is complete, and how to run it.

``sgc run`` walks :data:`STAGES` in order and the per-stage commands (``sgc label STORE``, ...) run one
entry of it, so a stage is wired once. Every stage has the same signature: it takes a
:class:`StageContext` (the run's config, its paths from :class:`~sgc.config.RunPaths`, and the run's Dask
client) and returns a :class:`StageResult` with ``ok``, a one-line summary and a JSON record.

A stage that finished writes its record to ``PATHS.stages/NAME.json``, with the fingerprint of its inputs
(the settings it depends on, and the state of the outputs of the stages it reads) and the state of its own
output. ``sgc run`` skips a stage whose record is ok, whose fingerprint matches the inputs as they are now,
and whose output is still as it left it; changing a label setting therefore redoes the labels, the plan and
the training on it, and nothing before. The first three stages check their outputs directly (every file
simulated, downloaded, every field ingested), since those are cheap to check and resume by themselves.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from sgc.atomic import atomic_write, check_folders_above
from sgc.compute import Compute
from sgc.config import (
    ConfigError,
    RunConfig,
    RunPaths,
    TrainConfig,
    apply_overrides,
    config_digest,
    load_config_file,
    merge_settings,
    save_config,
    validate_config,
)
from sgc.cube.damage import damage_error, is_decode_error
from sgc.cube.store import EXCLUDE, LABEL, CubeStore, PredictionStore
from sgc.errors import OutputFileError, SgcError
from sgc.lock import writer_lock
from sgc.sdss.discover import Inventory, find_catalogs, find_raw
from sgc.sdss.names import FieldId

log = logging.getLogger(__name__)


class StageError(SgcError):
    """A stage that cannot run as asked, or that finished with work undone (its summary says what)."""


@dataclass
class StageResult:
    """What a stage did.

    Attributes:
        ok: whether it left its output complete.
        summary: one line for the terminal.
        record: JSON-able facts, written to the stage's record.
        details: further lines for the log (per field, per file), as the stage's own report words them.
        skipped: the stage was complete and did not run.
    """

    ok: bool
    summary: str
    record: dict[str, Any] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)
    skipped: bool = False


@dataclass
class StageContext:
    """What a stage runs with.

    Attributes:
        cfg: the run's config.
        paths: every path of the run.
        compute: the run's Dask client, started by the first stage that needs it.
        resume: training goes on from what a killed run left; False refuses a run folder holding a run.
    """

    cfg: RunConfig
    paths: RunPaths
    compute: Compute
    resume: bool = True

    @cached_property
    def inventory(self) -> Inventory:
        """The frames and catalogues below the raw folder."""
        return find_raw(self.paths.raw)

    def catalogs(self) -> list[Path]:
        """The run's catalogue files: those ``catalogs`` names, else those found below the raw folder."""
        if self.cfg.catalogs:
            return find_catalogs(self.cfg.catalogs)
        return self.inventory.catalogs

    def footprint_sources(self) -> list[Path]:
        """Where the held-out fields' frames or headers are looked for: ``exclude.footprint_sources``, else
        the raw folder."""
        return list(self.cfg.exclude.footprint_sources) or [self.paths.raw]


def context(
    cfg: RunConfig, compute: Compute, store: str | Path | None = None, **paths: Path | None
) -> StageContext:
    """The context of a run, or of a stage command around an existing ``store``.

    Around a store, outputs go where ``sgc run`` puts them beside it, and the raw folder is the one the store
    was ingested from unless ``raw_dir`` is set. Paths given (``plan=``, ``run=``, ...) replace the computed
    ones; ``None`` values are ignored.
    """
    run_paths = cfg.paths if store is None else cfg.paths_for_store(store)
    given = {key: Path(value) for key, value in paths.items() if value is not None}
    if store is not None and "raw" not in given and cfg.raw_dir is None and Path(store).exists():
        recorded = CubeStore.open(store).raw_dir
        if recorded is not None:
            given["raw"] = recorded
    return StageContext(cfg, dataclasses.replace(run_paths, **given), compute)


@dataclass(frozen=True)
class Stage:
    """One stage of a run.

    Attributes:
        name: the stage's name, also its command's.
        help: what it does, in one line.
        run: carries the stage out.
        after: stages whose outputs it reads.
        settings: what its output depends on besides those outputs (JSON-able).
        state: what its output is now (JSON-able, cheap to read), None where there is none.
        applies: whether the stage belongs to a run of this config at all.
        complete: a direct check of the output, for stages that do not keep records.
        command: whether it has a command of its own (the 2023 recipe's training is part of sgc run only).
        folded: whether its output depends on the split, so that each fold of ``sgc cv`` has its own.
        writes: the shared output it writes in place (a store, the raw folder), whose writer lock it holds
            while it runs (:func:`sgc.lock.writer_lock`); None where it writes only files of its own.
    """

    name: str
    help: str
    run: Callable[[StageContext], StageResult]
    after: tuple[str, ...] = ()
    settings: Callable[[StageContext], Any] = lambda ctx: None
    state: Callable[[StageContext], Any] = lambda ctx: None
    applies: Callable[[RunConfig], bool] = lambda cfg: True
    complete: Callable[[StageContext], bool] | None = None
    command: bool = True
    folded: bool = False
    writes: Callable[[StageContext], Path] | None = None

    def fingerprint(self, ctx: StageContext) -> str:
        """A digest of the stage's inputs as they are now."""
        upstream = {name: STAGES[name].state(ctx) for name in self.after}
        return config_digest({"settings": self.settings(ctx), "upstream": upstream})

    def is_complete(self, ctx: StageContext) -> bool:
        """Whether the stage's output is complete and made from its inputs as they are now."""
        if self.complete is not None:
            return self.complete(ctx)
        record = read_record(ctx.paths, self.name)
        return (
            record is not None
            and record.get("ok") is True
            and record.get("inputs") == self.fingerprint(ctx)
            and record.get("state") == _jsonable(self.state(ctx))
        )


def record_path(paths: RunPaths, name: str) -> Path:
    """Where a stage's record is: ``PATHS.stages/NAME.json``, or ``PATHS.fold_stages`` for a stage whose
    output depends on the split."""
    return (paths.fold_stages if STAGES[name].folded else paths.stages) / f"{name}.json"


def read_record(paths: RunPaths, name: str) -> dict[str, Any] | None:
    """A stage's record (:func:`record_path`), None where there is none or it is unreadable."""
    path = record_path(paths, name)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def is_main_process() -> bool:
    """Whether this process speaks for the run: under torchrun every rank runs the command, and rank 0
    alone logs and writes the stage records."""
    return os.environ.get("RANK", "0") == "0"


def run_stage(stage: Stage, ctx: StageContext) -> StageResult:
    """Run one stage, log its summary and write its record (if it keeps one).

    Raises:
        SgcError: from the stage, for input it cannot use.
    """
    inputs = stage.fingerprint(ctx) if stage.complete is None else None
    log.debug("%s: starting", stage.name)
    result = _carry_out(stage, ctx)
    level = logging.INFO if result.ok else logging.ERROR
    log.log(level, "%s: %s", stage.name, result.summary)
    for line in result.details:
        log.log(level, "  %s", line.lstrip())
    # Stages that check their outputs directly keep no record.
    if stage.complete is None and is_main_process():
        record = {
            "stage": stage.name,
            "ok": result.ok,
            "summary": result.summary,
            "record": result.record,
            "inputs": inputs,
            "state": stage.state(ctx) if result.ok else None,
        }
        with atomic_write(record_path(ctx.paths, stage.name), "w", sync=False) as f:
            f.write(json.dumps(_jsonable(record), indent=1) + "\n")
    return result


# errno values of a write that found no room: a full disk, a quota, a file size limit, a read-only disk.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def _carry_out(stage: Stage, ctx: StageContext) -> StageResult:
    """Run the stage, holding the lock of what it writes; a chunk that does not decode is named."""
    try:
        # Under torchrun every rank runs the stage as one job: rank 0 alone takes the lock.
        if stage.writes is None or not is_main_process():
            return stage.run(ctx)
        with writer_lock(stage.writes(ctx), f"sgc {stage.name}"):
            return stage.run(ctx)
    except OSError as exc:
        # A write that failed for want of room names no file (zarr and file objects drop the name).
        if isinstance(exc, SgcError) or exc.filename is not None or exc.errno not in _NO_ROOM:
            raise
        target = stage.writes(ctx) if stage.writes is not None else ctx.paths.out_dir
        raise OutputFileError(
            target, f"cannot be written ({exc.strerror}); {stage.name} stopped: rerun it once there is room"
        ) from exc
    except Exception as exc:
        if isinstance(exc, SgcError) or not is_decode_error(exc):
            raise
        raise damage_error([ctx.paths.store, ctx.paths.predictions], exc) from exc


def run_all(cfg: RunConfig) -> list[StageResult]:
    """Carry out every stage of ``cfg`` in order, skipping those that are complete.

    Raises:
        StageError: at the first stage that left work undone; outputs already complete are kept.
        SgcError: for input a stage cannot use.
    """
    paths = cfg.paths
    check_folders_above(paths.out_dir)
    paths.out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, paths.out_dir, "run")
    with Compute(cfg.compute) as compute:
        return run_stages(StageContext(cfg, paths, compute), list(STAGES.values()))


def run_stages(ctx: StageContext, stages: list[Stage]) -> list[StageResult]:
    """Carry out those of ``stages`` that apply to the run, in order, skipping those that are complete.

    Raises:
        StageError: at the first stage that left work undone; outputs already complete are kept.
        SgcError: for input a stage cannot use.
    """
    results = []
    for stage in stages:
        if not stage.applies(ctx.cfg):
            continue
        if stage.is_complete(ctx):
            log.info("%s: complete, skipped", stage.name)
            results.append(StageResult(True, "complete, skipped", skipped=True))
            continue
        result = run_stage(stage, ctx)
        results.append(result)
        if not result.ok:
            raise StageError(f"{stage.name}: {result.summary}")
    return results


# The stages, in the order of a run.


def _simulate(ctx: StageContext) -> StageResult:
    from sgc.sim.simulate import simulate_mirror

    fields = simulate_mirror(ctx.cfg.simulate, ctx.paths.mirror)
    return StageResult(
        True,
        f"{len(fields)} field(s) in {ctx.paths.mirror}: {', '.join(map(str, fields))}",
        {"mirror": str(ctx.paths.mirror), "fields": [str(f) for f in fields]},
    )


def _simulated(ctx: StageContext) -> bool:
    from sgc.sim.simulate import mirror_fields

    return mirror_fields(ctx.cfg.simulate, ctx.paths.mirror) is not None


def _download_fields(ctx: StageContext) -> list[FieldId]:
    """The fields to fetch: ``download.fields``, else (offline) every simulated field."""
    from sgc.sim.simulate import mirror_fields

    listed = [FieldId.parse(f) for f in ctx.cfg.download.fields]
    if listed or ctx.cfg.source != "simulate":
        return listed
    simulated = mirror_fields(ctx.cfg.simulate, ctx.paths.mirror)
    if simulated is None:
        raise StageError(f"{ctx.paths.mirror}: no complete simulated mirror to download from; simulate first")
    return simulated


@contextmanager
def _base_url(ctx: StageContext) -> Iterator[str]:
    """Where to download from: ``download.base_url``, or the simulated mirror served over real HTTP, so that
    the offline demo runs the same downloader as SDSS."""
    if ctx.cfg.source != "simulate":
        yield ctx.cfg.download.base_url
        return
    from sgc.sdss.mirror import serve_directory

    with serve_directory(ctx.paths.mirror) as url:
        log.debug("serving the simulated mirror at %s", url)
        yield url


def _download(ctx: StageContext) -> StageResult:
    from sgc.sdss.download import download

    dl, raw = ctx.cfg.download, ctx.paths.raw
    fields = _download_fields(ctx)
    save_config(dl, raw, "download")
    with _base_url(ctx) as url:
        summary = download(
            fields,
            raw,
            base_url=url,
            jobs=dl.jobs,
            retries=dl.retries,
            timeout=dl.timeout,
            include_catalogs=dl.catalogs,
        )
    lines = summary.format().splitlines()
    failed = len(summary.failed)
    line = f"{len(summary.results)} file(s) in {raw}" + (
        f", {failed} failed; rerun to resume" if failed else ""
    )
    if summary.stopped:
        line = f"stopped: {summary.stopped}; {failed} of {len(summary.results)} file(s) not fetched"

    return StageResult(
        summary.ok, line, {"raw": str(raw), "files": len(summary.results), "failed": failed}, lines
    )


def _downloaded(ctx: StageContext) -> bool:
    from sgc.sdss.download import plan_downloads

    try:
        fields = _download_fields(ctx)
    except StageError:
        return False
    planned = plan_downloads(fields, out_dir=ctx.paths.raw, include_catalogs=ctx.cfg.download.catalogs)
    return bool(planned) and all(item.dest.exists() for item in planned)


def _ingest(ctx: StageContext) -> StageResult:
    from sgc.cube.ingest import ingest

    raw, store = ctx.paths.raw, ctx.paths.store
    if not raw.is_dir():
        raise StageError(f"{raw}: raw data folder does not exist")
    found = f"raw data in {raw}: {ctx.inventory.format()}"
    summary = ingest(raw, store, ctx.cfg.ingest, ctx.compute)
    save_config(ctx.cfg.ingest, store.parent, f"ingest-{store.stem}")
    head, *rest = summary.format().splitlines()
    record = {
        "store": str(store),
        "stored": [r.field for r in summary.results if r.status == "stored"],
        "failed": {r.field: r.error for r in summary.failed},
        "incomplete": summary.incomplete,
    }
    return StageResult(summary.ok, head, record, [*found.splitlines(), *rest])


def _ingested(ctx: StageContext) -> bool:
    from sgc.cube.ingest import plan_ingest

    store = ctx.paths.store
    if not (store.exists() and ctx.paths.raw.is_dir()):
        return False
    complete, incomplete = plan_ingest(ctx.paths.raw, ctx.cfg.ingest.fields)
    return not incomplete and set(complete) <= set(CubeStore.open(store).done_fields())


def _store_state(ctx: StageContext) -> Any:
    store = ctx.paths.store
    return CubeStore.open(store).done_fields() if store.exists() else None


def _stats(ctx: StageContext) -> StageResult:
    from sgc.cube.stats import compute_stats, write_stats
    from sgc.report.cube_figures import catalog_overlay, irg_before_after, object_positions
    from sgc.sdss.catalogs import read_catalogs

    store, out, catalogs = ctx.paths.store, ctx.paths.stats, ctx.catalogs()
    with ctx.compute.stage("stats"):
        stats = compute_stats(store, catalogs or None)
    path = write_stats(stats, out)
    figures = []
    shown = next(iter(stats["fields"]), None)
    if shown is not None and ctx.paths.raw.is_dir():
        figures.append(irg_before_after(store, shown, ctx.paths.raw, out / "irg-before-after.png"))
    if catalogs:
        table = read_catalogs(catalogs)
        if shown is not None:
            figures.append(catalog_overlay(store, shown, table, out / "catalog-overlay.png"))
        figures.append(object_positions(store, table, out / "object-positions.png"))
    record = {"stats": str(path), "figures": [str(f) for f in figures]}
    return StageResult(True, f"{path}", record, [f"figure: {f}" for f in figures])


def _file_state(path: Path) -> Any:
    """A file's size and modification time, None where it is missing: what a downstream stage's fingerprint
    sees of it (any rewrite changes it, and reading it costs nothing however large the file)."""
    if not path.is_file():
        return None
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _label(ctx: StageContext) -> StageResult:
    from sgc.masks.labels import label_store

    catalogs = ctx.catalogs()
    if not catalogs:
        raise StageError(
            f"no catalogue files (calibObj-*, photoObj-*, catalog-*.fits) in {ctx.paths.raw}; give catalogs"
        )
    with ctx.compute.stage("label"):
        summary = label_store(ctx.paths.store, catalogs, ctx.cfg.label)
    head, *rest = summary.format().splitlines()
    record = {"catalogs": [str(p) for p in catalogs], "objects": summary.painted, "outside": summary.outside}
    return StageResult(True, head, record, rest)


def _array_state(name: str) -> Callable[[StageContext], Any]:
    """The attributes an array of the store records (what it was computed for and from)."""

    def state(ctx: StageContext) -> Any:
        store = ctx.paths.store
        return config_digest(CubeStore.open(store).record(name)) if store.exists() else None

    return state


def _exclude(ctx: StageContext) -> StageResult:
    from sgc.masks.exclusion import exclude_store

    with ctx.compute.stage("exclude"):
        summary = exclude_store(
            ctx.paths.store, ctx.cfg.test_fields, ctx.footprint_sources(), ctx.cfg.exclude
        )
    head, *rest = summary.format().splitlines()
    return StageResult(True, head, {"footprints": summary.footprints, "excluded": summary.excluded}, rest)


def _split(ctx: StageContext) -> StageResult:
    from sgc.patches.plan import make_plan
    from sgc.patches.planfile import write_plan
    from sgc.report.split import write_split_report

    store, plan_path = ctx.paths.store, ctx.paths.plan
    with ctx.compute.stage("split"):
        plan = make_plan(store, ctx.cfg.split, ctx.cfg.test_fields)
    write_plan(plan, plan_path)
    report = write_split_report(plan, store, ctx.paths.plan_report, catalogs=ctx.catalogs())
    counts = ", ".join(f"{split} {v['kept']}" for split, v in plan.summary.items())
    record = {
        "plan": str(plan_path),
        "patches": plan.summary,
        "report": {k: str(v) for k, v in report.items()},
    }
    return StageResult(
        True, f"{plan_path}: patches {counts}", record, [f"{k}: {v}" for k, v in report.items()]
    )


def _plan_state(ctx: StageContext) -> Any:
    from sgc.patches.planfile import PlanFileError, read_plan

    try:
        return config_digest(read_plan(ctx.paths.plan).attrs())
    except PlanFileError:
        return None


def _audit(ctx: StageContext) -> StageResult:
    from sgc.patches.audit import audit_plan
    from sgc.patches.planfile import read_plan

    with ctx.compute.stage("audit"):
        result = audit_plan(
            read_plan(ctx.paths.plan),
            ctx.paths.store,
            ctx.cfg.test_fields,
            ctx.footprint_sources(),
            ctx.cfg.exclude.margin_arcsec,
        )
    head, *rest = result.format().splitlines()
    record = {
        "ok": result.ok,
        "patches": result.patches,
        "leaks": len(result.leaks),
        "regions": result.regions,
    }
    return StageResult(result.ok, head, record, rest)


# The pretraining run: simulated fields labelled by their truth, trained up to its checkpoint.
PRETRAIN_STAGES = ("simulate", "download", "ingest", "label", "exclude", "split", "audit", "train")


def pretrain_config(cfg: RunConfig) -> RunConfig:
    """The pretraining run: ``pretrain.config`` with ``pretrain.set`` over it, training this run's model.

    It writes into this run's ``workdir`` and ``runs_dir`` under its own name, on this run's Dask client,
    holding out this run's test fields besides its own; its model settings are this run's, so that its
    weights can start this run's training.

    Raises:
        ConfigError: a pretraining config that cannot be read or is not valid.
    """
    path = cfg.pretrain.config
    data = apply_overrides(load_config_file(path), cfg.pretrain.set)
    data = merge_settings(
        data,
        {
            "workdir": str(cfg.workdir),
            "runs_dir": str(cfg.runs_dir),
            "train": {"model": cfg.train.model.model_dump(mode="json"), "init": None},
            "baselines": {"reference": None, "classical": False},
            "pretrain": {"config": None},
        },
    )
    data["test_fields"] = sorted({*data.get("test_fields", []), *cfg.test_fields})
    return validate_config(data, str(path))


def _pretrain_context(ctx: StageContext) -> StageContext:
    cfg = pretrain_config(ctx.cfg)
    return StageContext(cfg, cfg.paths, ctx.compute)


def _inner_run(sub: StageContext, names: tuple[str, ...]) -> dict[str, str]:
    """Carry out the stages ``names`` of a run inside this one (pretraining, the 2023 recipe), skipping those
    complete, and return the record of its training.

    Raises:
        StageError: at the first of them that left work undone.
    """
    log.info("%s: %s", sub.cfg.name, ", ".join(names))
    run_stages(sub, [STAGES[name] for name in names])
    return {"run": str(sub.paths.run), "checkpoint": str(sub.paths.checkpoint)}


def _inner_run_complete(sub: StageContext, names: tuple[str, ...]) -> bool:
    return all(STAGES[name].is_complete(sub) for name in names if STAGES[name].applies(sub.cfg))


def _pretrain(ctx: StageContext) -> StageResult:
    sub = _pretrain_context(ctx)
    record = _inner_run(sub, PRETRAIN_STAGES)
    return StageResult(True, f"{ctx.cfg.pretrain.config} pretrained into {sub.paths.run}", record)


def _pretrain_complete(ctx: StageContext) -> bool:
    return _inner_run_complete(_pretrain_context(ctx), PRETRAIN_STAGES)


def _pretrain_state(ctx: StageContext) -> Any:
    if ctx.cfg.pretrain.config is None:
        return None
    return _checkpoint_state(_pretrain_context(ctx))


def train_settings(ctx: StageContext) -> TrainConfig:
    """The run's training settings, starting from the pretrained weights where the run pretrains."""
    if ctx.cfg.pretrain.config is None:
        return ctx.cfg.train
    return ctx.cfg.train.model_copy(update={"init": _pretrain_context(ctx).paths.checkpoint})


def _train(ctx: StageContext) -> StageResult:
    from sgc.train.loop import train

    result = train(ctx.paths.store, ctx.paths.plan, ctx.paths.run, train_settings(ctx), resume=ctx.resume)
    record = {
        "run": str(ctx.paths.run),
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "best_score": result.best_score,
        "stopped_early": result.stopped_early,
    }
    return StageResult(True, result.format(), record)


def _checkpoint_state(ctx: StageContext) -> Any:
    from sgc.train.loop import BEST

    return _file_state(ctx.paths.run / BEST)


def _held_out(ctx: StageContext) -> dict[str, Any]:
    """The held-out fields and where their footprints are looked for."""
    return {"test_fields": ctx.cfg.test_fields, "sources": [str(p) for p in ctx.footprint_sources()]}


def _catalog_names(ctx: StageContext) -> list[str]:
    return [str(p) for p in ctx.catalogs()]


# After training: the 2023 recipe, predictions, scores, explanations and the report.

REFERENCE_STAGES = ("ingest", "label", "exclude", "split", "audit", "train")
# What a recipe may change: how labels are made and how the model is trained; never the data or the split.
RECIPE_SECTIONS = ("label", "train")


def recipe_config(ctx: StageContext) -> RunConfig:
    """The 2023 recipe's run: this run's config with the recipe's label and train settings over it.

    It reads the same raw folder, holds out the same fields and splits them the same way, into a store and
    a training folder of its own (``NAME-RECIPE``), so that its point labels never touch this run's labels.

    Raises:
        ConfigError: a recipe file that cannot be read, or that sets anything but those sections.
    """
    path = ctx.cfg.baselines.reference
    recipe = apply_overrides(load_config_file(path), ctx.cfg.baselines.reference_set)
    extra = sorted(set(recipe) - set(RECIPE_SECTIONS))
    if extra:
        raise ConfigError(
            f"{path} (with baselines.reference_set): a recipe sets only {', '.join(RECIPE_SECTIONS)}, "
            f"not {', '.join(extra)}"
        )
    data = merge_settings(ctx.cfg.model_dump(mode="json"), recipe)
    data.update(
        name=f"{ctx.cfg.name}-{Path(path).stem}",
        source="local",
        raw_dir=str(ctx.paths.raw),
        baselines={"reference": None, "classical": False},
        pretrain={"config": None},
    )
    return validate_config(data, str(path))


def _recipe_context(ctx: StageContext) -> StageContext:
    cfg = recipe_config(ctx)
    return StageContext(cfg, cfg.paths, ctx.compute)


def _reference(ctx: StageContext) -> StageResult:
    sub = _recipe_context(ctx)
    record = _inner_run(sub, REFERENCE_STAGES)
    return StageResult(True, f"{ctx.cfg.baselines.reference} trained into {sub.paths.run}", record)


def _reference_complete(ctx: StageContext) -> bool:
    return _inner_run_complete(_recipe_context(ctx), REFERENCE_STAGES)


def _reference_state(ctx: StageContext) -> Any:
    if ctx.cfg.baselines.reference is None:
        return None
    return _checkpoint_state(_recipe_context(ctx))


def _predicted_fields(ctx: StageContext) -> list[str] | None:
    """What to predict: ``predict.fields``, else the fields of ``predict.splits`` in the plan, else (no split
    asked for, or no plan, as for frames given to ``sgc predict``) every done field."""
    from sgc.patches.planfile import read_plan

    cfg = ctx.cfg.predict
    if cfg.fields:
        return list(cfg.fields)
    if not cfg.splits or not ctx.paths.plan.exists():
        return None
    fields = list(read_plan(ctx.paths.plan).field_rows(tuple(cfg.splits)))
    if not fields:
        raise StageError(f"{ctx.paths.plan}: no patch in the split(s) {', '.join(cfg.splits)} to predict")
    return fields


def _predict(ctx: StageContext) -> StageResult:
    from sgc.evaluate.predict import predict_fields

    summary = predict_fields(
        ctx.paths.checkpoint,
        ctx.paths.store,
        ctx.paths.predictions,
        ctx.cfg.predict,
        ctx.compute,
        _predicted_fields(ctx),
        replace=True,
    )
    head, *rest = summary.format().splitlines()
    record = {"predictions": str(summary.out), "fields": summary.fields, "objects": summary.objects}
    return StageResult(True, head, record, rest)


def _region(ctx: StageContext, cube: CubeStore) -> Any:
    """Where to score: the rows given, else the evaluated split of the plan, else every row."""
    from sgc.evaluate.score import plan_region, rows_region
    from sgc.patches.planfile import read_plan

    rows = ctx.cfg.evaluate.rows
    if rows is not None or not ctx.paths.plan.exists():
        return rows_region(cube, rows, ctx.cfg.split.patch)
    return plan_region(read_plan(ctx.paths.plan), ctx.cfg.evaluate.split, cube)


def _evaluate(ctx: StageContext) -> StageResult:
    from sgc.evaluate.catalog import CATALOG_STEM, read_catalog_file
    from sgc.evaluate.classical import classical_predictions
    from sgc.evaluate.predict import STORE_NAME, predict_fields
    from sgc.evaluate.score import METRICS_JSON, plan_region, score, write_metrics, write_summary
    from sgc.patches.planfile import read_plan
    from sgc.sdss.catalogs import read_catalogs

    catalogs = ctx.catalogs()
    if not catalogs:
        raise StageError(f"no catalogue to score against: give catalogs (none found in {ctx.paths.raw})")
    cube = CubeStore.open(ctx.paths.store)
    region = _region(ctx, cube)
    catalog = read_catalogs(catalogs)
    out = ctx.paths.evaluation
    methods: dict[str, str] = {}
    notes: list[str] = []

    def scored(method: str, predicted: Path, folder: Path) -> dict[str, Any]:
        """Score the predictions in ``predicted``, writing the metrics into ``folder``."""
        predictions = PredictionStore.open(predicted / STORE_NAME)
        objects = read_catalog_file(predicted / f"{CATALOG_STEM}.fits")
        metrics, table = score(predictions, cube, region, catalog, objects)
        metrics = {"method": method, "predictions": predictions.checkpoint, **metrics}
        write_metrics(metrics, table, folder)
        methods[method] = str(folder.relative_to(out))
        return metrics

    results = {"sgc": scored("sgc", ctx.paths.predictions, out)}
    if ctx.cfg.baselines.reference is not None:
        sub = _recipe_context(ctx)
        folder = out / Path(ctx.cfg.baselines.reference).stem
        fields = list(region.masks)
        predict_fields(
            sub.paths.checkpoint, ctx.paths.store, folder, ctx.cfg.predict, ctx.compute, fields, True
        )
        results["2023 recipe"] = scored("2023 recipe", folder, folder)
    if ctx.cfg.baselines.classical and ctx.paths.plan.exists():
        folder = out / "classical"
        train = plan_region(read_plan(ctx.paths.plan), "train", cube)
        cut = classical_predictions(cube, train, region, catalog, folder)
        results["classical"] = scored("classical", folder, folder)
        notes.append(
            f"classical: stars at concentration >= {cut['threshold_mag']:.3f} mag, tuned on "
            f"{cut['train_sources']} catalogue-matched train source(s)"
        )
    summary = write_summary(results, methods, out)
    details = [f"{method}: {out / folder / METRICS_JSON}" for method, folder in methods.items()] + notes
    return StageResult(
        True,
        f"{len(results)} method(s) scored on {region.description}: {summary}",
        {"methods": methods, "metrics": str(out)},
        details,
    )


def _explain(ctx: StageContext) -> StageResult:
    from sgc.evaluate.explain import busiest_patches, explain_region, write_explained
    from sgc.patches.planfile import read_plan
    from sgc.train.checkpoint import load_model

    cfg = ctx.cfg.explain
    model, spec = load_model(ctx.paths.checkpoint)
    cube = CubeStore.open(ctx.paths.store)
    if cfg.field is not None:
        y0, y1, x0, x1 = cfg.box
        ny, nx = cube.shape
        if not (0 <= y0 < y1 <= ny and 0 <= x0 < x1 <= nx):
            grid = f"the {ny} x {nx} grid of {ctx.paths.store}"
            raise StageError(f"explain.box {list(cfg.box)} is not inside {grid}")
        regions = [(cfg.field, (y0, y1), (x0, x1))]
    elif ctx.paths.plan.exists():
        plan = read_plan(ctx.paths.plan)
        p = plan.patch
        regions = [
            (f, (y, y + p), (x, x + p))
            for f, y, x in busiest_patches(plan, ctx.cfg.evaluate.split, cfg.patches)
        ]
    else:
        raise StageError("nothing to explain: give a plan, or explain.field and explain.box")
    explained = [explain_region(model, spec, cube, field, rows, cols) for field, rows, cols in regions]
    figures = write_explained(explained, cube, ctx.paths.explain)
    return StageResult(
        True,
        f"{len(figures)} Grad-CAM figure(s) in {ctx.paths.explain}",
        {"figures": [str(f) for f in figures]},
    )


# Where those stages' outputs are: imported when asked, so that the command line starts without torch.


def _stats_json(ctx: StageContext) -> Path:
    from sgc.cube.stats import STATS_JSON

    return ctx.paths.stats / STATS_JSON


def _objects_csv(ctx: StageContext) -> Path:
    from sgc.evaluate.catalog import CATALOG_STEM

    return ctx.paths.predictions / f"{CATALOG_STEM}.csv"


def _summary_json(ctx: StageContext) -> Path:
    from sgc.evaluate.score import SUMMARY_JSON

    return ctx.paths.evaluation / SUMMARY_JSON


def _gradcam_index(ctx: StageContext) -> Path:
    from sgc.evaluate.explain import INDEX_NAME

    return ctx.paths.explain / INDEX_NAME


def _report_page(ctx: StageContext) -> Path:
    from sgc.report.html import INDEX

    return ctx.paths.report / INDEX


def _report(ctx: StageContext) -> StageResult:
    from sgc.report.html import write_report

    path = write_report(ctx.cfg, ctx.paths)
    return StageResult(True, str(path), {"report": str(path)})


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            "simulate",
            "write simulated SDSS frames and calibObj catalogues (the truth) in the SAS layout",
            _simulate,
            applies=lambda cfg: cfg.source == "simulate",
            complete=_simulated,
        ),
        Stage(
            "download",
            "fetch frames and calibObj files: parallel, resumable, verified",
            _download,
            applies=lambda cfg: cfg.source in ("simulate", "sdss"),
            complete=_downloaded,
            writes=lambda ctx: ctx.paths.raw,
        ),
        Stage(
            "ingest",
            "align the five bands of every field onto its i-band grid, into one Zarr store",
            _ingest,
            state=_store_state,
            complete=_ingested,
            writes=lambda ctx: ctx.paths.store,
        ),
        Stage(
            "stats",
            "per-band statistics, object counts per field, JSON and PNG figures",
            _stats,
            after=("ingest",),
            settings=_catalog_names,
            state=lambda ctx: _file_state(_stats_json(ctx)),
        ),
        Stage(
            "label",
            "paint catalogue stars and galaxies into the store's labels",
            _label,
            after=("ingest",),
            settings=lambda ctx: {
                "label": ctx.cfg.label.model_dump(mode="json"),
                "catalogs": _catalog_names(ctx),
            },
            state=_array_state(LABEL),
            writes=lambda ctx: ctx.paths.store,
        ),
        Stage(
            "exclude",
            "mark the pixels whose sky lies in a held-out field's footprint",
            _exclude,
            after=("ingest",),
            settings=lambda ctx: _held_out(ctx) | {"exclude": ctx.cfg.exclude.model_dump(mode="json")},
            state=_array_state(EXCLUDE),
            writes=lambda ctx: ctx.paths.store,
        ),
        Stage(
            "split",
            "plan patches with train / validation / test splits, normalisation from train, and a report",
            _split,
            after=("label", "exclude"),
            settings=lambda ctx: {
                "split": ctx.cfg.split.model_dump(mode="json"),
                "test_fields": ctx.cfg.test_fields,
                "catalogs": _catalog_names(ctx),
            },
            state=_plan_state,
            folded=True,
        ),
        Stage(
            "audit",
            "check, without the masks, that no train or validation pixel is on held-out sky",
            _audit,
            after=("split",),
            settings=lambda ctx: _held_out(ctx) | {"margin": ctx.cfg.exclude.margin_arcsec},
            folded=True,
        ),
        Stage(
            "pretrain",
            "train the model first on simulated fields, whose truth labels every pixel",
            _pretrain,
            applies=lambda cfg: cfg.pretrain.config is not None,
            state=_pretrain_state,
            complete=_pretrain_complete,
            command=False,
        ),
        Stage(
            "train",
            "train the U-Net on the plan's train patches (DDP under torchrun)",
            _train,
            after=("split", "pretrain"),
            settings=lambda ctx: train_settings(ctx).model_dump(mode="json", exclude={"patience"}),
            state=_checkpoint_state,
            folded=True,
        ),
        Stage(
            "reference",
            "train the 2023 recipe on the same data, to compare with",
            _reference,
            applies=lambda cfg: cfg.baselines.reference is not None,
            state=_reference_state,
            complete=_reference_complete,
            command=False,
        ),
        Stage(
            "predict",
            "predict whole fields with stitched tiles: class probabilities, classes and an object catalogue",
            _predict,
            after=("train", "split"),
            settings=lambda ctx: {
                "predict": ctx.cfg.predict.model_dump(mode="json"),
                "checkpoint": str(ctx.paths.checkpoint),
            },
            state=lambda ctx: _file_state(_objects_csv(ctx)),
            folded=True,
            writes=lambda ctx: ctx.paths.predictions,
        ),
        Stage(
            "evaluate",
            "score predictions against labels and catalogue: pixel, per-patch and object metrics",
            _evaluate,
            after=("predict", "reference", "label", "split"),
            settings=lambda ctx: {
                "evaluate": ctx.cfg.evaluate.model_dump(mode="json"),
                "baselines": ctx.cfg.baselines.model_dump(mode="json"),
                "catalogs": _catalog_names(ctx),
            },
            state=lambda ctx: _file_state(_summary_json(ctx)),
            folded=True,
        ),
        Stage(
            "explain",
            "Grad-CAM maps of the star and galaxy classes over test patches or a region",
            _explain,
            after=("train", "split"),
            settings=lambda ctx: {
                "explain": ctx.cfg.explain.model_dump(mode="json"),
                "split": ctx.cfg.evaluate.split,
            },
            state=lambda ctx: _file_state(_gradcam_index(ctx)),
            folded=True,
        ),
        Stage(
            "report",
            "write the run's static HTML report with its figures",
            _report,
            after=("stats", "split", "train", "evaluate", "explain"),
            state=lambda ctx: _file_state(_report_page(ctx)),
            folded=True,
        ),
    )
}
