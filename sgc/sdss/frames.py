"""Reading SDSS calibrated frames (``frame-{band}-RRRRRR-C-FFFF.fits.bz2``), validated at the door.

A frame's HDU0 holds the image in nanomaggies with its own TAN WCS. :func:`read_frame` returns it as a
:class:`Frame` after checking everything later stages rely on: a 2-D float image, a celestial WCS, enough
finite pixels, and a band and field that agree between the file name and the header. Anything wrong is an
:class:`~sgc.errors.InputFileError` naming the file. :func:`read_frame_header` and :func:`frame_wcs` work
from the header alone, so footprints of fields whose pixels are not at hand can still be computed.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales

from sgc.errors import InputFileError
from sgc.sdss.fitsfile import check_fits_bytes, parse_hdul, read_bytes, read_payload
from sgc.sdss.names import BANDS, FieldId, FieldIdError, parse_frame_name

# The header keyword FRAME is the raw CCD frame number, not the field: the camera's rows see the sky in
# the order r, i, u, z, g, two frames apart, so field F in band b was exposed as frame F + offset[b].
# Checked on all 56 DR17 headers in shared/sdss/headers (every run from 1006 to 8162).
FRAME_OFFSET: dict[str, int] = {"r": 0, "i": 2, "u": 4, "z": 6, "g": 8}

DEFAULT_MIN_FINITE_FRACTION = 0.5

# Standalone headers (shared/sdss/headers) are FITS cards as text lines, one per line.
_TEXT_HEADER_SUFFIXES = (".hdr", ".txt")


@dataclass(frozen=True)
class Frame:
    """One band of one SDSS field, read and validated.

    Attributes:
        image: HDU0 pixels, 2-D native-endian float32, nanomaggies, shape ``(rows, columns)``.
        wcs: celestial WCS of ``image`` built from ``header`` (0-based pixels via ``world_to_pixel``).
        header: the primary header.
        band: one of u, g, r, i, z.
        field_id: the field the frame belongs to.
        path: the file it was read from.
        file: the file on disk as read: ``{"name", "bytes", "sha256"}`` (checksum of the compressed bytes).
    """

    image: np.ndarray
    wcs: WCS
    header: fits.Header
    band: str
    field_id: FieldId
    path: Path
    file: dict[str, Any] = field(default_factory=dict)


def read_frame(path: str | Path, min_finite_fraction: float = DEFAULT_MIN_FINITE_FRACTION) -> Frame:
    """Read and validate an SDSS frame, compressed (``.bz2``, ``.gz``) or not.

    Band and field come from the file name when it is a standard frame name, and must then agree with the
    header (FILTER; RUN, CAMCOL and FRAME, see :data:`FRAME_OFFSET`); otherwise they come from the header.

    Args:
        path: the frame file.
        min_finite_fraction: smallest accepted fraction of finite (not NaN or inf) pixels.

    Returns:
        The frame, its image converted once to native-endian float32.

    Raises:
        InputFileError: naming the file, if it is unreadable, truncated or not FITS, if HDU0 is not a 2-D
            float image, has no celestial WCS or too few finite pixels, or if band or field are unknown
            or contradict the file name.
    """
    path = Path(path)
    # One read of the file gives the pixels and the checksum ingest records: no second pass over it.
    payload, record = read_payload(path)
    with parse_hdul(payload, path) as hdul:
        header = hdul[0].header
        image = _image(hdul[0].data, path)
    band, field_id = _band_and_field(header, path)
    wcs = frame_wcs(header, path)
    _check_finite(image, min_finite_fraction, path)
    return Frame(image=image, wcs=wcs, header=header, band=band, field_id=field_id, path=path, file=record)


def read_frame_header(path: str | Path) -> fits.Header:
    """Read the primary header of a frame, or a standalone text header (``.hdr``).

    Args:
        path: a FITS file (compressed or not), or a text file of FITS cards one per line
            (as written by ``Header.totextfile``).

    Returns:
        The primary header; the pixels are not parsed.

    Raises:
        InputFileError: naming the file, if it is unreadable, truncated, not FITS or holds no header.
    """
    path = Path(path)
    if path.suffix.lower() in _TEXT_HEADER_SUFFIXES:
        return _read_text_header(path)
    payload = read_bytes(path)
    check_fits_bytes(payload, path)
    try:
        return fits.Header.fromfile(io.BytesIO(payload))
    except Exception as exc:  # astropy raises OSError, ValueError and more on broken cards
        raise InputFileError(path, f"primary header is broken ({exc})") from exc


def frame_wcs(header: fits.Header, path: str | Path = "<header>") -> WCS:
    """Build the celestial WCS of a frame from its header.

    Args:
        header: a frame's primary header (or any header with a celestial WCS).
        path: the file the header came from, for error messages.

    Returns:
        The 2-D celestial WCS; its ``pixel_shape`` is ``(NAXIS1, NAXIS2)`` where the header has them.

    Raises:
        InputFileError: if the header has no WCS (no CTYPE, CRVAL or CD/CDELT), a non-celestial one,
            or one whose pixel scale is not finite and positive.
    """
    missing = [key for key in ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2") if key not in header]
    if missing or not ("CD1_1" in header or "CDELT1" in header):
        detail = ", ".join(missing) if missing else "CD1_1/CDELT1"
        raise InputFileError(path, f"has no WCS (header lacks {detail})")
    try:
        # SDSS headers carry the deprecated RADECSYS and a DATE-OBS that astropy "fixes" with a warning
        # on every read; the fixes are harmless, the warnings only noise.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, naxis=2)
    except Exception as exc:  # astropy/wcslib raise several types on malformed WCS keywords
        raise InputFileError(path, f"has a malformed WCS ({exc})") from exc
    if not wcs.has_celestial:
        raise InputFileError(path, f"WCS is not celestial (CTYPE {list(wcs.wcs.ctype)})")
    scales = proj_plane_pixel_scales(wcs)
    if not (np.all(np.isfinite(scales)) and np.all(scales > 0)):
        raise InputFileError(path, f"WCS pixel scale is degenerate ({scales} deg/pixel)")
    return wcs


def _read_text_header(path: Path) -> fits.Header:
    try:
        header = fits.Header.fromtextfile(path)
    except FileNotFoundError as exc:
        raise InputFileError(path, "file does not exist") from exc
    except Exception as exc:  # astropy raises OSError, ValueError, UnicodeDecodeError on non-header text
        raise InputFileError(path, f"is not a FITS text header ({exc})") from exc
    # fromtextfile turns any line of text into a card, so insist on a keyword every image header has.
    if "NAXIS" not in header:
        raise InputFileError(path, "is not a FITS text header (no NAXIS card)")
    return header


def _image(data: np.ndarray | None, path: Path) -> np.ndarray:
    """HDU0 data as native-endian float32, copied once (FITS stores big-endian)."""
    if data is None:
        raise InputFileError(path, "HDU0 holds no image")
    if data.ndim != 2:
        raise InputFileError(path, f"HDU0 image is {data.ndim}-D (shape {data.shape}), expected 2-D")
    if data.dtype.kind != "f":
        raise InputFileError(path, f"HDU0 image has dtype {data.dtype}, expected floating point")
    if data.size == 0:
        raise InputFileError(path, f"HDU0 image is empty (shape {data.shape})")
    return data.astype(np.float32, copy=False)


def _check_finite(image: np.ndarray, min_fraction: float, path: Path) -> None:
    fraction = float(np.count_nonzero(np.isfinite(image))) / image.size
    if fraction < min_fraction:
        raise InputFileError(
            path, f"only {fraction:.1%} of pixels are finite, fewer than the {min_fraction:.0%} required"
        )


def _band_and_field(header: fits.Header, path: Path) -> tuple[str, FieldId]:
    """Band and field: from a standard frame name (checked against the header), else from the header."""
    try:
        name_band, name_field = parse_frame_name(path.name)
    except FieldIdError:  # not a standard frame name: the header alone says what this is
        return _header_band_and_field(header, path)
    except ValueError as exc:  # a frame name with an unknown band letter
        raise InputFileError(path, str(exc)) from exc
    header_band = _header_band(header, path)
    if header_band is not None and header_band != name_band:
        raise InputFileError(
            path, f"band mismatch: the file name says {name_band!r}, header FILTER says {header_band!r}"
        )
    _check_header_field(header, name_band, name_field, path)
    return name_band, name_field


def _header_band_and_field(header: fits.Header, path: Path) -> tuple[str, FieldId]:
    band = _header_band(header, path)
    if band is None:
        raise InputFileError(path, "is not a standard frame name and its header has no FILTER keyword")
    numbers = {key: _header_int(header, key, path) for key in ("RUN", "CAMCOL", "FRAME")}
    missing = [key for key, value in numbers.items() if value is None]
    if missing:
        raise InputFileError(
            path, f"is not a standard frame name and its header lacks {', '.join(missing)} to name the field"
        )
    try:
        field_id = FieldId(numbers["RUN"], numbers["CAMCOL"], numbers["FRAME"] - FRAME_OFFSET[band])
    except FieldIdError as exc:
        raise InputFileError(path, f"header names an invalid field ({exc})") from exc
    return band, field_id


def _header_band(header: fits.Header, path: Path) -> str | None:
    """The FILTER keyword as a band letter, None if absent; an error if it is not u, g, r, i or z."""
    if "FILTER" not in header:
        return None
    band = str(header["FILTER"]).strip()
    if band not in BANDS:
        raise InputFileError(
            path, f"unknown band: header FILTER is {band!r}, SDSS bands are {', '.join(BANDS)}"
        )
    return band


def _header_int(header: fits.Header, key: str, path: Path) -> int | None:
    if key not in header:
        return None
    value = header[key]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputFileError(path, f"header {key} = {value!r} is not an integer")
    return int(value)


def _check_header_field(header: fits.Header, band: str, field_id: FieldId, path: Path) -> None:
    """Header RUN, CAMCOL and FRAME, where present, must describe the field in the file name."""
    expected = {"RUN": field_id.run, "CAMCOL": field_id.camcol, "FRAME": field_id.field + FRAME_OFFSET[band]}
    for key, want in expected.items():
        got = _header_int(header, key, path)
        if got is not None and got != want:
            raise InputFileError(
                path, f"field mismatch: the file name says {field_id} ({key} {want}), header {key} is {got}"
            )
