"""The mask kernels' throughput against plain numpy on the same inputs: label painting and exclusion.

Runs ``bench/labels.py`` (objects/s and pixels/s painting disks, numba vs numpy) and ``bench/exclusion.py``
(Mpixel/s filling held-out footprints, numba vs numpy), each of which prints its table and saves its JSON
(``bench/results/labels.json``, ``bench/results/exclusion.json``).

    python bench/masks.py
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    for name in ("labels.py", "exclusion.py"):
        print(f"== {name}")
        sys.argv = [str(HERE / name)]
        runpy.run_path(str(HERE / name), run_name="__main__")
