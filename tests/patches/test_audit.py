"""The leak audit: passes on a correct plan and fails, naming the patch, when one leaked patch is injected;
on synthetic fields, on a single field split by rows, and on simulated consecutive fields (ingested)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from astropy.io import fits
from astropy.table import vstack
from astropy.wcs import WCS

from sgc.compute import Compute
from sgc.config import SplitConfig
from sgc.cube.store import CubeStore
from sgc.patches.audit import AuditError, audit_plan
from sgc.patches.plan import make_plan
from sgc.patches.planfile import PatchPlan, PlanFileError
from sgc.sdss.discover import DiscoveryError, find_frames
from sgc.sdss.frames import frame_wcs, read_frame_header
from sgc.sdss.names import BANDS
from tests.patches.synthetic import PIXEL_DEG, build_store, random_field, tan_header

SHAPE = (60, 80)
STEP = 40  # rows between consecutive synthetic fields: they overlap by 20 rows
A, B, C = "009001-3-0011", "009001-3-0012", "009001-3-0013"
# Offsets of each band of the held-out field from its stored grid, in pixels (x, y), like SDSS's.
BAND_SHIFTS = {"u": (2.0, -3.0), "g": (1.5, 2.5), "r": (0.0, 0.0), "i": (-0.5, 0.5), "z": (1.0, 3.0)}
EXCLUDE_MARGIN = 2.0
# The audit checks the exclusion margin less one pixel: 2 pixels of 0.396" audit 1 pixel around held-out sky.
AUDIT_MARGIN_ARCSEC = 2 * 0.396


def exclusion(header: fits.Header, shape: tuple[int, int], held: list[WCS], margin: float) -> np.ndarray:
    """Pixels of a grid whose centre falls on any held-out frame (with its pixel_shape), astropy alone."""
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    ra, dec = frame_wcs(header).pixel_to_world_values(xs.ravel(), ys.ravel())
    out = np.zeros(ys.size, dtype=bool)
    for wcs in held:
        nx, ny = wcs.pixel_shape
        px, py = wcs.world_to_pixel_values(ra, dec)
        out |= (
            (px >= -0.5 - margin)
            & (px <= nx - 0.5 + margin)
            & (py >= -0.5 - margin)
            & (py <= ny - 0.5 + margin)
        )
    return out.reshape(shape)


def _inject(plan: PatchPlan, field: str, y0: int, x0: int, split: str = "train") -> int:
    """Append one patch to the plan's table; returns its row."""
    row = plan.table[:1].copy()
    row["field"], row["y0"], row["x0"], row["split"] = field, y0, x0, split
    row["field_index"] = plan.store_fields.index(field)
    plan.table = vstack([plan.table, row])
    return len(plan.table) - 1


@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[Path, Path]:
    """Three fields overlapping along the scan, the middle one held out; its five band headers as .hdr."""
    decs = {name: 2.0 + k * STEP * PIXEL_DEG for k, name in enumerate((A, B, C))}
    headers = {name: tan_header(SHAPE, dec=dec) for name, dec in decs.items()}
    header_dir = tmp_path / "headers" / "nested"
    header_dir.mkdir(parents=True)
    held = []
    for band, (dx, dy) in BAND_SHIFTS.items():
        # Tangent point shifted by (dx, dy) pixels: the band's pixel (x, y) sees the grid's (x+dx, y+dy).
        header = tan_header(
            SHAPE, ra=150.0 - dx * PIXEL_DEG / np.cos(np.radians(decs[B])), dec=decs[B] + dy * PIXEL_DEG
        )
        header.totextfile(header_dir / f"frame-{band}-{B}.hdr")
        held.append(frame_wcs(header))
    (tmp_path / "headers" / f"frame-r-{B}.fits.bz2.part").write_text("a partial download, ignored")
    rng = np.random.default_rng(4)
    fields = {}
    for name in (A, B, C):
        f = random_field(rng, SHAPE, headers[name])
        f.exclude = exclusion(headers[name], SHAPE, held, EXCLUDE_MARGIN)
        fields[name] = f
    assert fields[A].exclude.any() and fields[C].exclude.any() and fields[B].exclude.all()
    return build_store(tmp_path / "s.zarr", fields), tmp_path / "headers"


def test_audit_passes_a_correct_plan_and_names_an_injected_leak(synthetic: tuple[Path, Path]) -> None:
    store, headers = synthetic
    plan = make_plan(store, SplitConfig(patch=8, stride=8, train_fields=[A], val_fields=[C]), [B])
    assert plan.summary["train"]["dropped_excluded"] > 0 and plan.summary["val"]["dropped_excluded"] > 0
    result = audit_plan(plan, store, [B], [headers], margin_arcsec=AUDIT_MARGIN_ARCSEC)
    assert result.ok, result.format()
    assert result.patches == plan.summary["train"]["kept"] + plan.summary["val"]["kept"]
    assert result.pixels == (plan.summary["train"]["kept"] + plan.summary["val"]["kept"]) * 64
    assert len([r for r in result.regions if r.startswith(f"{B} ")]) == 5
    assert "OK" in result.format()

    row = _inject(plan, A, y0=48, x0=16)  # A's rows 48-55 lie on B's sky
    result = audit_plan(plan, store, [B], [headers], margin_arcsec=AUDIT_MARGIN_ARCSEC)
    assert not result.ok
    assert result.leaks["row"].tolist() == [row]
    assert result.leaks["pixels"][0] == 64
    assert f"{B} u frame" in result.leaks["regions"][0]
    assert f"row {row} train {A} y0=48 x0=16: 64 px" in result.format()


def test_audit_is_independent_of_the_exclude_array(synthetic: tuple[Path, Path]) -> None:
    """A plan made from a store whose exclusion was never computed (all false) fails the audit."""
    store, headers = synthetic
    group = zarr.open_group(store, mode="r+")
    group["exclude"][:] = False
    plan = make_plan(store, SplitConfig(patch=8, stride=8, train_fields=[A], val_fields=[C]), [B])
    result = audit_plan(plan, store, [B], [headers], margin_arcsec=AUDIT_MARGIN_ARCSEC)
    assert not result.ok
    assert set(result.leaks["field"].tolist()) == {A, C}
    assert set(result.leaks["split"].tolist()) == {"train", "val"}


def test_rows_split_audit_checks_the_test_band(tmp_path: Path) -> None:
    store = build_store(tmp_path / "s.zarr", {A: random_field(np.random.default_rng(5), (200, 64))})
    plan = make_plan(store, SplitConfig(patch=16, stride=16, guard=16))
    assert audit_plan(plan, store, [], []).ok
    test_start = plan.split["assignment"]["bands"]["test"][0][0]
    # a train patch right against the test band: its last row is one pixel from the band
    _inject(plan, A, y0=test_start - 16, x0=0)
    assert audit_plan(plan, store, [], [], margin_arcsec=0.0).ok
    near = audit_plan(plan, store, [], [], margin_arcsec=AUDIT_MARGIN_ARCSEC)
    assert near.leaks["pixels"].tolist() == [16] and near.leaks["regions"][0] == f"test patches of {A}"
    row = _inject(plan, A, y0=test_start + 8, x0=16, split="val")
    result = audit_plan(plan, store, [], [])
    assert result.leaks["row"].tolist() == [row] and result.leaks["split"][0] == "val"


def test_audit_refuses_what_it_cannot_check_and_falls_back_to_stored_grids(
    synthetic: tuple[Path, Path], tmp_path: Path
) -> None:
    store, headers = synthetic
    plan = make_plan(store, SplitConfig(patch=8, stride=8, train_fields=[A], val_fields=[C]), [B])
    with pytest.raises(AuditError, match="held-out field 008162-6-0080: no frame or header"):
        audit_plan(plan, store, ["8162-6-80"], [headers])
    stored = audit_plan(
        plan, store, [B], [], margin_arcsec=AUDIT_MARGIN_ARCSEC
    )  # no headers: B's stored grid
    assert stored.ok and stored.regions == [f"{B} stored i grid", f"test patches of {B}"]
    with pytest.raises(DiscoveryError, match="nowhere: no such file or folder"):
        audit_plan(plan, store, [B], [tmp_path / "nowhere"])
    plan.table["field"][0] = "009001-3-0099"
    with pytest.raises(PlanFileError, match="but the plan puts patches of 009001-3-0099 there"):
        audit_plan(plan, store, [B], [headers])
    assert sorted(find_frames([headers], headers=True).bands(B)) == sorted(BANDS)
    single = headers / "nested" / f"frame-g-{B}.hdr"
    # a file given, and the first source wins
    assert find_frames([single, headers], headers=True).bands(B)["g"] == single


def test_audit_on_simulated_consecutive_fields(tmp_path: Path, compute: Compute) -> None:
    """Three simulated fields of one run, ingested; the middle one held out, its sky found from its frames."""
    from sgc.config import IngestConfig
    from sgc.cube.ingest import ingest
    from sgc.sim.simulate import simulate

    raw = tmp_path / "raw"
    first, middle, last = (str(f) for f in simulate(raw, 3, seed=5, shape=(300, 400)))
    store = tmp_path / "s.zarr"
    summary = ingest(raw, store, IngestConfig(chunk=128), compute)
    assert summary.ok, summary.format()
    held = [frame_wcs(read_frame_header(next(raw.rglob(f"frame-{b}-{middle}.fits.bz2")))) for b in BANDS]
    cube = CubeStore.open(store, mode="r+")
    names = cube.fields
    label = cube.pixel_array("label", "uint8", 255)
    exclude = cube.pixel_array("exclude", bool, False)
    for slot in range(len(names)):
        label[slot] = np.zeros((300, 400), dtype=np.uint8)
        exclude[slot] = exclusion(
            fits.Header.fromstring(cube.wcs_text(slot)), (300, 400), held, EXCLUDE_MARGIN
        )
    spec = SplitConfig(patch=32, stride=32, train_fields=[first], val_fields=[last])
    plan = make_plan(store, spec, [middle])
    assert plan.summary["train"]["dropped_excluded"] > 0 and plan.summary["val"]["dropped_excluded"] > 0
    assert plan.summary["train"]["kept"] > 0 and plan.summary["val"]["kept"] > 0
    result = audit_plan(plan, store, [middle], [raw], margin_arcsec=AUDIT_MARGIN_ARCSEC)
    assert result.ok, result.format()
    # the first field's train patch nearest the held-out field, on its sky: found and named
    dropped = exclude[names.index(first)].any(axis=1)
    y0 = int(np.flatnonzero(dropped)[len(np.flatnonzero(dropped)) // 2]) // 32 * 32
    row = _inject(plan, first, y0=y0, x0=64)
    result = audit_plan(plan, store, [middle], [raw], margin_arcsec=AUDIT_MARGIN_ARCSEC)
    assert not result.ok
    assert result.leaks["row"].tolist() == [row]
    assert f"{middle} i frame" in result.leaks["regions"][0]


@pytest.mark.real
def test_audit_of_the_real_sample_split_by_rows(sdss_dir: Path, tmp_path: Path, compute: Compute) -> None:
    """The real field, split by rows; held out: the canonical test field, from its real headers."""
    from sgc.config import IngestConfig
    from sgc.cube.ingest import ingest

    store = tmp_path / "sample.zarr"
    assert ingest(sdss_dir / "003918-3-0213", store, IngestConfig(), compute).ok
    cube = CubeStore.open(store, mode="r+")
    shape = cube.shape
    header = fits.Header.fromstring(cube.wcs_text(0))
    held = [frame_wcs(read_frame_header(p)) for p in (sdss_dir / "headers").glob("frame-*-008162-6-0080.hdr")]
    assert len(held) == 5
    cube.pixel_array("label", "uint8", 255)[0] = np.zeros(shape, dtype=np.uint8)
    cube.pixel_array("exclude", bool, False)[0] = exclusion(header, shape, held, EXCLUDE_MARGIN)
    plan = make_plan(store, SplitConfig(), ["8162-6-80"])
    assert plan.split["assignment"]["mode"] == "rows"
    result = audit_plan(plan, store, ["8162-6-80"], [sdss_dir / "headers"], margin_arcsec=AUDIT_MARGIN_ARCSEC)
    assert result.ok, result.format()
    assert len(result.regions) == 6  # five frames of 008162-6-0080 and the test band
    test_start = plan.split["assignment"]["bands"]["test"][0][0]
    row = _inject(plan, "003918-3-0213", y0=test_start - 32, x0=1024)
    result = audit_plan(plan, store, ["8162-6-80"], [sdss_dir / "headers"], margin_arcsec=AUDIT_MARGIN_ARCSEC)
    assert result.leaks["row"].tolist() == [row]
    assert result.leaks["pixels"][0] == (32 + 1) * 64  # 32 rows in the test band, one within the margin
