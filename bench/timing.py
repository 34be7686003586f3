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
