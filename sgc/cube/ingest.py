"""``sgc ingest``: frames below a folder -> aligned five-band cubes in one Zarr store, with Dask.

The client plans (which fields, which slots), allocates slots in the store, and submits one task per field
to the run's dask.distributed cluster (:mod:`sgc.compute`): a local cluster of processes or any running
scheduler. Each task reads the
field's five frames, aligns them onto the i-band grid and writes the result into the field's own region of
the store, marking it done last; nothing but a small result record travels back to the client. A killed run
leaves its unfinished fields not done, and the next run does exactly those.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import resource
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sgc import __version__, progress
from sgc.compute import Compute
from sgc.config import IngestConfig
from sgc.cube.store import (
    ATTR_FIELDS_DONE,
    ATTR_INGEST_CONFIG,
    ATTR_LAST_INGEST,
    ATTR_RAW_DIR,
    ATTR_VERSION,
    CubeStore,
)
from sgc.errors import InputFileError, SgcError
from sgc.sdss.discover import find_raw
from sgc.sdss.frames import read_frame, read_frame_header
from sgc.sdss.names import BANDS, FieldId

log = logging.getLogger(__name__)

REFERENCE_BAND = "i"


class IngestError(SgcError):
    """An ingest that cannot start, or that stopped at a bad field under ``--strict``."""


@dataclass(frozen=True)
class FieldResult:
    """What became of one field.

    Attributes:
        field: the field id.
        status: ``stored``, ``skipped`` (already done) or ``failed``.
        seconds: time the worker spent on it.
        error: why it failed, naming the file; None otherwise.
        diagnostics: alignment figures per band.
        peak_rss_mb: the worker process's peak resident memory when it finished the field.
        valid_fraction: the share of the stored grid's pixels valid in all five bands.
    """

    field: str
    status: str
    seconds: float = 0.0
    error: str | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    valid_fraction: float = 1.0


@dataclass
class IngestSummary:
    """Every field's result, and the fields that were never attempted (bands missing)."""

    store: Path
    results: list[FieldResult]
    incomplete: dict[str, list[str]]
    min_valid_fraction: float = 0.0

    @property
    def failed(self) -> list[FieldResult]:
        """Fields that were attempted and failed."""
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        """True if every field found was stored (now or before)."""
        return not self.failed and not self.incomplete

    def format(self) -> str:
        """A human summary: counts, then each field not stored and why."""
        counts = {s: sum(r.status == s for r in self.results) for s in ("stored", "skipped", "failed")}
        lines = [
            f"{self.store}: {counts['stored']} field(s) stored, {counts['skipped']} already done, "
            f"{counts['failed']} failed, {len(self.incomplete)} with bands missing"
        ]
        lines += [f"  {f}: missing band(s) {', '.join(b)}; skipped" for f, b in self.incomplete.items()]
        lines += [f"  {r.field}: {r.error}; skipped" for r in self.failed]
        return "\n".join(lines)

    @property
    def mostly_invalid(self) -> list[FieldResult]:
        """Fields stored now with fewer valid pixels than ``min_valid_fraction``."""
        return [
            r for r in self.results if r.status == "stored" and r.valid_fraction < self.min_valid_fraction
        ]


def _limit_threads() -> None:
    # Environment variables only reach processes started after them; a remote worker may already be
    # running, so numba's own pool is capped here too.
    import numba

    numba.set_num_threads(1)


def ingest_field(
    store: str, slot: int, field_id: str, paths: Mapping[str, str], align_method: str
) -> FieldResult:
    """Read, align and store one field (runs inside a Dask worker).

    Bad input never raises: it comes back as a ``failed`` result naming the file, so one bad field does
    not stop the others.
    """
    from sgc.cube.align import align_field

    _limit_threads()
    start = time.perf_counter()
    try:
        frames = {band: read_frame(paths[band]) for band in BANDS}
        shapes = {band: f.image.shape for band, f in frames.items()}
        if len(set(shapes.values())) != 1:
            sizes = ", ".join(f"{b} {s[0]}x{s[1]}" for b, s in shapes.items())
            raise InputFileError(paths[REFERENCE_BAND], f"frames of field {field_id} differ in size: {sizes}")
        aligned = align_field(frames, reference=REFERENCE_BAND, method=align_method)
        cube = CubeStore.open(store, mode="r+")
        image, valid = _fit_to_grid(aligned.cube, aligned.valid, cube.shape, paths[REFERENCE_BAND])
        diagnostics = _diagnostics_record(aligned.diagnostics)
        source = {
            "field": field_id,
            "files": {band: frames[band].file for band in BANDS},  # hashed as they were read
            "align": diagnostics,
            "sgc": __version__,
        }
        cube.write_field(slot, image, valid, frames[REFERENCE_BAND].header.tostring(), source)
    except Exception as exc:  # any failure is this field's alone: report it, let the others carry on
        named = isinstance(exc, (InputFileError, ValueError))  # these already name the file
        error = str(exc) if named else f"{type(exc).__name__}: {exc}"
        return FieldResult(field_id, "failed", time.perf_counter() - start, error, peak_rss_mb=_peak_rss_mb())
    finally:
        _release_memory()
    return FieldResult(
        field_id,
        "stored",
        time.perf_counter() - start,
        diagnostics=diagnostics,
        peak_rss_mb=_peak_rss_mb(),
        valid_fraction=float(np.count_nonzero(valid)) / valid.size,
    )


def _release_memory() -> None:
    """Hand the field's freed buffers back to the OS, so a worker's memory stays flat over many fields.

    sgc's workers keep glibc's adaptive mmap threshold (see :mod:`sgc.compute`), so large buffers may come
    from the heap; trimming once per field, rather than on every free, keeps that speed and bounds memory.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux: the high-water mark of this worker process so far.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _diagnostics_record(diagnostics: Mapping[str, Any]) -> dict[str, Any]:
    """Alignment diagnostics per band as plain JSON values."""
    record = {}
    for band, diag in diagnostics.items():
        values = dataclasses.asdict(diag)
        record[band] = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in values.items()}
    return record


def _fit_to_grid(
    image: np.ndarray, valid: np.ndarray, shape: tuple[int, ...], ref_path: str
) -> tuple[np.ndarray, np.ndarray]:
    """Pad a field smaller than the store's grid (the sample keeps 745 of 1489 rows); refuse a larger one."""
    ny, nx = image.shape[-2:]
    if (ny, nx) == shape:
        return image, valid
    if ny > shape[0] or nx > shape[1]:
        raise InputFileError(
            ref_path, f"frame is {ny}x{nx}, larger than the store's grid {shape[0]}x{shape[1]}"
        )
    padded = np.full((image.shape[0], *shape), np.nan, dtype=image.dtype)
    padded[:, :ny, :nx] = image
    mask = np.zeros(shape, dtype=bool)
    mask[:ny, :nx] = valid
    return padded, mask


def plan_ingest(raw_dir: Path, fields: list[str]) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
    """Find the frames of the fields to ingest.

    Returns:
        ``(complete, incomplete)``: band paths of every field with all five bands, and the missing bands of
        every other field asked for or found.
    """
    inv = find_raw(raw_dir)
    wanted = {FieldId.parse(f) for f in fields}
    complete = {
        str(f): {b: str(p) for b, p in inv.frames[f].items()}
        for f in inv.complete
        if not wanted or f in wanted
    }
    incomplete = {str(f): bands for f, bands in inv.incomplete.items() if not wanted or f in wanted}
    incomplete |= {str(f): list(BANDS) for f in wanted if f not in inv.frames}
    return complete, incomplete


def _prepare_store(store: Path, complete: dict[str, dict[str, str]], cfg: IngestConfig) -> None:
    """Create the store, its grid taken from the first i frame whose header reads; refuse a non-store."""
    if store.exists():
        CubeStore.open(store)
        return
    problems = []
    for paths in complete.values():
        try:
            header = read_frame_header(paths[REFERENCE_BAND])
            shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
        except (InputFileError, KeyError, ValueError) as exc:
            problems.append(str(exc))
            continue
        CubeStore.create(store, shape, cfg)
        return
    raise IngestError(f"{store}: no i frame readable to set the grid: {'; '.join(problems)}")


def ingest(
    raw_dir: str | Path,
    store: str | Path,
    cfg: IngestConfig,
    compute: Compute,
    on_result: Callable[[FieldResult], None] | None = None,
) -> IngestSummary:
    """Ingest every complete field below ``raw_dir`` (or ``cfg.fields``) into ``store``.

    Fields already done in the store are skipped; new fields are appended. The cluster starts only when
    there is a field to store.

    Raises:
        IngestError: if nothing can be ingested, or under ``cfg.strict`` at the first bad field (fields
            stored before it are kept).
    """
    # Absolute paths: workers of a remote cluster do not share the client's working directory.
    raw_dir, store = Path(raw_dir).resolve(), Path(store).resolve()
    complete, incomplete = plan_ingest(raw_dir, cfg.fields)
    if not complete and not incomplete:
        raise IngestError(f"{raw_dir}: no SDSS frames (frame-BAND-RRRRRR-C-FFFF.fits[.bz2]) found")
    if cfg.strict and incomplete:
        first = next(iter(incomplete.items()))
        raise IngestError(f"field {first[0]}: missing band(s) {', '.join(first[1])} (--strict)")
    results: list[FieldResult] = []
    if complete:
        _prepare_store(store, complete, cfg)
    cube = CubeStore.open(store, mode="r+") if store.exists() else None
    done = set(cube.done_fields()) if cube is not None else set()
    todo = {f: p for f, p in sorted(complete.items()) if f not in done}
    results += [FieldResult(f, "skipped") for f in sorted(complete) if f in done]
    if todo:
        log.debug("ingest: %d field(s) to store on a %dx%d grid", len(todo), *cube.shape)
        slots = cube.allocate(list(todo))
        results += _run_tasks(store, todo, slots, cfg, compute, on_result)
    summary = IngestSummary(store, results, incomplete, cfg.min_valid_fraction)
    for r in summary.mostly_invalid:
        log.warning(
            "%s: stored, but only %.1f%% of its pixels are valid in all five bands "
            "(ingest.min_valid_fraction is %.0f%%): a damaged frame? it gives few or no patches",
            r.field,
            100 * r.valid_fraction,
            100 * cfg.min_valid_fraction,
        )
    if cube is not None:
        _record_provenance(cube, raw_dir, summary, cfg)
    return summary


def _run_tasks(
    store: Path,
    todo: dict[str, dict[str, str]],
    slots: dict[str, int],
    cfg: IngestConfig,
    compute: Compute,
    on_result: Callable[[FieldResult], None] | None,
) -> list[FieldResult]:
    """Submit one task per field and collect the small result records as they complete."""
    from dask.distributed import as_completed

    results = []
    with compute.stage("ingest") as client:
        futures = [
            client.submit(
                ingest_field, str(store), slots[f], f, paths, cfg.align_method, key=f"ingest-{f}", pure=False
            )
            for f, paths in todo.items()
        ]
        bar = progress.bar(total=len(futures), unit="field", desc="ingest")
        names = {future.key: f for future, f in zip(futures, todo, strict=True)}
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as exc:  # the worker died or the task could not run
                result = FieldResult(
                    names[future.key], "failed", error=f"task failed: {type(exc).__name__}: {exc}"
                )
            results.append(result)
            bar.update()
            if on_result is not None:
                on_result(result)
            if result.status == "failed" and cfg.strict:
                for other in futures:
                    other.cancel()
                bar.close()
                raise IngestError(f"field {result.field}: {result.error} (--strict)")
        bar.close()
    return results


def _record_provenance(cube: CubeStore, raw_dir: Path, summary: IngestSummary, cfg: IngestConfig) -> None:
    """Write the store-level attributes: versions, config, raw folder and the last run's outcome."""
    cube.attrs.update(
        {
            ATTR_VERSION: __version__,
            ATTR_RAW_DIR: str(raw_dir),
            ATTR_INGEST_CONFIG: cfg.model_dump(mode="json"),
            ATTR_FIELDS_DONE: cube.done_fields(),
            ATTR_LAST_INGEST: {
                "stored": [r.field for r in summary.results if r.status == "stored"],
                "failed": {r.field: r.error for r in summary.failed},
                "incomplete": summary.incomplete,
            },
        }
    )
