"""Seconds per frame to get pixels out of an SDSS ``.fits.bz2``: the floor under every ingest.

Compares, on the same files: Python's ``bz2`` alone, ``indexed_bzip2`` alone (sgc's decompressor), astropy
opening the ``.bz2`` itself, and sgc's ``open_hdul`` / ``read_frame``. Runs on the real sample by default.

    python bench/read_frames.py [--dir ../shared/sdss/003918-3-0213] [--repeat 3] [--quick]

Prints a table and saves ``bench/results/read_frames.json``.
"""

from __future__ import annotations

import argparse
import bz2
import json
import time
from collections.abc import Callable
from pathlib import Path

from astropy.io import fits
from timing import figure, machine

from sgc.sdss.fitsfile import open_hdul, read_bytes
from sgc.sdss.frames import read_frame

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE.parents[1] / "shared" / "sdss" / "003918-3-0213"


def _astropy_bz2(path: Path) -> None:
    with fits.open(path) as hdul:
        _ = hdul[0].data.sum()


def _sgc_open(path: Path) -> None:
    with open_hdul(path) as hdul:
        _ = hdul[0].data.sum()


METHODS: dict[str, Callable[[Path], object]] = {
    "bz2.decompress (stdlib)": lambda p: bz2.decompress(p.read_bytes()),
    "indexed_bzip2 (sgc read_bytes)": read_bytes,
    "astropy fits.open on .bz2": _astropy_bz2,
    "sgc open_hdul": _sgc_open,
    "sgc read_frame (validated)": read_frame,
}


def time_method(fn: Callable[[Path], object], files: list[Path], repeat: int) -> float:
    """Best-of-``repeat`` mean seconds per file."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for path in files:
            fn(path)
        runs.append((time.perf_counter() - start) / len(files))
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="folder of frame-*.fits.bz2 files")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="two frames, one repetition: a smoke run")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "read_frames.json")
    args = parser.parse_args()

    files = sorted(args.dir.glob("frame-*.fits.bz2"))
    if not files:
        raise SystemExit(f"{args.dir}: no frame-*.fits.bz2 files")
    if args.quick:
        files, args.repeat = files[:2], 1
    shape = read_frame(files[0]).image.shape
    results = {name: time_method(fn, files, args.repeat) for name, fn in METHODS.items()}
    floor = results["indexed_bzip2 (sgc read_bytes)"]
    print(f"{len(files)} frames of {shape[0]}x{shape[1]} from {args.dir}, best of {args.repeat}")
    print(f"{'method':34s} {'s/frame':>8s} {'x floor':>8s}")
    for name, sec in results.items():
        print(f"{name:34s} {sec:8.3f} {sec / floor:8.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    anchor = ("astropy fits.open on .bz2", results["astropy fits.open on .bz2"])
    ceiling = ("indexed_bzip2 alone (floor)", floor)
    record = {
        "files": [p.name for p in files],
        "shape": list(shape),
        "seconds_per_frame": results,
        "machine": machine(("numpy", "astropy", "indexed_bzip2")),
        "summary": [
            figure(name, sec, "s/frame", anchor=anchor, ceiling=ceiling)
            for name, sec in results.items()
            if name.startswith("sgc")
        ],
    }
    args.out.write_text(json.dumps(record, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
