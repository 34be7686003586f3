"""The ``sgc`` command line: one thin command per stage, every option backed by the config."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from sgc import __version__
from sgc.config import RunConfig, load_config
from sgc.errors import SgcError
from sgc.sdss.names import FieldId

app = typer.Typer(
    name="sgc",
    help="Find stars and galaxies in SDSS images, pixel by pixel. Stages: simulate, serve, download, ingest, "
    "stats, label, exclude, split, audit; `sgc run CONFIG` runs them all in order.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigArg = Annotated[
    Path | None, typer.Argument(help="YAML config (configs/demo.yaml); omitted: the offline demo defaults")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override any config field: --set simulate.fields=8 (repeatable)"),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")]
ConfigOpt = Annotated[Path | None, typer.Option(help="YAML config to start from")]


def _fail(exc: BaseException) -> typer.Exit:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def _config(
    path: Path | None, overrides: list[str] | None, section: str | None = None, **options: object
) -> RunConfig:
    """Resolve the config: defaults, then the file, then ``--set``, then the command's own options."""
    try:
        cfg = load_config(path, overrides or [])
        data = cfg.model_dump()
        target = data[section] if section else data
        target.update({k: v for k, v in options.items() if v is not None})
        return RunConfig.model_validate(data)
    except (SgcError, ValidationError) as exc:
        raise _fail(exc) from exc


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sgc {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log what each stage does")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    """sgc: per-pixel sky / star / galaxy segmentation of SDSS imaging."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@app.command()
def run(config: ConfigArg = None, overrides: SetOpt = None, quiet: QuietOpt = False) -> None:
    """Run every stage of CONFIG in order, skipping what is already complete."""
    from sgc.pipeline import run as run_pipeline

    cfg = _config(config, overrides)
    start = time.perf_counter()
    try:
        run_pipeline(cfg, progress=not quiet)
    except (SgcError, ValueError) as exc:
        raise _fail(exc) from exc
    typer.echo(f"done in {time.perf_counter() - start:.1f} s: outputs in {cfg.out_dir}")


@app.command("config")
def show_config(config: ConfigArg = None, overrides: SetOpt = None) -> None:
    """Print the resolved config (defaults, file and overrides) as YAML."""
    import yaml

    cfg = _config(config, overrides)
    typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), nl=False)


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder to write the SAS-layout files into")],
    fields: Annotated[int | None, typer.Option(help="number of fields")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed (same seed, same bytes)")] = None,
    runs: Annotated[int | None, typer.Option(help="number of imaging runs")] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Write simulated SDSS frames and calibObj catalogues (the truth) in the SAS layout."""
    from sgc.pipeline import simulate_stage

    cfg = _config(config, overrides, "simulate", fields=fields, seed=seed, runs=runs)
    try:
        done = simulate_stage(cfg.simulate, out, progress=not quiet)
    except (SgcError, ValueError) as exc:
        raise _fail(exc) from exc
    typer.echo(f"{len(done)} field(s) in {out}: {', '.join(str(f) for f in done)}")


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


@app.command()
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
) -> None:
    """Fetch the five frames of each FIELD and the calibObj files of its run+camcol; resumable."""
    from sgc.pipeline import download_stage

    cfg = _config(
        config,
        overrides,
        "download",
        fields=fields,
        base_url=base_url,
        jobs=jobs,
        retries=retries,
        timeout=timeout,
        catalogs=catalogs,
    )
    cfg.raw_dir = out
    wanted = [FieldId.parse(f) for f in cfg.download.fields]
    try:
        download_stage(cfg, wanted, cfg.download.base_url, progress=not quiet)
    except (SgcError, ValueError) as exc:
        raise _fail(exc) from exc


@app.command()
def ingest(
    raw_dir: Annotated[
        Path, typer.Argument(help="folder holding frame-BAND-RRRRRR-C-FFFF.fits[.bz2] files, any layout")
    ],
    store: Annotated[Path, typer.Argument(help="the Zarr cube store to create or extend")],
    fields: Annotated[
        list[str] | None, typer.Option("--fields", help="only these field ids (repeatable)")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="local worker processes")] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="address of a running dask.distributed scheduler")
    ] = None,
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
) -> None:
    """Align the five bands of every field below RAW_DIR onto its i-band grid, into one Zarr store."""
    from sgc.pipeline import ingest_stage

    cfg = _config(
        config,
        overrides,
        "ingest",
        fields=fields or None,
        workers=workers,
        scheduler=scheduler,
        strict=strict,
        chunk=chunk,
        codec=codec,
        dtype=dtype,
    )
    try:
        ingest_stage(cfg.ingest, raw_dir, store, progress=not quiet)
    except (SgcError, ValueError) as exc:
        raise _fail(exc) from exc


@app.command()
def stats(
    store: Annotated[Path, typer.Argument(help="the cube store")],
    catalogs: Annotated[
        list[Path] | None, typer.Option("--catalogs", "-c", help="catalogue files or folders (repeatable)")
    ] = None,
    raw: Annotated[Path | None, typer.Option(help="raw frames folder, for the before/after figure")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="output folder (default STORE-stats)")
    ] = None,
    field: Annotated[str | None, typer.Option(help="field to draw (default: the first stored)")] = None,
) -> None:
    """Per-band statistics over valid pixels, object counts per field, JSON and PNG figures."""
    from sgc.pipeline import stats_stage

    out = out or store.with_name(f"{store.stem}-stats")
    try:
        stats_stage(store, out, _catalog_paths(catalogs), raw_dir=raw, field=field)
    except (SgcError, ValueError) as exc:
        raise _fail(exc) from exc


def _catalog_paths(items: list[Path] | None) -> list[Path]:
    """Catalogue files, with folders expanded to the catalogues found below them."""
    from sgc.sdss.discover import find_raw

    paths: list[Path] = []
    for item in items or []:
        paths += find_raw(item).catalogs if item.is_dir() else [item]
    return paths


@app.command()
def label(
    store: Annotated[Path, typer.Argument(help="the cube store")],
    catalogs: Annotated[
        list[Path], typer.Option("--catalogs", "-c", help="catalogue files or folders (repeatable)")
    ],
    mode: Annotated[
        str | None, typer.Option(help="'disk', or 'point' (one pixel per object, as in 2023)")
    ] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Paint catalogue stars and galaxies into label (0 sky, 1 star, 2 galaxy, 255 ignore)."""
    from sgc.pipeline import label_stage

    cfg = _config(config, overrides, "label", mode=mode)
    try:
        label_stage(cfg.label, store, _catalog_paths(catalogs))
    except (SgcError, ValueError) as exc:
        raise _fail(exc) from exc


@app.command()
def exclude(
    store: Annotated[Path, typer.Argument(help="the cube store")],
    held_out: Annotated[
        list[str] | None, typer.Option("--held-out", help="held-out field ids (default: test_fields)")
    ] = None,
    footprints: Annotated[
        list[Path] | None,
        typer.Option(
            "--footprints", help="folders or files with the held-out fields' frames or .hdr headers"
        ),
    ] = None,
    margin: Annotated[float | None, typer.Option(help="margin around held-out frames, arcsec")] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Mark pixels whose sky lies in any held-out field's footprint (plus a margin) in exclude."""
    from sgc.pipeline import exclude_stage

    cfg = _config(config, overrides, "exclude", margin_arcsec=margin, footprint_sources=footprints or None)
    try:
        sources = list(cfg.exclude.footprint_sources) or _raw_dir_of(store)
        held = [str(FieldId.parse(f)) for f in held_out] if held_out else cfg.test_fields
        exclude_stage(cfg.exclude, store, held, sources)
    except (SgcError, ValueError) as exc:
        raise _fail(exc) from exc


@app.command()
def split(
    store: Annotated[Path, typer.Argument(help="the cube store (with label and exclude)")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="plan to write (default STORE-plan.zarr)")
    ] = None,
    catalogs: Annotated[
        list[Path] | None, typer.Option("--catalogs", "-c", help="catalogues for object counts per split")
    ] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Plan patches with train / validation / test splits, normalisation from train, and a report."""
    from sgc.pipeline import split_stage

    cfg = _config(config, overrides)
    plan = out or store.with_name(f"{store.stem}-plan.zarr")
    try:
        split_stage(cfg.split, store, plan, cfg.test_fields, _catalog_paths(catalogs))
    except (SgcError, ValueError) as exc:
        raise _fail(exc) from exc


@app.command()
def audit(
    store: Annotated[Path, typer.Argument(help="the cube store")],
    plan: Annotated[Path, typer.Argument(help="the patch plan")],
    held_out: Annotated[
        list[str] | None, typer.Option("--held-out", help="held-out field ids (default: those excluded)")
    ] = None,
    margin: Annotated[
        float | None, typer.Option(help="exclusion margin, arcsec (default: the one excluded with)")
    ] = None,
    footprints: Annotated[
        list[Path] | None,
        typer.Option(
            "--footprints", help="folders or files with the held-out fields' frames or .hdr headers"
        ),
    ] = None,
) -> None:
    """Check, without the masks, that no train or validation pixel is on held-out sky (exit 1 if one is)."""
    from sgc.cube.store import open_store
    from sgc.pipeline import audit_stage

    try:
        group = open_store(store)
        excluded = dict(group["exclude"].attrs) if "exclude" in group else {}
        fields = [str(FieldId.parse(f)) for f in held_out] if held_out else excluded.get("held_out")
        margin = margin if margin is not None else excluded.get("margin_arcsec")
        if not fields or margin is None:
            raise SgcError(f"{store}: no exclusion recorded; give --held-out and --margin")
        audit_stage(store, plan, fields, footprints or _raw_dir_of(store), margin)
    except (SgcError, ValueError) as exc:
        raise _fail(exc) from exc


@app.command()
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
) -> None:
    """Train the U-Net on the plan's train patches; under torchrun, one process per GPU or CPU rank."""
    from sgc.train.loop import train as run_training

    cfg = _config(config, overrides, "train", epochs=epochs, lr=lr, device=device, seed=seed)
    try:
        result = run_training(store, plan, out or cfg.run_dir, cfg.train, resume=resume)
    except (SgcError, ValueError) as exc:
        raise _fail(exc) from exc
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary rather than one per rank
        print(result.format())


def _raw_dir_of(store: Path) -> list[Path]:
    """The raw folder the store was ingested from, where held-out frames are looked for by default."""
    from sgc.cube.store import open_store

    raw = open_store(store).attrs.get("raw_dir")
    if raw is None:
        raise SgcError(f"{store}: no raw folder recorded; give --footprints")
    return [Path(raw)]
