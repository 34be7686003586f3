"""Digests of a cube store and a patch plan, to tell that a change left the pipeline's outputs as they were.

Read with zarr alone (no sgc code), so that the digests mean the same before and after sgc changes.

Masks, labels, field ids and plan columns are compared exactly (sha256 of their values). Floating-point
values are compared by summaries with a tolerance: the simulator renders with numpy's vectorised math,
whose last bit may differ between CPUs (AVX2 against AVX-512 loops), so the image's bytes, the stored WCS
header text and the statistics derived from them are equal only to rounding on another machine.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from astropy.io import fits

EXACT_ARRAYS = ("valid", "label", "exclude", "done", "field", "band")
# Relative tolerance of float summaries: far above a last-bit difference, far below any real change.
RTOL = 1e-5


def _sha(values: np.ndarray) -> str:
    if values.dtype.kind in "OUT":
        data = json.dumps([str(v) for v in values.ravel().tolist()]).encode()
    else:
        data = np.ascontiguousarray(values).tobytes()
    return hashlib.sha256(data + str(values.shape).encode()).hexdigest()


def _wcs_numbers(text: str) -> dict[str, float]:
    header = fits.Header.fromstring(text)
    return {
        key: float(value)
        for key, value in header.items()
        if key.startswith(("CRVAL", "CRPIX", "CD", "NAXIS")) and isinstance(value, (int, float))
    }


def store_digest(path: str | Path) -> dict[str, Any]:
    """Exact digests of the store's integer arrays and float summaries of its image and grids."""
    group = zarr.open_group(path, mode="r", zarr_format=3)
    out: dict[str, Any] = {"exact": {}, "image": [], "wcs": []}
    for name in EXACT_ARRAYS:
        out["exact"][name] = _sha(np.asarray(group[name][:]))
    image = group["image"]
    for slot in range(image.shape[0]):
        for band in range(image.shape[1]):
            values = np.asarray(image[slot, band], dtype=np.float64)
            finite = np.isfinite(values)
            out["image"].append(
                {
                    "finite": int(finite.sum()),
                    "sum": float(values[finite].sum()),
                    "sumsq": float(np.square(values[finite]).sum()),
                }
            )
        out["wcs"].append(_wcs_numbers(str(group["wcs"][slot])))
    return out


def plan_digest(path: str | Path) -> dict[str, Any]:
    """Exact digests of the plan's columns and settings, and its normalisation statistics."""
    group = zarr.open_group(path, mode="r", zarr_format=3)
    attrs = dict(group.attrs)
    columns = sorted(name for name, _ in group.arrays())
    return {
        "columns": {name: _sha(np.asarray(group[name][:])) for name in columns},
        "settings": {key: attrs[key] for key in ("patch", "stride", "seed", "split", "summary")},
        "normalisation": {
            band: {key: stats[key] for key in ("count", "median", "robust_sigma", "mean", "std")}
            for band, stats in attrs["normalisation"].items()
        },
    }


def differences(recorded: Any, now: Any, where: str = "") -> list[str]:
    """Where ``now`` departs from ``recorded``: exact for strings and integers, ``RTOL`` for floats."""
    if isinstance(recorded, dict) and isinstance(now, dict):
        found = [f"{where}.{k}: missing" for k in recorded if k not in now]
        found += [f"{where}.{k}: new" for k in now if k not in recorded]
        for key in recorded.keys() & now.keys():
            found += differences(recorded[key], now[key], f"{where}.{key}")
        return found
    if isinstance(recorded, list) and isinstance(now, list):
        if len(recorded) != len(now):
            return [f"{where}: {len(now)} items, recorded {len(recorded)}"]
        return [
            d
            for k, (a, b) in enumerate(zip(recorded, now, strict=True))
            for d in differences(a, b, f"{where}[{k}]")
        ]
    if isinstance(recorded, float) or isinstance(now, float):
        same = math.isclose(float(recorded), float(now), rel_tol=RTOL, abs_tol=1e-9)
        return [] if same else [f"{where}: {now!r}, recorded {recorded!r}"]
    return [] if recorded == now else [f"{where}: {now!r}, recorded {recorded!r}"]
