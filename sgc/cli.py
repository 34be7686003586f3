"""The ``sgc`` command line: ``sgc run`` and one thin command per stage of :data:`sgc.stages.STAGES`.

Every option is a config field: a command resolves the config (defaults, then ``--config`` or the run's
file, then ``--set``, then its own options), builds the stage's context around the paths it was given,
and runs the stage from the table. Messages go through :mod:`logging` (``--quiet`` keeps warnings and
errors, ``--verbose`` adds what each stage does); bad input ends in one ``error:`` line and exit status 1.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from sgc import __version__, progress
from sgc.compute import Compute
from sgc.config import RunConfig, apply_overrides, load_config_file, merge_settings, validate_config
from sgc.errors import SgcError
from sgc.stages import STAGES, context, is_main_process, run_stage

app = typer.Typer(
    name="sgc",
    help="Find stars and galaxies in SDSS images, pixel by pixel. `sgc run CONFIG` runs every stage in "
    "order, skipping what is complete; each stage also has its own command.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("sgc.cli")

SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override any config field: --set simulate.fields=8 (repeatable)"),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="only warnings and errors, no progress bars")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="also log what each stage does")]
ConfigOpt = Annotated[Path | None, typer.Option(help="YAML config to start from (configs/demo.yaml)")]
WorkersOpt = Annotated[int | None, typer.Option(help="local Dask worker processes")]
SchedulerOpt = Annotated[
    str | None, typer.Option(help="address of a running dask.distributed scheduler (tcp://host:8786)")
]
StoreArg = Annotated[Path, typer.Argument(help="the cube store")]
HeldOutOpt = Annotated[
    list[str] | None, typer.Option("--held-out", help="held-out field ids (default: test_fields)")
]
FootprintsOpt = Annotated[
    list[Path] | None,
    typer.Option("--footprints", help="folders or files with the held-out fields' frames or .hdr headers"),
]
CatalogsOpt = Annotated[
    list[Path] | None,
    typer.Option("--catalogs", "-c", help="catalogue files or folders (default: those in the raw folder)"),
]


class _Terminal(logging.Handler):
    """Log records as plain lines on the current stderr (the one a test runner may have swapped in)."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if self.verbose:
                text = f"{record.levelname.lower()} {record.name}: {text}"
            elif record.levelno >= logging.WARNING:
                text = f"{record.levelname.lower()}: {text}"
            typer.echo(text, err=True)
        except Exception:  # a broken pipe must not turn into a traceback from inside logging
            self.handleError(record)


def _output(quiet: bool, verbose: bool) -> None:
    """Set where messages go and how many: sgc's own logger only, and the progress bars."""
    progress.set_enabled(not quiet)
    logger = logging.getLogger("sgc")
    level = logging.DEBUG if verbose else logging.INFO
    logger.setLevel(level if is_main_process() and not quiet else logging.WARNING)
    logger.propagate = False
    for handler in [h for h in logger.handlers if isinstance(h, _Terminal)]:
        logger.removeHandler(handler)
    logger.addHandler(_Terminal(verbose))


# What ends a command in one error line rather than a traceback: sgc's own errors, values it refused, and
# files it could not read or write (a full disk, a path below a regular file, no permission).
_BAD_INPUT = (SgcError, ValueError, OSError)


def _fail(exc: BaseException) -> typer.Exit:
    typer.secho(f"error: {_one_line(exc)}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def _one_line(exc: BaseException) -> str:
    """The error as one line: an OSError as ``FILE: what``, rather than ``[Errno N] what: 'FILE'``."""
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else "(no file named)"
        return f"{where}: {exc.strerror}"
    if isinstance(exc, SgcError):
        return str(exc)
    # A library's error: its first line (the rest is often advice or a dump of internals).
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _config(
    path: Path | None,
    overrides: list[str] | None,
    updates: dict[str, Any] | None = None,
    fixed: dict[str, Any] | None = None,
) -> RunConfig:
    """Resolve the config: defaults, then the file, then ``--set``, then the options given (not None), then
    what the command itself fixes; validated once, as a whole."""
    try:
        data = apply_overrides(load_config_file(path) if path else {}, overrides or [])
        data = merge_settings(merge_settings(data, updates or {}, given_only=True), fixed or {})
        return validate_config(data, str(path) if path else "command line")
    except _BAD_INPUT as exc:
        raise _fail(exc) from exc


def _say_held_out(cfg: RunConfig, config: Path | None, given: list[str] | None) -> None:
    """A stage command without a config states which fields it holds out, since they matter a great deal."""
    if config is None and not given:
        log.info(
            "holding out %s: the default test_fields (give --config or --held-out to hold out others)",
            ", ".join(cfg.test_fields) or "nothing",
        )


def _run_stage(
    names: str | tuple[str, ...],
    cfg: RunConfig,
    store: Path | None = None,
    resume: bool = True,
    **paths: Path | None,
) -> None:
    """Run a stage of the table (or several, in order) around ``store`` (or the config's paths); exit 1 at
    the first that left work undone."""
    try:
        with Compute(cfg.compute) as compute:
            ctx = context(cfg, compute, store, **paths)
            ctx.resume = resume
            for name in (names,) if isinstance(names, str) else names:
                if not run_stage(STAGES[name], ctx).ok:
                    raise typer.Exit(code=1)
    except _BAD_INPUT as exc:
        raise _fail(exc) from exc


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sgc {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    """sgc: per-pixel sky / star / galaxy segmentation of SDSS imaging."""


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="YAML config: configs/demo.yaml is the offline demo")],
    overrides: SetOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run every stage of CONFIG in order, skipping what is already complete."""
    from sgc.stages import run_all

    _output(quiet, verbose)
    cfg = _config(config, overrides, {"compute": {"workers": workers, "scheduler": scheduler}})
    start = time.perf_counter()
    try:
        run_all(cfg)
    except _BAD_INPUT as exc:
        raise _fail(exc) from exc
    typer.echo(f"done in {time.perf_counter() - start:.1f} s: outputs in {cfg.paths.out_dir}")
    _say_results(cfg.paths.evaluation, cfg.paths.report)


def _say_results(evaluation: Path, report: Path | None = None) -> None:
    """The headline object metrics of every method scored, and the report's page where there is one."""
    from sgc.evaluate.score import headline, method_metrics
    from sgc.report.html import INDEX

    for line in headline(method_metrics(evaluation)):
        typer.echo(line)
    if report is not None and (report / INDEX).is_file():
        typer.echo(f"report: {report / INDEX}")


@app.command()
def cv(
    config: Annotated[Path, typer.Argument(help="YAML config of one labelled field: configs/sample.yaml")],
    folds: Annotated[int, typer.Option(help="K: bands of rows, each the test band of one fold")] = 5,
    variant: Annotated[
        str | None, typer.Option(help="what this is called in the ablation (default: the run's name)")
    ] = None,
    overrides: SetOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Cross-validate CONFIG over K folds of one field's rows: mean and spread of every object metric."""
    from sgc.cv import cross_validate

    _output(quiet, verbose)
    cfg = _config(config, overrides, {"compute": {"workers": workers, "scheduler": scheduler}})
    start = time.perf_counter()
    try:
        result = cross_validate(cfg, folds, variant=variant)
    except _BAD_INPUT as exc:
        raise _fail(exc) from exc
    typer.echo(result.format(), nl=False)
    typer.echo(f"done in {time.perf_counter() - start:.1f} s: {result.out / f'{result.stem}.md'}")


@app.command("tune")
def tune_command(
    config: Annotated[Path, typer.Argument(help="YAML config of one labelled field: configs/sample.yaml")],
    trials: Annotated[int, typer.Option(help="finished trials to reach, a killed search's included")] = 20,
    folds: Annotated[int, typer.Option(help="K: each trial's value is the mean over K folds")] = 3,
    metric: Annotated[str, typer.Option(help="object metric to maximise: mcc, accuracy, star.f1...")] = "mcc",
    method: Annotated[str, typer.Option(help="whose metric: sgc, '2023 recipe' or classical")] = "sgc",
    space: Annotated[
        Path | None,
        typer.Option(help="YAML search space: 'dotted.key: {low: L, high: H}' or a list of choices per key"),
    ] = None,
    pruner: Annotated[str, typer.Option(help="stop poor trials after a fold: median, hyperband, none")] = (
        "median"
    ),
    parallel: Annotated[int | None, typer.Option(help="trials at once (default: one per worker)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the sampler")] = 0,
    overrides: SetOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Search CONFIG's hyper-parameters with Optuna, trials on the Dask cluster, each scored by K-fold
    cross-validation; resumable: run again to go on."""
    import optuna

    from sgc.tune.objective import CvObjective
    from sgc.tune.search import TuneOptions, tune
    from sgc.tune.space import load_space

    _output(quiet, verbose)
    cfg = _config(config, overrides, {"compute": {"workers": workers, "scheduler": scheduler}})
    # Optuna's own INFO lines repeat what sgc logs about each trial.
    optuna.logging.set_verbosity(optuna.logging.DEBUG if verbose else optuna.logging.WARNING)
    start = time.perf_counter()
    try:
        settings = apply_overrides(load_config_file(config), overrides or [])
        options = TuneOptions(trials=trials, parallel=parallel, pruner=pruner, steps=folds, seed=seed)
        result = tune(cfg, CvObjective(folds, metric, method), load_space(space, cfg), options, settings)
    except _BAD_INPUT as exc:
        raise _fail(exc) from exc
    typer.echo(result.format(), nl=False)
    typer.echo(f"done in {time.perf_counter() - start:.1f} s: {result.out}")


@app.command("config")
def show_config(
    config: Annotated[Path | None, typer.Argument(help="YAML config; omitted: the defaults")] = None,
    overrides: SetOpt = None,
) -> None:
    """Print the resolved config (defaults, file and overrides) as YAML, or refuse it naming the key."""
    import yaml

    cfg = _config(config, overrides)
    typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), nl=False)


@app.command(help=STAGES["simulate"].help)
def simulate(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder to write the SAS-layout files into")],
    fields: Annotated[int | None, typer.Option(help="number of fields")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed (same seed, same bytes)")] = None,
    runs: Annotated[int | None, typer.Option(help="number of imaging runs")] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    _output(quiet, verbose)
    cfg = _config(config, overrides, {"simulate": {"fields": fields, "seed": seed, "runs": runs}})
    _run_stage("simulate", cfg, mirror=out)


@app.command()
def serve(
    root: Annotated[Path, typer.Argument(help="folder in the SAS layout to serve (a mirror)")],
    port: Annotated[int, typer.Option(help="port; 0 picks a free one")] = 8000,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
) -> None:
    """Serve a local SAS mirror over HTTP (with Range support) until interrupted."""
    from sgc.sdss.mirror import serve_directory

    if not root.is_dir():
        raise _fail(SgcError(f"{root}: not a folder"))
    with serve_directory(root, host=host, port=port) as url:
        typer.echo(f"serving {root} at {url} (Ctrl-C to stop); use it with --base-url {url}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            typer.echo("stopped")


@app.command(help=STAGES["download"].help)
def download(
    fields: Annotated[list[str], typer.Argument(help="field ids: 8162-6-80 or 008162-6-0080")],
    out: Annotated[Path, typer.Option("--out", "-o", help="RAW_DIR: files land in the SAS layout below it")],
    base_url: Annotated[str | None, typer.Option(help="SAS base URL (https://, http:// or file://)")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="parallel downloads")] = None,
    retries: Annotated[int | None, typer.Option(help="retries per file")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds without data before retrying")] = None,
    catalogs: Annotated[
        bool | None, typer.Option("--catalogs/--no-catalogs", help="also fetch calibObj star/gal files")
    ] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    _output(quiet, verbose)
    section = {"fields": fields, "base_url": base_url, "jobs": jobs, "retries": retries, "timeout": timeout}
    cfg = _config(config, overrides, {"source": "sdss", "download": section | {"catalogs": catalogs}})
    _run_stage("download", cfg, raw=out)


@app.command(help=STAGES["ingest"].help)
def ingest(
    raw_dir: Annotated[
        Path, typer.Argument(help="folder holding frame-BAND-RRRRRR-C-FFFF.fits[.bz2] files, any layout")
    ],
    store: Annotated[Path, typer.Argument(help="the Zarr cube store to create or extend")],
    fields: Annotated[
        list[str] | None, typer.Option("--fields", help="only these field ids (repeatable)")
    ] = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    strict: Annotated[
        bool | None, typer.Option("--strict/--no-strict", help="stop at the first bad field")
    ] = None,
    chunk: Annotated[int | None, typer.Option(help="chunk edge along y and x (new stores)")] = None,
    codec: Annotated[
        str | None, typer.Option(help="blosc-lz4, blosc-zstd, zstd or none (new stores)")
    ] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 or float16 (new stores)")] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    _output(quiet, verbose)
    section = {"fields": fields or None, "strict": strict, "chunk": chunk, "codec": codec, "dtype": dtype}
    cfg = _config(
        config, overrides, {"ingest": section, "compute": {"workers": workers, "scheduler": scheduler}}
    )
    _run_stage("ingest", cfg, store, raw=raw_dir)


@app.command(help=STAGES["stats"].help)
def stats(
    store: StoreArg,
    catalogs: CatalogsOpt = None,
    raw: Annotated[
        Path | None,
        typer.Option(help="raw frames folder, for the before/after figure (default: the store's)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="output folder (default STORE's stats/)")
    ] = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    _output(quiet, verbose)
    cfg = _config(
        config, overrides, {"catalogs": catalogs, "compute": {"workers": workers, "scheduler": scheduler}}
    )
    _run_stage("stats", cfg, store, raw=raw, stats=out)


@app.command(help=STAGES["label"].help)
def label(
    store: StoreArg,
    catalogs: CatalogsOpt = None,
    mode: Annotated[
        str | None, typer.Option(help="'disk', or 'point' (one pixel per object, as in 2023)")
    ] = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    _output(quiet, verbose)
    cfg = _config(
        config,
        overrides,
        {
            "catalogs": catalogs,
            "label": {"mode": mode},
            "compute": {"workers": workers, "scheduler": scheduler},
        },
    )
    _run_stage("label", cfg, store)


@app.command(help=STAGES["exclude"].help)
def exclude(
    store: StoreArg,
    held_out: HeldOutOpt = None,
    footprints: FootprintsOpt = None,
    margin: Annotated[float | None, typer.Option(help="margin around held-out frames, arcsec")] = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    _output(quiet, verbose)
    updates = {
        "test_fields": held_out,
        "exclude": {"margin_arcsec": margin, "footprint_sources": footprints},
        "compute": {"workers": workers, "scheduler": scheduler},
    }
    cfg = _config(config, overrides, updates)
    _say_held_out(cfg, config, held_out)
    _run_stage("exclude", cfg, store)


@app.command(help=STAGES["split"].help)
def split(
    store: Annotated[Path, typer.Argument(help="the cube store (with labels and exclusion)")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="plan to write (default: plan.zarr beside the store)")
    ] = None,
    catalogs: CatalogsOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    _output(quiet, verbose)
    cfg = _config(
        config, overrides, {"catalogs": catalogs, "compute": {"workers": workers, "scheduler": scheduler}}
    )
    _say_held_out(cfg, config, None)
    _run_stage("split", cfg, store, plan=out)


@app.command(help=STAGES["audit"].help)
def audit(
    store: StoreArg,
    plan: Annotated[Path, typer.Argument(help="the patch plan")],
    held_out: Annotated[
        list[str] | None, typer.Option("--held-out", help="held-out field ids (default: those excluded)")
    ] = None,
    margin: Annotated[
        float | None, typer.Option(help="exclusion margin, arcsec (default: the one excluded with)")
    ] = None,
    footprints: FootprintsOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    from sgc.cube.store import ATTR_HELD_OUT, ATTR_MARGIN, EXCLUDE, CubeStore

    _output(quiet, verbose)
    if not held_out or margin is None:
        # By default the audit checks the exclusion the store records, whatever config made it.
        try:
            recorded = CubeStore.open(store).record(EXCLUDE)
        except SgcError as exc:
            raise _fail(exc) from exc
        held_out = held_out or recorded.get(ATTR_HELD_OUT)
        margin = margin if margin is not None else recorded.get(ATTR_MARGIN)
        if not held_out or margin is None:
            raise _fail(SgcError(f"{store}: no exclusion recorded; give --held-out and --margin"))
    updates = {"test_fields": held_out, "exclude": {"margin_arcsec": margin, "footprint_sources": footprints}}
    cfg = _config(config, overrides, updates)
    _run_stage("audit", cfg, store, plan=plan)


@app.command(help=STAGES["train"].help)
def train(
    store: Annotated[Path, typer.Argument(help="the cube store (with labels)")],
    plan: Annotated[Path, typer.Argument(help="the patch plan")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="run folder (default runs/NAME)")] = None,
    resume: Annotated[bool, typer.Option(help="go on from OUT/last.pt")] = False,
    epochs: Annotated[int | None, typer.Option(help="maximum epochs")] = None,
    lr: Annotated[float | None, typer.Option(help="peak learning rate")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of weights, data order and augmentation")] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    _output(quiet, verbose)
    section = {"epochs": epochs, "lr": lr, "device": device, "seed": seed}
    cfg = _config(config, overrides, {"train": section})
    _run_stage("train", cfg, store, resume=resume, plan=plan, run=out)


CheckpointArg = Annotated[Path, typer.Argument(help="a checkpoint written by sgc train (best.pt)")]
FramesOpt = Annotated[
    Path | None,
    typer.Option(help="raw frames of any field (frame-BAND-...fits[.bz2]), aligned exactly as ingest does"),
]
FitsOpt = Annotated[
    bool | None, typer.Option("--fits/--no-fits", help="also a FITS class map and probability cube per field")
]


def _frames_store(out: Path) -> Path:
    """Where the cube of frames given to predict or evaluate is built: a store inside the output folder."""
    return out / "frames.zarr"


@app.command(help=STAGES["predict"].help)
def predict(
    checkpoint: CheckpointArg,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="output folder: predictions.zarr, objects.fits/.csv")
    ],
    store: Annotated[Path | None, typer.Option(help="the cube store whose fields to predict")] = None,
    fields: Annotated[
        list[str] | None, typer.Option("--fields", help="only these field ids (repeatable; default: all)")
    ] = None,
    frames: FramesOpt = None,
    fits: FitsOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    _output(quiet, verbose)
    if (store is None) == (frames is None):
        raise _fail(SgcError("give the fields to predict as --store STORE or as --frames DIR"))
    # Every field of the store unless --fields says which: no plan split decides here.
    section = {"fields": fields, "splits": [], "fits": fits}
    cfg = _config(
        config, overrides, {"predict": section, "compute": {"workers": workers, "scheduler": scheduler}}
    )
    paths = {"checkpoint": checkpoint, "predictions": out}
    if frames is not None:
        _run_stage(("ingest", "predict"), cfg, _frames_store(out), raw=frames, **paths)
    else:
        _run_stage("predict", cfg, store, **paths)


def _rows(text: str | None) -> list[int] | None:
    """``A:B`` as ``[A, B]``."""
    if text is None:
        return None
    first, sep, end = text.partition(":")
    try:
        return [int(first), int(end)] if sep else None
    except ValueError:
        return None


@app.command(help=STAGES["evaluate"].help)
def evaluate(
    checkpoint: CheckpointArg,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="output folder: metrics.json, metrics.md, predictions")
    ],
    store: Annotated[Path | None, typer.Option(help="the cube store (with labels)")] = None,
    plan: Annotated[Path | None, typer.Option(help="the patch plan whose split is scored")] = None,
    split: Annotated[str | None, typer.Option(help="val, test or train (default: test)")] = None,
    frames: FramesOpt = None,
    catalog: Annotated[
        list[Path] | None, typer.Option("--catalog", help="catalogue of the frames' field (repeatable)")
    ] = None,
    rows: Annotated[str | None, typer.Option(help="score only rows A:B of the stored grid")] = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    _output(quiet, verbose)
    if (store is None) == (frames is None) or (store is not None and plan is None):
        raise _fail(SgcError("give --store STORE --plan PLAN, or --frames DIR --catalog FILE"))
    if frames is not None and not catalog:
        raise _fail(SgcError("--frames needs the field's catalogue: --catalog FILE"))
    if rows is not None and _rows(rows) is None:
        raise _fail(SgcError(f"--rows {rows!r}: expected FIRST:END, such as 500:745"))
    section = {"split": split, "rows": _rows(rows)}
    split_names = [split] if split else None
    updates = {
        "catalogs": catalog,
        "evaluate": section,
        "predict": {"splits": split_names},
        "compute": {"workers": workers, "scheduler": scheduler},
    }
    # The checkpoint given is scored alone: the baselines are sgc run's.
    cfg = _config(config, overrides, updates, fixed={"baselines": {"reference": None, "classical": False}})
    paths = {"checkpoint": checkpoint, "predictions": out / "predictions", "evaluation": out}
    if frames is not None:
        # A store of the frames alone, labelled from their catalogue; with no plan, rows are scored.
        _run_stage(("ingest", "label", "predict", "evaluate"), cfg, _frames_store(out), raw=frames, **paths)
    else:
        _run_stage(("predict", "evaluate"), cfg, store, plan=plan, **paths)
    _say_results(out)


@app.command(help=STAGES["explain"].help)
def explain(
    checkpoint: CheckpointArg,
    store: Annotated[Path, typer.Option(help="the cube store")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder for the figures")],
    plan: Annotated[
        Path | None, typer.Option(help="explain the busiest patches of a split of this plan")
    ] = None,
    split: Annotated[str | None, typer.Option(help="the plan's split (default: test)")] = None,
    patches: Annotated[int | None, typer.Option(help="how many patches")] = None,
    field: Annotated[str | None, typer.Option(help="explain a region of this field instead")] = None,
    region: Annotated[str | None, typer.Option(help="the region: Y0:Y1,X0:X1 on the stored grid")] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    _output(quiet, verbose)
    box = None
    if region is not None:
        parts = [_rows(p) for p in region.split(",")]
        if len(parts) != 2 or None in parts:
            raise _fail(SgcError(f"--region {region!r}: expected Y0:Y1,X0:X1, such as 0:128,512:640"))
        box = [*parts[0], *parts[1]]
    if plan is None and field is None:
        raise _fail(SgcError("give --plan PLAN (its busiest patches) or --field FIELD --region Y0:Y1,X0:X1"))
    updates = {"explain": {"patches": patches, "field": field, "box": box}, "evaluate": {"split": split}}
    cfg = _config(config, overrides, updates)
    _run_stage("explain", cfg, store, checkpoint=checkpoint, plan=plan, explain=out)


@app.command(help=STAGES["report"].help)
def report(
    run_folder: Annotated[
        Path, typer.Argument(metavar="RUN", help="the run's output folder (stores/NAME), or its config file")
    ],
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    from sgc.config import saved_config

    _output(quiet, verbose)
    cfg = _config(saved_config(run_folder, "run") if run_folder.is_dir() else run_folder, None)
    _run_stage("report", cfg)
    typer.echo(f"report: {cfg.paths.report}")
