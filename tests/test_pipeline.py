"""``sgc run`` end to end on the offline demo: simulate, serve over HTTP, download, inventory."""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sgc.cli import app
from sgc.patches.planfile import read_plan
from sgc.sdss.discover import find_raw

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(("sgc-", ".sgc-"))
    }


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("work")
    result = runner.invoke(
        app,
        [
            "run",
            "--quiet",
            "--set",
            f"workdir={work}",
            "--set",
            f"runs_dir={work / 'runs'}",
            "--set",
            "simulate.fields=2",
            "--set",
            "download.jobs=2",
        ],
    )
    assert result.exit_code == 0, result.output
    return work / "demo"


@pytest.mark.slow
def test_demo_downloads_the_simulated_mirror_byte_for_byte(demo_run: Path) -> None:
    mirror, raw = demo_run / "mirror", demo_run / "raw"
    assert _digests(raw) == _digests(mirror)
    inv = find_raw(raw)
    assert len(inv.complete) == 2 and not inv.incomplete
    assert len(inv.catalogs) == 2  # calibObj star and gal of the one run+camcol
    assert (demo_run / "sgc-run.yaml").is_file()
    assert (raw / "sgc-download.yaml").is_file()
    assert (mirror / "sgc-simulate.yaml").is_file()
    assert (demo_run / "plan.zarr").is_dir() and (demo_run / "stats" / "stats.json").is_file()
    assert (demo_run.parent / "runs" / "demo" / "best.pt").is_file()


@pytest.mark.slow
def test_rerun_skips_what_is_complete(demo_run: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in (demo_run / "raw").rglob("*.fits*")}
    result = runner.invoke(
        app,
        [
            "run",
            "--set",
            f"workdir={demo_run.parent}",
            "--set",
            f"runs_dir={demo_run.parent / 'runs'}",
            "--set",
            "simulate.fields=2",
            "--set",
            "download.jobs=2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"^downloaded\s+0\s", result.output, re.M) and re.search(
        r"^skipped\s+12\s", result.output, re.M
    )
    assert "0 field(s) stored, 2 already done" in result.output
    assert {p: p.stat().st_mtime_ns for p in (demo_run / "raw").rglob("*.fits*")} == before


def test_sdss_source_without_fields_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--set", f"workdir={tmp_path}", "--set", "source=sdss"])
    assert result.exit_code == 1
    assert "download.fields" in result.output


@pytest.mark.slow
def test_sample_config_runs_every_stage_on_the_real_sample(sdss_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "run",
            str(REPO / "configs" / "sample.yaml"),
            "--quiet",
            "--set",
            f"workdir={tmp_path}",
            "--set",
            f"runs_dir={tmp_path / 'runs'}",
            "--set",
            "train.epochs=15",
            "--set",
            f"raw_dir={sdss_dir / '003918-3-0213'}",
            "--set",
            f"exclude.footprint_sources=[{sdss_dir / 'headers'}]",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 field(s) with all five bands, 1 catalogue file(s)" in result.output
    assert "137 stars, 181 galaxies" in result.output  # one star lies past the i grid's 745 rows
    assert "OK, no patch touches held-out sky" in result.output
    for path in (
        "sample.zarr",
        "sample/stats/stats.json",
        "sample/plan.zarr",
        "sample/plan-report/patch_grid.png",
        "runs/sample/best.pt",
    ):
        assert (tmp_path / path).exists(), path
    # The U-Net learns from the 186 train patches: validation F1 far above the class-frequency baseline
    # (a guess in proportion to the validation pixels' classes scores F1 = that class's share).
    plan = read_plan(tmp_path / "sample" / "plan.zarr")
    val = plan.rows("val")
    shares = np.array([np.sum(val[c]) for c in ("n_sky", "n_star", "n_galaxy")], dtype=float)
    shares /= shares.sum()
    with (tmp_path / "runs" / "sample" / "metrics.csv").open() as f:
        best = max(csv.DictReader(f), key=lambda row: float(row["val_f1"]))
    assert float(best["val_f1_star"]) > 30 * shares[1] and float(best["val_f1_star"]) > 0.3
    assert float(best["val_f1_galaxy"]) > 30 * shares[2] and float(best["val_f1_galaxy"]) > 0.3
