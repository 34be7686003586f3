"""Fault corpus: configs and command lines that cannot be used, each refused in one line before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.conftest import REPO, error_line, invoke

DEMO = REPO / "configs" / "demo.yaml"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\xff\xfe name: demo\n", "not UTF-8 text"),
        (b"name: [demo\n", "not valid YAML"),
        (b"- name\n- demo\n", "expected a mapping of settings"),
        (b"name: demo\ntrain:\n  epochs: many\n", "train.epochs"),
        (b"name: demo\ntrain:\n  epoch: 3\n", "train.epoch"),
        (b"name: demo\nsimulate:\n  fields: 0\n", "simulate.fields"),
        (b"name: demo\nsource: sdss\n", "download.fields"),
        (b"name: demo\nsource: ftp\n", "source"),
        (b"name: demo\ncompute:\n  workers: -1\n", "compute.workers"),
    ],
    ids=["not-utf8", "not-yaml", "a-list", "wrong-type", "unknown-key", "out-of-range", "sdss-no-fields",
         "unknown-source", "negative-workers"],
)  # fmt: skip
def test_a_bad_config_file_is_refused_naming_it_and_the_key(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_bytes(content)
    work = tmp_path / "work"
    result = invoke("run", config, "--set", f"workdir={work}", "--set", f"runs_dir={work}")
    error_line(result, str(config), problem)
    assert not work.exists()


def test_a_config_path_that_is_a_folder_is_named(tmp_path: Path) -> None:
    error_line(invoke("run", tmp_path), str(tmp_path), "is a folder, not a config file")


def test_a_missing_config_is_named(tmp_path: Path) -> None:
    error_line(invoke("config", tmp_path / "nope.yaml"), "nope.yaml", "does not exist")


@pytest.mark.parametrize(
    ("override", "named"),
    [("train.epochs", "train.epochs"), ("train.nope=1", "train.nope"), ("ingest.chunk=-4", "ingest.chunk")],
)
def test_a_bad_override_is_named(override: str, named: str) -> None:
    error_line(invoke("config", DEMO, "--set", override), named)


def test_a_workdir_below_a_regular_file_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = invoke(
        "run", DEMO, "--set", f"workdir={blocker / 'work'}", "--set", f"runs_dir={tmp_path / 'runs'}"
    )
    error_line(result, str(blocker), "is a file, not a folder")
    assert blocker.read_text() == "x" and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("field", ["../../etc", "8162-6", "frame-r-x.fits"])
def test_a_bad_field_id_to_download_is_one_line_naming_it(tmp_path: Path, field: str) -> None:
    line = error_line(
        invoke("download", field, "--out", tmp_path / "raw"), repr(field), "is not an SDSS field id"
    )
    assert "pydantic" not in line and "errors.pydantic.dev" not in line
    assert not (tmp_path / "raw").exists()
