"""Whole-file FITS reading: decompression once, and clear errors for what a bad download leaves."""

from __future__ import annotations

import bz2
import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st

from sgc.errors import InputFileError
from sgc.sdss.fitsfile import decompress, fits_extent, open_hdul, read_bytes


@pytest.fixture
def fits_payload(tmp_path: Path) -> bytes:
    path = tmp_path / "x.fits"
    fits.PrimaryHDU(np.arange(64, dtype=np.float32).reshape(8, 8)).writeto(path)
    return path.read_bytes()


@pytest.mark.parametrize("compress", [bz2.compress, gzip.compress, lambda b: b])
def test_open_reads_plain_and_compressed(tmp_path: Path, fits_payload: bytes, compress) -> None:
    path = tmp_path / "frame.fits"
    path.write_bytes(compress(fits_payload))
    with open_hdul(path) as hdul:
        np.testing.assert_array_equal(hdul[0].data, np.arange(64, dtype=np.float32).reshape(8, 8))


@pytest.mark.parametrize(("compress", "what"), [(bz2.compress, "bzip2"), (gzip.compress, "gzip")])
def test_truncated_stream_is_named(tmp_path: Path, fits_payload: bytes, compress, what: str) -> None:
    data = compress(fits_payload)
    path = tmp_path / "cut.fits.bz2"
    path.write_bytes(data[: len(data) - 5])
    with pytest.raises(InputFileError, match=rf"cut\.fits\.bz2: {what} stream is truncated"):
        read_bytes(path)


def test_html_page_saved_as_fits_is_named(tmp_path: Path) -> None:
    path = tmp_path / "frame-r-003918-3-0213.fits"
    path.write_text("<!DOCTYPE html>\n<html><body>502 Bad Gateway</body></html>")
    with pytest.raises(InputFileError, match=r"frame-r-003918-3-0213\.fits: is an HTML/XML page"):
        open_hdul(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "file is empty"), (b"hello world" * 100, "is not a FITS file"), (None, "file does not exist")],
)
def test_other_bad_files_are_named(tmp_path: Path, content: bytes | None, match: str) -> None:
    path = tmp_path / "bad.fits"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputFileError, match=rf"bad\.fits: {match}"):
        open_hdul(path)


def test_fits_cut_inside_its_data_is_broken(tmp_path: Path) -> None:
    path = tmp_path / "short.fits"
    big = tmp_path / "big.fits"
    fits.PrimaryHDU(np.zeros((100, 100), np.float32)).writeto(big)
    path.write_bytes(big.read_bytes()[:4000])
    with pytest.raises(InputFileError, match=r"short\.fits: FITS structure is broken or truncated"):
        open_hdul(path)


def test_real_frame_decompresses_to_what_astropy_reads(sdss_dir: Path) -> None:
    path = sdss_dir / "003918-3-0213" / "frame-r-003918-3-0213.fits.bz2"
    assert decompress(path.read_bytes(), path) == bz2.decompress(path.read_bytes())
    with open_hdul(path) as ours, fits.open(path) as theirs:
        np.testing.assert_array_equal(ours[0].data, theirs[0].data)
        assert len(ours) == len(theirs) == 4


def _fits_bytes(shape: tuple[int, ...], rows: int) -> bytes:
    hdus = [fits.PrimaryHDU(np.zeros(shape, np.float32) if shape else None)]
    if rows:
        hdus.append(
            fits.BinTableHDU.from_columns([fits.Column("RA", "D", array=np.arange(rows, dtype=float))])
        )
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer)
    return buffer.getvalue()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 300), min_size=0, max_size=2).map(tuple),
    st.integers(0, 500),
    st.floats(0, 1),
)
def test_fits_extent_is_the_file_size_and_a_lower_bound_on_any_prefix(
    shape: tuple[int, ...], rows: int, cut: float
) -> None:
    data = _fits_bytes(shape, rows)
    assert fits_extent(data) == (len(data), True)
    prefix = data[: int(cut * len(data))]
    bound, _ = fits_extent(prefix)
    assert len(prefix) <= bound <= len(data)
    assert decompress(bz2.compress(data), "x.fits.bz2") == data
    assert decompress(gzip.compress(data), "x.fits.gz") == data


def test_a_stream_holding_more_than_its_fits_headers_announce_is_refused() -> None:
    data = _fits_bytes((10, 10), 3)
    for packed in (bz2.compress(data + bytes(3 * 2880)), gzip.compress(data + b"\x01" * 10)):
        with pytest.raises(InputFileError, match="holds more than a FITS file"):
            decompress(packed, "x.fits.bz2")


def test_a_decompression_bomb_is_refused_from_its_first_block() -> None:
    bomb = bz2.compress(bytes(1 << 27), 9)
    assert len(bomb) < 1000
    with pytest.raises(InputFileError, match="not a FITS file"):
        decompress(bomb, "bomb.fits.bz2")
