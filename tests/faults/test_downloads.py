"""Fault corpus: hostile and absent mirrors met by ``sgc download`` (real HTTP servers on 127.0.0.1)."""

from __future__ import annotations

import bz2
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from sgc.sdss.download import UNREACHABLE_IN_A_ROW, download
from sgc.sdss.mirror import MirrorRequestHandler, serve_directory
from sgc.sdss.names import FieldId
from tests.faults.conftest import FIELDS, REPO, World

# Bounds every hanging request of these servers, so that no test can wait forever on one.
HANG_S = 30.0


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_host_that_cannot_be_reached_stops_the_download_after_a_few_tries(tmp_path: Path) -> None:
    summary = download(
        FIELDS,
        tmp_path / "raw",
        base_url=f"http://127.0.0.1:{_closed_port()}",
        jobs=1,
        retries=4,
        backoff=0.01,
    )
    assert not summary.ok
    assert (
        summary.stopped and "cannot be reached" in summary.stopped and "3 times in a row" in summary.stopped
    )
    tried = [r for r in summary.results if r.attempts]
    # Three failed connections in all, not five attempts for each of the 17 files.
    assert sum(r.attempts for r in tried) == UNREACHABLE_IN_A_ROW
    assert all("not tried" in r.error for r in summary.results if not r.attempts)
    assert "stopped: 127.0.0.1" in summary.format()


class _Hanging(MirrorRequestHandler):
    """Sends the first half of every file, then hangs (up to HANG_S) without closing."""

    released = threading.Event()

    def do_GET(self) -> None:  # noqa: N802
        path = self.local_path()
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.released.wait(HANG_S)


def test_ctrl_c_during_a_hanging_download_stops_at_once_and_leaves_resumable_parts(
    clean_world: World, tmp_path: Path
) -> None:
    out = tmp_path / "raw"
    field = FieldId.parse(FIELDS[0])
    args = [sys.executable, "-m", "sgc", "download", str(field), "--out", str(out), "--no-catalogs", "-q"]
    _Hanging.released.clear()
    with serve_directory(clean_world.raw, handler_class=_Hanging) as url:
        try:
            proc = subprocess.Popen([*args, "--base-url", url, "--timeout", str(HANG_S)], cwd=REPO)
            parts = []
            deadline = time.monotonic() + 60
            while len(parts) < 4 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)
                parts = [p for p in out.rglob("*.part") if p.stat().st_size]
            assert len(parts) >= 4, "the transfers never started"
            proc.send_signal(signal.SIGINT)
            # Well before the hanging requests would time out (HANG_S): interrupted, not waited out.
            assert proc.wait(timeout=HANG_S / 3) != 0
        finally:
            _Hanging.released.set()  # before the server closes, which waits for its handlers
    sizes = {p: p.stat().st_size for p in out.rglob("*.part")}
    assert sizes and not list(out.rglob("*.bz2"))
    with serve_directory(clean_world.raw) as url:
        summary = download([field], out, base_url=url, include_catalogs=False)
    assert summary.ok, summary.format()
    for part in sizes:
        final = part.with_name(part.name.removesuffix(".part"))
        assert final.read_bytes() == (clean_world.raw / final.relative_to(out)).read_bytes()
    assert not list(out.rglob("*.part"))


class _Bomb(MirrorRequestHandler):
    """Serves, under every frame's name, 64 MiB of zeros bzip2-compressed to a few hundred bytes."""

    body = bz2.compress(bytes(1 << 26), 9)

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


def test_a_decompression_bomb_from_a_mirror_is_refused_from_its_first_block(
    clean_world: World, tmp_path: Path
) -> None:
    with serve_directory(clean_world.raw, handler_class=_Bomb) as url:
        summary = download([FIELDS[0]], tmp_path / "raw", base_url=url, include_catalogs=False, retries=0)
    assert [r.status for r in summary.results] == ["failed"] * 5
    assert all("not a FITS file" in r.error for r in summary.results), summary.format()
    assert not list((tmp_path / "raw").rglob("*.bz2"))
