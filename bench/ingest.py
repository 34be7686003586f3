"""Ingest speed and memory: seconds per field per core against the decompression floor and the 2023 way.

On N simulated full-size fields (2048x1489, five bands, ``.fits.bz2``) this measures:

(a) the floor: decompressing the same files, nothing else (indexed_bzip2, one core);
(b) the 2023 way: astropy opens each ``.bz2`` itself and each band is shifted onto the i band by the
    integer WCS offset at the frame centre (``np.roll``), the cube saved as one ``.npy`` per field;
(c) ``sgc ingest`` with 1 and with 2 worker processes, into a fresh store each time;

and the peak resident memory of each worker after each field, to show it stays flat as fields grow.

    python bench/ingest.py [--fields 20 | --quick] [--raw stores/bench-raw] [--repeat 1]

Prints a table and saves ``bench/results/ingest.json``, with a ``"summary"`` of rows for bench/RESULTS.md
(:func:`timing.figure`). The simulated fields are kept in ``--raw`` and reused by later runs; ``--quick``
uses 2 of them (one per worker with two). Each ``sgc ingest`` is timed on a cluster already started
and warmed (imports, numba's cache): the per-field cost at scale, where start-up is spread over thousands
of fields; start-up is recorded apart (``startup_s``). Every figure is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
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

try:  # run as a script (bench/ on sys.path) or imported as bench.ingest
    from timing import figure, machine
except ImportError:  # pragma: no cover
    from bench.timing import figure, machine

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


def _warm() -> None:
    """Import what a task imports and load numba's compiled kernels, once per worker."""
    import sgc.cube.align  # noqa: F401
    from sgc.cube.resample import identity_map, resample

    resample(np.zeros((64, 64), np.float32), identity_map((64, 64)))


def sgc_ingest(raw: Path, fields: list[dict[str, Path]], workers: int, store: Path, repeat: int) -> dict:
    """Wall time of ``sgc ingest`` with ``workers`` processes (best of ``repeat``), and each worker's memory
    after each field."""
    wanted = [p["i"].name.removeprefix("frame-i-").removesuffix(".fits.bz2") for p in fields]
    best: dict | None = None
    for _ in range(repeat):
        shutil.rmtree(store, ignore_errors=True)
        results: list[FieldResult] = []
        with Compute(ComputeConfig(workers=workers)) as compute:
            start = time.perf_counter()
            compute.client().run(_warm)
            startup = time.perf_counter() - start
            start = time.perf_counter()
            summary = ingest(raw, store, IngestConfig(fields=wanted), compute, on_result=results.append)
            wall = time.perf_counter() - start
        if not summary.ok:
            raise SystemExit(summary.format())
        if best is None or wall < best["wall_s"]:
            rss = [r.peak_rss_mb for r in results]
            quarter = max(1, len(rss) // 4)
            best = {
                "workers": workers,
                "startup_s": startup,
                "wall_s": wall,
                "s_per_field": wall / len(fields),
                "s_per_field_per_core": wall * workers / len(fields),
                "task_s_per_field_mean": float(np.mean([r.seconds for r in results])),
                "peak_rss_mb_first_quarter": max(rss[:quarter]),
                "peak_rss_mb_last_quarter": max(rss[-quarter:]),
                "peak_rss_mb_last": max(rss),
                "peak_rss_mb_by_field": rss,
            }
    return best


def summary_rows(floor: float, naive: float, one: dict, two: dict) -> list[dict]:
    """The rows of bench/RESULTS.md's ingest table, all from this run."""
    speedup = one["wall_s"] / two["wall_s"]
    return [
        figure(
            "sgc ingest, 1 worker",
            one["s_per_field_per_core"],
            "s/field/core",
            anchor=("astropy open + integer shift (2023)", naive),
            ceiling=("decompression alone (floor)", floor),
            target="<= 1.15x ceiling",
        ),
        figure(
            "sgc ingest, 2 workers",
            two["s_per_field_per_core"],
            "s/field/core",
            anchor=("astropy open + integer shift (2023)", naive),
            ceiling=("decompression alone (floor)", floor),
        ),
        figure("sgc ingest, 2 workers vs 1 worker", speedup, "x faster", target=">= 1.8x"),
        figure(
            "sgc ingest, 1 worker: peak worker memory, last quarter of fields",
            one["peak_rss_mb_last_quarter"],
            "MB",
            anchor=("first quarter of fields", one["peak_rss_mb_first_quarter"]),
            target="within 10%",
        ),
        figure(
            "sgc ingest, 2 workers: peak worker memory, last quarter of fields",
            two["peak_rss_mb_last_quarter"],
            "MB",
            anchor=("first quarter of fields", two["peak_rss_mb_first_quarter"]),
            target="within 10%",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="2 fields (about a minute on 2 cores)")
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs of each figure")
    parser.add_argument("--raw", type=Path, default=Path("stores/bench-raw"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ingest.json")
    args = parser.parse_args()

    n_fields = 2 if args.quick else args.fields
    fields = ensure_fields(args.raw, n_fields)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        floor = min(floor_seconds(fields) for _ in range(args.repeat))
        naive = min(naive_2023_seconds(fields, tmp) for _ in range(args.repeat))
        runs = [sgc_ingest(args.raw, fields, w, tmp / f"w{w}.zarr", args.repeat) for w in (1, 2)]
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
        "load_average": os.getloadavg(),
        "machine": machine(["numpy", "zarr", "dask", "astropy"]),
        "summary": summary_rows(floor, naive, one, two),
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
