"""Label painting: the numba kernel against the same computation in vectorised numpy, on the same inputs.

Three implementations of the same labels (sgc.masks.paint's rule: rings, then disks in paint order, then
invalid pixels ignored):

- ``numba``: :func:`sgc.masks.paint.paint_disks`, the kernel ``sgc label`` runs;
- ``numpy``: :func:`sgc.masks.paint.paint_disks_numpy`, the reference the tests hold the kernel to, bit for
  bit (per object a bounding box, per row the kernel's run of columns from a square root);
- ``numpy d2``: the usual numpy way, per object a bounding box and a squared-distance mask (np.hypot-style),
  faster than the reference in numpy; it may differ from the others on last-bit ties (counted).

The speedup is the kernel's against the faster of the two numpy versions.

Two fields of SDSS size (1489 x 2048, every pixel valid but a few edge columns, as after ingest):

- ``field``: ~700 objects, the density of the real sample (319 catalogued objects on half a frame), 45%
  stars of radius 1.0 x FWHM (FWHM 1.0-1.8") and galaxies of radius 1.6-8" (log-normal), 2 px rings;
- ``dense``: 20000 objects of the same kinds (a crowded low-latitude field, disks overlapping heavily);

each painted as one block, and chunk by chunk (256 x 256, each chunk given the objects bucketed for it with
their halo, as ``sgc label``'s tasks get them; the bucketing, done once for all, is timed apart).
Reported: best-of-``--repeat`` seconds, objects/s and Mpixel/s of field painted.

    python bench/labels.py [--repeat 5] [--quick]

Prints a table and saves ``bench/results/labels.json``, whose ``"summary"`` puts the kernel beside the faster
numpy version (anchor) and beside writing every pixel of the field once (``ndarray.fill``, the ceiling of any
painter that writes each label). ``--quick`` repeats each timing once. Single thread: Dask decides how
many run at once.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from timing import best_of, figure, machine

from sgc.classes import GALAXY, IGNORE, STAR
from sgc.masks.labels import _buckets
from sgc.masks.paint import paint_disks, paint_disks_numpy, paint_order

HERE = Path(__file__).resolve().parent
SHAPE = (1489, 2048)
CHUNK = (256, 256)
RING = 2.0
PIXEL_SCALE = 0.396

Painter = Callable[..., np.ndarray]


def make_field(n: int, seed: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """A valid mask and ``n`` objects (y, x, radius, class) in painting order."""
    rng = np.random.default_rng(seed)
    valid = np.ones(SHAPE, dtype=bool)
    valid[:, :3] = valid[:, -4:] = False  # the band offsets leave a few edge columns uncovered
    y = rng.uniform(-5, SHAPE[0] + 5, n)
    x = rng.uniform(-5, SHAPE[1] + 5, n)
    star = rng.random(n) < 0.45
    fwhm = rng.uniform(1.0, 1.8, n)
    galaxy = np.clip(10 ** rng.normal(np.log10(2.2), 0.2, n), 1.6, 8.0)
    radius = np.clip(np.where(star, fwhm, galaxy) / PIXEL_SCALE, 1.0, 20.0)
    cls = np.where(star, STAR, GALAXY).astype(np.uint8)
    order = paint_order(radius, cls)
    return valid, (y[order], x[order], radius[order], cls[order])


def paint_numpy_d2(
    valid: np.ndarray,
    y0: int,
    x0: int,
    y: np.ndarray,
    x: np.ndarray,
    radius: np.ndarray,
    cls: np.ndarray,
    ring: float,
) -> np.ndarray:
    """Vectorised numpy with a squared-distance mask per object's bounding box."""
    h, w = valid.shape
    label = np.zeros((h, w), dtype=np.uint8)
    passes = ((radius + ring, np.full(y.size, IGNORE, dtype=np.uint8)),) if ring > 0 else ()
    for reach, value in (*passes, (radius, cls)):
        for k in range(y.size):
            i_lo = max(int(np.floor(y[k] - reach[k])), y0)
            i_hi = min(int(np.ceil(y[k] + reach[k])), y0 + h - 1)
            j_lo = max(int(np.floor(x[k] - reach[k])), x0)
            j_hi = min(int(np.ceil(x[k] + reach[k])), x0 + w - 1)
            if i_lo > i_hi or j_lo > j_hi:
                continue
            dy = np.arange(i_lo, i_hi + 1) - y[k]
            dx = np.arange(j_lo, j_hi + 1) - x[k]
            inside = (dy * dy)[:, None] + (dx * dx)[None, :] <= reach[k] * reach[k]
            label[i_lo - y0 : i_hi - y0 + 1, j_lo - x0 : j_hi - x0 + 1][inside] = value[k]
    label[~valid] = IGNORE
    return label


IMPLEMENTATIONS: dict[str, Painter] = {
    "numba": paint_disks,
    "numpy": paint_disks_numpy,
    "numpy d2": paint_numpy_d2,
}


def paint_whole(paint: Painter, valid: np.ndarray, objects: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    """The field as one block."""
    return [paint(valid, 0, 0, *objects, RING)]


def bucket(objects: tuple[np.ndarray, ...]) -> np.ndarray:
    """The objects each chunk needs, halo included, as ``sgc label`` hands them to its tasks."""
    numblocks = (math.ceil(SHAPE[0] / CHUNK[0]), math.ceil(SHAPE[1] / CHUNK[1]))
    return _buckets(*objects, RING, CHUNK, numblocks)


Chunk = tuple[np.ndarray, int, int, tuple[np.ndarray, ...]]


def split(valid: np.ndarray, buckets: np.ndarray) -> list[Chunk]:
    """Per chunk: its valid pixels (a contiguous copy, as read from Zarr), origin and bucket of objects."""
    chunks = []
    for (by, bx), (y, x, radius, cls) in np.ndenumerate(buckets):
        y0, x0 = by * CHUNK[0], bx * CHUNK[1]
        block = np.ascontiguousarray(valid[y0 : y0 + CHUNK[0], x0 : x0 + CHUNK[1]])
        chunks.append((block, y0, x0, (y, x, radius, cls.astype(np.uint8))))
    return chunks


def paint_chunks(paint: Painter, chunks: list[Chunk]) -> list[np.ndarray]:
    """Each chunk painted with its own bucket of objects, as ``sgc label``'s tasks do."""
    return [paint(block, y0, x0, *objects, RING) for block, y0, x0, objects in chunks]


def assemble(labels: list[np.ndarray]) -> np.ndarray:
    """Chunks (in row-major chunk order) or a single block put together into the field."""
    if len(labels) == 1:
        return labels[0]
    out = np.empty(SHAPE, dtype=np.uint8)
    per_row = math.ceil(SHAPE[1] / CHUNK[1])
    for k, label in enumerate(labels):
        y0, x0 = (k // per_row) * CHUNK[0], (k % per_row) * CHUNK[1]
        out[y0 : y0 + label.shape[0], x0 : x0 + label.shape[1]] = label
    return out


def summary(rows: list[dict], fill: float) -> list[dict]:
    """RESULTS.md's rows: the kernel's Mpixel/s per case and layout, beside numpy and a plain fill."""
    return [
        figure(
            f"numba paint_disks, {r['case']} ({r['objects']} objects), {r['layout']}",
            r["mpixels_per_s"]["numba"],
            "Mpixel/s/core",
            anchor=("faster numpy version", max(r["mpixels_per_s"]["numpy"], r["mpixels_per_s"]["numpy d2"])),
            ceiling=("writing every pixel once (fill)", fill),
        )
        for r in rows
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one repetition: a smoke run")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "labels.json")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 1

    rows = []
    for case, n in (("field", 700), ("dense", 20000)):
        valid, objects = make_field(n, seed=n)
        buckets = bucket(objects)
        bucketing = best_of(lambda objects=objects: bucket(objects), args.repeat)
        chunks = split(valid, buckets)
        layouts = {
            "one block": lambda paint, valid=valid, objects=objects: paint_whole(paint, valid, objects),
            "256 chunks": lambda paint, chunks=chunks: paint_chunks(paint, chunks),
        }
        for layout, run in layouts.items():
            kernel = assemble(run(paint_disks))  # compiles, and is the answer numpy must give
            np.testing.assert_array_equal(assemble(run(paint_disks_numpy)), kernel)
            ties = int(np.count_nonzero(assemble(run(paint_numpy_d2)) != kernel))
            seconds = {
                name: best_of(lambda run=run, paint=paint: run(paint), args.repeat)
                for name, paint in IMPLEMENTATIONS.items()
            }
            rows.append(
                {
                    "case": case,
                    "layout": layout,
                    "objects": n,
                    "pixels": valid.size,
                    "labelled_pixels": int(np.count_nonzero(kernel != 0)),
                    "pixels_differing_numpy_d2": ties,
                    "seconds": seconds,
                    "bucketing_seconds": bucketing if layout == "256 chunks" else 0.0,
                    "objects_per_s": {k: n / s for k, s in seconds.items()},
                    "mpixels_per_s": {k: valid.size / s / 1e6 for k, s in seconds.items()},
                    "speedup": min(seconds["numpy"], seconds["numpy d2"]) / seconds["numba"],
                }
            )

    header = (
        f"{'case':<6} {'layout':<11} {'objects':>7} {'impl':<9} {'ms':>8} {'objects/s':>10} {'Mpix/s':>8} "
        f"{'speedup':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        for impl in IMPLEMENTATIONS:
            speed = f"{row['speedup']:.1f}x" if impl == "numba" else ""
            print(
                f"{row['case']:<6} {row['layout']:<11} {row['objects']:>7} {impl:<9} "
                f"{row['seconds'][impl] * 1e3:>8.2f} {row['objects_per_s'][impl]:>10.3g} "
                f"{row['mpixels_per_s'][impl]:>8.1f} {speed:>8}"
            )
        if row["bucketing_seconds"]:
            print(f"{'':<29} bucketing into chunks (shared, numpy): {row['bucketing_seconds'] * 1e3:.2f} ms")
    grid = np.empty(SHAPE, dtype=np.uint8)
    fill = grid.size / best_of(lambda: grid.fill(1), args.repeat + 2) / 1e6
    record = {
        "shape": list(SHAPE),
        "chunk": list(CHUNK),
        "ring_px": RING,
        "repeat": args.repeat,
        "results": rows,
        "fill_mpixels_per_s": fill,
        "machine": machine(("numpy", "numba")),
        "summary": summary(rows, fill),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
