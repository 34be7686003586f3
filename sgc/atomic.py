"""Writing a file so that a reader, or a run killed half way, only ever sees the old or the new version;
and the JSON files sgc writes that way."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from sgc.errors import OutputFileError

# The process's umask, read once at import (setting it is the only way to read it, and not thread-safe):
# mkstemp makes files private (0600), and a file sgc writes should get what the user's umask gives.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", sync: bool = True, **open_args: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was. The file gets the
    permissions the umask gives a new file (``0666`` less the umask), like any file ``open`` creates.

    Args:
        path: the file to write; its folder is created if missing.
        mode: ``"wb"`` or ``"w"``.
        sync: flush the file and the rename to disk first, so that they survive a power cut too
            (checkpoints); outputs that a rerun rebuilds cheaply skip the cost.
        open_args: passed to :func:`open` (``newline=""`` for CSV, say).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Beside the destination, so that os.replace is a rename within one filesystem.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    if sync:
        _fsync_dir(path.parent)


def check_folders_above(path: str | Path) -> None:
    """Refuse a path below a regular file, which no folder can be created for, naming the file.

    Raises:
        OutputFileError: naming the file that stands where a folder above ``path`` would be.
    """
    for parent in Path(path).absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputFileError(
                    parent, f"is a file, not a folder, so {path} cannot be written below it"
                )
            return


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; not possible (nor needed) on platforms without directory fds."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | Path, value: Any, indent: int = 1) -> Path:
    """Write ``value`` as strict JSON (no NaN or infinity) with a final newline, atomically.

    Raises:
        ValueError: if ``value`` holds a NaN or infinity.
    """
    text = json.dumps(value, indent=indent, allow_nan=False) + "\n"
    with atomic_write(path, "w", sync=False) as f:
        f.write(text)
    return Path(path)


def read_json(path: str | Path) -> Any | None:
    """A JSON file's value, None where the file does not exist."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None
