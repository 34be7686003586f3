"""Test-sky exclusion: neighbours in a simulated run, random footprints against astropy, the real field."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs.utils import proj_plane_pixel_scales
from hypothesis import given, settings
from hypothesis import strategies as st

from sgc.compute import Compute
from sgc.config import ExcludeConfig, IngestConfig
from sgc.cube.ingest import ingest
from sgc.cube.store import CubeStore
from sgc.errors import InputFileError
from sgc.masks.exclusion import exclude_store, exclusion_mask
from sgc.masks.footprint import (
    Footprint,
    FootprintError,
    find_footprints,
    footprint_from_headers,
    grid_polygons,
    rectangle_outline,
    simplify_ring,
)
from sgc.sdss.frames import frame_wcs, read_frame_header
from sgc.sdss.names import BANDS
from sgc.sim.geometry import OVERLAP_ROWS, ScanGeometry
from sgc.sim.simulate import SimRun, frame_header, simulate

SHAPE = (300, 400)
SEED = 5
STEP = SHAPE[0] - OVERLAP_ROWS  # rows from one field's first row to the next's: 172


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three consecutive simulated fields of one run: 11, 12 and 13."""
    out = tmp_path_factory.mktemp("raw")
    simulate(out, n_fields=3, seed=SEED, shape=SHAPE)
    return out


@pytest.fixture(scope="module")
def ingested(raw: Path, tmp_path_factory: pytest.TempPathFactory, compute: Compute) -> Path:
    store = tmp_path_factory.mktemp("store") / "s.zarr"
    summary = ingest(raw, store, IngestConfig(chunk=128, align_method="wcs"), compute)
    assert summary.ok, summary.format()
    return store


@pytest.fixture
def store(ingested: Path, tmp_path: Path) -> Path:
    """A fresh copy of the ingested store for each test."""
    copy = tmp_path / "s.zarr"
    shutil.copytree(ingested, copy)
    return copy


def _exclude(store: Path) -> dict[str, np.ndarray]:
    cube = CubeStore.open(store)
    return dict(zip(cube.fields, cube["exclude"][:], strict=True))


def test_simulated_neighbours_overlap_by_128_rows_at_any_frame_size() -> None:
    # The simulator's rows are drift-scan time: field F + 1 starts `step` rows after field F, whatever
    # the frame's size, so the last 128 rows of a field are the first 128 of the next.
    for rows in (300, 1489):
        assert ScanGeometry(70, 3, (rows, 400), {}).step == rows - OVERLAP_ROWS
    assert OVERLAP_ROWS == 128


def test_holding_out_a_field_excludes_exactly_the_overlapping_rows_of_its_neighbours(
    raw: Path, store: Path
) -> None:
    # The i band alone: the stored grids are i frames, so the held-out field's rectangle lands on its
    # neighbours' grids exactly on the 128 shared rows, across all columns.
    summary = exclude_store(store, ["9001-3-12"], [raw], ExcludeConfig(margin_arcsec=0.0), bands=["i"])
    masks = _exclude(store)
    before, held, after = masks["009001-3-0011"], masks["009001-3-0012"], masks["009001-3-0013"]
    expected = np.zeros(SHAPE, dtype=bool)
    expected[STEP:] = True
    np.testing.assert_array_equal(before, expected)
    np.testing.assert_array_equal(after, expected[::-1])
    assert held.all()
    assert summary.excluded == {
        "009001-3-0011": 128 * 400,
        "009001-3-0012": 300 * 400,
        "009001-3-0013": 128 * 400,
    }


def _union_distance(geometry: ScanGeometry, grid_field: int, held_field: int) -> np.ndarray:
    """Signed distance (band pixels, positive inside) from each i pixel of ``grid_field`` to the union of
    ``held_field``'s five band rectangles, from the simulator's exact scan geometry, not from any WCS."""
    rows, cols = SHAPE
    y, x = np.mgrid[0:rows, 0:cols].astype(float)
    r_col, r_row = geometry.band_to_r("i", x, y)
    r_row = r_row + (grid_field - held_field) * geometry.step
    x0 = geometry.center[0]
    best = np.full(SHAPE, -np.inf)
    for grid in geometry.grids.values():  # band_to_r inverted: r pixel -> band pixel
        xb = x0 + grid.dx + (r_col - x0) / (1.0 + grid.col_scale)
        yb = r_row + grid.dy - grid.tilt * (xb - x0)
        inside = np.minimum.reduce([xb + 0.5, cols - 0.5 - xb, yb + 0.5, rows - 0.5 - yb])
        best = np.maximum(best, inside)
    return best


def test_five_band_footprint_adds_the_band_offsets_to_the_overlap(raw: Path, store: Path) -> None:
    # The union of the five bands reaches past the i band's 128 rows by the bands' row offsets (g sees
    # the sky ~11 rows after r, i ~3), and not quite across all columns there (the bands' column offsets).
    # Compared with the simulator's exact geometry, pixels within 0.05 px of the boundary aside: the TAN
    # WCS of the frames follow the scan to 0.006 px.
    exclude_store(store, ["9001-3-12"], [raw], ExcludeConfig(margin_arcsec=0.0))
    masks = _exclude(store)
    geometry = SimRun(seed=SEED, shape=SHAPE).geometry
    for grid_field in (11, 12, 13):
        distance = _union_distance(geometry, grid_field, 12)
        clear = np.abs(distance) > 0.05
        assert clear.mean() > 0.99
        mask = masks[f"009001-3-{grid_field:04d}"]
        np.testing.assert_array_equal(mask[clear], distance[clear] > 0)
    before, after = masks["009001-3-0011"], masks["009001-3-0013"]
    assert before[STEP:].all() and after[:OVERLAP_ROWS].all() and masks["009001-3-0012"].all()
    reach_up = max(g.dy for g in geometry.grids.values()) - geometry.grids["i"].dy
    reach_down = geometry.grids["i"].dy - min(g.dy for g in geometry.grids.values())
    assert 0 < np.count_nonzero(before[:STEP].any(axis=1)) <= np.ceil(reach_up) + 1
    assert 0 < np.count_nonzero(after[OVERLAP_ROWS:].any(axis=1)) <= np.ceil(reach_down) + 1


def test_margin_grows_the_excluded_rows_by_the_margin_in_pixels(raw: Path, store: Path) -> None:
    margin = 10.0
    header = read_frame_header(next(raw.rglob("frame-i-009001-3-0012.fits.bz2")))
    margin_px = margin / (np.mean(proj_plane_pixel_scales(frame_wcs(header))) * 3600)
    grow = int(np.floor(margin_px + 0.5))  # pixel centres within margin_px of the edge, which is at -0.5
    assert grow == 25 and abs(margin_px + 0.5 - round(margin_px + 0.5)) > 0.01
    exclude_store(store, ["9001-3-12"], [raw], ExcludeConfig(margin_arcsec=margin), bands=["i"])
    masks = _exclude(store)
    assert np.array_equal(
        np.flatnonzero(masks["009001-3-0011"].all(axis=1)), np.arange(STEP - grow, SHAPE[0])
    )
    assert np.array_equal(np.flatnonzero(masks["009001-3-0013"].all(axis=1)), np.arange(OVERLAP_ROWS + grow))
    assert masks["009001-3-0011"].sum() == masks["009001-3-0013"].sum() == (OVERLAP_ROWS + grow) * SHAPE[1]


def test_settings_are_recorded_and_a_rerun_computes_only_what_is_new(raw: Path, store: Path) -> None:
    first = exclude_store(store, ["9001-3-12"], [raw], ExcludeConfig(margin_arcsec=0.0))
    attrs = CubeStore.open(store).record("exclude")
    assert attrs["held_out"] == ["009001-3-0012"] and attrs["margin_arcsec"] == 0.0
    assert attrs["bands"] == list(BANDS) and attrs["fields"] == sorted(first.excluded)
    assert attrs["footprints"]["009001-3-0012"]["bands"] == list(BANDS)
    assert "frame-g-009001-3-0012.fits.bz2" in attrs["footprints"]["009001-3-0012"]["source"]
    assert attrs["excluded_pixels"] == first.excluded
    before = _exclude(store)
    again = exclude_store(store, ["9001-3-12"], [raw], ExcludeConfig(margin_arcsec=0.0))
    assert again.excluded == {} and sorted(again.skipped) == sorted(first.excluded)
    changed = exclude_store(store, ["9001-3-11"], [raw], ExcludeConfig(margin_arcsec=0.0), bands=["i"])
    assert sorted(changed.excluded) == sorted(first.excluded) and changed.skipped == []
    masks = _exclude(store)
    assert masks["009001-3-0011"].all() and not masks["009001-3-0013"].any()
    assert not np.array_equal(masks["009001-3-0012"], before["009001-3-0012"])


def test_values_of_a_run_that_never_recorded_its_settings_are_not_trusted(raw: Path, store: Path) -> None:
    # As if a run with other settings was killed after writing field 13 and before recording anything:
    # field 13 is far from field 11, so nothing would overwrite it.
    cube = CubeStore.open(store, mode="r+")
    cube.pixel_array("exclude", bool, False)[cube.slot("009001-3-0013")] = True
    exclude_store(store, ["9001-3-11"], [raw], ExcludeConfig(margin_arcsec=0.0), bands=["i"])
    assert not _exclude(store)["009001-3-0013"].any()


def test_footprint_falls_back_on_the_stored_grid(store: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sgc.masks.footprint"):
        summary = exclude_store(store, ["9001-3-12"], [], ExcludeConfig(margin_arcsec=0.0))
    assert "stored i-band grid only" in caplog.text
    assert "stored i-band header" in summary.footprints["009001-3-0012"]
    expected = np.zeros(SHAPE, dtype=bool)
    expected[STEP:] = True
    np.testing.assert_array_equal(_exclude(store)["009001-3-0011"], expected)


def test_missing_held_out_footprint_is_a_clear_error(raw: Path, store: Path, tmp_path: Path) -> None:
    with pytest.raises(FootprintError) as info:
        exclude_store(store, ["9001-3-99"], [raw, tmp_path / "nowhere"], ExcludeConfig(margin_arcsec=10.0))
    message = str(info.value)
    assert "009001-3-0099" in message and str(raw.resolve()) in message
    assert "nowhere (does not exist)" in message and str(store) in message
    assert "exclude" not in CubeStore.open(store)


def _sim_header(field: int, band: str) -> fits.Header:
    header = frame_header(SimRun(seed=SEED, shape=SHAPE), field, band)
    header.update({"NAXIS": 2, "NAXIS1": SHAPE[1], "NAXIS2": SHAPE[0]})
    return header


def test_text_headers_are_found_and_checked_against_their_names(tmp_path: Path) -> None:
    # Text headers alone give the same footprint as the frames' headers; one that describes another band
    # than its name says is refused, naming the file.
    for band in BANDS:
        _sim_header(12, band).totextfile(tmp_path / f"frame-{band}-009001-3-0012.hdr")
    footprint = find_footprints(["9001-3-12"], [tmp_path], 0.0)["009001-3-0012"]
    assert footprint.bands == BANDS and "frame-z-009001-3-0012.hdr" in footprint.source
    wcs = frame_wcs(_sim_header(11, "i"))
    expected = np.zeros(SHAPE, dtype=bool)
    expected[STEP:] = True
    i_only = footprint_from_headers("009001-3-0012", {"i": _sim_header(12, "i")}, 0.0, "test")
    np.testing.assert_array_equal(exclusion_mask([i_only], wcs, SHAPE), expected)
    assert (exclusion_mask([footprint], wcs, SHAPE) >= expected).all()
    _sim_header(12, "i").totextfile(tmp_path / "frame-g-009001-3-0012.hdr", overwrite=True)
    with pytest.raises(InputFileError, match=r"frame-g-009001-3-0012\.hdr.*FILTER"):
        find_footprints(["9001-3-12"], [tmp_path], 0.0)


def test_runs_on_a_distributed_cluster(raw: Path, store: Path) -> None:
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=":0") as cluster,
        Client(cluster),
    ):
        summary = exclude_store(store, ["9001-3-12"], [raw], ExcludeConfig(margin_arcsec=0.0), bands=["i"])
    assert summary.excluded["009001-3-0011"] == 128 * 400
    assert _exclude(store)["009001-3-0013"][:OVERLAP_ROWS].all()


# Random footprints: a held-out field of one to three "bands", each a TAN frame of its own size, scale,
# rotation and handedness somewhere near a target grid anywhere on the sky, against astropy per pixel.
_TARGET_SHAPE = (40, 56)
_band = st.fixed_dictionaries(
    {
        "rows": st.integers(3, 70),
        "cols": st.integers(3, 70),
        "dx": st.floats(-60, 60),
        "dy": st.floats(-60, 60),
        "scale": st.floats(0.25, 0.6),
        "angle": st.floats(0, 360),
        "flip": st.booleans(),
    }
)


def _tan_header(ra: float, dec: float, scale: float, angle: float, flip: bool, shape: tuple[int, int]):
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    cd = scale / 3600 * np.array([[-c, s], [s, c]]) @ np.diag([-1.0 if flip else 1.0, 1.0])
    return fits.Header(
        {
            "NAXIS": 2,
            "NAXIS1": shape[1],
            "NAXIS2": shape[0],
            "CTYPE1": "RA---TAN",
            "CTYPE2": "DEC--TAN",
            "CRPIX1": (shape[1] + 1) / 2,
            "CRPIX2": (shape[0] + 1) / 2,
            "CRVAL1": ra,
            "CRVAL2": dec,
            "CD1_1": cd[0, 0],
            "CD1_2": cd[0, 1],
            "CD2_1": cd[1, 0],
            "CD2_2": cd[1, 1],
        }
    )


@settings(max_examples=60, deadline=None)
@given(
    ra=st.floats(0, 360, exclude_max=True),
    dec=st.floats(-89.5, 89.5),
    angle=st.floats(0, 360),
    bands=st.lists(_band, min_size=1, max_size=3),
    margin=st.floats(0, 8),
)
def test_random_footprints_agree_with_astropy_pixel_by_pixel(
    ra: float, dec: float, angle: float, bands: list[dict], margin: float
) -> None:
    rows, cols = _TARGET_SHAPE
    target = frame_wcs(_tan_header(ra, dec, 0.396, angle, False, _TARGET_SHAPE))
    headers = {}
    for k, band in enumerate(bands):
        centre = target.pixel_to_world_values((cols - 1) / 2 + band["dx"], (rows - 1) / 2 + band["dy"])
        shape = (band["rows"], band["cols"])
        headers[BANDS[k]] = _tan_header(
            *map(float, centre), band["scale"], band["angle"], band["flip"], shape
        )
    footprint = footprint_from_headers("000001-1-0001", headers, margin, "random")
    mask = exclusion_mask([footprint], target, _TARGET_SHAPE)

    best = _distance_to_frame(headers, target, _TARGET_SHAPE, margin)
    clear = np.abs(best) > 1e-6  # only pixel centres on the outline itself may go either way
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(mask[clear], best[clear] > 0)


def _distance_to_frame(headers: dict[str, fits.Header], target, shape: tuple[int, int], margin: float):
    """Per target pixel, through astropy: signed distance (frame pixels, positive inside) to the union of
    the frames' rectangles grown by ``margin`` arcsec."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    world = target.pixel_to_world_values(x, y)
    best = np.full(shape, -np.inf)
    for header in headers.values():
        wcs = frame_wcs(header)
        m = margin / (np.mean(proj_plane_pixel_scales(wcs)) * 3600)
        xb, yb = wcs.world_to_pixel_values(*world)
        h, w = header["NAXIS2"], header["NAXIS1"]
        best = np.maximum(
            best, np.minimum.reduce([xb + 0.5 + m, w - 0.5 + m - xb, yb + 0.5 + m, h - 0.5 + m - yb])
        )
    return best


def test_distorted_edges_are_followed_where_corners_alone_would_not_do() -> None:
    # A frame with SIP distortion bows its edges by ~2 px on a plain TAN grid: the densely sampled outline,
    # simplified to 0.01 px, follows them; a quadrilateral through the corners misses whole pixels.
    header = _tan_header(10.0, 20.0, 0.4, 20.0, False, (200, 300))
    header.update({"CTYPE1": "RA---TAN-SIP", "CTYPE2": "DEC--TAN-SIP", "A_ORDER": 2, "B_ORDER": 2})
    header.update({"A_0_2": 1e-4, "B_2_0": 1e-4, "A_2_0": 0.0, "A_1_1": 0.0, "B_0_2": 0.0, "B_1_1": 0.0})
    target = frame_wcs(_tan_header(10.0, 20.0, 0.396, 0.0, False, (240, 340)))
    footprint = footprint_from_headers("000001-1-0001", {"r": header}, 2.0, "distorted")
    mask = exclusion_mask([footprint], target, (240, 340))
    best = _distance_to_frame({"r": header}, target, (240, 340), 2.0)
    clear = np.abs(best) > 0.02
    np.testing.assert_array_equal(mask[clear], best[clear] > 0)
    corners = footprint.polygons[0][_corner_indices((200, 300))]
    quad = Footprint("000001-1-0001", ("r",), (corners,), 2.0, "corners")
    assert np.count_nonzero(exclusion_mask([quad], target, (240, 340)) != mask) > 100


def test_simplified_outline_keeps_curvature_within_tolerance() -> None:
    square = rectangle_outline((100, 200), 0.0)
    assert simplify_ring(square[:, 0], square[:, 1], 0.01).sum() == 4  # straight edges: the corners
    angle = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
    x, y = 100 * np.cos(angle), 100 * np.sin(angle)
    keep = simplify_ring(x, y, 0.01)
    # A chord over an angle theta strays R (1 - cos(theta / 2)) from a circle of radius R: at least this
    # many chords are needed, and Douglas-Peucker, not optimal, stays within twice as many.
    fewest = int(np.ceil(2 * np.pi / (2 * np.arccos(1 - 0.01 / 100))))
    assert fewest <= keep.sum() < 2 * fewest
    kept = np.flatnonzero(keep)
    for a, b in zip(kept, np.roll(kept, -1), strict=True):
        between = np.arange(a + 1, b if b > a else b + x.size) % x.size
        chord = np.array([x[b] - x[a], y[b] - y[a]])
        offsets = np.column_stack([x[between] - x[a], y[between] - y[a]])
        distance = np.abs(chord[0] * offsets[:, 1] - chord[1] * offsets[:, 0]) / np.hypot(*chord)
        assert distance.max(initial=0.0) <= 0.01


def test_far_footprints_are_skipped_before_projection() -> None:
    here = frame_wcs(_tan_header(10.0, 20.0, 0.396, 0.0, False, (100, 100)))
    antipode = _tan_header(190.0, -20.0, 0.396, 0.0, False, (100, 100))
    footprint = footprint_from_headers("000001-1-0001", {"r": antipode}, 10.0, "test")
    assert grid_polygons([footprint], here, (100, 100)) is None


def _corner_indices(shape: tuple[int, int]) -> list[int]:
    outline = rectangle_outline(shape, 0.0)
    extreme = (np.isin(outline[:, 0], outline[:, 0].min()) | np.isin(outline[:, 0], outline[:, 0].max())) & (
        np.isin(outline[:, 1], outline[:, 1].min()) | np.isin(outline[:, 1], outline[:, 1].max())
    )
    return list(np.flatnonzero(extreme))


def _arcmin(polygon: np.ndarray, i: int, j: int) -> float:
    from astropy.coordinates import SkyCoord

    a, b = SkyCoord(*polygon[i], unit="deg"), SkyCoord(*polygon[j], unit="deg")
    return float(a.separation(b).arcmin)


@pytest.mark.real
def test_real_test_field_footprint_from_its_headers(sdss_dir: Path) -> None:
    headers = sdss_dir / "headers"
    footprint = find_footprints(["8162-6-80"], [headers], 0.0)["008162-6-0080"]
    assert footprint.bands == BANDS
    corners = _corner_indices((1489, 2048))
    for polygon in footprint.polygons:  # every band's frame is 13.5' x 9.8' on the sky
        assert _arcmin(polygon, corners[0], corners[1]) == pytest.approx(2048 * 0.396 / 60, rel=2e-3)
        assert _arcmin(polygon, corners[1], corners[2]) == pytest.approx(1489 * 0.396 / 60, rel=2e-3)
    own = frame_wcs(read_frame_header(headers / "frame-i-008162-6-0080.hdr"))
    assert exclusion_mask([footprint], own, (1489, 2048)).all()  # its own pixels, centre included
    far = frame_wcs(read_frame_header(headers / "frame-i-003918-3-0213.hdr"))
    assert grid_polygons([footprint], far, (1489, 2048)) is None
    assert not exclusion_mask([footprint], far, (1489, 2048)).any()


@pytest.mark.real
def test_real_margin_grows_the_rectangle_by_whole_pixels(sdss_dir: Path) -> None:
    # A grid sharing the i frame's projection, 100 pixels larger on every side: the excluded pixels are
    # the frame's rectangle grown by the margin rounded to whole pixel centres, square corners included.
    header = read_frame_header(sdss_dir / "headers" / "frame-i-008162-6-0080.hdr")
    scale = np.mean(proj_plane_pixel_scales(frame_wcs(header))) * 3600
    wide = header.copy()
    wide["CRPIX1"] += 100
    wide["CRPIX2"] += 100
    shape = (1489 + 200, 2048 + 200)
    for margin, grow in ((0.0, 0), (2.0, 5), (10.0, 25)):
        assert int(np.floor(margin / scale + 0.5)) == grow
        footprint = footprint_from_headers("008162-6-0080", {"i": header}, margin, "test")
        mask = exclusion_mask([footprint], frame_wcs(wide), shape)
        expected = np.zeros(shape, dtype=bool)
        expected[100 - grow : 100 + 1489 + grow, 100 - grow : 100 + 2048 + grow] = True
        np.testing.assert_array_equal(mask, expected)


@pytest.mark.real
def test_real_footprint_from_frames(sdss_dir: Path) -> None:
    # The sample's frames keep rows 0-744 of 1489 with the full frame's WCS: on the full header's grid
    # their footprint is exactly those rows.
    footprint = find_footprints(["3918-3-213"], [sdss_dir / "003918-3-0213"], 0.0, bands=["i"])[
        "003918-3-0213"
    ]
    assert footprint.source.endswith("frame-i-003918-3-0213.fits.bz2")
    full = frame_wcs(read_frame_header(sdss_dir / "headers" / "frame-i-003918-3-0213.hdr"))
    mask = exclusion_mask([footprint], full, (1489, 2048))
    assert np.array_equal(np.flatnonzero(mask.any(axis=1)), np.arange(745)) and mask[:745].all()
