"""Ingest speed and memory: seconds per field per core against the decompression floor and the 2023 way.

On N simulated full-size fields (2048x1489, five bands, ``.fits.bz2``) this measures:

(a) the floor: decompressing the same files, nothing else (indexed_bzip2, one core);
(b) the 2023 way: astropy opens each ``.bz2`` itself and each band is shifted onto the i band by the
    integer WCS offset at the frame centre (``np.roll``), the cube saved as one ``.npy`` per field;
(c) ``sgc ingest`` with 1 and with 2 worker processes, into a fresh store each time;

and the peak resident memory of each worker after each field, to show it stays flat as fields grow.

    python bench/ingest.py [--fields 20] [--raw stores/bench-raw]

Prints a table and saves ``bench/results/ingest.json``. The simulated fields are kept in ``--raw`` and
reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from sgc.compute import Compute
from sgc.config import ComputeConfig, IngestConfig
from sgc.cube.ingest import FieldResult, ingest
from sgc.sdss.discover import find_raw
from sgc.sdss.fitsfile import read_bytes
from sgc.sdss.frames import frame_wcs
from sgc.sdss.names import BANDS
from sgc.sim.simulate import simulate

HERE = Path(__file__).resolve().parent


def ensure_fields(raw: Path, n_fields: int) -> list[dict[str, Path]]:
    """Simulate ``n_fields`` fields into ``raw`` unless they are there; return their band paths."""
    inv = find_raw(raw) if raw.is_dir() else None
    if inv is None or len(inv.complete) < n_fields:
        if raw.exists() and any(raw.iterdir()):
            raise SystemExit(f"{raw}: holds fewer than {n_fields} fields; give an empty or new --raw folder")
        print(f"simulating {n_fields} fields into {raw} ...")
        simulate(raw, n_fields=n_fields, seed=11)
        inv = find_raw(raw)
    return [inv.frames[f] for f in inv.complete[:n_fields]]


def floor_seconds(fields: list[dict[str, Path]]) -> float:
    """Seconds per field to read and decompress the five frames."""
    start = time.perf_counter()
    for paths in fields:
        for band in BANDS:
            read_bytes(paths[band])
    return (time.perf_counter() - start) / len(fields)


def naive_2023_seconds(fields: list[dict[str, Path]], out: Path) -> float:
    """Seconds per field for astropy-open-and-integer-shift per band, saved as one .npy per field."""
    start = time.perf_counter()
    for k, paths in enumerate(fields):
        ref = None
        bands = []
        for band in ("i", *[b for b in BANDS if b != "i"]):
            with fits.open(paths[band]) as hdul:
                image = hdul[0].data.astype(np.float32)
                wcs = frame_wcs(hdul[0].header)
            if ref is None:
                ref = wcs
                centre = (image.shape[1] / 2, image.shape[0] / 2)
                sky = ref.pixel_to_world_values(*centre)
            x, y = wcs.world_to_pixel_values(*sky)
            dx, dy = round(centre[0] - float(x)), round(centre[1] - float(y))
            bands.append((band, np.roll(image, (dy, dx), axis=(0, 1))))
        cube = np.stack([dict(bands)[b] for b in BANDS])
        np.save(out / f"field-{k}.npy", cube)
    return (time.perf_counter() - start) / len(fields)


def sgc_ingest(raw: Path, fields: list[dict[str, Path]], workers: int, store: Path) -> dict:
    """Wall time of ``sgc ingest`` with ``workers`` processes, and each worker's memory after each field."""
    shutil.rmtree(store, ignore_errors=True)
    wanted = [p["i"].name.removeprefix("frame-i-").removesuffix(".fits.bz2") for p in fields]
    results: list[FieldResult] = []
    start = time.perf_counter()
    with Compute(ComputeConfig(workers=workers)) as compute:
        summary = ingest(raw, store, IngestConfig(fields=wanted), compute, on_result=results.append)
    wall = time.perf_counter() - start
    if not summary.ok:
        raise SystemExit(summary.format())
    rss = [r.peak_rss_mb for r in results]
    quarter = max(1, len(rss) // 4)
    task = [r.seconds for r in results]
    return {
        "workers": workers,
        "wall_s": wall,
        "s_per_field": wall / len(fields),
        "s_per_field_per_core": wall * workers / len(fields),
        "task_s_per_field_mean": float(np.mean(task)),
        "peak_rss_mb_first_quarter": max(rss[:quarter]),
        "peak_rss_mb_last": max(rss),
        "peak_rss_mb_by_field": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=20)
    parser.add_argument("--raw", type=Path, default=Path("stores/bench-raw"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ingest.json")
    args = parser.parse_args()

    fields = ensure_fields(args.raw, args.fields)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        floor = floor_seconds(fields)
        naive = naive_2023_seconds(fields, tmp)
        runs = [sgc_ingest(args.raw, fields, w, tmp / f"w{w}.zarr") for w in (1, 2)]
    one, two = runs
    record = {
        "fields": len(fields),
        "field_shape": [1489, 2048],
        "floor_decompress_s_per_field": floor,
        "naive_2023_s_per_field": naive,
        "sgc": runs,
        "sgc_1_worker_vs_floor": one["s_per_field_per_core"] / floor,
        "sgc_2_workers_per_core_vs_floor": two["s_per_field_per_core"] / floor,
        "speedup_2_vs_1_workers": one["wall_s"] / two["wall_s"],
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
    }
    print(f"{len(fields)} simulated fields of 2048x1489x5 (.fits.bz2), {os.cpu_count()} cores")
    print(f"{'method':40s} {'s/field':>8s} {'s/field/core':>13s} {'x floor':>8s}")
    print(f"{'(a) decompression alone (floor)':40s} {floor:8.3f} {floor:13.3f} {1:8.2f}")
    print(f"{'(b) astropy open + integer shift (2023)':40s} {naive:8.3f} {naive:13.3f} {naive / floor:8.2f}")
    for run in runs:
        name = f"(c) sgc ingest, {run['workers']} worker(s)"
        per_core = run["s_per_field_per_core"]
        print(f"{name:40s} {run['s_per_field']:8.3f} {per_core:13.3f} {per_core / floor:8.2f}")
    print(f"2 workers vs 1: {record['speedup_2_vs_1_workers']:.2f}x faster")
    for run in runs:
        print(
            f"peak memory per worker, {run['workers']} worker(s): "
            f"{run['peak_rss_mb_first_quarter']:.0f} MB after "
            f"the first quarter of fields, {run['peak_rss_mb_last']:.0f} MB at the end; mean task "
            f"{run['task_s_per_field_mean']:.3f} s/field"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
