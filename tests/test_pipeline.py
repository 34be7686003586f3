"""``sgc run`` end to end on the offline demo: simulate, serve over HTTP, download, inventory."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sgc.cli import app
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
    ):
        assert (tmp_path / path).exists(), path
