"""Small synthetic cube stores with ``label`` and ``exclude`` arrays, built directly (no ingest)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from tests.stores import build_store as build_cube

PIXEL_DEG = 0.396 / 3600


def tan_header(shape: tuple[int, int], ra: float = 150.0, dec: float = 2.0) -> fits.Header:
    """A TAN header like an SDSS frame's: 0.396"/pixel, reference pixel at the centre, +y to the north."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    wcs.wcs.cd = [[-PIXEL_DEG, 0.0], [0.0, PIXEL_DEG]]
    header = wcs.to_header()
    header["NAXIS"], header["NAXIS1"], header["NAXIS2"] = 2, shape[1], shape[0]
    return header


@dataclass
class SynthField:
    """One field's pixel arrays and the header of its grid."""

    image: np.ndarray
    valid: np.ndarray
    label: np.ndarray
    exclude: np.ndarray
    header: fits.Header = field(default_factory=lambda: tan_header((1, 1)))


def random_field(
    rng: np.random.Generator, shape: tuple[int, int], header: fits.Header | None = None
) -> SynthField:
    """Noise images, every label value, and everything valid and not excluded."""
    image = rng.normal(0.0, 1.0, size=(5, *shape)).astype(np.float32)
    label = rng.choice(np.array([0, 0, 0, 1, 2, 255], dtype=np.uint8), size=shape)
    valid = np.ones(shape, dtype=bool)
    exclude = np.zeros(shape, dtype=bool)
    return SynthField(image, valid, label, exclude, header if header is not None else tan_header(shape))


def build_store(path: Path, fields: Mapping[str, SynthField], chunk: int = 32, codec: str = "none") -> Path:
    """A store holding the fields, all done, with ``label`` and ``exclude`` filled in."""
    cube = build_cube(
        path,
        {name: (f.image, f.valid, f.header.tostring()) for name, f in fields.items()},
        chunk=chunk,
        codec=codec,
    )
    label = cube.pixel_array("label", "uint8", 255)
    exclude = cube.pixel_array("exclude", bool, False)
    for slot, f in enumerate(fields.values()):
        label[slot] = f.label
        exclude[slot] = f.exclude
    return path
