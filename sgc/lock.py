"""One writer at a time: an advisory lock on an output (a store, a raw folder) held while a stage writes it.

Two ``sgc ingest`` runs appending to one store would both grow its field list and could each claim the same
slot; two downloads into one folder would write the same ``.part`` files. A stage that writes such an output
holds its lock for as long as it runs, and a second writer waits until the first is done, then sees what the
first wrote (fields done, files verified) and does only what is left.

The lock is ``flock`` on a small file beside the output (``.NAME.sgc-lock``, so that it exists before the
output does and never enters it). The kernel releases it when its holder exits, killed or not, so a crashed
run never leaves a stale lock. It works between processes on one machine and on file systems that carry
``flock`` (local disks; NFS v4 does); object stores have no such lock, and a store there must have a single
writer (see docs/reliability.md).
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sgc.atomic import check_folders_above

log = logging.getLogger(__name__)


def lock_path(output: Path) -> Path:
    """The lock file of ``output``: beside it, hidden."""
    return output.parent / f".{output.name}.sgc-lock"


@contextmanager
def writer_lock(output: str | Path, what: str) -> Iterator[None]:
    """Hold ``output``'s writer lock; wait, saying for whom, while another process holds it.

    Args:
        output: the store or folder about to be written (it need not exist yet).
        what: who holds the lock, for the message another writer sees (``sgc ingest``, say).
    """
    check_folders_above(output)
    output = Path(output).resolve()
    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            log.warning("%s: %s is writing it; waiting until it is done", output, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what} (pid {os.getpid()} on {socket.gethostname()})\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
