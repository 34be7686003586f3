"""Cube stores built directly from arrays (no ingest), for tests of the stages that read them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from sgc.config import IngestConfig
from sgc.cube.store import CubeStore


def build_store(
    path: Path, fields: Mapping[str, tuple[np.ndarray, np.ndarray, str]], **layout: object
) -> CubeStore:
    """A store holding each field's ``(image, valid, wcs header text)``, all done.

    Args:
        path: where to create it.
        fields: the fields, in slot order.
        layout: ``chunk``, ``codec``, ``dtype``, ... of :class:`IngestConfig` (chunk 32 by default).
    """
    shape = next(iter(fields.values()))[1].shape
    cube = CubeStore.create(path, shape, IngestConfig(**{"chunk": 32, **layout}))
    slots = cube.allocate(list(fields))
    for name, (image, valid, header) in fields.items():
        cube.write_field(slots[name], image, valid, header, {"field": name})
    return cube
