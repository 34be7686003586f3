"""``sgc predict``: a trained model applied to whole fields of a cube store, into a prediction store.

Each field is normalised as the model was trained (the checkpoint carries the medians and robust sigmas)
and classified by stitched tiles (:mod:`sgc.evaluate.tiles`). Where the work runs:

- **CPU**: Dask tasks on the run's cluster (:mod:`sgc.compute`), one per block of output chunks. A task reads
  its block and a halo of the model's receptive radius around it (zeros beyond the field's padded edge, as
  whole-field inference sees), predicts the window and writes the block's chunks of ``prob`` and ``class``
  itself; blocks are chunk-aligned, so no two tasks write one chunk. Workers load the model once each.
- **GPU**: in this process, each whole field in large batches of tiles.

The model runs as ``predict.precision``, ``predict.channels_last`` and ``predict.compile`` say
(:mod:`sgc.model.runtime`); a precision other than fp32 is recorded with the predictions, since it moves the
probabilities.

Either way the probabilities equal whole-field inference to float rounding. Pixels that not every band
covers (``valid`` false) get no prediction: class ignore and probability NaN. Once a field's blocks are all
written its ``done`` marker is set and its objects are found (:mod:`sgc.evaluate.catalog`); the catalogue of
every field is written beside the store as FITS and CSV. A rerun into the same prediction store with the
same checkpoint does the fields not done yet.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from astropy.io import fits
from astropy.table import Table

from sgc import __version__, progress
from sgc.atomic import atomic_write
from sgc.classes import CLASS_NAMES, IGNORE
from sgc.compute import Compute
from sgc.config import PredictConfig
from sgc.cube.store import (
    ATTR_SOURCE_STORE,
    CLASS,
    IMAGE,
    PROB,
    VALID,
    CubeStore,
    PredictionStore,
    StoreError,
)
from sgc.errors import SgcError
from sgc.evaluate.catalog import find_objects, write_catalog
from sgc.evaluate.tiles import predict_array
from sgc.model.runtime import autocast_dtype, prepare
from sgc.train.checkpoint import InferenceSpec, load_model
from sgc.windows import round_up

log = logging.getLogger(__name__)

STORE_NAME = "predictions.zarr"
FITS_DIR = "fits"


class PredictError(SgcError):
    """A prediction that cannot be made as asked (bands that do not match, an output folder in the way)."""


@dataclass
class PredictSummary:
    """What a prediction run did.

    Attributes:
        out: the output folder (prediction store, object catalogue, FITS files).
        fields: fields predicted now.
        skipped: fields already predicted with this checkpoint and these settings.
        objects: objects in the catalogue per field (every field of the store, predicted now or before).
        device: where the model ran.
    """

    out: Path
    fields: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    objects: dict[str, int] = field(default_factory=dict)
    device: str = "cpu"

    def format(self) -> str:
        """One line, then one per field in the catalogue."""
        total = sum(self.objects.values())
        lines = [
            f"{self.out}: {len(self.fields)} field(s) predicted on {self.device}, "
            f"{len(self.skipped)} already done; {total} object(s) in the catalogue"
        ]
        lines += [f"{name}: {count} objects" for name, count in self.objects.items()]
        return "\n".join(lines)


def checkpoint_record(path: str | Path, spec: InferenceSpec) -> dict[str, Any]:
    """How a prediction store names the checkpoint it came from: path, sha256, and what it was trained as."""
    path = Path(path).resolve()
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"path": str(path), "sha256": digest, "inference": spec.to_json(), "sgc_version": __version__}


def predict_fields(
    checkpoint: str | Path,
    store: str | Path,
    out: str | Path,
    cfg: PredictConfig,
    compute: Compute,
    fields: Sequence[str] | None = None,
    replace: bool = False,
) -> PredictSummary:
    """Predict ``fields`` (every done field by default) of a cube store into ``out``.

    Args:
        checkpoint: a checkpoint written by ``sgc train`` (self-contained).
        store: the cube store.
        out: the output folder: ``predictions.zarr``, ``objects.fits``, ``objects.csv`` and, with
            ``cfg.fits``, ``fits/`` go in it.
        cfg: tiles, batches, device, FITS output and the smallest object kept.
        compute: the run's Dask client (used on CPU).
        fields: field ids; None for every done field.
        replace: replace predictions made with another checkpoint (a stage redoing its output); without
            it they are refused.

    Raises:
        PredictError: bands that do not match the model's, a field not done, or ``out`` holding something
            else.
        InputFileError: a checkpoint that cannot be read.
    """
    model, spec = load_model(checkpoint)
    cube = CubeStore.open(store)
    if tuple(cube.bands) != spec.bands:
        raise PredictError(f"{store}: bands {cube.bands} are not the model's {list(spec.bands)}")
    names = cube.done_fields() if fields is None else [cube.fields[cube.done_slot(f)] for f in fields]
    if not names:
        raise PredictError(f"{store}: no done field to predict")
    out = Path(out)
    halo = spec.model.halo if cfg.halo is None else cfg.halo
    device = _device(cfg)
    amp = autocast_dtype(device, cfg.precision)
    # What the probabilities depend on besides the weights: predictions made otherwise are not reused.
    # (fp32 is left unnamed, so that stores predicted before precision was a setting stay valid.)
    settings: dict[str, Any] = {"halo": halo, "symmetries": cfg.symmetries}
    if amp is not None:
        settings["precision"] = str(amp).removeprefix("torch.")
    record = {**checkpoint_record(checkpoint, spec), "predict": settings}
    predictions = _prediction_store(out / STORE_NAME, cube, names, record, replace)
    todo = [name for name in names if name not in predictions.done_fields()]
    summary = PredictSummary(out, todo, [n for n in names if n not in todo], device=str(device))
    if device.type == "cuda":
        net = prepare(model.to(device), cfg.channels_last, cfg.compile) if todo else model
        for name in progress.bar(todo, desc="predict", unit="field"):
            _predict_field_here(net, spec, cube, predictions, name, cfg, halo, device, amp)
    else:
        _predict_with_dask(Path(checkpoint).resolve(), cube, predictions, todo, cfg, halo, compute)
    tables = _objects(cube, predictions, names, cfg.min_area, compute if device.type == "cpu" else None)
    summary.objects = {name: len(table) for name, table in zip(names, tables, strict=True)}
    write_catalog(tables, out)
    if cfg.fits:
        for name in names:
            write_fits(predictions, name, out / FITS_DIR)
    return summary


def _device(cfg: PredictConfig) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise PredictError("predict.device 'cuda' asked for, but this machine or torch build has no CUDA")
        return torch.device("cuda")
    return torch.device("cpu")


def _prediction_store(
    path: Path, cube: CubeStore, names: list[str], record: dict[str, Any], replace: bool
) -> PredictionStore:
    """The prediction store at ``path``: reused if made from this checkpoint, store and settings, else made
    anew."""
    if path.exists():
        try:
            existing = PredictionStore.open(path, "r+")
        except StoreError as exc:
            raise PredictError(
                f"{path}: exists and is not a prediction store; refusing to overwrite it"
            ) from exc
        same = (
            existing.checkpoint.get("sha256") == record["sha256"]
            and existing.checkpoint.get("predict") == record["predict"]
            and Path(existing.attrs.get(ATTR_SOURCE_STORE, "")) == cube.path.resolve()
            and set(names) <= set(existing.fields)
        )
        if same:
            return existing
        if not replace:
            raise PredictError(
                f"{path}: holds predictions of another checkpoint, store or settings; remove it or give "
                "another --out"
            )
        shutil.rmtree(path)
    return PredictionStore.create(path, cube, names, CLASS_NAMES, record)


def normalised_window(
    cube: CubeStore, slot: int, spec: InferenceSpec, rows: tuple[int, int], cols: tuple[int, int]
) -> np.ndarray:
    """The bands of a window of a field, normalised as the model was trained, zero beyond the grid.

    Args:
        cube: the cube store.
        slot: the field's slot in it.
        spec: the checkpoint's inference spec (bands and their normalisation).
        rows, cols: ``(first, end)`` of the window; they may reach past the grid (into whole-field
            inference's padding): those pixels, like pixels no band covers (NaN), are 0, the sky's median.

    Returns:
        ``(bands, rows, columns)`` float32.
    """
    ny, nx = cube.shape
    (y0, y1), (x0, x1) = rows, cols
    window = np.zeros((len(spec.bands), y1 - y0, x1 - x0), dtype=np.float32)
    inside = cube[IMAGE][slot, :, y0 : min(y1, ny), x0 : min(x1, nx)].astype(np.float32)
    scale, offset = spec.scaling()
    inside = inside * scale[:, None, None] + offset[:, None, None]
    window[:, : inside.shape[1], : inside.shape[2]] = np.nan_to_num(inside, nan=0.0)
    return window


def _blocks(shape: tuple[int, int], chunk: int, block: int) -> list[tuple[int, int, int, int]]:
    """Chunk-aligned output blocks ``(y0, y1, x0, x1)`` of ``block`` x ``block`` chunks covering a grid."""
    edge = chunk * block
    return [
        (y0, min(y0 + edge, shape[0]), x0, min(x0 + edge, shape[1]))
        for y0 in range(0, shape[0], edge)
        for x0 in range(0, shape[1], edge)
    ]


def _predict_with_dask(
    checkpoint: Path,
    cube: CubeStore,
    predictions: PredictionStore,
    todo: list[str],
    cfg: PredictConfig,
    halo: int,
    compute: Compute,
) -> None:
    """One Dask task per block of output chunks; a field is marked done when its blocks are all in."""
    if not todo:
        return
    from dask.distributed import as_completed

    # As many chunks per block as fit in one tile with the halo around them: one forward pass per task.
    block = max(1, (cfg.tile - 2 * halo) // cube.chunk)
    blocks = _blocks(cube.shape, cube.chunk, block)
    with compute.stage("predict") as client:
        futures = {}
        for name in todo:
            for region in blocks:
                future = client.submit(
                    predict_block,
                    str(checkpoint),
                    str(cube.path.resolve()),
                    cube.slot(name),
                    str(predictions.path.resolve()),
                    predictions.slot(name),
                    region,
                    halo,
                    cfg.tile,
                    cfg.batch,
                    cfg.symmetries,
                    cfg.precision,
                    cfg.channels_last,
                    cfg.compile,
                    key=f"predict-{name}-{region[0]}-{region[2]}",
                    pure=False,
                )
                futures[future] = name
        left = {name: len(blocks) for name in todo}
        with progress.bar(total=len(futures), desc="predict", unit="block") as bar:
            for future in as_completed(futures):
                try:
                    future.result()
                except Exception as exc:  # a failed block fails the prediction: no field without it
                    raise PredictError(
                        f"field {futures[future]}: {future.key} failed: {type(exc).__name__}: {exc}"
                    ) from exc
                bar.update()
                name = futures[future]
                left[name] -= 1
                if left[name] == 0:
                    predictions.mark_done(predictions.slot(name))


@lru_cache(maxsize=2)
def _worker_model(
    checkpoint: str, mtime_ns: int, channels_last: bool = False, compile: bool = False
) -> tuple[torch.nn.Module, InferenceSpec]:
    """The model of a checkpoint, loaded (and compiled) once per worker process, again if the file changes."""
    model, spec = load_model(checkpoint)
    return prepare(model, channels_last, compile), spec


def predict_block(
    checkpoint: str,
    store: str,
    slot: int,
    out: str,
    out_slot: int,
    region: tuple[int, int, int, int],
    halo: int,
    tile: int,
    batch: int,
    symmetries: int = 1,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
) -> None:
    """Predict one chunk-aligned block of a field and write it (runs in a Dask worker).

    Args:
        checkpoint: the checkpoint file (its model is loaded once per worker).
        store: the cube store, and ``slot`` the field's slot in it.
        slot: see ``store``.
        out: the prediction store, and ``out_slot`` the field's slot in it.
        out_slot: see ``out``.
        region: the block ``(y0, y1, x0, x1)``, chunk-aligned so that no two tasks write one chunk.
        halo: pixels of context read around the block (the model's receptive radius, rounded up).
        tile: edge of the tiles the window is cut into.
        batch: tiles per forward pass.
        symmetries: the symmetries the probabilities are averaged over (test-time augmentation).
        precision: autocast precision on this worker's CPU (:func:`sgc.model.runtime.autocast_dtype`).
        channels_last: run the model in NHWC memory format.
        compile: ``torch.compile`` the model (once per worker).
    """
    model, spec = _worker_model(checkpoint, Path(checkpoint).stat().st_mtime_ns, channels_last, compile)
    cube = CubeStore.open(store)
    step = 2**spec.model.depth
    y0, y1, x0, x1 = region
    padded = (round_up(cube.shape[0], step), round_up(cube.shape[1], step))
    # The window starts and ends on the pooling grid of whole-field inference, or at its padded edge.
    rows = (max(0, (y0 - halo) // step * step), min(padded[0], round_up(y1 + halo, step)))
    cols = (max(0, (x0 - halo) // step * step), min(padded[1], round_up(x1 + halo, step)))
    window = normalised_window(cube, slot, spec, rows, cols)
    amp = autocast_dtype("cpu", precision)
    prob = predict_array(model, window, tile, halo, batch, symmetries=symmetries, amp=amp)
    prob = prob[:, y0 - rows[0] : y1 - rows[0], x0 - cols[0] : x1 - cols[0]]
    _write(PredictionStore.open(out, "r+"), out_slot, prob, cube[VALID][slot, y0:y1, x0:x1], (y0, y1, x0, x1))


def _write(
    target: PredictionStore, slot: int, prob: np.ndarray, valid: np.ndarray, region: tuple[int, int, int, int]
) -> None:
    """Write probabilities and classes of a region; pixels no band covers get no class (ignore, NaN)."""
    y0, y1, x0, x1 = region
    cls = prob.argmax(axis=0).astype(np.uint8)
    cls[~valid] = IGNORE
    target[PROB][slot, :, y0:y1, x0:x1] = np.where(valid, prob, np.nan).astype(np.float16)
    target[CLASS][slot, y0:y1, x0:x1] = cls


def _predict_field_here(
    model: torch.nn.Module,
    spec: InferenceSpec,
    cube: CubeStore,
    predictions: PredictionStore,
    name: str,
    cfg: PredictConfig,
    halo: int,
    device: torch.device,
    amp: torch.dtype | None = None,
) -> None:
    """Predict a whole field in this process (on the GPU), write it and mark it done."""
    ny, nx = cube.shape
    window = normalised_window(cube, cube.slot(name), spec, (0, ny), (0, nx))
    prob = predict_array(model, window, cfg.tile, halo, cfg.batch, device, cfg.symmetries, amp)
    slot = predictions.slot(name)
    _write(predictions, slot, prob, cube[VALID][cube.slot(name)], (0, ny, 0, nx))
    predictions.mark_done(slot)


def _objects(
    cube: CubeStore, predictions: PredictionStore, names: list[str], min_area: int, compute: Compute | None
) -> list[Table]:
    """The predicted objects of each field: one Dask task per field on the cluster, or here (GPU runs)."""
    args = [(str(cube.path.resolve()), str(predictions.path.resolve()), name, min_area) for name in names]
    if compute is None:
        return [field_objects(*a) for a in args]
    with compute.stage("predict") as client:
        futures = [client.submit(field_objects, *a, key=f"objects-{a[2]}", pure=False) for a in args]
        return client.gather(futures)


def field_objects(store: str, predictions_path: str, name: str, min_area: int) -> Table:
    """The predicted objects of one field, from its stored class map and probabilities (a Dask task).

    Args:
        store: the cube store (its r band measures the objects' flux).
        predictions_path: the prediction store holding the field.
        name: the field id.
        min_area: smallest object kept, pixels.
    """
    cube, predictions = CubeStore.open(store), PredictionStore.open(predictions_path)
    slot = predictions.slot(name)
    r = cube[IMAGE][cube.slot(name), cube.bands.index("r")]
    return find_objects(
        predictions[CLASS][slot],
        predictions[PROB][slot].astype(np.float32),
        r,
        predictions.field_wcs(slot),
        name,
        min_area,
    )


def write_fits(predictions: PredictionStore, name: str, folder: Path) -> list[Path]:
    """A field's class map and probability cube as FITS images with the field's WCS (DS9, astropy).

    Args:
        predictions: the prediction store.
        name: the field id.
        folder: where the two files go.

    Returns:
        ``class-FIELD.fits`` (uint8) and ``prob-FIELD.fits`` (float32, classes along the third axis).
    """
    slot = predictions.slot(name)
    celestial = predictions.field_wcs(slot).to_header()
    celestial["FIELD"] = (name, "SDSS field RRRRRR-C-FFFF")
    celestial["CHECKPT"] = (Path(predictions.checkpoint["path"]).name, "the model's checkpoint")
    for k, cls in enumerate(predictions.classes):
        celestial[f"CLASS{k}"] = (cls, f"class of value {k}")
    cube_header = celestial.copy()
    cube_header.update({"CTYPE3": "CLASS", "CRPIX3": 1.0, "CRVAL3": 0.0, "CDELT3": 1.0})
    written = []
    for path, data, hdr in (
        (folder / f"class-{name}.fits", predictions[CLASS][slot], celestial),
        (folder / f"prob-{name}.fits", predictions[PROB][slot].astype(np.float32), cube_header),
    ):
        with atomic_write(path, sync=False) as f:
            fits.PrimaryHDU(data, hdr).writeto(f)
        written.append(path)
    return written
