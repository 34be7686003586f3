"""Shared by the benchmarks: best of repeated runs (the figure least disturbed by other load) and a
description of the machine the figures were measured on."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterable
from importlib.metadata import version
from pathlib import Path


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Fewest seconds ``fn()`` took over ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def machine(packages: Iterable[str]) -> dict:
    """CPU model, cores (all, and those this process may run on), Python and the packages' versions."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "",
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "cores_allowed": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in packages},
    }


def figure(
    name: str,
    value: float,
    unit: str,
    *,
    anchor: tuple[str, float] | None = None,
    ceiling: tuple[str, float] | None = None,
    target: str | None = None,
) -> dict:
    """One row of a stage's table in ``bench/RESULTS.md``, saved in a benchmark's JSON under ``"summary"``.

    Args:
        name: what was measured, e.g. ``"sgc PatchStream, 0 workers, sample"``.
        value: the figure.
        unit: its unit, e.g. ``"patches/s/core"`` or ``"s/field"``.
        anchor: (what, value) of the design it is compared with (a baseline, the 2023 way), same unit,
            measured in the same run.
        ceiling: (what, value) of the machine's limit for this work (a memcpy, the decompression floor),
            same unit, measured in the same run.
        target: the issue's target for this figure, as written there (e.g. ``">= 30000"``), if any.
    """
    return {
        "name": name,
        "value": float(value),
        "unit": unit,
        "anchor": None if anchor is None else {"what": anchor[0], "value": float(anchor[1])},
        "ceiling": None if ceiling is None else {"what": ceiling[0], "value": float(ceiling[1])},
        "target": target,
    }
