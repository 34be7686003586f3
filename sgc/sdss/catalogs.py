"""Reading SDSS object catalogues into one table shape.

Three kinds of file are read, told apart by their content:

- ``calibObj``: the photometric sweeps (``calibObj-RRRRRR-C-{star,gal}.fits.gz``), one row per primary object
  with ``RA``, ``DEC``, ``OBJC_TYPE``, ``PSF_FWHM``, ``PSFFLUX``, ``MODELFLUX``, ``COLC``, ``ROWC`` ...
- ``photoObj``: the per-field photometric catalogues (``OBJID``, ``TYPE`` and the columns above).
- ``table``: any FITS table with ``RA``, ``DEC`` and ``OBJC_TYPE`` (such as the sample's
  ``catalog-003918-3-0213.fits``).

Whatever the kind, :func:`read_catalog` returns an :class:`astropy.table.Table` with the columns

- ``ra``, ``dec``: float64, degrees.
- ``class``: str, ``'star'`` or ``'galaxy'``.
- ``field``: str, ``'RRRRRR-C-FFFF'`` from the RUN, CAMCOL, FIELD columns, ``''`` without them.
- ``psf_fwhm``: float32 (n, 5), PSF FWHM in arcsec per band u, g, r, i, z; NaN where absent.
- ``psf_mag``, ``model_mag``: float32 (n, 5), magnitudes per band; NaN where absent or flux not positive.
- ``colc_r``, ``rowc_r``: float64, 0-based column and row of the object in its r frame (astropy's
  ``world_to_pixel`` convention); NaN where the file has no positions.
- ``moment_fwhm_r``: float32, arcsec, the FWHM of a Gaussian with the object's r-band second moment
  ``M_RR_CC`` (a size for galaxies); NaN where the file has none or it was not measured.

Class comes from ``OBJC_TYPE`` (6 star, 3 galaxy). Objects of any other type (0 unknown, 1 cosmic ray,
2 defect, 4 ghost, 5 known object, 7 trail, 8 sky) are dropped: they are neither a star nor a galaxy to
learn from. A calibObj file without ``OBJC_TYPE`` takes its class from its name (``...-star...``,
``...-gal...``). The number of rows dropped is kept in ``table.meta['dropped']``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from astropy.io import fits
from astropy.table import Table, vstack

from sgc.errors import InputFileError
from sgc.sdss.fitsfile import open_hdul
from sgc.sdss.names import BANDS, PIXEL_SCALE_ARCSEC, FieldId, FieldIdError

log = logging.getLogger(__name__)

CatalogFormat = Literal["calibObj", "photoObj", "table"]
CATALOG_FORMATS: tuple[str, ...] = ("calibObj", "photoObj", "table")

STAR_TYPE = 6
GALAXY_TYPE = 3
COLUMNS: tuple[str, ...] = (
    "ra",
    "dec",
    "class",
    "field",
    "psf_fwhm",
    "psf_mag",
    "model_mag",
    "colc_r",
    "rowc_r",
    "moment_fwhm_r",
)
# FWHM of a Gaussian in units of its sigma.
_GAUSS_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))

_R_INDEX = BANDS.index("r")
# Sweep cut-outs keep the kind in their name after extra text (calibObj-004510-4-star-fields29-31.fits).
_CALIBOBJ_KIND = re.compile(r"^calibObj-\d{6}-\d-(star|gal)(?![a-z])", re.IGNORECASE)


def nanomaggies_to_mag(flux: np.ndarray) -> np.ndarray:
    """Pogson magnitudes of fluxes in nanomaggies (zero point 22.5), NaN where a flux is not positive."""
    flux = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, 22.5 - 2.5 * np.log10(flux), np.nan)


def read_catalog(path: str | Path, kind: CatalogFormat | None = None) -> Table:
    """Read a calibObj, photoObj or plain FITS catalogue into the common table shape.

    Args:
        path: the catalogue (``.fits``, ``.fits.gz`` or ``.fits.bz2``); the first table HDU is read.
        kind: ``'calibObj'``, ``'photoObj'`` or ``'table'``; None detects it with :func:`detect_kind`.
            Only a calibObj may take its class from its name when it has no OBJC_TYPE column.

    Returns:
        The table described in the module docstring, stars and galaxies only, in file order.
        ``meta`` holds ``path``, ``kind``, ``dropped`` (rows of other object types, and stars and
        galaxies without a finite RA/DEC) and ``unplaced`` (those last, which are logged as a warning).

    Raises:
        InputFileError: naming the file, if it is unreadable or not FITS, holds no table, lacks RA/DEC,
            or has no object class (no OBJC_TYPE and no star/gal in a calibObj name).
        ValueError: if ``kind`` is not one of the formats.
    """
    path = Path(path)
    if kind is not None and kind not in CATALOG_FORMATS:
        raise ValueError(f"unknown catalogue kind {kind!r}: expected one of {', '.join(CATALOG_FORMATS)}")
    with open_hdul(path) as hdul:
        data = _first_table(hdul, path)
        columns = {name.upper(): name for name in data.columns.names}
        missing = [name for name in ("RA", "DEC") if name not in columns]
        if missing:
            raise InputFileError(path, f"catalogue lacks column(s) {', '.join(missing)}")
        kind = kind or detect_kind(columns, path)
        object_type = _object_type(data, columns, kind, path)
        keep = (object_type == STAR_TYPE) | (object_type == GALAXY_TYPE)
        placed = _placed(data, columns)
        unplaced = int(np.count_nonzero(keep & ~placed))
        if unplaced:
            # One rule for every stage that reads a catalogue: an object without a position on the sky
            # cannot be painted, counted or matched, so it is dropped here, and said so.
            log.warning("%s: %d star/galaxy row(s) without a finite RA/DEC dropped", path, unplaced)
        keep &= placed
        table = _catalog_table(data, columns, keep, object_type, path)
    table.meta.update(
        path=str(path), kind=kind, dropped=int(keep.size - np.count_nonzero(keep)), unplaced=unplaced
    )
    return table


def _placed(data: fits.FITS_rec, columns: dict[str, str]) -> np.ndarray:
    """Per row, whether RA and DEC are finite and DEC lies within [-90, 90] degrees."""
    ra = np.asarray(_column(data, columns, "RA"), dtype=np.float64)
    dec = np.asarray(_column(data, columns, "DEC"), dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)


def read_catalogs(paths: Iterable[str | Path]) -> Table:
    """Read several catalogues and stack them into one table.

    Args:
        paths: catalogue files, of any kind :func:`read_catalog` reads.

    Returns:
        One table in the common shape; ``meta`` holds ``paths`` and the total ``dropped``.

    Raises:
        InputFileError: for the first file that cannot be read.
    """
    paths = list(paths)
    key = _files_state(paths)
    if key is not None and key == _LAST_READ[0]:
        # The same files, unchanged since: the stages of one run (stats, label, the split report, evaluate)
        # all read the whole catalogue, which grows with the survey; it is parsed once per run instead.
        return _LAST_READ[1].copy()
    tables = [read_catalog(path) for path in paths]
    if not tables:
        return _empty_catalog()
    stacked = _once_each(vstack(tables, join_type="exact", metadata_conflicts="silent"), tables)
    stacked.meta = {
        "paths": [t.meta["path"] for t in tables],
        "dropped": sum(t.meta["dropped"] for t in tables),
    }
    if key is not None:
        _LAST_READ[:] = [key, stacked.copy()]
    return stacked


def _once_each(stacked: Table, tables: list[Table]) -> Table:
    """The rows of several catalogues with each object once: a row with the RA, DEC and class of an
    earlier row (the same file under two names, or two catalogues of one field) is dropped, and said so."""
    if len(tables) < 2 or not len(stacked):
        return stacked
    keys = np.rec.fromarrays(
        [np.asarray(stacked["ra"]), np.asarray(stacked["dec"]), np.asarray(stacked["class"])]
    )
    _, first = np.unique(keys, return_index=True)
    if len(first) == len(stacked):
        return stacked
    source = np.repeat(np.arange(len(tables)), [len(t) for t in tables])
    keep = np.zeros(len(stacked), dtype=bool)
    keep[first] = True
    repeated = sorted({tables[k].meta["path"] for k in np.unique(source[~keep])})
    log.warning(
        "%d catalogue row(s) repeat an object (same RA, DEC and class) of an earlier file and are counted "
        "once: %s",
        int((~keep).sum()),
        ", ".join(repeated),
    )
    return stacked[keep]


# The last catalogue read by read_catalogs: the state of its files, and the table (a copy, never handed out).
_LAST_READ: list[Any] = [None, None]


def _files_state(paths: list[str | Path]) -> tuple | None:
    """Each file's resolved path, size and modification time; None where one cannot be read (the read
    then names it) or there is none."""
    try:
        states = []
        for path in paths:
            stat = Path(path).stat()
            states.append((str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns))
    except OSError:
        return None
    return tuple(states) or None


def select_field(table: Table, field_id: FieldId | str) -> Table:
    """Rows of ``table`` belonging to one field.

    Args:
        table: a catalogue in the common shape.
        field_id: the field, as a :class:`FieldId` or text such as ``'3918-3-213'``.

    Returns:
        The matching rows (a copy).
    """
    return table[table["field"] == str(FieldId.parse(field_id))]


def detect_kind(columns: Iterable[str], path: str | Path) -> CatalogFormat:
    """Tell a catalogue's kind from its column names (any case) and file name.

    Args:
        columns: the table's column names.
        path: the file, whose name marks calibObj sweeps.

    Returns:
        ``'photoObj'`` if there is an OBJID column, ``'calibObj'`` for a calibObj name or a sweep's
        PSF_FWHM and PSFFLUX columns, ``'table'`` otherwise.
    """
    names = {name.upper() for name in columns}
    if "OBJID" in names:
        return "photoObj"
    if Path(path).name.lower().startswith("calibobj") or {"PSF_FWHM", "PSFFLUX"} <= names:
        return "calibObj"
    return "table"


def _first_table(hdul: fits.HDUList, path: Path) -> fits.FITS_rec:
    for hdu in hdul:
        if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
            if hdu.data is None:
                raise InputFileError(path, f"table HDU {hdu.name or hdul.index(hdu)} holds no rows")
            return hdu.data
    raise InputFileError(path, "holds no table HDU (is it an image, not a catalogue?)")


def _column(data: fits.FITS_rec, columns: dict[str, str], name: str) -> np.ndarray | None:
    """Column ``name`` (any case) as a native-endian array, None if absent."""
    actual = columns.get(name)
    if actual is None:
        return None
    values = np.asarray(data[actual])
    return values.astype(values.dtype.newbyteorder("="), copy=False)


def _object_type(data: fits.FITS_rec, columns: dict[str, str], kind: str, path: Path) -> np.ndarray:
    """OBJC_TYPE per row; for a calibObj without it, the type its name promises."""
    object_type = _column(data, columns, "OBJC_TYPE")
    if object_type is not None:
        return object_type.astype(np.int64, copy=False)
    match = _CALIBOBJ_KIND.match(path.name) if kind == "calibObj" else None
    if match is None:
        raise InputFileError(
            path,
            "has no OBJC_TYPE column, and no calibObj name (calibObj-RRRRRR-C-star|gal) to tell the class",
        )
    fill = STAR_TYPE if match.group(1).lower() == "star" else GALAXY_TYPE
    return np.full(len(data), fill, dtype=np.int64)


def _catalog_table(
    data: fits.FITS_rec, columns: dict[str, str], keep: np.ndarray, object_type: np.ndarray, path: Path
) -> Table:
    n = int(np.count_nonzero(keep))
    ra = _column(data, columns, "RA")[keep].astype(np.float64)
    dec = _column(data, columns, "DEC")[keep].astype(np.float64)
    colc, rowc = _r_pixel_position(data, columns, n, keep, path)
    return Table(
        {
            "ra": ra,
            "dec": dec,
            "class": np.where(object_type[keep] == STAR_TYPE, "star", "galaxy"),
            "field": _field_names(data, columns, keep, path),
            "psf_fwhm": _per_band(data, columns, "PSF_FWHM", n, keep, path),
            "psf_mag": _magnitudes(data, columns, "PSF", n, keep, path),
            "model_mag": _magnitudes(data, columns, "MODEL", n, keep, path),
            "colc_r": colc,
            "rowc_r": rowc,
            "moment_fwhm_r": _moment_fwhm_r(data, columns, n, keep, path),
        }
    )


def _moment_fwhm_r(
    data: fits.FITS_rec, columns: dict[str, str], n: int, keep: np.ndarray, path: Path
) -> np.ndarray:
    """FWHM (arcsec) of a Gaussian with the r-band ``M_RR_CC``, NaN where absent or not measured."""
    moment = _per_band(data, columns, "M_RR_CC", n, keep, path)[:, _R_INDEX].astype(np.float64)
    # M_RR_CC is <x^2 + y^2> in pixels^2, which is 2 sigma^2 for a Gaussian; -9999 means not measured.
    with np.errstate(invalid="ignore"):
        fwhm = np.where(moment > 0, _GAUSS_FWHM * np.sqrt(moment / 2.0) * PIXEL_SCALE_ARCSEC, np.nan)
    return fwhm.astype(np.float32)


def _empty_catalog() -> Table:
    bands = np.empty((0, len(BANDS)), dtype=np.float32)
    empty = np.empty(0, dtype=np.float64)
    return Table(
        {
            "ra": empty,
            "dec": empty,
            "class": np.empty(0, dtype="<U6"),
            "field": np.empty(0, dtype="<U13"),
            "psf_fwhm": bands,
            "psf_mag": bands,
            "model_mag": bands,
            "colc_r": empty,
            "rowc_r": empty,
            "moment_fwhm_r": np.empty(0, dtype=np.float32),
        },
        meta={"paths": [], "dropped": 0},
    )


def _per_band(
    data: fits.FITS_rec, columns: dict[str, str], name: str, n: int, keep: np.ndarray, path: Path
) -> np.ndarray:
    """A (n, 5) per-band column as float32, all NaN where the file lacks it."""
    values = _column(data, columns, name)
    if values is None:
        return np.full((n, len(BANDS)), np.nan, dtype=np.float32)
    if values.shape[1:] != (len(BANDS),):
        raise InputFileError(
            path, f"column {name} has shape {values.shape}, expected one value per band (n, 5)"
        )
    return values[keep].astype(np.float32)


def _magnitudes(
    data: fits.FITS_rec, columns: dict[str, str], prefix: str, n: int, keep: np.ndarray, path: Path
) -> np.ndarray:
    """Pogson magnitudes from ``{prefix}FLUX`` (nanomaggies), else the ``{prefix}MAG`` column.

    Fluxes are preferred where both exist: photoObj MAG columns are asinh magnitudes, and converting
    fluxes gives every catalogue kind the same definition. Non-positive fluxes have no magnitude (NaN).
    """
    if f"{prefix}FLUX" in columns:
        flux = _per_band(data, columns, f"{prefix}FLUX", n, keep, path)
        return nanomaggies_to_mag(flux).astype(np.float32)
    return _per_band(data, columns, f"{prefix}MAG", n, keep, path)


def _r_pixel_position(
    data: fits.FITS_rec, columns: dict[str, str], n: int, keep: np.ndarray, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """0-based (column, row) of each object in its r frame, NaN where the file has no positions.

    ``COLC_R``/``ROWC_R`` (the sample catalogue) are already 0-based. The photo pipeline's ``COLC``/``ROWC``
    arrays put the centre of the first pixel at 0.5 (checked: calibObj minus the frame WCS is -0.51 px
    in both axes), so half a pixel is taken off to match astropy's ``world_to_pixel``.
    """
    if "COLC_R" in columns and "ROWC_R" in columns:
        colc = _column(data, columns, "COLC_R")[keep].astype(np.float64)
        rowc = _column(data, columns, "ROWC_R")[keep].astype(np.float64)
        return colc, rowc
    if "COLC" in columns and "ROWC" in columns:
        colc = _per_band(data, columns, "COLC", n, keep, path)[:, _R_INDEX].astype(np.float64) - 0.5
        rowc = _per_band(data, columns, "ROWC", n, keep, path)[:, _R_INDEX].astype(np.float64) - 0.5
        return colc, rowc
    return np.full(n, np.nan), np.full(n, np.nan)


def _field_names(data: fits.FITS_rec, columns: dict[str, str], keep: np.ndarray, path: Path) -> np.ndarray:
    """'RRRRRR-C-FFFF' per row from RUN, CAMCOL, FIELD; '' for every row if any of them is absent."""
    parts = [_column(data, columns, name) for name in ("RUN", "CAMCOL", "FIELD")]
    n = int(np.count_nonzero(keep))
    if any(part is None for part in parts):
        return np.full(n, "", dtype="<U13")
    if n == 0:
        return np.empty(0, dtype="<U13")
    triples = np.stack([part[keep].astype(np.int64) for part in parts], axis=1)
    # A sweep holds a few hundred fields but tens of thousands of rows: format each field once.
    unique, inverse = np.unique(triples, axis=0, return_inverse=True)
    try:
        names = np.array([str(FieldId(*map(int, triple))) for triple in unique], dtype="<U13")
    except FieldIdError as exc:
        raise InputFileError(path, f"RUN/CAMCOL/FIELD columns hold an invalid field ({exc})") from exc
    return names[inverse.reshape(-1)]
