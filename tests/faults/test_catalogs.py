"""Fault corpus: catalogues that are damaged, incomplete, missing or given twice, met by ``sgc label``."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import Result

from tests.digests import store_digest
from tests.faults.conftest import World, error_line, invoke


def _catalog(world: World, kind: str) -> Path:
    return next(world.raw.rglob(f"calibObj-*-{kind}.fits.gz"))


def _painted(result: Result) -> tuple[int, int]:
    found = re.search(r"(\d+) star and (\d+) galaxy centres painted", result.output)
    assert found, result.output
    return int(found.group(1)), int(found.group(2))


def _label(world: World, *catalogs: Path) -> Result:
    given = [arg for c in catalogs for arg in ("-c", c)]
    return invoke("label", world.store, *given, "--config", world.config)


def _edited(source: Path, dest: Path, edit) -> Path:  # noqa: ANN001 - edit(FITS_rec) in place
    with fits.open(source) as hdul:
        edit(hdul[1].data)
        hdul.writeto(dest)
    return dest


def test_rows_without_a_position_are_dropped_and_said_by_every_stage(world: World, tmp_path: Path) -> None:
    star, gal = _catalog(world, "star"), _catalog(world, "gal")
    clean = _painted(_label(world, star, gal))

    def blank(data: fits.FITS_rec) -> None:
        data["RA"][:2] = np.nan
        data["DEC"][2] = np.inf

    broken = _edited(star, tmp_path / "calibObj-009001-3-star.fits", blank)
    result = _label(world, broken, gal)
    assert result.exit_code == 0, result.output
    assert f"{broken}: 3 star/galaxy row(s) without a finite RA/DEC dropped" in result.output
    stars, galaxies = _painted(result)
    assert galaxies == clean[1] and clean[0] - 3 <= stars < clean[0]
    # A catalogue is read once per process (each command is one): stats, reading it afresh, says the same.
    again = tmp_path / "again" / broken.name
    again.parent.mkdir()
    shutil.copy(broken, again)
    stats = invoke("stats", world.store, "-c", again, "-c", gal, "--config", world.config)
    assert stats.exit_code == 0 and f"{again}: 3 star/galaxy row(s)" in stats.output, stats.output


def test_the_same_catalogue_under_two_names_is_counted_once(world: World, tmp_path: Path) -> None:
    star, gal = _catalog(world, "star"), _catalog(world, "gal")
    twin = tmp_path / "catalog-copy.fits.gz"
    shutil.copy(star, twin)
    once = _painted(_label(world, star, gal))
    result = _label(world, star, gal, twin)
    assert result.exit_code == 0, result.output
    assert _painted(result) == once
    assert re.search(
        r"\d+ catalogue row\(s\) repeat an object .* counted once: .*catalog-copy", result.output
    )


def test_a_folder_without_catalogues_is_refused(world: World, tmp_path: Path) -> None:
    before = store_digest(world.store)
    error_line(_label(world, tmp_path), str(tmp_path), "no catalogue below it")
    assert store_digest(world.store) == before


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:2000]), "truncated"),
        (lambda p: p.write_bytes(gzip.compress(b"<html>not found</html>")), "HTML/XML page"),
        (lambda p: p.unlink(), "no such file"),
    ],
    ids=["truncated", "html", "missing"],
)
def test_a_damaged_catalogue_is_named_and_the_labels_kept(
    world: World, tmp_path: Path, damage, problem
) -> None:  # noqa: ANN001
    before = store_digest(world.store)
    broken = tmp_path / "calibObj-009001-3-star.fits.gz"
    shutil.copy(_catalog(world, "star"), broken)
    damage(broken)
    error_line(_label(world, broken), str(broken), problem)
    assert store_digest(world.store) == before


def test_a_catalogue_without_ra_is_named(world: World, tmp_path: Path) -> None:
    star = _catalog(world, "star")
    with fits.open(star) as hdul:
        columns = [c for c in hdul[1].columns if c.name != "RA"]
        table = fits.BinTableHDU.from_columns(columns)
    broken = tmp_path / "calibObj-009001-3-star.fits"
    table.writeto(broken)
    error_line(_label(world, broken), str(broken), "lacks column(s) RA")
