"""The command line: help, config resolution and errors (stages are tested end to end in test_pipeline)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sgc.cli import app
from sgc.stages import STAGES
from tests.test_config import CROSS_FIELD_RULES

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def test_help_lists_every_stage() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    commands = [name for name, stage in STAGES.items() if stage.command]
    assert "reference" not in commands and {"predict", "evaluate", "explain", "report"} <= set(commands)
    for command in ("run", "config", "serve", *commands):
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


def _sets(overrides: list[str]) -> list[str]:
    return [arg for override in overrides for arg in ("--set", override)]


@pytest.mark.parametrize(("overrides", "named"), CROSS_FIELD_RULES)
def test_config_refuses_each_cross_field_mistake_naming_the_key(overrides: list[str], named: str) -> None:
    result = runner.invoke(app, ["config", str(REPO / "configs/demo.yaml"), *_sets(overrides)])
    assert result.exit_code == 1
    assert named in result.output and result.output.startswith("error: ")
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("overrides", "named"), CROSS_FIELD_RULES)
def test_run_refuses_each_cross_field_mistake_before_writing_anything(
    tmp_path: Path, overrides: list[str], named: str
) -> None:
    work = tmp_path / "work"
    args = ["run", str(REPO / "configs/demo.yaml"), "--set", f"workdir={work}", "--set", f"runs_dir={work}"]
    result = runner.invoke(app, [*args, *_sets(overrides)])
    assert result.exit_code == 1
    assert named in result.output
    assert not work.exists()


def test_a_stage_command_without_a_config_states_the_fields_it_holds_out(tmp_path: Path) -> None:
    result = runner.invoke(app, ["exclude", str(tmp_path / "missing.zarr")])
    assert result.exit_code == 1
    assert "holding out 008162-6-0080: the default test_fields" in result.output
    assert "missing.zarr: no cube store here" in result.output


def test_download_rejects_a_malformed_field_id(tmp_path: Path) -> None:
    result = runner.invoke(app, ["download", "8162-6", "--out", str(tmp_path / "raw")])
    assert result.exit_code == 1
    assert "'8162-6' is not an SDSS field id" in result.output
    assert not (tmp_path / "raw").exists()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("sgc ")
