"""Atomic file writes: the new file whole, or the old one untouched and no temporary left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from sgc.atomic import atomic_write


def test_a_write_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.csv"
    with atomic_write(path, "w", newline="") as f:
        f.write("a,b\n")
    with atomic_write(path, "w") as f:
        f.write("c\n")
    assert path.read_text() == "c\n"
    assert [p.name for p in path.parent.iterdir()] == ["f.csv"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="half way"), atomic_write(path) as f:
        f.write(b"new, but")
        raise RuntimeError("killed half way")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_written_files_get_the_permissions_of_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0o027)
    try:
        import importlib

        import sgc.atomic

        importlib.reload(sgc.atomic)  # the umask is read when the module is imported
        with sgc.atomic.atomic_write(tmp_path / "f.txt", "w") as f:
            f.write("x")
        assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
        importlib.reload(sgc.atomic)
    with sgc.atomic.atomic_write(tmp_path / "g.txt", "w") as f:
        f.write("x")
    assert (tmp_path / "g.txt").stat().st_mode & 0o777 == 0o666 & ~old
