"""``sgc run``: every stage in order, each skipped where its output is already complete."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sgc.atomic import atomic_write
from sgc.config import (
    ExcludeConfig,
    IngestConfig,
    LabelConfig,
    RunConfig,
    SimulateConfig,
    SplitConfig,
    TrainConfig,
    config_digest,
    save_config,
)
from sgc.cube.ingest import IngestSummary, ingest
from sgc.errors import SgcError
from sgc.sdss.discover import find_raw
from sgc.sdss.download import DownloadSummary, download
from sgc.sdss.mirror import serve_directory
from sgc.sdss.names import FieldId
from sgc.sdss.simulate import simulate

log = logging.getLogger(__name__)

SIMULATE_MARKER = ".sgc-simulate.json"
PIXEL_SCALE_ARCSEC = 0.396


class StageFailedError(SgcError):
    """A stage finished but left work undone (its summary says what)."""


def simulate_stage(cfg: SimulateConfig, out_dir: Path, progress: bool = True) -> list[FieldId]:
    """Simulate a SAS mirror into ``out_dir`` unless one made with the same config is complete there.

    A completion marker holding the config digest is written last, so a killed simulation is redone
    and a finished one is not.

    Returns:
        The simulated fields.
    """
    marker = out_dir / SIMULATE_MARKER
    digest = config_digest(cfg)
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done.get("digest") == digest:
            log.info("simulate: %s already holds %d fields, skipped", out_dir, len(done["fields"]))
            return [FieldId.parse(f) for f in done["fields"]]
    fields = simulate(out_dir, n_fields=cfg.fields, seed=cfg.seed, runs=cfg.runs, progress=progress)
    save_config(cfg, out_dir, "simulate")
    with atomic_write(marker, "w", sync=False) as f:
        f.write(json.dumps({"digest": digest, "fields": [str(f) for f in fields]}, indent=1))
    return fields


def download_stage(
    cfg: RunConfig, fields: list[FieldId], base_url: str, progress: bool = True
) -> DownloadSummary:
    """Fetch ``fields`` from ``base_url`` into the run's raw folder.

    Raises:
        StageFailedError: if any file could not be fetched; everything that arrived stays in place.
    """
    raw = cfg.resolved_raw_dir
    save_config(cfg.download, raw, "download")
    dl = cfg.download
    summary = download(
        fields,
        raw,
        base_url=base_url,
        jobs=dl.jobs,
        retries=dl.retries,
        timeout=dl.timeout,
        include_catalogs=dl.catalogs,
        progress=progress,
    )
    print(summary.format())
    if not summary.ok:
        raise StageFailedError(f"download: {len(summary.failed)} file(s) failed; rerun to resume")
    return summary


def ingest_stage(cfg: IngestConfig, raw_dir: Path, store: Path, progress: bool = True) -> IngestSummary:
    """Ingest the fields below ``raw_dir`` into ``store``, recording the resolved config beside it.

    Raises:
        StageFailedError: if a field was skipped (missing band, bad frame); every other field is stored.
    """
    summary = ingest(raw_dir, store, cfg, progress=progress)
    save_config(cfg, store.parent, f"ingest-{store.stem}")
    print(summary.format())
    if not summary.ok:
        raise StageFailedError(f"ingest: {len(summary.failed) + len(summary.incomplete)} field(s) skipped")
    return summary


def stats_stage(
    store: Path,
    out_dir: Path,
    catalogs: list[Path],
    raw_dir: Path | None = None,
    field: str | None = None,
) -> dict:
    """Statistics of ``store`` as ``out_dir/stats.json``, with the cube figures beside it.

    Args:
        store: the cube store.
        out_dir: where ``stats.json`` and the PNG figures go.
        catalogs: catalogue files for object counts and the catalogue figures (may be empty).
        raw_dir: folder of the raw frames, for the before/after alignment figure (skipped if None).
        field: the field to draw; defaults to the first done field.

    Returns:
        The statistics.
    """
    from sgc.cube.stats import compute_stats, write_stats
    from sgc.report.cube_figures import catalog_overlay, irg_before_after, object_positions
    from sgc.sdss.catalogs import read_catalogs

    stats = compute_stats(store, catalogs or None)
    path = write_stats(stats, out_dir)
    figures = []
    shown = field or next(iter(stats["fields"]), None)
    if shown is not None and raw_dir is not None:
        figures.append(irg_before_after(store, shown, raw_dir, out_dir / "irg-before-after.png"))
    if catalogs:
        table = read_catalogs(catalogs)
        if shown is not None:
            figures.append(catalog_overlay(store, shown, table, out_dir / "catalog-overlay.png"))
        figures.append(object_positions(store, table, out_dir / "object-positions.png"))
    print(f"stats: {path}" + "".join(f"\n  figure: {f}" for f in figures))
    return stats


def label_stage(cfg: LabelConfig, store: Path, catalogs: list[Path]) -> None:
    """Paint the catalogues' stars and galaxies into the store's ``label`` array."""
    from sgc.masks.labels import LabelSettings, label_store

    settings = LabelSettings(**cfg.model_dump(exclude={"catalogs"}))
    summary = label_store(store, catalogs, settings)
    print(summary.format())


def exclude_stage(cfg: ExcludeConfig, store: Path, held_out: list[str], sources: list[Path]) -> None:
    """Mark the pixels on held-out sky in the store's ``exclude`` array."""
    from sgc.masks.exclusion import exclude_store

    summary = exclude_store(store, held_out, sources, margin_arcsec=cfg.margin_arcsec)
    print(summary.format())


def split_stage(
    cfg: SplitConfig, store: Path, plan_path: Path, test_fields: list[str], catalogs: list[Path]
) -> Path:
    """Plan 64x64 patches and their splits, write the plan and the split report beside it.

    Returns:
        The plan's path.
    """
    from sgc.patches.plan import SplitSpec, make_plan
    from sgc.patches.planfile import write_plan
    from sgc.patches.report import write_split_report

    spec = SplitSpec(
        **cfg.model_dump(exclude={"train_fields", "val_fields"}),
        train_fields=tuple(cfg.train_fields),
        val_fields=tuple(cfg.val_fields),
        test_fields=tuple(test_fields),
    )
    plan = make_plan(store, spec)
    write_plan(plan, plan_path)
    report = write_split_report(
        plan, store, plan_path.with_name(f"{plan_path.stem}-report"), catalogs=catalogs
    )
    print(f"plan: {plan_path}" + "".join(f"\n  {kind}: {path}" for kind, path in report.items()))
    return plan_path


def audit_stage(
    store: Path, plan_path: Path, held_out: list[str], sources: list[Path], margin_arcsec: float
) -> None:
    """Check, independently of the masks, that no train or validation pixel lies on held-out sky.

    The check uses the exclusion margin less one pixel, so a correct plan passes with room to spare.

    Raises:
        StageFailedError: naming the leaked patches.
    """
    from sgc.patches.audit import audit_plan
    from sgc.patches.planfile import read_plan

    margin_px = max(0.0, margin_arcsec / PIXEL_SCALE_ARCSEC - 1.0)
    result = audit_plan(read_plan(plan_path), store, held_out, sources, margin=margin_px)
    print(result.format())
    if not result.ok:
        raise StageFailedError(f"audit: {plan_path} puts train or validation pixels on held-out sky")


def train_stage(cfg: TrainConfig, store: Path, plan_path: Path, run_dir: Path, progress: bool = True) -> None:
    """Train the U-Net, going on from ``run_dir/last.pt`` where an unfinished run left it.

    A finished run in ``run_dir`` is left as it is.
    """
    from sgc.train.loop import train

    result = train(store, plan_path, run_dir, cfg, resume=True, progress=progress)
    print(result.format())


@contextmanager
def _raw_source(cfg: RunConfig, progress: bool) -> Iterator[tuple[list[FieldId], str | None]]:
    """Yield the fields to fetch and the base URL to fetch them from (``None``: nothing to fetch)."""
    if cfg.source == "local":
        yield [FieldId.parse(f) for f in cfg.download.fields], None
        return
    if cfg.source == "sdss":
        if not cfg.download.fields:
            raise SgcError("source 'sdss' needs download.fields: the field ids to fetch")
        yield [FieldId.parse(f) for f in cfg.download.fields], cfg.download.base_url
        return
    simulated = simulate_stage(cfg.simulate, cfg.mirror_dir, progress=progress)
    wanted = [FieldId.parse(f) for f in cfg.download.fields] or simulated
    # Serve the simulated mirror over real HTTP so the demo exercises the same downloader as SDSS.
    with serve_directory(cfg.mirror_dir) as url:
        log.info("serving the simulated mirror at %s", url)
        yield wanted, url


def run(cfg: RunConfig, progress: bool = True) -> None:
    """Carry out every stage of ``cfg`` in order.

    Raises:
        StageFailedError: if a stage left work undone; outputs already complete are kept.
    """
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, cfg.out_dir, "run")
    with _raw_source(cfg, progress) as (fields, base_url):
        if base_url is not None:
            download_stage(cfg, fields, base_url, progress=progress)
    raw = cfg.resolved_raw_dir
    if not raw.is_dir():
        raise SgcError(f"{raw}: raw data folder does not exist")
    inventory = find_raw(raw)
    print(f"raw data in {raw}: {inventory.format()}")
    ingest_stage(cfg.ingest, raw, cfg.store_path, progress=progress)
    stats_stage(cfg.store_path, cfg.out_dir / "stats", inventory.catalogs, raw_dir=raw)
    catalogs = list(cfg.label.catalogs) or inventory.catalogs
    footprints = list(cfg.exclude.footprint_sources) or [raw]
    label_stage(cfg.label, cfg.store_path, catalogs)
    exclude_stage(cfg.exclude, cfg.store_path, cfg.test_fields, footprints)
    split_stage(cfg.split, cfg.store_path, cfg.plan_path, cfg.test_fields, catalogs)
    audit_stage(cfg.store_path, cfg.plan_path, cfg.test_fields, footprints, cfg.exclude.margin_arcsec)
    train_stage(cfg.train, cfg.store_path, cfg.plan_path, cfg.run_dir, progress=progress)
