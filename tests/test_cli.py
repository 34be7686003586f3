"""The command line: help, config resolution and errors (stages are tested end to end in test_pipeline)."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from sgc.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def test_help_lists_every_stage() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    commands = (
        "run",
        "config",
        "simulate",
        "serve",
        "download",
        "ingest",
        "stats",
        "label",
        "exclude",
        "split",
    )
    for command in (*commands, "audit"):
        assert f" {command} " in result.output, command


def test_config_prints_the_resolved_config_with_overrides() -> None:
    result = runner.invoke(app, ["config", str(REPO / "configs/demo.yaml"), "--set", "simulate.fields=7"])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.output)
    assert data["simulate"]["fields"] == 7
    assert data["name"] == "demo"


def test_bad_override_is_a_clear_error() -> None:
    result = runner.invoke(app, ["config", "--set", "simulate.fields=-1"])
    assert result.exit_code == 1
    assert "simulate.fields" in result.output


def test_download_rejects_a_malformed_field_id(tmp_path: Path) -> None:
    result = runner.invoke(app, ["download", "8162-6", "--out", str(tmp_path / "raw")])
    assert result.exit_code == 1
    assert "'8162-6' is not an SDSS field id" in result.output
    assert not (tmp_path / "raw").exists()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("sgc ")
