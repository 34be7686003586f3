"""Catalogue readers: the real sample, calibObj and photoObj files, small synthetic tables, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from sgc.errors import InputFileError
from sgc.sdss.catalogs import COLUMNS, read_catalog, read_catalogs, select_field
from sgc.sdss.fitsfile import open_hdul
from sgc.sdss.frames import frame_wcs, read_frame, read_frame_header
from sgc.sdss.names import FieldId


def _sample_catalog(sdss_dir: Path) -> Path:
    return sdss_dir / "003918-3-0213" / "catalog-003918-3-0213.fits"


def _calibobj(sdss_dir: Path) -> Path:
    return sdss_dir / "calibObj" / "calibObj-004510-4-star-fields29-31.fits"


def _photoobj(sdss_dir: Path) -> Path:
    return sdss_dir / "photoObj-001000-1-0100" / "photoObj-001000-1-0100.fits"


def _write_table(path: Path, columns: dict[str, np.ndarray]) -> Path:
    fits.BinTableHDU(Table(columns)).writeto(path)
    return path


def _assert_shape(table: Table) -> None:
    """The one table shape every reader returns."""
    n = len(table)
    assert tuple(table.colnames) == COLUMNS
    for name in ("ra", "dec", "colc_r", "rowc_r"):
        assert table[name].dtype == np.float64 and table[name].shape == (n,), name
    for name in ("psf_fwhm", "psf_mag", "model_mag"):
        assert table[name].dtype == np.float32 and table[name].shape == (n, 5), name
    assert table["class"].dtype.kind == "U" and set(table["class"]) <= {"star", "galaxy"}
    assert table["field"].dtype.kind == "U"


# --- real files -----------------------------------------------------------------------------------------


@pytest.mark.real
def test_sample_catalog(sdss_dir: Path) -> None:
    table = read_catalog(_sample_catalog(sdss_dir))
    _assert_shape(table)
    assert len(table) == 319
    assert np.count_nonzero(table["class"] == "star") == 138
    assert np.count_nonzero(table["class"] == "galaxy") == 181
    assert set(table["field"]) == {"003918-3-0213"}
    assert table.meta["kind"] == "table" and table.meta["dropped"] == 0
    # This file has no photometry: those columns are there, all NaN.
    assert np.isnan(table["psf_fwhm"]).all() and np.isnan(table["model_mag"]).all()


@pytest.mark.real
def test_sample_catalog_lies_in_the_r_frame(sdss_dir: Path) -> None:
    """Every object projects into the r frame, onto its own COLC_R/ROWC_R (0-based) position."""
    table = read_catalog(_sample_catalog(sdss_dir))
    frame = read_frame(sdss_dir / "003918-3-0213" / "frame-r-003918-3-0213.fits.bz2")
    x, y = frame.wcs.world_to_pixel_values(table["ra"], table["dec"])
    rows, cols = frame.image.shape
    assert ((x >= -0.5) & (x < cols - 0.5) & (y >= -0.5) & (y < rows - 0.5)).all()
    assert np.abs(x - table["colc_r"]).max() < 1.0
    assert np.abs(y - table["rowc_r"]).max() < 1.0


@pytest.mark.real
def test_calibobj_star_file(sdss_dir: Path) -> None:
    table = read_catalog(_calibobj(sdss_dir))
    _assert_shape(table)
    assert len(table) == 532 and table.meta["kind"] == "calibObj"
    assert set(table["class"]) == {"star"}
    assert set(table["field"]) == {"004510-4-0029", "004510-4-0030", "004510-4-0031"}
    fwhm_r = table["psf_fwhm"][:, 2]
    assert np.isfinite(fwhm_r).all()
    assert 0.8 < np.median(fwhm_r) < 1.3
    mag_r = table["psf_mag"][:, 2]
    assert np.isfinite(mag_r).mean() > 0.9
    # Pogson magnitudes of real sweeps: a saturated r = 11.4 star, noise-level fluxes near r = 33.
    assert np.nanmin(mag_r) > 10 and 17 < np.nanmedian(mag_r) < 23


@pytest.mark.real
def test_calibobj_positions_follow_the_r_frame_wcs(sdss_dir: Path) -> None:
    """Photo's COLC/ROWC put pixel centres at .5; the reader shifts them onto astropy's 0-based grid."""
    field = select_field(read_catalog(_calibobj(sdss_dir)), "4510-4-30")
    assert len(field) == 161
    wcs = frame_wcs(read_frame_header(sdss_dir / "headers" / "frame-r-004510-4-0030.hdr"))
    x, y = wcs.world_to_pixel_values(field["ra"], field["dec"])
    dx, dy = x - field["colc_r"], y - field["rowc_r"]
    assert abs(np.median(dx)) < 0.05 and abs(np.median(dy)) < 0.05
    assert np.hypot(dx, dy).max() < 1.0


@pytest.mark.real
def test_photoobj(sdss_dir: Path) -> None:
    path = _photoobj(sdss_dir)
    with open_hdul(path) as hdul:
        raw = hdul[1].data
        object_type = np.asarray(raw["OBJC_TYPE"])
        psfmag = np.asarray(raw["PSFMAG"])[np.isin(object_type, (3, 6))]
    assert len(object_type) == 19
    table = read_catalog(path)
    _assert_shape(table)
    assert table.meta["kind"] == "photoObj"
    assert table.meta["dropped"] == 3  # OBJC_TYPE 0 (unknown)
    assert np.count_nonzero(table["class"] == "star") == 11
    assert np.count_nonzero(table["class"] == "galaxy") == 5
    assert set(table["field"]) == {"001000-1-0100"}
    # Magnitudes come from fluxes; for bright objects they equal photo's asinh magnitudes.
    bright = table["psf_mag"][:, 2] < 20
    assert bright.sum() >= 5
    np.testing.assert_allclose(table["psf_mag"][bright, 2], psfmag[bright, 2], atol=0.02)


@pytest.mark.real
def test_read_catalogs_and_select_field(sdss_dir: Path) -> None:
    table = read_catalogs([_sample_catalog(sdss_dir), _calibobj(sdss_dir), _photoobj(sdss_dir)])
    _assert_shape(table)
    assert len(table) == 319 + 532 + 16
    assert table.meta["dropped"] == 3 and len(table.meta["paths"]) == 3
    assert len(select_field(table, FieldId(3918, 3, 213))) == 319
    assert len(select_field(table, "004510-4-0031")) == 177
    assert len(select_field(table, "1-1-1")) == 0


@pytest.mark.real
def test_gzipped_calibobj_without_objc_type_takes_class_from_name(sdss_dir: Path, tmp_path: Path) -> None:
    with open_hdul(_calibobj(sdss_dir)) as hdul:
        columns = {name: np.asarray(hdul[1].data[name]) for name in ("RA", "DEC", "RUN", "CAMCOL", "FIELD")}
    path = _write_table(tmp_path / "calibObj-004510-4-gal.fits.gz", columns)
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # really gzip'd
    table = read_catalog(path)
    assert len(table) == 532 and set(table["class"]) == {"galaxy"}
    assert table.meta["kind"] == "calibObj"


# --- small synthetic tables ----------------------------------------------------------------------------


def test_lowercase_columns_types_and_magnitudes(tmp_path: Path) -> None:
    flux = np.array([[100, 0, -1, 1, np.nan]] * 4, dtype=np.float32)
    path = _write_table(
        tmp_path / "objects.fits",
        {
            "ra": np.array([10.0, 11.0, 12.0, 13.0]),
            "dec": np.array([-1.0, -2.0, -3.0, -4.0]),
            "objc_type": np.array([6, 3, 0, 5]),
            "psfFlux": flux,
            "colc": np.full((4, 5), 10.5, dtype=np.float32),
            "rowc": np.full((4, 5), 20.5, dtype=np.float32),
        },
    )
    table = read_catalog(path)
    _assert_shape(table)
    assert list(table["class"]) == ["star", "galaxy"]
    assert table.meta["dropped"] == 2 and table.meta["kind"] == "table"
    assert list(table["field"]) == ["", ""]
    np.testing.assert_array_equal(table["ra"], [10.0, 11.0])
    np.testing.assert_allclose(table["psf_mag"][0], [17.5, np.nan, np.nan, 22.5, np.nan])
    assert np.isnan(table["model_mag"]).all() and np.isnan(table["psf_fwhm"]).all()
    np.testing.assert_array_equal(table["colc_r"], [10.0, 10.0])
    np.testing.assert_array_equal(table["rowc_r"], [20.0, 20.0])


def test_magnitude_columns_used_without_fluxes(tmp_path: Path) -> None:
    mags = np.array([[20, 19, 18, 17, 16]], dtype=np.float32)
    path = _write_table(
        tmp_path / "mags.fits",
        {"RA": [1.0], "DEC": [2.0], "OBJC_TYPE": [3], "PSFMAG": mags, "MODELMAG": mags - 1},
    )
    table = read_catalog(path)
    np.testing.assert_array_equal(table["psf_mag"][0], mags[0])
    np.testing.assert_array_equal(table["model_mag"][0], mags[0] - 1)
    assert np.isnan(table["colc_r"]).all()


def test_read_catalogs_of_nothing() -> None:
    table = read_catalogs([])
    _assert_shape(table)
    assert len(table) == 0


# --- bad input ------------------------------------------------------------------------------------------


def _assert_names_file(excinfo: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    message = str(excinfo.value)
    assert excinfo.value.path == path and path.name in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_catalog_without_ra_dec(tmp_path: Path) -> None:
    path = _write_table(tmp_path / "catalog.fits", {"X": [1.0], "OBJC_TYPE": [6]})
    with pytest.raises(InputFileError) as excinfo:
        read_catalog(path)
    _assert_names_file(excinfo, path, "RA", "DEC")


def test_catalog_without_dec(tmp_path: Path) -> None:
    path = _write_table(tmp_path / "catalog.fits", {"ra": [1.0], "OBJC_TYPE": [6]})
    with pytest.raises(InputFileError) as excinfo:
        read_catalog(path)
    _assert_names_file(excinfo, path, "lacks column(s) DEC")


def test_catalog_without_class(tmp_path: Path) -> None:
    path = _write_table(tmp_path / "catalog.fits", {"RA": [1.0], "DEC": [2.0]})
    with pytest.raises(InputFileError) as excinfo:
        read_catalog(path)
    _assert_names_file(excinfo, path, "OBJC_TYPE")


def test_catalog_without_table_hdu(tmp_path: Path) -> None:
    path = tmp_path / "catalog.fits"
    fits.PrimaryHDU(np.zeros((4, 4), dtype=np.float32)).writeto(path)
    with pytest.raises(InputFileError) as excinfo:
        read_catalog(path)
    _assert_names_file(excinfo, path, "no table HDU")


def test_catalog_with_wrong_band_count(tmp_path: Path) -> None:
    path = _write_table(
        tmp_path / "catalog.fits",
        {"RA": [1.0], "DEC": [2.0], "OBJC_TYPE": [6], "PSF_FWHM": np.ones((1, 3), dtype=np.float32)},
    )
    with pytest.raises(InputFileError) as excinfo:
        read_catalog(path)
    _assert_names_file(excinfo, path, "PSF_FWHM", "(n, 5)")


def test_catalog_not_fits(tmp_path: Path) -> None:
    path = tmp_path / "catalog.fits"
    path.write_text("RA,DEC,OBJC_TYPE\n1.0,2.0,6\n")
    with pytest.raises(InputFileError) as excinfo:
        read_catalog(path)
    _assert_names_file(excinfo, path, "not a FITS file")


def test_catalog_html_page(tmp_path: Path) -> None:
    path = tmp_path / "calibObj-004510-4-star.fits.gz"
    path.write_text("<html><head><title>404 Not Found</title></head></html>")
    with pytest.raises(InputFileError) as excinfo:
        read_catalog(path)
    _assert_names_file(excinfo, path, "HTML")


def test_truncated_gzip_catalog(tmp_path: Path) -> None:
    whole = _write_table(tmp_path / "whole.fits.gz", {"RA": np.arange(5000.0), "DEC": np.arange(5000.0)})
    data = whole.read_bytes()
    path = tmp_path / "calibObj-004510-4-star.fits.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError) as excinfo:
        read_catalog(path)
    _assert_names_file(excinfo, path, "gzip")


def test_unknown_kind(tmp_path: Path) -> None:
    path = _write_table(tmp_path / "catalog.fits", {"RA": [1.0], "DEC": [2.0], "OBJC_TYPE": [6]})
    with pytest.raises(ValueError, match="unknown catalogue kind"):
        read_catalog(path, kind="sweep")  # type: ignore[arg-type]


@pytest.mark.real
def test_moment_fwhm_of_real_stars_is_their_psf_fwhm(sdss_dir: Path) -> None:
    table = read_catalog(sdss_dir / "calibObj" / "calibObj-004510-4-star-fields29-31.fits")
    ok = np.isfinite(table["moment_fwhm_r"])
    assert ok.mean() > 0.8  # -9999 (not measured) for the rest
    ratio = np.asarray(table["moment_fwhm_r"][ok] / table["psf_fwhm"][ok, 2])
    assert abs(np.median(ratio) - 1.0) < 0.02


def test_read_catalogs_parses_unchanged_files_once(
    sdss_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import shutil

    import sgc.sdss.catalogs as catalogs

    path = tmp_path / _sample_catalog(sdss_dir).name
    shutil.copy(_sample_catalog(sdss_dir), path)
    reads = []
    real = catalogs.read_catalog
    monkeypatch.setattr(catalogs, "read_catalog", lambda p, kind=None: reads.append(p) or real(p, kind))
    first = read_catalogs([path])
    first["ra"][:] = 0.0  # a caller changing its table changes no later reader's
    second = read_catalogs([path])
    assert len(reads) == 1
    assert len(second) == len(first) and not np.all(second["ra"] == 0.0)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # rewritten since: read again
    read_catalogs([path])
    assert len(reads) == 2
