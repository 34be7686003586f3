"""Every file and folder sgc writes gets the permissions the user's umask gives (here 002: group-writable)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.faults.conftest import World, sgc_process, write_config


def _as_user_with_umask_002() -> None:
    os.umask(0o002)


def _run(*args: object) -> None:
    proc = sgc_process(*args, preexec_fn=_as_user_with_umask_002)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _modes(root: Path) -> dict[str, set[Path]]:
    wrong: dict[str, set[Path]] = {"files": set(), "folders": set()}
    for path in root.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir() and mode != 0o775:
            wrong["folders"].add(path)
        elif path.is_file() and mode != 0o664:
            wrong["files"].add(path)
    return wrong


@pytest.mark.slow
def test_every_output_of_a_run_and_the_simulated_mirror_follow_the_umask(
    clean_world: World, tmp_path: Path
) -> None:
    config = write_config(tmp_path, clean_world.raw)
    _run("run", config)
    _run("simulate", "--out", tmp_path / "mirror", "--fields", 1)
    written = (tmp_path / "work", tmp_path / "mirror")  # all sgc wrote: the config is the test's own
    checked = [p for folder in written for p in folder.rglob("*") if p.is_file()]
    names = {p.name for p in checked}
    # Stores, plan, checkpoints, records, figures, the report and its config, predictions and the mirror.
    for expected in ("zarr.json", "best.pt", "last.pt", "index.html", "sgc-run.yaml", "objects.csv"):
        assert expected in names, expected
    assert any(p.suffix == ".png" for p in checked) and any(p.name.endswith(".fits.bz2") for p in checked)
    for folder in written:
        assert _modes(folder) == {"files": set(), "folders": set()}, folder
