"""Whole-file FITS reading: decompression once, and clear errors for what a bad download leaves."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st

from sgc.errors import InputFileError
from sgc.sdss.fitsfile import _bz2_stream_complete, decompress, open_hdul, read_bytes


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


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=0, max_size=3000), st.integers(1, 40))
def test_bz2_end_marker_is_found_exactly_when_the_stream_is_whole(payload: bytes, cut: int) -> None:
    data = bz2.compress(payload)
    assert _bz2_stream_complete(data)
    assert not _bz2_stream_complete(data[: max(0, len(data) - cut)]) or cut == 0


def test_real_frame_decompresses_to_what_astropy_reads(sdss_dir: Path) -> None:
    path = sdss_dir / "003918-3-0213" / "frame-r-003918-3-0213.fits.bz2"
    assert decompress(path.read_bytes(), path) == bz2.decompress(path.read_bytes())
    with open_hdul(path) as ours, fits.open(path) as theirs:
        np.testing.assert_array_equal(ours[0].data, theirs[0].data)
        assert len(ours) == len(theirs) == 4
