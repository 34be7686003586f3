"""Simulated SDSS imaging: frames and calibObj catalogues in the SAS layout, with the truth in the catalogue.

:func:`simulate` writes ``n_fields`` consecutive fields, spread over one or more runs, as a mirror of the
Science Archive Server would hold them::

    photoObj/frames/301/RUN/CAMCOL/frame-{u,g,r,i,z}-RRRRRR-C-FFFF.fits.bz2
    sweeps/dr13_final/301/calibObj-RRRRRR-C-{star,gal}.fits.gz

Frames have the real files' four HDUs (image in nanomaggies with its own TAN WCS, calibration vector, sky
grid, astrometry), the real header conventions, and pixels stored as SDSS stores them (floats kept to 10
significant bits). Each band is rendered through its own WCS, several pixels off the others as in real
frames, so aligning on the WCS is the right thing downstream. Consecutive fields overlap by 128 rows; a
source there appears in both frames and once in the catalogue. Frames also carry what the real ones do
beyond sources and noise: saturated stars with bleed trails along the scan, the few cosmic rays photo
leaves, and a faint residual sky gradient, none of them catalogued (a saturated star stays a catalogued
star at its true position). See :mod:`sgc.sim.geometry`, :mod:`sgc.sim.sources` and :mod:`sgc.sim.render`
for the models and where their numbers come from.

The same seed gives the same bytes: every random draw comes from a generator keyed by (seed, run, camcol,
field[, band]) or, for what the shared rows of two fields must agree on (noise, cosmic rays), by block of
scan rows, so fields render independently, in any order, in parallel. Nothing reads the clock.
"""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import io
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from sgc import progress
from sgc.atomic import atomic_write
from sgc.config import SimulateConfig, config_digest, save_config
from sgc.sdss.frames import FRAME_OFFSET
from sgc.sdss.names import BANDS, RERUN, FieldId, calibobj_path
from sgc.sim.geometry import (
    DEFAULT_STRIPE,
    FRAME_SHAPE,
    NODE,
    OVERLAP_ROWS,
    ScanGeometry,
    draw_band_grids,
    gc_to_eq,
)
from sgc.sim.refraction import Distortion, Refraction
from sgc.sim.render import (
    GAIN,
    MAX_STAMP_RADIUS,
    NMGY,
    SKY_SIGMA,
    Charge,
    FrameConditions,
    RunConditions,
    bleed_trails,
    cosmic_rays,
    psf_flux_ratio,
    render_band,
    run_conditions,
)
from sgc.sim.sources import (
    GALAXY_TYPE,
    STAR_TYPE,
    Sources,
    draw_segment,
    segment_rng,
)

MARKER = ".sgc-simulate.json"  # written last into a simulated mirror: its settings and fields
FIRST_RUN = 9001  # simulated runs are numbered above every real SDSS imaging run (the last is 8162)
DEFAULT_CAMCOL = 3
DEFAULT_START_FIELD = 11  # real runs start at field 11 or so
ROW_SECONDS = 0.026322  # drift-scan time per row, seconds (header C_OBS, in microseconds)
CAMROW = {"r": 1, "i": 2, "u": 3, "z": 4, "g": 5}  # camera row of each filter, as in header CAMROW
_TAI_START = 4.765e9  # TAI seconds (since 1858-11-17) of the first simulated run: late 2009
_RUN_SECONDS = 86400.0  # one simulated run a night
_MANTISSA_MASK = np.uint32(0xFFFFC000)  # keep 9 stored mantissa bits, as the real frames' FLOATCOMPRESS
# HDU3 of the real frames: one asTrans row, these columns and types.
_ASTROMETRY_DTYPE = np.dtype(
    [("RUN", ">i4"), ("RERUN", "S3"), ("CAMCOL", ">i4"), ("FILTER", "S1"), ("NODE", ">f8"), ("INCL", ">f8")]
    + [("NAXIS", ">i4", (2,)), ("FIELD", ">i4")]
    + [(name, ">f8") for name in "ABCDEF"]
    + [(f"{axis}{k}", ">f8") for axis in ("DROW", "DCOL") for k in range(4)]
    + [(name, ">f8") for name in ("CSROW", "CSCOL", "CCROW", "CCCOL", "RICUT", "MJD", "AIRMASS")]
    + [("MUERR", ">f4"), ("NUERR", ">f4")]
)


@dataclass(frozen=True)
class SimRun:
    """One simulated run and camera column: where it scans and what it sees.

    Attributes:
        run: run number.
        camcol: camera column (1-6).
        seed: the simulation's seed.
        stripe: SDSS survey stripe scanned (its great circle; 70 holds the test field 008162-6-0080,
            whose sky simulated fields avoid, see :data:`sgc.sim.geometry.MU_ORIGIN`).
        shape: (rows, columns) of each frame; smaller than SDSS's (1489, 2048) for fast tests.
        refraction: differential chromatic refraction moving each source off its WCS position by its
            colour (:class:`sgc.sim.refraction.Refraction`); None (the default) for none.
        distortion: per-band optical distortion the frames' TAN WCS do not hold
            (:class:`sgc.sim.refraction.Distortion`); None (the default) for none.
    """

    run: int = FIRST_RUN
    camcol: int = DEFAULT_CAMCOL
    seed: int = 0
    stripe: int = DEFAULT_STRIPE
    shape: tuple[int, int] = FRAME_SHAPE
    refraction: Refraction | None = None
    distortion: Distortion | None = None

    def __post_init__(self) -> None:
        FieldId(self.run, self.camcol, 0)  # validates run and camcol
        rows, cols = self.shape
        if rows <= 2 * OVERLAP_ROWS or cols < 16:
            raise ValueError(f"frame shape {self.shape} too small: need more than {2 * OVERLAP_ROWS} rows")

    @cached_property
    def conditions(self) -> RunConditions:
        """The run's seeing, sky and calibration along the scan."""
        return run_conditions(self.seed, self.run, self.camcol)

    @cached_property
    def geometry(self) -> ScanGeometry:
        """The run's scan geometry, band grids drawn from the run's generator."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.run, self.camcol, 1]))
        return ScanGeometry(self.stripe, self.camcol, self.shape, draw_band_grids(rng))

    def field_id(self, field: int) -> FieldId:
        """The identifier of one of the run's fields."""
        return FieldId(self.run, self.camcol, field)

    def sources_near(self, field: int) -> Sources:
        """The sources whose light can reach ``field``: from its own and both neighbours' segments."""
        geometry = self.geometry
        parts = [
            draw_segment(geometry, segment_rng(self.seed, self.run, self.camcol, f), f)
            for f in (field - 1, field, field + 1)
        ]
        sources = Sources.concatenate(parts)
        row = (sources.field - field) * geometry.step + sources.row  # r rows of this frame
        reach = MAX_STAMP_RADIUS + 20  # the widest stamp (or bleed trail), and the bands' offsets from r
        return sources.take((row > -reach) & (row < self.shape[0] + reach))


def simulate_mirror(cfg: SimulateConfig, out_dir: str | Path) -> list[FieldId]:
    """Simulate a SAS mirror into ``out_dir`` unless one made with the same settings is complete there.

    A completion marker holding the settings' digest is written last, so a killed simulation is redone
    and a finished one is not.

    Returns:
        The simulated fields.
    """
    out_dir = Path(out_dir)
    done = mirror_fields(cfg, out_dir)
    if done is not None:
        return done
    fields = simulate(out_dir, n_fields=cfg.fields, seed=cfg.seed, runs=cfg.runs)
    save_config(cfg, out_dir, "simulate")
    with atomic_write(out_dir / MARKER, "w", sync=False) as f:
        f.write(json.dumps({"digest": config_digest(cfg), "fields": [str(f) for f in fields]}, indent=1))
    return fields


def mirror_fields(cfg: SimulateConfig, out_dir: str | Path) -> list[FieldId] | None:
    """The fields of a complete mirror simulated with ``cfg`` in ``out_dir``; None where there is none."""
    marker = Path(out_dir) / MARKER
    if not marker.is_file():
        return None
    done = json.loads(marker.read_text())
    if done.get("digest") != config_digest(cfg):
        return None
    return [FieldId.parse(f) for f in done["fields"]]


def simulate(
    out_dir: str | Path,
    n_fields: int,
    seed: int = 0,
    runs: int = 1,
    camcol: int = DEFAULT_CAMCOL,
    start_field: int = DEFAULT_START_FIELD,
    *,
    first_run: int = FIRST_RUN,
    shape: tuple[int, int] = FRAME_SHAPE,
    workers: int | None = None,
    refraction: Refraction | None = None,
    distortion: Distortion | None = None,
) -> list[FieldId]:
    """Write simulated SDSS frames and calibObj catalogues under ``out_dir`` in the SAS layout.

    Args:
        out_dir: root of the mirror (``photoObj/`` and ``sweeps/`` are created below it).
        n_fields: number of fields in all, spread as evenly as possible over the runs.
        seed: the simulation's seed; the same seed writes the same bytes.
        runs: number of runs; run ``k`` is numbered ``first_run + k`` and scans stripe ``70 + k``.
        camcol: camera column of every run.
        start_field: first field number of every run.
        first_run: number of the first run.
        shape: (rows, columns) of each frame.
        workers: threads rendering fields at once; None uses every core.
        refraction: differential chromatic refraction of every frame (off by default, see
            :class:`sgc.sim.refraction.Refraction`); the catalogue keeps the true positions.
        distortion: optical distortion the TAN WCS do not hold (off by default, see
            :class:`sgc.sim.refraction.Distortion`).

    Returns:
        The fields written, run by run in field order.

    Raises:
        ValueError: if ``n_fields`` or ``runs`` is not positive, or there are more runs than fields.
    """
    if n_fields < 1 or runs < 1 or runs > n_fields:
        raise ValueError(f"need 1 <= runs <= n_fields, got runs={runs}, n_fields={n_fields}")
    out_dir = Path(out_dir)
    plans = []
    for k in range(runs):
        count = n_fields // runs + (k < n_fields % runs)
        sim_run = SimRun(first_run + k, camcol, seed, DEFAULT_STRIPE + k, shape, refraction, distortion)
        plans.append((sim_run, list(range(start_field, start_field + count))))
    tasks = [(sim_run, field) for sim_run, fields in plans for field in fields]
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        done = pool.map(lambda task: simulate_field(out_dir, *task), tasks)
        written = list(progress.bar(done, total=len(tasks), desc="simulate", unit="field"))
    for sim_run, fields in plans:
        write_calibobj(out_dir, sim_run, fields)
    return written


def simulate_field(out_dir: str | Path, sim_run: SimRun, field: int) -> FieldId:
    """Render and write the five frames of one field.

    Args:
        out_dir: root of the mirror.
        sim_run: the run.
        field: field number.

    Returns:
        The field written.
    """
    field_id = sim_run.field_id(field)
    for band, hdul in render_field(sim_run, field).items():
        _write_atomic(Path(out_dir) / field_id.frame_path(band), bz2.compress(_fits_bytes(hdul), 9))
    return field_id


def render_field(sim_run: SimRun, field: int) -> dict[str, fits.HDUList]:
    """The five frames of one field as in-memory FITS, HDU0 to HDU3 as SDSS writes them.

    Args:
        sim_run: the run.
        field: field number.

    Returns:
        One HDU list per band, in u, g, r, i, z order.
    """
    sources = sim_run.sources_near(field)
    scan_rows = field * sim_run.geometry.step + np.arange(sim_run.shape[0])
    source_rows = sources.field * sim_run.geometry.step + sources.row
    frames = {}
    for k, band in enumerate(BANDS):
        header = frame_header(sim_run, field, band)
        calibration = _calibration_vector(sim_run, band)
        conditions = FrameConditions(
            fwhm=sim_run.conditions.fwhm(band, source_rows),
            sky_counts=sim_run.conditions.sky_counts(band, scan_rows),
            sky_sigma=sim_run.conditions.sky_sigma(band, scan_rows),
            calibration=calibration,
            gain=float(GAIN[k]),
            sky_residual=sim_run.conditions.sky_residual_terms(band, scan_rows, np.arange(sim_run.shape[1])),
        )
        charge = Charge.concatenate(
            [
                frame_cosmic_rays(sim_run, field, k),
                frame_bleed_trails(sim_run, field, band, sources, calibration),
            ]
        )
        wcs = _wcs(header)
        image = render_band(
            wcs,
            sources,
            sources.flux[:, k],
            conditions,
            _noise(sim_run, field, k),
            charge,
            shift=_displacement(sim_run, band, sources, wcs),
        )
        frames[band] = fits.HDUList(
            [
                fits.PrimaryHDU(_float_compress(image), header),
                fits.ImageHDU(calibration),
                _sky_hdu(sim_run, field, band),
                _astrometry_hdu(sim_run, field, band),
            ]
        )
    return frames


def _displacement(
    sim_run: SimRun, band: str, sources: Sources, wcs: WCS
) -> tuple[np.ndarray, np.ndarray] | None:
    """Pixels by which refraction and distortion move each source off its WCS position; None if neither."""
    if sim_run.refraction is None and sim_run.distortion is None:
        return None
    dx, dy = np.zeros(len(sources)), np.zeros(len(sources))
    if sim_run.refraction is not None:
        rx, ry = sim_run.refraction.offsets(sources.flux, band)
        dx, dy = dx + rx, dy + ry
    if sim_run.distortion is not None:
        x, y = wcs.wcs_world2pix(sources.ra, sources.dec, 0)
        ox, oy = sim_run.distortion.offsets(band, x, y, sim_run.shape)
        dx, dy = dx + ox, dy + oy
    return dx, dy


def _noise(sim_run: SimRun, field: int, band_index: int) -> np.ndarray:
    """Standard normal deviates for a frame, drawn per block of ``step`` scan rows.

    Field ``F`` is block ``F`` followed by the start of block ``F + 1``, so the rows two fields share get
    the same noise, as the same CCD rows of one drift scan do.
    """
    rows, cols = sim_run.shape
    step = sim_run.geometry.step
    blocks = []
    for block, count in ((field, step), (field + 1, rows - step)):
        key = [sim_run.seed, sim_run.run, sim_run.camcol, 5, block, band_index]
        blocks.append(
            np.random.default_rng(np.random.SeedSequence(key)).standard_normal((count, cols), np.float32)
        )
    return np.concatenate(blocks)


def frame_cosmic_rays(sim_run: SimRun, field: int, band_index: int) -> Charge:
    """The residual cosmic rays of a frame, drawn per block of ``step`` scan rows as the noise is.

    A band's hits depend only on its own generator: bands cross a piece of sky minutes apart, so they share
    no cosmic ray.
    """
    rows, cols = sim_run.shape
    step = sim_run.geometry.step
    sigma_counts = float(SKY_SIGMA[band_index] / NMGY[band_index])
    parts = []
    for block, offset in ((field, 0), (field + 1, step)):
        key = [sim_run.seed, sim_run.run, sim_run.camcol, 7, block, band_index]
        hits = cosmic_rays(np.random.default_rng(np.random.SeedSequence(key)), step, cols, sigma_counts)
        parts.append(Charge(hits.row + offset, hits.col, hits.counts))
    return Charge.concatenate(parts).inside(sim_run.shape)


def frame_bleed_trails(
    sim_run: SimRun, field: int, band: str, sources: Sources, calibration: np.ndarray
) -> Charge:
    """The saturated cores and bleed trails of the stars near a frame.

    Stars are placed on the band's scan grid (exact and the same for every frame), not through the frame's
    TAN WCS (which the next frame's differs from by millipixels), so that a trail in two frames' shared rows
    covers the same pixels in both.
    """
    geometry = sim_run.geometry
    stars = sources.take(sources.is_star)
    scan_rows = stars.field * geometry.step + stars.row
    col, band_row = geometry.r_to_band(band, stars.col, scan_rows)
    conditions = sim_run.conditions
    return bleed_trails(
        col,
        band_row - field * geometry.step,
        stars.flux[:, BANDS.index(band)],
        conditions.fwhm(band, scan_rows),
        conditions.sky_counts(band, scan_rows),
        calibration.astype(np.float64),
    ).inside(sim_run.shape)


def frame_header(sim_run: SimRun, field: int, band: str) -> fits.Header:
    """The primary header of one frame, with the real frames' keywords, WCS and calibration.

    Times are computed from the run and field (one run a night, 1361 rows of drift scan per field),
    never read from the clock. ``SGCFWHM`` and ``SGCSKYSG`` give the true seeing and sky noise at the
    frame's central row.
    """
    geometry = sim_run.geometry
    tai = _tai(sim_run, field, band)
    centre_row = field * geometry.step + geometry.center[1]
    fwhm = float(sim_run.conditions.fwhm(band, centre_row))
    sky_sigma = float(sim_run.conditions.sky_sigma(band, centre_row))
    ra, dec = gc_to_eq(*geometry.r_to_scan(np.array([0.0]), np.array([0.0]), field), NODE, geometry.incl)
    header = fits.Header()
    header.extend(
        [
            ("TAI", tai, "1st row - Number of seconds since Nov 17 1858"),
            ("RA", round(float(ra[0]), 5), "1st row - Right ascension of telescope boresigh"),
            ("DEC", round(float(dec[0]), 6), "1st row - Declination of telescope boresight (d"),
            ("DATE-OBS", _tai_date(tai).strftime("%Y-%m-%d"), "1st row - TAI date"),
            ("TAIHMS", _tai_date(tai).strftime("%H:%M:%S.%f")[:11], "1st row - TAI time (HH:MM:SS.SS)"),
            ("ORIGIN", "SDSS"),
            ("TELESCOP", "2.5m"),
            ("TIMESYS", "TAI"),
            ("RUN", sim_run.run, "Run number"),
            ("FRAME", field + FRAME_OFFSET[band], "Frame sequence number within the run"),
            ("CCDLOC", 10 * CAMROW[band] + sim_run.camcol, "Survey location of CCD (e.g., rowCol)"),
            ("STRIPE", geometry.stripe, "Stripe index number (23 <--> eta=0)"),
            ("STRIP", "N", "Strip in the stripe being tracked."),
            ("FLAVOR", "science", "Flavor of this run"),
            ("SYS_SCN", "mean", "System of the scan great circle (e.g., mean)"),
            ("EQNX_SCN", 2000.0, "Equinox of the scan great circle. (years)"),
            ("NODE", NODE, "RA of the great circle's ascending node (deg)"),
            ("INCL", geometry.incl, "Great circle's inclination wrt cel. eq. (deg)"),
            ("OBJECT", f"{geometry.stripe} N", "e.g., 'stripe 50.6 degrees, north strip'"),
            ("EXPTIME", "53.907456", "Exposure time (seconds)"),
            ("CCDMODE", "DRIFT", "'STARING' or 'DRIFT'"),
            ("C_OBS", round(ROW_SECONDS * 1e6), "CCD row clock rate (usec/row)"),
            ("COLBIN", 1, "Binning factor perpendicular to the columns"),
            ("ROWBIN", 1, "Binning factor perpendicular to the rows"),
            ("CAMROW", CAMROW[band], "Row in the imaging camera"),
            ("BADLINES", 0, "Number of bad lines in frame"),
            ("EQUINOX", 2000.0),
            ("SOFTBIAS", 1000, 'software "bias" added to all DN'),
            ("BUNIT", "nanomaggy", "1 nanomaggy = 3.631e-6 Jy"),
            ("FILTER", band, "filter used"),
            ("CAMCOL", sim_run.camcol, "column in the imaging camera"),
            ("VERSION", "v5_6_3"),
            *geometry.wcs_cards(band, field),
            (
                "NMGY",
                round(float(sim_run.conditions.nmgy[BANDS.index(band)]), 8),
                "Calibration factor [nMgy per count]",
            ),
            ("NMGYIVAR", 0.15, "Calibration factor inverse variance"),
            ("RERUN", RERUN, "rerun"),
            ("SGCSIM", True, "simulated by sgc.sim.simulate, not SDSS data"),
            ("SGCSEED", sim_run.seed, "simulation seed"),
            ("SGCFWHM", round(fwhm, 4), "true PSF FWHM (arcsec)"),
            ("SGCSKYSG", round(sky_sigma, 5), "true sky noise (nanomaggy per pixel)"),
        ]
    )
    header.add_comment("Floats truncated at 10 binary digits with FLOATCOMPRESS", before="NMGY")
    return header


def write_calibobj(out_dir: str | Path, sim_run: SimRun, fields: list[int]) -> list[Path]:
    """Write the run's calibObj star and galaxy sweeps: the true objects a catalogue would list.

    An object is listed if its centre falls in one of ``fields`` (its r band) and it passes the
    completeness draw; it belongs to the field whose primary rows hold it, as SDSS's primary objects do.
    Positions (``ROWC``, ``COLC``) follow the photo pipeline's convention: the first pixel's centre is 0.5.

    Args:
        out_dir: root of the mirror.
        sim_run: the run.
        fields: the run's consecutive field numbers.

    Returns:
        The two files written, star then galaxy.
    """
    first, last = min(fields), max(fields)
    sources = _catalogued(sim_run, first, last)
    geometry = sim_run.geometry
    rowc = np.zeros((len(sources), len(BANDS)))
    colc = np.zeros_like(rowc)
    psf_fwhm = np.zeros_like(rowc)
    psf_flux = np.zeros_like(rowc)
    scan_rows = sources.field * geometry.step + sources.row
    for k, band in enumerate(BANDS):
        psf_fwhm[:, k] = sim_run.conditions.fwhm(band, scan_rows)
        psf_flux[:, k] = sources.flux[:, k] * psf_flux_ratio(sources, psf_fwhm[:, k])
        for field in range(first, last + 1):
            mine = sources.field == field
            wcs = _wcs(fits.Header(geometry.wcs_cards(band, field)))
            x, y = wcs.wcs_world2pix(sources.ra[mine], sources.dec[mine], 0)
            colc[mine, k], rowc[mine, k] = x + 0.5, y + 0.5
    columns = {"ROWC": rowc, "COLC": colc, "PSF_FWHM": psf_fwhm, "PSFFLUX": psf_flux}
    paths = []
    for kind, is_star, object_type in (("star", True, STAR_TYPE), ("gal", False, GALAXY_TYPE)):
        keep = sources.is_star == is_star
        table = _calibobj_table(
            sim_run, sources.take(keep), {n: v[keep] for n, v in columns.items()}, object_type
        )
        path = Path(out_dir) / calibobj_path(sim_run.run, sim_run.camcol, kind)
        _write_atomic(path, gzip.compress(_fits_bytes(fits.HDUList([fits.PrimaryHDU(), table])), 6, mtime=0))
        paths.append(path)
    return paths


def _catalogued(sim_run: SimRun, first: int, last: int) -> Sources:
    """Detected sources whose r-band centres lie in the frames of fields ``first``..``last``, in field order.

    A source's segment field is clipped to the run: the first field owns the rows above its primary rows,
    the last the rows below.
    """
    geometry = sim_run.geometry
    rows, cols = sim_run.shape
    parts = [
        draw_segment(geometry, segment_rng(sim_run.seed, sim_run.run, sim_run.camcol, f), f)
        for f in range(first - 1, last + 2)
    ]
    sources = Sources.concatenate(parts)
    global_row = sources.field * geometry.step + sources.row
    inside = (
        sources.detected
        & (sources.col >= 0)
        & (sources.col < cols)
        & (global_row >= first * geometry.step)
        & (global_row < last * geometry.step + rows)
    )
    sources = sources.take(inside)
    owner = np.clip(sources.field, first, last)
    row = sources.row + (sources.field - owner) * geometry.step
    moved = replace(sources, field=owner, row=row)
    return moved.take(np.lexsort((moved.row, moved.field)))


def _calibobj_table(
    sim_run: SimRun, sources: Sources, columns: dict[str, np.ndarray], object_type: int
) -> fits.BinTableHDU:
    """A calibObj table with the real sweeps' column names and types (RUN I, CAMCOL B, FIELD I, ...)."""
    n = len(sources)
    ids = np.zeros(n, dtype=np.int16)
    for field in np.unique(sources.field):
        mine = sources.field == field
        ids[mine] = np.arange(1, np.count_nonzero(mine) + 1)
    cols = [
        fits.Column("RUN", "I", array=np.full(n, sim_run.run, dtype=np.int16)),
        fits.Column("RERUN", "3A", array=np.full(n, RERUN)),
        fits.Column("CAMCOL", "B", array=np.full(n, sim_run.camcol, dtype=np.uint8)),
        fits.Column("FIELD", "I", array=sources.field.astype(np.int16)),
        fits.Column("ID", "I", array=ids),
        fits.Column("OBJC_TYPE", "J", array=np.full(n, object_type, dtype=np.int32)),
        fits.Column("ROWC", "5E", array=columns["ROWC"].astype(np.float32)),
        fits.Column("COLC", "5E", array=columns["COLC"].astype(np.float32)),
        fits.Column("RA", "D", array=sources.ra),
        fits.Column("DEC", "D", array=sources.dec),
        fits.Column("PSF_FWHM", "5E", array=columns["PSF_FWHM"].astype(np.float32)),
        fits.Column("PSFFLUX", "5E", array=columns["PSFFLUX"].astype(np.float32)),
        fits.Column("MODELFLUX", "5E", array=sources.flux.astype(np.float32)),
    ]
    return fits.BinTableHDU.from_columns(cols)


def _wcs(header: fits.Header) -> WCS:
    with warnings.catch_warnings():  # RADECSYS, as the real frames write it, is deprecated in astropy
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header, naxis=2)


def _tai(sim_run: SimRun, field: int, band: str) -> float:
    """TAI of a frame's first row: each filter crosses the field two frames after the previous one."""
    step_seconds = sim_run.geometry.step * ROW_SECONDS
    run_start = _TAI_START + (sim_run.run - FIRST_RUN) * _RUN_SECONDS
    return round(run_start + (field + FRAME_OFFSET[band]) * step_seconds, 2)


def _tai_date(tai: float) -> dt.datetime:
    return dt.datetime(1858, 11, 17) + dt.timedelta(seconds=tai)


def _float_compress(image: np.ndarray) -> np.ndarray:
    """Round pixels to 10 significant bits, as SDSS's FLOATCOMPRESS stores frames (bzip2 likes it too)."""
    bits = image.astype(np.float32).view(np.uint32)
    return ((bits + np.uint32(0x2000)) & _MANTISSA_MASK).view(np.float32)


def _calibration_vector(sim_run: SimRun, band: str) -> np.ndarray:
    """HDU1: nanomaggies per count along the columns, the run's calibration times a ~0.5% flat pattern."""
    k = BANDS.index(band)
    rng = np.random.default_rng(np.random.SeedSequence([sim_run.seed, sim_run.run, sim_run.camcol, 6, k]))
    x = np.linspace(0.0, 1.0, sim_run.shape[1])
    phase, tilt = rng.uniform(0, 2 * np.pi), rng.normal(0.0, 0.003)
    flat = 1 + 0.003 * np.cos(2 * np.pi * x + phase) + tilt * (x - 0.5)
    return (sim_run.conditions.nmgy[k] * flat).astype(np.float32)


def _sky_hdu(sim_run: SimRun, field: int, band: str) -> fits.BinTableHDU:
    """HDU2: the sky (counts) on the real frames' grid of 8x8-pixel cells, and each pixel's place on it."""
    rows, cols = sim_run.shape
    grid_rows = np.arange(-(-rows // 8) + 5) * 8 - 4.5  # frame row of each grid row: YINTERP inverted
    sky = sim_run.conditions.sky_counts(band, field * sim_run.geometry.step + grid_rows)
    grid = np.repeat(sky[None, :, None], -(-cols // 8), axis=2).astype(np.float32)
    xinterp = ((np.arange(cols) - 3.5) / 8).astype(np.float32)[None]
    yinterp = ((np.arange(rows) + 4.5) / 8).astype(np.float32)[None]
    return fits.BinTableHDU.from_columns(
        [
            fits.Column("ALLSKY", f"{grid[0].size}E", dim=f"({grid.shape[2]}, {grid.shape[1]})", array=grid),
            fits.Column("XINTERP", f"{cols}E", array=xinterp),
            fits.Column("YINTERP", f"{rows}E", array=yinterp),
        ]
    )


def _astrometry_hdu(sim_run: SimRun, field: int, band: str) -> fits.BinTableHDU:
    """HDU3: the frame's asTrans row (mu, nu as affine functions of row and column, no distortion)."""
    geometry = sim_run.geometry
    rows, cols = sim_run.shape
    values = {
        "RUN": sim_run.run,
        "RERUN": RERUN,
        "CAMCOL": sim_run.camcol,
        "FILTER": band,
        "NODE": NODE,
        "INCL": geometry.incl,
        "NAXIS": (cols, rows),
        "FIELD": field,
        **geometry.astrometry(band, field),
        "RICUT": 100.0,
        "MJD": _tai(sim_run, field, band) / 86400.0,
        "AIRMASS": 1.2 if sim_run.refraction is None else sim_run.refraction.airmass,
        "MUERR": 0.05,
        "NUERR": 0.05,
    }
    row = np.zeros(1, dtype=_ASTROMETRY_DTYPE)  # distortion terms (DROW*, DCOL*, CS*, CC*) stay 0
    for name, value in values.items():
        row[name] = value
    return fits.BinTableHDU(row)


def _fits_bytes(hdul: fits.HDUList) -> bytes:
    buffer = io.BytesIO()
    hdul.writeto(buffer)
    return buffer.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write then rename, so a killed run never leaves a truncated file under the final name."""
    with atomic_write(path, sync=False) as f:
        f.write(data)
