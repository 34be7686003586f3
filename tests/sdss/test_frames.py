"""Frame reader: every real frame and header in the sample, and each kind of bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs.utils import proj_plane_pixel_scales

from sgc.errors import InputFileError
from sgc.sdss.frames import FRAME_OFFSET, Frame, frame_wcs, read_frame, read_frame_header
from sgc.sdss.names import BANDS, FieldId

SAMPLE_FIELD = FieldId(3918, 3, 213)
SDSS_PIXEL_SCALE = 0.396  # arcsec / pixel


def _sample_frame(sdss_dir: Path, band: str) -> Path:
    return sdss_dir / "003918-3-0213" / f"frame-{band}-003918-3-0213.fits.bz2"


def _headers(sdss_dir: Path) -> list[Path]:
    paths = sorted((sdss_dir / "headers").glob("frame-*.hdr"))
    assert paths, f"no headers in {sdss_dir / 'headers'}"
    return paths


@pytest.fixture(scope="module")
def sample_frames(sdss_dir: Path) -> dict[str, Frame]:
    """The five sample frames, read once for the module."""
    return {band: read_frame(_sample_frame(sdss_dir, band)) for band in BANDS}


@pytest.fixture
def r_header(sdss_dir: Path) -> fits.Header:
    """The real r-band header of the sample field (full-frame WCS), from its text copy."""
    return read_frame_header(sdss_dir / "headers" / "frame-r-003918-3-0213.hdr")


def _write_frame(path: Path, header: fits.Header, data: np.ndarray | None = None) -> Path:
    """A small FITS frame at ``path`` with ``header`` (NAXIS keys follow the data)."""
    data = np.ones((16, 24), dtype=np.float32) if data is None else data
    fits.PrimaryHDU(data=data, header=header.copy()).writeto(path)
    return path


def _assert_names_file(excinfo: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    message = str(excinfo.value)
    assert excinfo.value.path == path
    assert path.name in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


# --- the real sample -------------------------------------------------------------------------------


@pytest.mark.real
@pytest.mark.parametrize("band", BANDS)
def test_sample_frame(sdss_dir: Path, sample_frames: dict[str, Frame], band: str) -> None:
    frame = sample_frames[band]
    assert frame.band == band
    assert frame.field_id == SAMPLE_FIELD
    assert frame.image.shape == (745, 2048)
    assert frame.image.dtype == np.float32 and frame.image.dtype.isnative
    assert np.isfinite(frame.image).all()
    assert frame.wcs.has_celestial and frame.wcs.naxis == 2
    assert frame.wcs.pixel_shape == (2048, 745)
    assert frame.header["FILTER"].strip() == band
    assert frame.path == _sample_frame(sdss_dir, band)


@pytest.mark.real
@pytest.mark.parametrize("band", BANDS)
def test_sample_frame_matches_full_frame_header(
    sdss_dir: Path, sample_frames: dict[str, Frame], band: str
) -> None:
    """The cropped sample keeps the full frame's WCS: the same pixel lands on the same sky."""
    frame = sample_frames[band]
    full = frame_wcs(read_frame_header(sdss_dir / "headers" / f"frame-{band}-003918-3-0213.hdr"))
    pixels = np.array([[0.0, 0.0], [2047.0, 744.0], [1000.5, 300.25]])
    np.testing.assert_allclose(
        frame.wcs.pixel_to_world_values(pixels), full.pixel_to_world_values(pixels), rtol=0, atol=1e-9
    )


@pytest.mark.real
def test_read_frame_header_of_compressed_frame(sdss_dir: Path) -> None:
    header = read_frame_header(_sample_frame(sdss_dir, "g"))
    assert header["NAXIS2"] == 745 and header["FILTER"].strip() == "g"
    assert header["FRAME"] == SAMPLE_FIELD.field + FRAME_OFFSET["g"]


@pytest.mark.real
def test_photoobj_cutout_frame(sdss_dir: Path) -> None:
    frame = read_frame(sdss_dir / "photoObj-001000-1-0100" / "frame-r-001000-1-0100.fits.bz2")
    assert frame.image.shape == (100, 100)
    assert frame.field_id == FieldId(1000, 1, 100) and frame.band == "r"
    assert frame.image.dtype.isnative


@pytest.mark.real
def test_every_header_has_an_sdss_wcs(sdss_dir: Path) -> None:
    for path in _headers(sdss_dir):
        wcs = frame_wcs(read_frame_header(path), path)
        assert wcs.has_celestial, path.name
        assert wcs.pixel_shape == (2048, 1489), path.name
        scales = proj_plane_pixel_scales(wcs) * 3600
        np.testing.assert_allclose(scales, SDSS_PIXEL_SCALE, rtol=0.01, err_msg=path.name)


@pytest.mark.real
def test_frame_keyword_offsets_hold_for_every_header(sdss_dir: Path, tmp_path: Path) -> None:
    """FRAME = field + offset(band) on every real header, read both by file name and from the header."""
    for path in _headers(sdss_dir):
        header = read_frame_header(path)
        by_name = read_frame(_write_frame(tmp_path / path.with_suffix(".fits").name, header))
        by_header = read_frame(_write_frame(tmp_path / f"cutout-{path.stem}.fits", header))
        assert (by_header.band, by_header.field_id) == (by_name.band, by_name.field_id), path.name
        assert str(by_name.field_id) in path.name


# --- bad input ----------------------------------------------------------------------------------------


@pytest.mark.real
def test_truncated_bz2(sdss_dir: Path, tmp_path: Path) -> None:
    data = _sample_frame(sdss_dir, "r").read_bytes()
    path = tmp_path / "frame-r-003918-3-0213.fits.bz2"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError) as excinfo:
        read_frame(path)
    _assert_names_file(excinfo, path, "truncated")


def test_html_page_saved_as_fits(tmp_path: Path) -> None:
    path = tmp_path / "frame-r-003918-3-0213.fits"
    path.write_text("<!DOCTYPE html>\n<html><body>503 Service Unavailable</body></html>\n")
    with pytest.raises(InputFileError) as excinfo:
        read_frame(path)
    _assert_names_file(excinfo, path, "HTML")


def test_not_fits(tmp_path: Path) -> None:
    path = tmp_path / "frame-r-003918-3-0213.fits"
    path.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(InputFileError) as excinfo:
        read_frame(path)
    _assert_names_file(excinfo, path, "not a FITS file")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "frame-r-003918-3-0213.fits.bz2"
    with pytest.raises(InputFileError) as excinfo:
        read_frame(path)
    _assert_names_file(excinfo, path, "does not exist")


def test_frame_without_wcs(tmp_path: Path) -> None:
    header = fits.Header({"FILTER": "r", "RUN": 3918, "CAMCOL": 3, "FRAME": 213})
    path = _write_frame(tmp_path / "frame-r-003918-3-0213.fits", header)
    with pytest.raises(InputFileError) as excinfo:
        read_frame(path)
    _assert_names_file(excinfo, path, "no WCS", "CTYPE1")


@pytest.mark.real
def test_frame_without_cd_matrix(r_header: fits.Header, tmp_path: Path) -> None:
    for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
        del r_header[key]
    path = _write_frame(tmp_path / "frame-r-003918-3-0213.fits", r_header)
    with pytest.raises(InputFileError) as excinfo:
        read_frame(path)
    _assert_names_file(excinfo, path, "no WCS", "CD1_1")


@pytest.mark.real
def test_frame_with_non_celestial_wcs(r_header: fits.Header, tmp_path: Path) -> None:
    r_header["CTYPE1"], r_header["CTYPE2"] = "LINEAR", "LINEAR"
    del r_header["CUNIT*"]
    path = _write_frame(tmp_path / "frame-r-003918-3-0213.fits", r_header)
    with pytest.raises(InputFileError) as excinfo:
        read_frame(path)
    _assert_names_file(excinfo, path, "not celestial")


@pytest.mark.real
def test_unknown_band_in_name(r_header: fits.Header, tmp_path: Path) -> None:
    path = _write_frame(tmp_path / "frame-q-003918-3-0213.fits", r_header)
    with pytest.raises(InputFileError) as excinfo:
        read_frame(path)
    _assert_names_file(excinfo, path, "unknown band", "'q'")


@pytest.mark.real
def test_unknown_band_in_header(r_header: fits.Header, tmp_path: Path) -> None:
    r_header["FILTER"] = "q"
    path = _write_frame(tmp_path / "cutout.fits", r_header)
    with pytest.raises(InputFileError) as excinfo:
        read_frame(path)
    _assert_names_file(excinfo, path, "unknown band", "'q'")


@pytest.mark.real
def test_band_mismatch(r_header: fits.Header, tmp_path: Path) -> None:
    r_header["FILTER"] = "g"
    path = _write_frame(tmp_path / "frame-r-003918-3-0213.fits", r_header)
    with pytest.raises(InputFileError) as excinfo:
        read_frame(path)
    _assert_names_file(excinfo, path, "band mismatch", "'r'", "'g'")


@pytest.mark.real
@pytest.mark.parametrize(
    ("name", "keyword"),
    [
        ("frame-r-003918-3-0214.fits", "FRAME"),
        ("frame-r-003919-3-0213.fits", "RUN"),
        ("frame-r-003918-4-0213.fits", "CAMCOL"),
    ],
)
def test_field_mismatch(r_header: fits.Header, tmp_path: Path, name: str, keyword: str) -> None:
    path = _write_frame(tmp_path / name, r_header)
    with pytest.raises(InputFileError) as excinfo:
        read_frame(path)
    _assert_names_file(excinfo, path, "field mismatch", keyword)


@pytest.mark.real
def test_non_standard_name_without_field_keywords(r_header: fits.Header, tmp_path: Path) -> None:
    del r_header["FRAME"]
    path = _write_frame(tmp_path / "cutout.fits", r_header)
    with pytest.raises(InputFileError) as excinfo:
        read_frame(path)
    _assert_names_file(excinfo, path, "FRAME")


@pytest.mark.real
def test_too_few_finite_pixels(r_header: fits.Header, tmp_path: Path) -> None:
    data = np.ones((10, 10), dtype=np.float32)
    data[:6] = np.nan
    path = _write_frame(tmp_path / "frame-r-003918-3-0213.fits", r_header, data)
    with pytest.raises(InputFileError) as excinfo:
        read_frame(path)
    _assert_names_file(excinfo, path, "40.0%")
    assert read_frame(path, min_finite_fraction=0.3).image.shape == (10, 10)


@pytest.mark.real
@pytest.mark.parametrize(
    ("data", "words"),
    [
        (np.ones((2, 8, 8), dtype=np.float32), "3-D"),
        (np.ones((8, 8), dtype=np.int16), "floating point"),
    ],
)
def test_image_not_2d_float(r_header: fits.Header, tmp_path: Path, data: np.ndarray, words: str) -> None:
    path = _write_frame(tmp_path / "frame-r-003918-3-0213.fits", r_header, data)
    with pytest.raises(InputFileError) as excinfo:
        read_frame(path)
    _assert_names_file(excinfo, path, words)


@pytest.mark.real
def test_float64_image_becomes_native_float32(r_header: fits.Header, tmp_path: Path) -> None:
    data = np.arange(64, dtype=np.float64).reshape(8, 8)
    frame = read_frame(_write_frame(tmp_path / "frame-r-003918-3-0213.fits", r_header, data))
    assert frame.image.dtype == np.float32 and frame.image.dtype.isnative
    np.testing.assert_array_equal(frame.image, data)


@pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyUserWarning")
def test_text_header_that_is_not_a_header(tmp_path: Path) -> None:
    path = tmp_path / "frame-r-003918-3-0213.hdr"
    path.write_text("hello\nthis is not a FITS header\n")
    with pytest.raises(InputFileError) as excinfo:
        read_frame_header(path)
    _assert_names_file(excinfo, path, "NAXIS")


def test_frame_wcs_names_the_file_it_is_given() -> None:
    with pytest.raises(InputFileError, match="held-out.hdr: has no WCS"):
        frame_wcs(fits.Header({"NAXIS": 2}), "held-out.hdr")
