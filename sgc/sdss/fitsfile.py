"""Reading FITS files whole from disk, decompressing ``.bz2`` and ``.gz`` once, with clear errors.

Every file that enters sgc goes through :func:`read_bytes` and :func:`open_hdul`, so a truncated download,
an HTML error page saved under a ``.fits`` name or a file that is not FITS at all is reported the same way
everywhere: an :class:`~sgc.errors.InputFileError` naming the file.
"""

from __future__ import annotations

import bz2
import hashlib
import zlib
from pathlib import Path
from typing import Any

from astropy.io import fits

from sgc.errors import InputFileError

_BZ2_MAGIC = b"BZh"
_GZIP_MAGIC = b"\x1f\x8b"
_FITS_MAGIC = b"SIMPLE  ="
_FITS_BLOCK = 2880


# A header longer than this is not a header (SDSS frames have 3-4 blocks of header, calibObj files ~30).
_MAX_HEADER_BLOCKS = 1000
# Decompressed bytes asked for at once while the FITS structure's size is not yet known.
_STEP = 1 << 22
# Larger than any SDSS file (a frame is 12 MB, a calibObj sweep a few hundred): a header announcing more
# is not believed.
_MAX_FITS_BYTES = 4 << 30


def decompress(data: bytes, path: str | Path) -> bytes:
    """Return the payload of ``data``, decompressing a complete bzip2 or gzip stream.

    The compression is told from the magic bytes, not the file name. A compressed payload is decompressed
    only as far as the FITS headers in it announce: its first block must start a FITS header, and
    decompressing stops, with an error, where the stream holds more than the headers announce (a few
    hundred bytes of bzip2 can hold gigabytes of zeros), so memory stays bounded by the FITS file's size.

    Args:
        data: the file's bytes.
        path: the file the bytes came from, for error messages.

    Raises:
        InputFileError: if the stream is truncated or corrupt, does not hold FITS, or holds more than its
            FITS headers announce.
    """
    if data.startswith(_BZ2_MAGIC):
        return _inflate(_Bunzip2(), data, path, "bzip2")
    if data.startswith(_GZIP_MAGIC):
        return _inflate(_Gunzip(), data, path, "gzip")
    return data


class _Bunzip2:
    """bzip2 decompression in bounded steps."""

    errors = (OSError, ValueError, EOFError)

    def __init__(self) -> None:
        self._d = bz2.BZ2Decompressor()

    def step(self, data: bytes, max_length: int) -> bytes:
        return self._d.decompress(data, max_length)

    @property
    def eof(self) -> bool:
        return self._d.eof


class _Gunzip:
    """gzip decompression in bounded steps (zlib with a gzip header; zlib keeps unread input itself)."""

    errors = (zlib.error, OSError, EOFError)

    def __init__(self) -> None:
        self._d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def step(self, data: bytes, max_length: int) -> bytes:
        return self._d.decompress(self._d.unconsumed_tail + data, max_length)

    @property
    def eof(self) -> bool:
        return self._d.eof


def _inflate(decompressor: _Bunzip2 | _Gunzip, data: bytes, path: str | Path, kind: str) -> bytes:
    """Decompress ``data`` no further than the FITS structure inside announces."""
    out = bytearray()
    pending = data
    while True:
        if len(out) >= len(_FITS_MAGIC) and not out.startswith(_FITS_MAGIC):
            check_fits_bytes(bytes(out[:512]), path)  # names what it is (an HTML page, say)
        bound, known = fits_extent(out)
        if len(out) > bound:
            what = f"announce {bound} bytes" if known else "are not complete by then"
            raise InputFileError(
                path,
                f"{kind} stream holds more than a FITS file: over {len(out)} bytes decompressed, its FITS "
                f"headers {what} (a decompression bomb, or not FITS)",
            )
        if decompressor.eof:
            break
        # One block past the announced end, to see whether the stream goes on beyond it.
        want = (bound - len(out) + _FITS_BLOCK) if known else _STEP
        try:
            chunk = decompressor.step(pending, max(want, _FITS_BLOCK))
        except decompressor.errors as exc:
            raise InputFileError(path, f"{kind} stream is corrupt ({exc})") from exc
        pending = b""
        if not chunk and not decompressor.eof:
            raise InputFileError(path, f"{kind} stream is truncated (no end-of-stream marker)")
        out += chunk
    return bytes(out)


def fits_extent(payload: bytes | bytearray) -> tuple[int, bool]:
    """How many bytes the FITS structure at the start of ``payload`` needs, as far as its headers tell.

    Walks the HDUs: each header (2880-byte blocks up to the ``END`` card) announces its data's size. Where
    the next HDU does not start with ``XTENSION`` the file ends. Where a header is not yet complete in
    ``payload``, the bound is one block past what is there.

    Returns:
        ``(bytes, known)``: the size of the whole structure and True when every header was complete; else
        a lower bound (what a larger payload must at least reach) and False.
    """
    view = memoryview(payload)
    pos = 0
    while True:
        if len(view) <= pos:
            # An HDU may start here: the file either ends or goes on; ask for one more block to tell.
            return pos + (_FITS_BLOCK if pos == 0 else 0), pos > 0
        first = bytes(view[pos : pos + 9])
        expected = _FITS_MAGIC if pos == 0 else b"XTENSION="
        if len(first) < 9:
            return pos + _FITS_BLOCK, False
        if first != expected:
            return pos, True
        cards, blocks = _header_cards(view, pos)
        if cards is None:
            if blocks > _MAX_HEADER_BLOCKS:
                return pos + _MAX_HEADER_BLOCKS * _FITS_BLOCK, True
            return pos + (blocks + 1) * _FITS_BLOCK, False
        size = _data_bytes(cards)
        pos += blocks * _FITS_BLOCK + -(-size // _FITS_BLOCK) * _FITS_BLOCK
        if pos > _MAX_FITS_BYTES:
            return _MAX_FITS_BYTES, True


def _header_cards(view: memoryview, pos: int) -> tuple[dict[str, str] | None, int]:
    """The header starting at ``pos``: its cards up to ``END`` and its length in blocks, or None and the
    blocks present when ``END`` is not there yet."""
    cards: dict[str, str] = {}
    blocks = 0
    while pos + (blocks + 1) * _FITS_BLOCK <= len(view) and blocks <= _MAX_HEADER_BLOCKS:
        block = bytes(view[pos + blocks * _FITS_BLOCK : pos + (blocks + 1) * _FITS_BLOCK])
        blocks += 1
        for k in range(0, _FITS_BLOCK, 80):
            key = block[k : k + 8].decode("ascii", "replace").strip()
            if key == "END":
                return cards, blocks
            if block[k + 8 : k + 10] == b"= ":
                cards[key] = block[k + 10 : k + 80].split(b"/")[0].decode("ascii", "replace").strip()
    return None, blocks


def _data_bytes(cards: dict[str, str]) -> int:
    """Bytes of data an HDU's header announces: |BITPIX|/8 * GCOUNT * (PCOUNT + NAXIS1 * ... * NAXISn)."""

    def number(key: str, default: int) -> int:
        try:
            return int(float(cards.get(key, default)))
        except ValueError:
            return default

    naxis = number("NAXIS", 0)
    if naxis <= 0:
        return 0
    pixels = 1
    for n in range(1, naxis + 1):
        pixels *= max(number(f"NAXIS{n}", 0), 0)
    return (
        abs(number("BITPIX", 8)) // 8 * max(number("GCOUNT", 1), 1) * (max(number("PCOUNT", 0), 0) + pixels)
    )


def read_bytes(path: str | Path) -> bytes:
    """Read a file and return its decompressed payload.

    Raises:
        InputFileError: if the file is missing, empty, or its compressed stream is incomplete.
    """
    return read_payload(path)[0]


def read_payload(path: str | Path) -> tuple[bytes, dict[str, Any]]:
    """Read a file once: its decompressed payload, and the size and sha256 of the bytes on disk.

    The compressed bytes are read in one call, hashed in memory and decompressed from there, so a file
    is read from disk once even where its checksum is recorded (``sgc ingest``). Python's bz2 (libbz2)
    decodes from memory; indexed_bzip2, which read the file itself (a second read for the checksum), was
    also slower on one core here: 3.1 vs 3.8 s of CPU per field of five simulated frames (best of 3).

    Returns:
        ``(payload, record)``: the record is ``{"name", "bytes", "sha256"}`` of the file as on disk.

    Raises:
        InputFileError: if the file is missing, empty, or its compressed stream is incomplete.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise InputFileError(path, "file does not exist") from exc
    except OSError as exc:
        raise InputFileError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if not data:
        raise InputFileError(path, "file is empty")
    record = {"name": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return decompress(data, path), record


def check_fits_bytes(payload: bytes, path: str | Path) -> None:
    """Raise a clear error if ``payload`` is not the start of a FITS file.

    Recognises the common failure of a download that saved an HTML error page under a FITS name.
    """
    if payload.startswith(_FITS_MAGIC):
        return
    head = payload[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        raise InputFileError(path, "is an HTML/XML page, not FITS (a saved server error page?)")
    raise InputFileError(path, "is not a FITS file (it does not start with 'SIMPLE  =')")


def open_hdul(path: str | Path) -> fits.HDUList:
    """Open a FITS file, compressed or not, fully in memory.

    The file is decompressed once here; astropy then parses from memory, which is about twice as fast
    as letting astropy decompress ``.bz2`` itself.

    Raises:
        InputFileError: if the file is unreadable, truncated, or not FITS.
    """
    return parse_hdul(read_bytes(path), path)


def parse_hdul(payload: bytes, path: str | Path) -> fits.HDUList:
    """Parse a FITS file's decompressed bytes (from :func:`read_payload`), checked as :func:`open_hdul` does.

    Raises:
        InputFileError: naming ``path`` if the bytes are truncated or not FITS.
    """
    check_fits_bytes(payload, path)
    if len(payload) % _FITS_BLOCK:
        # Every FITS file is whole 2880-byte blocks; anything else was cut short (or padded wrongly).
        raise InputFileError(
            path, f"FITS structure is broken or truncated ({len(payload)} bytes, not whole 2880-byte blocks)"
        )
    try:
        hdul = fits.HDUList.fromstring(payload)
        hdul.verify("silentfix")
        # astropy maps image data lazily: touch it now so a file cut inside its pixels fails here, naming
        # the file, rather than later in whoever reads them. Tables are left to their readers: parsing
        # them costs a tenth of a frame's read time.
        for hdu in hdul:
            if hdu.is_image:
                _ = hdu.data
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError, VerifyError and more
        raise InputFileError(path, f"FITS structure is broken or truncated ({exc})") from exc
    if len(hdul) == 0:
        raise InputFileError(path, "FITS file holds no HDU")
    return hdul
