"""Exclusion kernel throughput (Mpixel/s, one core) against a plain numpy version of the same computation.

On a full 2048x1489 SDSS grid (a simulated i frame) with held-out footprints (five bands, 10 arcsec margin)
projected onto it, the same polygon vertices in pixel coordinates go to:

- ``numba, whole grid``: :func:`sgc.masks.polygon.fill_polygons` over the grid in one call;
- ``numba, 256 chunks``: the same kernel chunk by chunk, as ``exclude_store`` calls it through Dask (into
  views of one zeroed grid: the ~2 us per chunk Dask's blocks spend on ``np.zeros`` is left out);
- ``numpy, whole grid``: the per-pixel crossing-number test, vectorised over the whole grid edge by edge,
  union over bands: the plain numpy version, and the baseline of the ``x numpy`` column;
- ``numpy, straddled rows``: the same, each edge applied only to the rows it straddles (a scanline in
  numpy: a stronger baseline, compared in the ``x rows`` column).

Three cases: the next field of the same run held out (its 128 overlapping rows plus band offsets and margin),
a field of another run crossing at 30 degrees over half the grid, and the field itself (every pixel inside).
All methods must give identical masks. Also timed: projecting the footprints onto the grid with astropy
(``grid_polygons``), which the client does once per field.

    python bench/exclusion.py [--repeat 20] [--quick]

Prints a table and saves ``bench/results/exclusion.json``, whose ``"summary"`` puts the kernel beside the
plain numpy version (anchor; the kernel writes runs of excluded pixels into a zeroed grid, so no per-pixel
copy bounds it). ``--quick`` times each method three times.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
from astropy.io import fits
from timing import best_of, figure, machine

from sgc.masks.footprint import PixelPolygons, footprint_from_headers, grid_polygons
from sgc.masks.polygon import fill_polygons
from sgc.sdss.frames import frame_wcs
from sgc.sdss.names import BANDS
from sgc.sim.simulate import SimRun, frame_header

HERE = Path(__file__).resolve().parent
MARGIN_ARCSEC = 10.0
CHUNK = 256


def numba_whole(polygons: PixelPolygons, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    fill_polygons(polygons.xs, polygons.ys, polygons.starts, 0, 0, out)
    return out


def numba_chunks(polygons: PixelPolygons, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    for y0 in range(0, shape[0], CHUNK):
        for x0 in range(0, shape[1], CHUNK):
            block = out[y0 : y0 + CHUNK, x0 : x0 + CHUNK]
            fill_polygons(polygons.xs, polygons.ys, polygons.starts, y0, x0, block)
    return out


def _rings(polygons: PixelPolygons) -> list[tuple[np.ndarray, ...]]:
    """Each polygon's edges as arrays xa, ya, xb, yb (vertex i to vertex i + 1, the last to the first)."""
    rings = []
    for p in range(len(polygons.starts) - 1):
        ring = slice(polygons.starts[p], polygons.starts[p + 1])
        xa, ya = polygons.xs[ring], polygons.ys[ring]
        rings.append((xa, ya, np.roll(xa, -1), np.roll(ya, -1)))
    return rings


def numpy_whole_grid(polygons: PixelPolygons, shape: tuple[int, int]) -> np.ndarray:
    """The crossing-number test as written per pixel: each edge flips the parity of the pixels left of it."""
    py = np.arange(shape[0], dtype=float)[:, None]
    px = np.arange(shape[1], dtype=float)[None, :]
    union = np.zeros(shape, dtype=bool)
    for xa, ya, xb, yb in _rings(polygons):
        parity = np.zeros(shape, dtype=bool)
        for i in range(xa.size):
            straddles = (ya[i] > py) != (yb[i] > py)
            with np.errstate(divide="ignore", invalid="ignore"):  # horizontal edges straddle no row
                crossing = xa[i] + (py - ya[i]) * (xb[i] - xa[i]) / (yb[i] - ya[i])
            parity ^= straddles & (px < crossing)
        union |= parity
    return union


def numpy_straddled_rows(polygons: PixelPolygons, shape: tuple[int, int]) -> np.ndarray:
    """The same test, each edge applied only to the rows it straddles."""
    rows, _ = shape
    px = np.arange(shape[1], dtype=float)
    union = np.zeros(shape, dtype=bool)
    for xa, ya, xb, yb in _rings(polygons):
        # Rows whose centre py has min(ya, yb) <= py < max(ya, yb): the edge straddles them.
        lo = np.clip(np.ceil(np.minimum(ya, yb)), 0, rows).astype(int)
        hi = np.clip(np.ceil(np.maximum(ya, yb)), 0, rows).astype(int)
        parity = np.zeros(shape, dtype=bool)
        for i in np.flatnonzero(hi > lo):
            py = np.arange(lo[i], hi[i], dtype=float)[:, None]
            crossing = xa[i] + (py - ya[i]) * (xb[i] - xa[i]) / (yb[i] - ya[i])
            parity[lo[i] : hi[i]] ^= px < crossing
        union |= parity
    return union


BASELINE = "numpy, whole grid"
STRONGER = "numpy, straddled rows"
METHODS: dict[str, Callable[[PixelPolygons, tuple[int, int]], np.ndarray]] = {
    "numba, whole grid": numba_whole,
    f"numba, {CHUNK} chunks": numba_chunks,
    BASELINE: numpy_whole_grid,
    STRONGER: numpy_straddled_rows,
}


def _turned(header: fits.Header, angle: float, ra: float, dec: float) -> fits.Header:
    """A copy of a frame header rotated by ``angle`` degrees about its reference pixel, moved to ra, dec."""
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    cd = np.array([[header["CD1_1"], header["CD1_2"]], [header["CD2_1"], header["CD2_2"]]])
    cd = np.array([[c, -s], [s, c]]) @ cd
    out = header.copy()
    out.update({"CRVAL1": ra, "CRVAL2": dec, "CD1_1": cd[0, 0], "CD1_2": cd[0, 1]})
    out.update({"CD2_1": cd[1, 0], "CD2_2": cd[1, 1]})
    return out


def _sim_header(run: SimRun, field: int, band: str) -> fits.Header:
    """A simulated frame's primary header with its image size, as the written file has it."""
    header = frame_header(run, field, band)
    header.update({"NAXIS": 2, "NAXIS1": run.shape[1], "NAXIS2": run.shape[0]})
    return header


def cases() -> tuple[fits.Header, dict[str, dict[str, fits.Header]]]:
    """The target grid's header, and the held-out fields' band headers of each case (simulated frames)."""
    run = SimRun()
    target = _sim_header(run, 11, "i")
    bands = {band: _sim_header(run, 11, band) for band in BANDS}
    ra, dec = (float(v) for v in frame_wcs(target).pixel_to_world_values(1024 + 700, 744 + 500))
    return target, {
        "next field of the run": {band: _sim_header(run, 12, band) for band in BANDS},
        "other run, 30 deg, half over": {b: _turned(h, 30.0, ra, dec) for b, h in bands.items()},
        "the field itself": bands,
    }


def summary(records: dict[str, dict]) -> list[dict]:
    """RESULTS.md's rows: the kernel's Mpixel/s per case and layout, beside numpy."""
    return [
        figure(
            f"{method}, {case}",
            r["mpixel_per_s"][method],
            "Mpixel/s/core",
            anchor=(BASELINE, r["mpixel_per_s"][BASELINE]),
            target=">= 20x anchor",
        )
        for case, r in records.items()
        for method in METHODS
        if "numba" in method
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed runs of each method (best kept)")
    parser.add_argument("--quick", action="store_true", help="three runs of each method: a smoke run")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "exclusion.json")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 3
    numba.set_num_threads(1)  # the kernel is serial; this pins anything else numba might do

    target, held_out = cases()
    wcs = frame_wcs(target)
    shape = (int(target["NAXIS2"]), int(target["NAXIS1"]))
    pixels = shape[0] * shape[1]
    records = {}
    print(
        f"grid {shape[0]}x{shape[1]} ({pixels / 1e6:.2f} Mpixel), margin {MARGIN_ARCSEC:g} arcsec, one core"
    )
    columns = ("ms", 8), ("Mpixel/s", 9), ("x numpy", 8), ("x rows", 7), ("excluded", 8)
    print(f"{'case':29s} {'method':22s} " + " ".join(f"{name:>{width}s}" for name, width in columns))
    for case, headers in held_out.items():
        footprint = footprint_from_headers("held-out", headers, MARGIN_ARCSEC, case)
        polygons = grid_polygons([footprint], wcs, shape)
        project_s = best_of(lambda fp=footprint: grid_polygons([fp], wcs, shape), 5)
        masks = {name: fn(polygons, shape) for name, fn in METHODS.items()}  # also compiles the kernel
        reference = masks[BASELINE]
        identical = all(np.array_equal(m, reference) for m in masks.values())
        seconds = {
            name: best_of(lambda fn=fn, p=polygons: fn(p, shape), args.repeat if "numba" in name else 3)
            for name, fn in METHODS.items()
        }
        for name, sec in seconds.items():
            print(
                f"{case:29s} {name:22s} {sec * 1e3:8.2f} {pixels / sec / 1e6:9.0f} "
                f"{seconds[BASELINE] / sec:8.1f} {seconds[STRONGER] / sec:7.1f} {reference.mean():8.1%}"
            )
        print(
            f"{'':29s} {len(polygons.xs)} vertices after simplification; astropy projection "
            f"{project_s * 1e3:.1f} ms; identical masks: {identical}"
        )
        records[case] = {
            "vertices": len(polygons.xs),
            "excluded_fraction": float(reference.mean()),
            "identical": identical,
            "projection_ms": project_s * 1e3,
            "seconds": seconds,
            "mpixel_per_s": {name: pixels / sec / 1e6 for name, sec in seconds.items()},
            "speedup_vs_numpy_whole_grid": {name: seconds[BASELINE] / sec for name, sec in seconds.items()},
            "speedup_vs_numpy_straddled_rows": {
                name: seconds[STRONGER] / sec for name, sec in seconds.items()
            },
        }
        if not identical:
            raise SystemExit(f"{case}: the methods disagree")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "shape": list(shape),
        "margin_arcsec": MARGIN_ARCSEC,
        "chunk": CHUNK,
        "repeat": args.repeat,
        "cases": records,
        "targets": {"speedup_vs_numpy": 20, "mpixel_per_s_per_core": 200},
        "machine": machine(("numpy", "numba", "astropy")),
        "summary": summary(records),
    }
    args.out.write_text(json.dumps(record, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
