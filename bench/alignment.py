"""Band alignment methods side by side on the real sample: accuracy (star centroids) and seconds per field.

For each method the four non-reference bands are put on the i-band grid and measured with
:func:`sgc.cube.quality.star_offsets` on the brighter half of the catalogue's stars: the systematic offset
(length of the median offset vector) and the median per-star offset, per band. Seconds are per field
(4 bands resampled, everything a method needs included) on one core, best of ``--repeat``, on the sample's
745-row frames and on full-height 1490-row frames made by stacking each sample frame twice.

Methods: unaligned; integer shift (the WCS offset at the frame centre, rounded); one-point translation
(that offset, sub-pixel, ``scipy.ndimage.shift`` cubic spline); full WCS + cubic (``map_coordinates``
order 3 at every pixel's WCS position); ``reproject_interp`` bicubic (skipped if reproject is not
installed); sgc ``'wcs'``; sgc ``'stars'`` (the default) and two variants of it.

    python bench/alignment.py [--dir ../shared/sdss/003918-3-0213] [--repeat 3]

Prints a table and saves ``bench/results/alignment.json``.
"""

from __future__ import annotations

import os

# One core, as inside an ingest worker: set before numpy, scipy and numba start their thread pools.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Mapping  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from astropy.wcs import WCS  # noqa: E402

from sgc.cube.align import align_field  # noqa: E402
from sgc.cube.quality import catalog_stars, star_offsets  # noqa: E402
from sgc.sdss.catalogs import read_catalog  # noqa: E402
from sgc.sdss.frames import read_frame  # noqa: E402
from sgc.sdss.names import BANDS  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE.parents[1] / "shared" / "sdss" / "003918-3-0213"
REFERENCE = "i"
# The targets: systematic and median per-star offsets, px.
TARGET_SYSTEMATIC = {"g": 0.05, "r": 0.05, "z": 0.05}
TARGET_PER_STAR = {"u": 0.45, "g": 0.12, "r": 0.12, "z": 0.12}


@dataclass(frozen=True)
class Band:
    """A band's pixels and WCS (what every method reads)."""

    image: np.ndarray
    wcs: WCS


Frames = Mapping[str, Band]
Method = Callable[[Frames], np.ndarray]


def centre_offset(frames: Frames, band: str) -> np.ndarray:
    """``(dx, dy)``: where the band's WCS puts the reference frame's centre, minus the centre."""
    ref = frames[REFERENCE]
    ny, nx = ref.image.shape
    centre = np.array([(nx - 1) / 2, (ny - 1) / 2])
    world = ref.wcs.pixel_to_world_values(*centre)
    return np.array(frames[band].wcs.world_to_pixel_values(*world)) - centre


def _cube(frames: Frames, resample_band: Callable[[Frames, str], np.ndarray]) -> np.ndarray:
    return np.stack([frames[b].image if b == REFERENCE else resample_band(frames, b) for b in BANDS])


def unaligned(frames: Frames) -> np.ndarray:
    return np.stack([frames[band].image for band in BANDS])


def integer_shift(frames: Frames) -> np.ndarray:
    def shift(frames: Frames, band: str) -> np.ndarray:
        dx, dy = np.round(centre_offset(frames, band)).astype(int)
        image = frames[band].image
        out = np.full_like(image, np.nan)
        ny, nx = image.shape
        out[max(0, -dy) : ny - max(0, dy), max(0, -dx) : nx - max(0, dx)] = image[
            max(0, dy) : ny - max(0, -dy), max(0, dx) : nx - max(0, -dx)
        ]
        return out

    return _cube(frames, shift)


def one_point_translation(frames: Frames) -> np.ndarray:
    from scipy.ndimage import shift

    def translate(frames: Frames, band: str) -> np.ndarray:
        dx, dy = centre_offset(frames, band)
        # ndimage.shift samples input[o - shift]; the band holds reference pixel o at o + (dx, dy).
        return shift(frames[band].image, (-dy, -dx), order=3, mode="constant", cval=np.nan)

    return _cube(frames, translate)


def wcs_map_coordinates(frames: Frames) -> np.ndarray:
    from scipy.ndimage import map_coordinates

    def remap(frames: Frames, band: str) -> np.ndarray:
        ref = frames[REFERENCE]
        ys, xs = np.indices(ref.image.shape, dtype=float)
        world = ref.wcs.pixel_to_world_values(xs, ys)
        src_x, src_y = frames[band].wcs.world_to_pixel_values(*world)
        coordinates = np.stack([src_y, src_x])
        return map_coordinates(frames[band].image, coordinates, order=3, mode="constant", cval=np.nan)

    return _cube(frames, remap)


def reproject_bicubic(frames: Frames) -> np.ndarray:
    from reproject import reproject_interp

    def remap(frames: Frames, band: str) -> np.ndarray:
        ref = frames[REFERENCE]
        source = (frames[band].image, frames[band].wcs)
        return reproject_interp(
            source, ref.wcs, shape_out=ref.image.shape, order="bicubic", return_footprint=False
        )

    return _cube(frames, remap)


def sgc(method: str, **options: str) -> Method:
    return lambda frames: align_field(frames, reference=REFERENCE, method=method, **options).cube


def methods() -> dict[str, Method]:
    """The methods to compare, those whose optional package is missing left out."""
    rows: dict[str, Method] = {"unaligned": unaligned, "integer shift (WCS at centre)": integer_shift}
    if importlib.util.find_spec("scipy") is not None:
        rows["one-point translation (scipy shift)"] = one_point_translation
        rows["full WCS + cubic (map_coordinates)"] = wcs_map_coordinates
    if importlib.util.find_spec("reproject") is not None:
        rows["reproject_interp bicubic"] = reproject_bicubic
    rows["sgc wcs (lanczos3)"] = sgc("wcs")
    rows["sgc stars affine lanczos3 (default)"] = sgc("stars")
    rows["sgc stars affine cubic"] = sgc("stars", kernel="cubic")
    rows["sgc stars shift lanczos3"] = sgc("stars", model="shift")
    return rows


def seconds(method: Method, frames: Frames, repeat: int) -> float:
    """Best-of-``repeat`` seconds for one field."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        method(frames)
        runs.append(time.perf_counter() - start)
    return min(runs)


def meets_targets(offsets: dict) -> bool:
    return all(offsets[b]["systematic"] <= t for b, t in TARGET_SYSTEMATIC.items()) and all(
        offsets[b]["median_offset"] <= t for b, t in TARGET_PER_STAR.items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help="folder of one field's frames + catalog"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "alignment.json")
    args = parser.parse_args()

    frame_files = {band: next(args.dir.glob(f"frame-{band}-*.fits*"), None) for band in BANDS}
    catalog_file = next(args.dir.glob("catalog-*.fits"), None)
    if None in frame_files.values() or catalog_file is None:
        raise SystemExit(f"{args.dir}: needs frame-{{u,g,r,i,z}}-*.fits* and catalog-*.fits")
    read = {band: read_frame(path) for band, path in frame_files.items()}
    frames = {band: Band(frame.image, frame.wcs) for band, frame in read.items()}
    full = {band: Band(np.vstack([band_.image, band_.image]), band_.wcs) for band, band_ in frames.items()}
    stars_x, stars_y = catalog_stars(
        read_catalog(catalog_file), frames[REFERENCE].wcs, frames[REFERENCE].image
    )

    results = {}
    for name, method in methods().items():
        method(frames)  # warm-up: numba compilation and caches are not what is measured
        offsets = star_offsets(method(frames), stars_x, stars_y, reference=REFERENCE)
        record = {
            "bands": {band: vars(found) for band, found in offsets.items()},
            "seconds_per_field_745_rows": seconds(method, frames, args.repeat),
            "seconds_per_field_1490_rows": seconds(method, full, args.repeat),
        }
        record["meets_targets"] = meets_targets(record["bands"])
        results[name] = record
    print_table(results, len(stars_x), frames[REFERENCE].image.shape)
    save(args.out, results, frame_files, len(stars_x))


def print_table(results: dict, n_stars: int, shape: tuple[int, int]) -> None:
    bands = [band for band in BANDS if band != REFERENCE]
    print(f"{n_stars} catalogue stars (brighter half by i flux); frames {shape[0]}x{shape[1]}; one core")
    print("per band: systematic / median per-star offset, px; seconds per field of 4 bands")
    header = f"{'method':38s}" + "".join(f"{band:>14s}" for band in bands)
    print(header + f"{'s (745 rows)':>14s}{'s (1490 rows)':>15s}  targets")
    for name, record in results.items():
        cells = "".join(
            f"{record['bands'][b]['systematic']:>7.3f}/{record['bands'][b]['median_offset']:<6.3f}"
            for b in bands
        )
        verdict = "met" if record["meets_targets"] else "missed"
        print(
            f"{name:38s}{cells}{record['seconds_per_field_745_rows']:>14.3f}"
            f"{record['seconds_per_field_1490_rows']:>15.3f}  {verdict}"
        )


def save(path: Path, results: dict, frame_files: dict[str, Path], n_stars: int) -> None:
    record = {
        "files": {band: file.name for band, file in frame_files.items()},
        "reference": REFERENCE,
        "stars": n_stars,
        "targets": {"systematic": TARGET_SYSTEMATIC, "median_per_star": TARGET_PER_STAR},
        "methods": results,
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
