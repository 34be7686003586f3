"""The split report: class pixel fractions and catalogue object counts per split against direct counts,
the Markdown table, and the three figures written as PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from sgc.config import SplitConfig
from sgc.cube.store import CubeStore
from sgc.patches.plan import make_plan
from sgc.patches.planfile import PatchPlan
from sgc.report.split import format_report, split_report, write_split_report
from sgc.sdss.frames import frame_wcs
from tests.patches.synthetic import build_store, random_field, tan_header

SHAPE = (64, 96)
A, B, C = "009001-3-0011", "009001-3-0012", "009001-3-0013"
RADIUS = 3


@pytest.fixture
def labelled(tmp_path: Path) -> tuple[Path, Path, dict[str, list[tuple[int, int, str]]]]:
    """Three far-apart fields with star and galaxy disks painted at catalogue positions; a block of A
    excluded (dropping a patch that holds an object); the catalogue file."""
    rng = np.random.default_rng(8)
    fields, objects, rows = {}, {}, []
    ys, xs = np.mgrid[: SHAPE[0], : SHAPE[1]]
    for k, name in enumerate((A, B, C)):
        header = tan_header(SHAPE, ra=150.0 + 2 * k)
        f = random_field(rng, SHAPE, header)
        f.label[:] = 0
        objects[name] = [
            (int(y), int(x), str(c))
            for y, x, c in zip(
                rng.integers(4, 60, 12),
                rng.integers(4, 92, 12),
                rng.choice(["star", "galaxy"], 12),
                strict=True,
            )
        ]
        for y, x, cls in objects[name]:
            f.label[(ys - y) ** 2 + (xs - x) ** 2 <= RADIUS**2] = 1 if cls == "star" else 2
        ra, dec = frame_wcs(header).pixel_to_world_values(
            np.array([o[1] for o in objects[name]], float), np.array([o[0] for o in objects[name]], float)
        )
        rows += [(r, d, 6 if o[2] == "star" else 3) for r, d, o in zip(ra, dec, objects[name], strict=True)]
        fields[name] = f
    fields[A].exclude[16:32, 32:48] = True
    objects[A].append((20, 40, "star"))  # inside the excluded patch: in no split
    ra, dec = frame_wcs(fields[A].header).pixel_to_world_values(40.0, 20.0)
    rows.append((float(ra), float(dec), 6))
    fields[A].label[(ys - 20) ** 2 + (xs - 40) ** 2 <= RADIUS**2] = 1
    catalog = tmp_path / "catalog.fits"
    Table(rows=rows, names=("RA", "DEC", "OBJC_TYPE")).write(catalog)
    return build_store(tmp_path / "s.zarr", fields), catalog, objects


def _plan(store: Path) -> PatchPlan:
    return make_plan(store, SplitConfig(patch=16, stride=16, train_fields=[A], val_fields=[B]), [C])


def test_report_counts_match_direct_counts(labelled: tuple[Path, Path, dict]) -> None:
    store, catalog, objects = labelled
    plan = _plan(store)
    report = split_report(plan, store, [catalog])
    assert report["mode"] == "fields" and report["objects_counted"]
    label = CubeStore.open(store)["label"]
    for split, field in (("train", A), ("val", B), ("test", C)):
        rows = plan.rows(split)
        s = report["splits"][split]
        assert s["patches"] == len(rows) and s["fields"] == 1
        pixels = np.concatenate(
            [
                label[int(r["field_index"]), r["y0"] : r["y0"] + 16, r["x0"] : r["x0"] + 16].ravel()
                for r in rows
            ]
        )
        assert s["pixels"] == pixels.size
        expected = {"sky": 0, "star": 1, "galaxy": 2, "ignore": 255}
        for cls, value in expected.items():
            assert s["class_fractions"][cls] == pytest.approx(np.mean(pixels == value))
        covered = {(int(r["y0"]), int(r["x0"])) for r in rows}
        inside = [o for o in objects[field] if (o[0] // 16 * 16, o[1] // 16 * 16) in covered]
        assert s["objects"] == {
            "star": sum(o[2] == "star" for o in inside),
            "galaxy": sum(o[2] == "galaxy" for o in inside),
        }
    assert report["splits"]["train"]["dropped"]["dropped_excluded"] == 1
    assert set(report["normalisation"]) == set("ugriz")
    text = format_report(report)
    assert sum(line.startswith("|") for line in text.splitlines()) == 5  # header, rule, a row per split
    assert f"| train | 1 | {len(plan.rows('train'))} |" in text
    without = split_report(plan, store)
    assert without["splits"]["train"]["objects"] is None and "not counted" in format_report(without)


def test_split_report_writes_json_markdown_and_figures(
    labelled: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    store, catalog, _ = labelled
    plan = _plan(store)
    paths = write_split_report(plan, store, tmp_path / "report", [catalog])
    assert json.loads(paths["json"].read_text())["splits"]["val"]["patches"] == len(plan.rows("val"))
    assert paths["markdown"].read_text().startswith("Patch plan of")
    sizes = {"patch_label": (1000, 540), "exclusion": (1200, 950), "patch_grid": (1200, 950)}
    for name, size in sizes.items():
        data = paths[name].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == size, name
    assert not list((tmp_path / "report").glob("*.part"))
    assert not list((tmp_path / "report").glob(".*.tmp"))  # atomic_write's temporaries
