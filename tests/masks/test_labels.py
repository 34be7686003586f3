"""``label_store``: chunked painting with halos, radii, and labels checked on the real sample's sources."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from astropy.io import fits
from astropy.table import Table
from astropy.wcs.utils import proj_plane_pixel_scales
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sgc.classes import GALAXY, IGNORE, SKY, STAR
from sgc.compute import Compute
from sgc.config import IngestConfig, LabelConfig
from sgc.cube.ingest import ingest
from sgc.masks.labels import LabelError, _buckets, _paint_chunk, object_radii
from sgc.masks.labels import label_store as _label_store
from sgc.masks.paint import paint_disks, paint_disks_numpy, paint_order
from sgc.sdss.catalogs import read_catalogs
from sgc.sdss.discover import find_catalogs
from sgc.sdss.frames import frame_wcs, read_frame_header
from sgc.sim.simulate import simulate

SHAPE = (300, 400)
CHUNK = 128


def label_store(store: Path, sources: list[Path], settings: LabelConfig | None = None):  # noqa: ANN201
    """Label a store from the catalogues found below ``sources``, with the default settings unless given."""
    return _label_store(store, find_catalogs(sources), settings or LabelConfig())


# ---- chunks and halos ------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    objects=st.lists(
        st.tuples(
            st.floats(-15, 115, allow_nan=False),
            st.floats(-15, 95, allow_nan=False),
            st.floats(0, 12, allow_nan=False),
            st.sampled_from([STAR, GALAXY]),
        ),
        max_size=60,
    ),
    chunk=st.tuples(st.integers(3, 40), st.integers(3, 40)),
    ring=st.sampled_from([0.0, 1.0, 2.0, 3.5]),
    seed=st.integers(0, 2**16),
)
def test_a_field_painted_chunk_by_chunk_equals_it_painted_whole(
    objects: list[tuple[float, float, float, int]], chunk: tuple[int, int], ring: float, seed: int
) -> None:
    shape = (100, 80)
    valid = np.random.default_rng(seed).random(shape) > 0.05
    if objects:
        y, x, radius, cls = (np.array(v) for v in zip(*objects, strict=True))
    else:
        y = x = radius = cls = np.empty(0)
    cls = cls.astype(np.uint8)
    order = paint_order(radius, cls)
    y, x, radius, cls = y[order], x[order], radius[order], cls[order]
    whole = paint_disks(valid, 0, 0, y, x, radius, cls, ring)

    numblocks = (math.ceil(shape[0] / chunk[0]), math.ceil(shape[1] / chunk[1]))
    buckets = _buckets(y, x, radius, cls, ring, chunk, numblocks)
    chunked = np.full(shape, 99, dtype=np.uint8)
    for by in range(numblocks[0]):
        for bx in range(numblocks[1]):
            rows = (by * chunk[0], min((by + 1) * chunk[0], shape[0]))
            cols = (bx * chunk[1], min((bx + 1) * chunk[1], shape[1]))
            block_objects = np.empty((1, 1, 1), dtype=object)
            block_objects[0, 0, 0] = buckets[by, bx]
            info = {0: {"array-location": [(0, 1), rows, cols]}}
            block = valid[None, slice(*rows), slice(*cols)]
            chunked[slice(*rows), slice(*cols)] = _paint_chunk(block, block_objects, ring, block_info=info)[0]
    np.testing.assert_array_equal(chunked, whole)


# ---- settings, radii, catalogues --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"mode": "ring"},
        {"star_radius_fwhm": 0.0},
        {"default_galaxy_radius_arcsec": -1.0},
        {"min_radius_px": 0.5},
        {"min_radius_px": 5.0, "max_radius_px": 4.0},
        {"ignore_ring_px": -1.0},
    ],
)
def test_settings_refuse_values_that_cannot_paint(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        LabelConfig(**bad)


def test_radii_follow_psf_fwhm_and_moments_with_defaults_and_clamps() -> None:
    nan = np.nan
    psf = np.full((6, 5), nan, dtype=np.float32)
    psf[0, 2] = psf[2, 2] = psf[3, 2] = 1.2
    table = Table(
        {
            "class": ["star", "star", "galaxy", "galaxy", "galaxy", "star"],
            "psf_fwhm": psf,
            "moment_fwhm_r": np.array([nan, nan, 2.0, 0.9, nan, nan], dtype=np.float32),
        }
    )
    cfg = LabelConfig(star_radius_fwhm=1.5, galaxy_radius_fwhm=2.0, default_galaxy_radius_arcsec=1.6)
    radii = object_radii(table, 0.4, cfg)
    expected = [1.5 * 1.2, 1.5 * 1.4, 2.0 * 2.0, 1.5 * 1.2, max(1.6, 1.5 * 1.4), 1.5 * 1.4]
    np.testing.assert_allclose(radii, np.array(expected) / 0.4, rtol=1e-6)
    clamped = object_radii(table, 0.4, LabelConfig(min_radius_px=6.0, max_radius_px=8.0))
    assert clamped.min() == 6.0 and clamped.max() <= 8.0


# ---- a simulated store -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory, compute: Compute) -> tuple[Path, Path]:
    """Three small simulated fields ingested (chunks of 128 on a 300x400 grid), and their raw folder."""
    raw = tmp_path_factory.mktemp("raw")
    simulate(raw, n_fields=3, seed=5, shape=SHAPE)
    store = tmp_path_factory.mktemp("store") / "s.zarr"
    assert ingest(raw, store, IngestConfig(chunk=CHUNK), compute).ok
    return raw, store


@pytest.fixture(scope="module")
def sim_labelled(sim: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw, store = sim
    labelled = tmp_path_factory.mktemp("labelled") / "s.zarr"
    shutil.copytree(store, labelled)
    label_store(labelled, [raw])
    return labelled


def _field_objects(group: zarr.Group, slot: int, table: Table, cfg: LabelConfig) -> tuple[np.ndarray, ...]:
    """Every catalogue object projected on a field, with its radius and class: the reference's inputs."""
    wcs = frame_wcs(fits.Header.fromstring(str(group["wcs"][slot])))
    x, y = wcs.world_to_pixel_values(np.asarray(table["ra"]), np.asarray(table["dec"]))
    scale = float(np.mean(proj_plane_pixel_scales(wcs))) * 3600
    radius = object_radii(table, scale, cfg)
    cls = np.where(np.asarray(table["class"]) == "star", STAR, GALAXY).astype(np.uint8)
    return y, x, radius, cls


def test_simulated_labels_equal_the_whole_field_numpy_reference(
    sim: tuple[Path, Path], sim_labelled: Path
) -> None:
    raw, _ = sim
    group = zarr.open_group(sim_labelled, mode="r")
    label = group["label"]
    assert label.dtype == np.uint8 and label.chunks == group["valid"].chunks
    assert label.metadata.dimension_names == ("field", "y", "x")
    table = read_catalogs(find_catalogs([raw]))
    cfg = LabelConfig()
    for slot in range(label.shape[0]):
        y, x, radius, cls = _field_objects(group, slot, table, cfg)
        order = paint_order(radius, cls)
        expected = paint_disks_numpy(
            group["valid"][slot], 0, 0, y[order], x[order], radius[order], cls[order], cfg.ignore_ring_px
        )
        np.testing.assert_array_equal(label[slot], expected)
    attrs = dict(label.attrs)
    assert sorted(attrs["fields"]) == sorted(str(f) for f in group["field"][:])
    assert attrs["settings"]["mode"] == "disk" and len(attrs["catalogs"]) == 2
    assert attrs["classes"] == {"sky": 0, "star": 1, "galaxy": 2, "ignore": 255}


def test_simulated_objects_land_on_their_class_in_every_field_they_fall_on(
    sim: tuple[Path, Path], sim_labelled: Path
) -> None:
    raw, _ = sim
    group = zarr.open_group(sim_labelled, mode="r")
    table = read_catalogs(find_catalogs([raw]))
    names = [str(f) for f in group["field"][:]]
    counts = group["label"].attrs["objects"]
    from_neighbours = 0
    for slot, name in enumerate(names):
        label, valid = group["label"][slot], group["valid"][slot]
        y, x, radius, cls = _field_objects(group, slot, table, LabelConfig())
        row, col = np.floor(y + 0.5).astype(int), np.floor(x + 0.5).astype(int)
        on = (row >= 0) & (row < SHAPE[0]) & (col >= 0) & (col < SHAPE[1])
        assert counts[name] == {
            "star": int((on & (cls == STAR)).sum()),
            "galaxy": int((on & (cls == GALAXY)).sum()),
        }
        from_neighbours += int((on & (np.asarray(table["field"]) != name)).sum())
        hit = on & valid[row.clip(0, SHAPE[0] - 1), col.clip(0, SHAPE[1] - 1)]
        got = label[row[hit], col[hit]]
        wrong = np.flatnonzero(got != cls[hit])
        # an object's centre may only be taken by a disk of the other class no larger than its own
        for k in np.flatnonzero(hit)[wrong]:
            covers = (y - y[k]) ** 2 + (x - x[k]) ** 2 <= radius**2
            assert np.any(covers & (cls != cls[k]) & (radius <= radius[k])), k
        assert len(wrong) <= 0.05 * hit.sum()
        # far from every object, valid pixels are sky; invalid ones ignore
        rows, cols = np.indices(SHAPE)
        near = np.zeros(SHAPE, dtype=bool)
        for k in np.flatnonzero((y > -30) & (y < SHAPE[0] + 30) & (x > -30) & (x < SHAPE[1] + 30)):
            near |= (rows - y[k]) ** 2 + (cols - x[k]) ** 2 <= (radius[k] + 2.0) ** 2
        assert (label[valid & ~near] == SKY).all()
        assert (label[~valid] == IGNORE).all()
    assert from_neighbours > 0  # objects of the next field in the shared rows are painted here too


def test_simulated_star_disks_take_their_size_from_the_catalogue_psf(
    sim: tuple[Path, Path], sim_labelled: Path
) -> None:
    raw, _ = sim
    group = zarr.open_group(sim_labelled, mode="r")
    table = read_catalogs(find_catalogs([raw]))
    assert np.isfinite(table["psf_fwhm"][:, 2]).all()
    rows, cols = np.indices(SHAPE)
    checked = 0
    for slot in range(3):  # every isolated star of the three fields
        y, x, radius, cls = _field_objects(group, slot, table, LabelConfig())
        wcs = frame_wcs(fits.Header.fromstring(str(group["wcs"][slot])))
        fwhm_px = np.asarray(table["psf_fwhm"][:, 2]) / (float(np.mean(proj_plane_pixel_scales(wcs))) * 3600)
        label = group["label"][slot]
        for k in np.flatnonzero(cls == STAR):
            others = np.hypot(y - y[k], x - x[k]) < radius + radius[k] + 2.0
            others[k] = False
            if others.any() or not (15 < y[k] < SHAPE[0] - 15 and 15 < x[k] < SHAPE[1] - 15):
                continue
            area = np.count_nonzero((label == STAR) & ((rows - y[k]) ** 2 + (cols - x[k]) ** 2 < 100))
            assert abs(area - math.pi * fwhm_px[k] ** 2) <= 1.5 * math.pi * fwhm_px[k], (slot, k)
            checked += 1
    assert checked >= 8


def test_point_mode_paints_one_pixel_per_object(sim: tuple[Path, Path], tmp_path: Path) -> None:
    raw, store = sim
    labelled = tmp_path / "p.zarr"
    shutil.copytree(store, labelled)
    summary = label_store(labelled, [raw], LabelConfig(mode="point"))
    group = zarr.open_group(labelled, mode="r")
    table = read_catalogs(find_catalogs([raw]))
    for slot, name in enumerate(str(f) for f in group["field"][:]):
        label, valid = group["label"][slot], group["valid"][slot]
        y, x, _, cls = _field_objects(group, slot, table, LabelConfig())
        row, col = np.floor(y + 0.5).astype(int), np.floor(x + 0.5).astype(int)
        on = (row >= 0) & (row < SHAPE[0]) & (col >= 0) & (col < SHAPE[1])
        on &= valid[row.clip(0, SHAPE[0] - 1), col.clip(0, SHAPE[1] - 1)]
        painted = np.zeros(SHAPE, dtype=bool)
        painted[row[on], col[on]] = True
        np.testing.assert_array_equal((label == STAR) | (label == GALAXY), painted)
        assert (label[valid & ~painted] == SKY).all()
        assert sum(summary.painted[name].values()) >= on.sum()
    assert group["label"].attrs["settings"]["mode"] == "point"


@pytest.mark.slow
def test_labelling_on_a_distributed_cluster_writes_the_same_labels(
    sim: tuple[Path, Path], sim_labelled: Path, tmp_path: Path
) -> None:
    from dask.distributed import Client, LocalCluster

    raw, store = sim
    labelled = tmp_path / "d.zarr"
    shutil.copytree(store, labelled)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster),
    ):
        label_store(labelled, [raw])
    np.testing.assert_array_equal(
        zarr.open_group(labelled, mode="r")["label"][:], zarr.open_group(sim_labelled, mode="r")["label"][:]
    )


def test_objects_far_from_every_field_are_counted_outside_and_paint_nothing(
    sim: tuple[Path, Path], tmp_path: Path
) -> None:
    _, store = sim
    labelled = tmp_path / "o.zarr"
    shutil.copytree(store, labelled)
    catalog = tmp_path / "catalog-far.fits"
    Table({"RA": [10.0, 200.0], "DEC": [-60.0, 80.0], "OBJC_TYPE": [6, 3]}).write(catalog)
    summary = label_store(labelled, [catalog])
    assert summary.objects == 2 and summary.outside == 2
    assert all(p == {"star": 0, "galaxy": 0} for p in summary.painted.values())
    group = zarr.open_group(labelled, mode="r")
    np.testing.assert_array_equal(group["label"][:], np.where(group["valid"][:], SKY, IGNORE))
    assert "2 of 2 catalogue objects on no stored field" in summary.format()


def test_a_store_without_done_fields_is_refused(sim: tuple[Path, Path], tmp_path: Path) -> None:
    raw, store = sim
    empty = tmp_path / "e.zarr"
    shutil.copytree(store, empty)
    zarr.open_group(empty, mode="r+")["done"][:] = False
    with pytest.raises(LabelError, match="no field is done"):
        label_store(empty, [raw])


# ---- the real sample -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(sdss_dir: Path, tmp_path_factory: pytest.TempPathFactory, compute: Compute) -> dict[str, Path]:
    """The real sample ingested, then labelled in disk mode and, in a copy, in point mode."""
    field = sdss_dir / "003918-3-0213"
    root = tmp_path_factory.mktemp("real")
    store = root / "sample.zarr"
    assert ingest(field, store, IngestConfig(chunk=256), compute).ok
    point = root / "point.zarr"
    shutil.copytree(store, point)
    label_store(store, [field])
    label_store(point, [field], LabelConfig(mode="point"))
    return {"field": field, "disk": store, "point": point}


def _real_positions(real: dict[str, Path]) -> tuple[Table, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The sample catalogue with each object's stored-grid position from RA/DEC and from COLC_R/ROWC_R."""
    field = real["field"]
    table = read_catalogs([field / "catalog-003918-3-0213.fits"])
    wcs = frame_wcs(fits.Header.fromstring(str(zarr.open_group(real["disk"], mode="r")["wcs"][0])))
    x, y = wcs.world_to_pixel_values(np.asarray(table["ra"]), np.asarray(table["dec"]))
    r_wcs = frame_wcs(read_frame_header(field / "frame-r-003918-3-0213.fits.bz2"))
    ra, dec = r_wcs.pixel_to_world_values(np.asarray(table["colc_r"]), np.asarray(table["rowc_r"]))
    x_r, y_r = wcs.world_to_pixel_values(ra, dec)
    return table, x, y, x_r, y_r


def _disk_means(
    image: np.ndarray,
    label: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    radius: np.ndarray,
    cls: np.ndarray | None,
) -> np.ndarray:
    """Mean of ``image`` (band, y, x) over each disk's pixels (those labelled ``cls`` if given).

    NaN for disks that do not lie wholly on the grid.
    """
    ny, nx = label.shape
    out = np.full((image.shape[0], y.size), np.nan)
    for k in range(y.size):
        reach = int(np.ceil(radius[k]))
        i0, j0 = int(np.floor(y[k])) - reach, int(np.floor(x[k])) - reach
        if i0 < 0 or j0 < 0 or i0 + 2 * reach + 2 > ny or j0 + 2 * reach + 2 > nx:
            continue
        rows, cols = np.mgrid[i0 : i0 + 2 * reach + 2, j0 : j0 + 2 * reach + 2]
        disk = (rows - y[k]) ** 2 + (cols - x[k]) ** 2 <= radius[k] ** 2
        if cls is not None:
            disk &= label[rows, cols] == cls[k]
        if disk.any():
            out[:, k] = image[:, rows[disk], cols[disk]].mean(axis=1)
    return out


@pytest.mark.real
def test_real_labels_sit_on_the_sources_not_on_sky(real: dict[str, Path]) -> None:
    group = zarr.open_group(real["disk"], mode="r")
    image, label = group["image"][0], group["label"][0]
    table, x, y, _, _ = _real_positions(real)
    wcs = frame_wcs(fits.Header.fromstring(str(group["wcs"][0])))
    radius = object_radii(table, float(np.mean(proj_plane_pixel_scales(wcs))) * 3600, LabelConfig())
    cls = np.where(np.asarray(table["class"]) == "star", STAR, GALAXY)
    objects = _disk_means(image, label, y, x, radius, cls)

    # the same disks at random places whose every pixel, ring included, is labelled sky
    rng = np.random.default_rng(1)
    ry, rx = rng.uniform(10, label.shape[0] - 10, 20000), rng.uniform(10, label.shape[1] - 10, 20000)
    r_max = float(radius.max()) + 2
    clear = [
        (label[int(a - r_max) : int(a + r_max) + 2, int(b - r_max) : int(b + r_max) + 2] == SKY).all()
        for a, b in zip(ry, rx, strict=True)
    ]
    ry, rx = ry[clear][:3000], rx[clear][:3000]
    assert ry.size == 3000

    def significance(means: np.ndarray, r: float) -> np.ndarray:
        sky = _disk_means(image, label, ry, rx, np.full(ry.size, r), None)
        centre = np.median(sky, axis=1, keepdims=True)
        spread = 1.4826 * np.median(np.abs(sky - centre), axis=1, keepdims=True)
        return (means - centre) / spread, (sky - centre) / spread

    for name, code in (("star", STAR), ("galaxy", GALAXY)):
        mine = (cls == code) & np.isfinite(objects[2])
        r = float(np.median(radius[mine]))
        snr, sky_snr = significance(objects[:, mine], r)
        # in r, the typical painted disk is far above random sky
        assert np.median(snr[2]) > {"star": 10, "galaxy": 6}[name], np.median(snr[2])
        # object by object, in the band where each is brightest, 90% beat 99% of the sky disks (the rest:
        # catalogue objects seen in one band only, e.g. a bad z column at x = 768)
        threshold = np.percentile(sky_snr.max(axis=0), 99)
        assert np.mean(snr.max(axis=0) > threshold) > 0.9, np.mean(snr.max(axis=0) > threshold)
        # the 2023 mapping (axes swapped, floored) puts them on sky: it would fail both checks
        swapped = _disk_means(image, label, np.floor(x[mine]), np.floor(y[mine]), radius[mine], None)
        swapped = swapped[:, np.isfinite(swapped[2])]
        swapped_snr, _ = significance(swapped, r)
        assert np.median(swapped_snr[2]) < 2
        assert np.mean(swapped_snr.max(axis=0) > threshold) < 0.1


@pytest.mark.real
def test_real_labels_are_on_the_right_pixel(real: dict[str, Path]) -> None:
    table, x, y, x_r, y_r = _real_positions(real)
    # the stored WCS and the catalogue's r-frame pixel positions agree on where every object is
    assert np.abs(x - x_r).max() <= 0.5 and np.abs(y - y_r).max() <= 0.5
    cls = np.where(np.asarray(table["class"]) == "star", STAR, GALAXY)
    valid = zarr.open_group(real["disk"], mode="r")["valid"][0]
    ny, nx = valid.shape
    row, col = np.floor(y_r + 0.5).astype(int), np.floor(x_r + 0.5).astype(int)
    on = (row >= 0) & (row < ny) & (col >= 0) & (col < nx)
    on &= valid[row.clip(0, ny - 1), col.clip(0, nx - 1)]  # the last rows lack a band: ignore there
    assert on.sum() >= 310

    # point mode: each object's one pixel is the one whose centre is nearest its COLC_R/ROWC_R position
    point = zarr.open_group(real["point"], mode="r")["label"][0]
    painted_rows, painted_cols = np.nonzero((point == STAR) | (point == GALAXY))
    assert {(int(a), int(b)) for a, b in zip(painted_rows, painted_cols, strict=True)} == set(
        zip(row[on], col[on], strict=True)
    )
    for k in np.flatnonzero(on):
        assert point[row[k], col[k]] == cls[k] or np.any((row == row[k]) & (col == col[k]) & (cls == STAR)), k
    assert np.abs(row[on] - y_r[on]).max() <= 0.5 and np.abs(col[on] - x_r[on]).max() <= 0.5
    # the 2023 truncation would have missed that pixel for many objects, the axis swap for all
    floored = (np.floor(y_r) != row) | (np.floor(x_r) != col)
    assert floored[on].mean() > 0.25
    painted = set(zip(painted_rows.tolist(), painted_cols.tolist(), strict=True))
    swapped = set(
        zip(np.floor(x_r[on]).astype(int).tolist(), np.floor(y_r[on]).astype(int).tolist(), strict=True)
    )
    assert len(swapped & painted) < 0.05 * on.sum()

    # disk mode: every isolated object's painted disk is centred on it
    disk = zarr.open_group(real["disk"], mode="r")["label"][0]
    rows, cols = np.indices(disk.shape)
    checked = 0
    for k in np.flatnonzero(on):
        others = np.hypot(y - y[k], x - x[k]) < 16
        others[k] = False
        if others.any() or not (8 <= y[k] < ny - 8 and 8 <= x[k] < nx - 8):
            continue
        if not valid[row[k] - 8 : row[k] + 9, col[k] - 8 : col[k] + 9].all():
            continue
        mine = (disk == cls[k]) & ((rows - y[k]) ** 2 + (cols - x[k]) ** 2 < 64)
        assert mine[row[k], col[k]]
        assert np.hypot(rows[mine].mean() - y_r[k], cols[mine].mean() - x_r[k]) < 0.5, k
        checked += 1
    assert checked > 150
