"""Fault corpus: sixteen kinds of bad frame met by `sgc ingest`: each named and skipped, the rest stored."""

from __future__ import annotations

import bz2
import io
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from sgc.cube.store import CubeStore
from tests.faults.conftest import FIELDS, World, copy_raw, invoke

GOOD, BAD = FIELDS[0], FIELDS[2]


def _rewrite(change: Callable[[fits.HDUList], None]) -> Callable[[Path], None]:
    """A damage that edits the frame as FITS and writes it back, compressed."""

    def damage(path: Path) -> None:
        hdul = fits.HDUList.fromstring(bz2.decompress(path.read_bytes()))
        change(hdul)
        out = io.BytesIO()
        hdul.writeto(out, output_verify="silentfix")
        path.write_bytes(bz2.compress(out.getvalue()))

    return damage


def _drop_wcs(hdul: fits.HDUList) -> None:
    for key in ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2"):
        del hdul[0].header[key]


def _resize(hdul: fits.HDUList) -> None:
    hdul[0].data = hdul[0].data[:-10]


def _all_nan(hdul: fits.HDUList) -> None:
    hdul[0].data = np.full_like(hdul[0].data, np.nan)


def _scattered_nan(hdul: fits.HDUList) -> None:
    image = hdul[0].data.copy()
    image[np.random.default_rng(0).random(image.shape) < 0.3] = np.nan
    hdul[0].data = image


def _integers(hdul: fits.HDUList) -> None:
    hdul[0].data = hdul[0].data.astype(np.int16)


def _cube(hdul: fits.HDUList) -> None:
    hdul[0].data = np.stack([hdul[0].data, hdul[0].data])


def _no_image(hdul: fits.HDUList) -> None:
    hdul[0].data = None


def _degenerate_scale(hdul: fits.HDUList) -> None:
    header = hdul[0].header
    for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
        header[key] = 0.0


def _not_celestial(hdul: fits.HDUList) -> None:
    hdul[0].header["CTYPE1"], hdul[0].header["CTYPE2"] = "LINEAR", "LINEAR"


DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty": (lambda p: p.write_bytes(b""), "file is empty"),
    "truncated-bz2": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated"),
    "html-page": (lambda p: p.write_bytes(b"<!DOCTYPE html><html>503</html>"), "HTML/XML page, not FITS"),
    "random-bytes": (lambda p: p.write_bytes(os.urandom(5000)), "not a FITS file"),
    "bz2-not-fits": (lambda p: p.write_bytes(bz2.compress(os.urandom(5000))), "not a FITS file"),
    "bomb": (lambda p: p.write_bytes(bz2.compress(bytes(1 << 26), 9)), "not a FITS file"),
    "cut-in-pixels": (
        lambda p: p.write_bytes(bz2.compress(bz2.decompress(p.read_bytes())[: 2880 * 40])),
        "truncated",
    ),
    "no-wcs": (_rewrite(_drop_wcs), "has no WCS"),
    "not-celestial": (_rewrite(_not_celestial), "WCS is not celestial"),
    "singular-matrix": (_rewrite(_degenerate_scale), "malformed WCS"),
    "other-size": (_rewrite(_resize), "differ in size"),
    "integer-pixels": (_rewrite(_integers), "expected floating point"),
    "3d-image": (_rewrite(_cube), "expected 2-D"),
    "no-image": (_rewrite(_no_image), "holds no image"),
    "all-nan": (_rewrite(_all_nan), "of pixels are finite"),
    "scattered-nan": (_rewrite(_scattered_nan), "valid"),
}


@pytest.mark.parametrize("kind", list(DAMAGES))
def test_a_bad_frame_is_named_and_skipped_and_the_good_field_stored(
    clean_world: World, tmp_path: Path, kind: str
) -> None:
    damage, problem = DAMAGES[kind]
    raw = copy_raw(clean_world.raw, tmp_path / "raw")
    frame = next(raw.rglob(f"frame-g-{BAD}.fits.bz2"))
    damage(frame)
    store = tmp_path / "s.zarr"
    result = invoke("ingest", raw, store, "--fields", GOOD, "--fields", BAD, "--chunk", 128, "--workers", 0)
    assert "Traceback" not in result.output, result.output
    cube = CubeStore.open(store)
    clean = CubeStore.open(clean_world.store)
    # The good field is stored exactly as in the clean world, whatever happened to the other.
    np.testing.assert_array_equal(cube["image"][cube.slot(GOOD)], clean["image"][clean.slot(GOOD)])
    if kind == "scattered-nan":
        # Readable, but 30% NaN in one band spreads through resampling: stored, and warned of.
        assert result.exit_code == 0, result.output
        assert re.search(rf"{BAD}: stored, but only \d+\.\d% of its pixels are valid", result.output), (
            result.output
        )
        return
    assert result.exit_code == 1, result.output
    assert cube.done_fields() == [GOOD]
    line = next(line for line in result.output.splitlines() if f"{BAD}:" in line and "skipped" in line)
    assert problem in line, result.output
    if kind != "other-size":  # a size mismatch is the field's, named by its i frame
        assert frame.name in line, line
