"""The downloader against a local mirror with injected faults: resume, retry, verification, safety."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from astropy.io import fits

import sgc.sdss.download as download_module
from sgc.sdss.download import VERIFIED, DownloadSummary, PlannedFile, download, fetch_files, plan_downloads
from sgc.sdss.fitsfile import open_hdul
from sgc.sdss.mirror import MirrorRequestHandler, serve_directory
from sgc.sdss.names import BANDS, FieldId, calibobj_path

# Two fields of one run and camcol, one of another: 15 frames and 4 calibObj files.
FIELDS = [FieldId(3918, 3, 213), FieldId(3918, 3, 214), FieldId(8162, 6, 80)]
FRAME = FIELDS[0].frame_path("r")
CATALOG = calibobj_path(3918, 3, "gal")
TIMEOUT_S = 1.0
SLOW_S = 1.5  # longer than TIMEOUT_S


def _frame_bytes(seed: int) -> bytes:
    image = np.random.default_rng(seed).normal(size=(32, 32)).astype(np.float32)
    buffer = io.BytesIO()
    fits.PrimaryHDU(image).writeto(buffer)
    return bz2.compress(buffer.getvalue())


def _catalog_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column("RA", "D", array=rng.uniform(0, 360, 20)),
            fits.Column("DEC", "D", array=rng.uniform(-10, 10, 20)),
            fits.Column("OBJC_TYPE", "J", array=rng.choice([3, 6], 20)),
        ]
    )
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(buffer)
    return gzip.compress(buffer.getvalue(), mtime=0)


def _sas_paths() -> list[str]:
    frames = [f.frame_path(band) for f in FIELDS for band in BANDS]
    runs = dict.fromkeys((f.run, f.camcol) for f in FIELDS)
    return frames + [calibobj_path(run, camcol, kind) for run, camcol in runs for kind in ("star", "gal")]


@pytest.fixture
def sas(tmp_path: Path) -> Path:
    """A fake SAS tree: tiny valid bz2 frames and gzip catalogues at their SAS paths."""
    root = tmp_path / "sas"
    for seed, rel in enumerate(_sas_paths()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_catalog_bytes(seed) if "calibObj" in rel else _frame_bytes(seed))
    return root


@dataclass
class Mirror:
    """A served SAS tree, the faults it will play, and the requests it received."""

    url: str
    faults: dict[str, list[str]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def requests_for(self, rel: str) -> list[tuple[str, str, dict[str, str]]]:
        return [r for r in self.requests if r[1] == rel]


class FaultyHandler(MirrorRequestHandler):
    """Records every request, then plays the next fault scheduled for its path (if any)."""

    mirror: Mirror
    lock = threading.Lock()

    def do_GET(self) -> None:  # noqa: N802
        rel = urlsplit(self.path).path.lstrip("/")
        with self.lock:
            self.mirror.requests.append(("GET", rel, dict(self.headers)))
            queue = self.mirror.faults.get(rel)
            fault = queue.pop(0) if queue else None
        if fault is None:
            super().do_GET()
        else:
            getattr(self, f"fault_{fault}")()

    def fault_500(self) -> None:
        self.send_error(500)

    def fault_drop(self) -> None:
        # Promise the whole file, send half of it, hang up.
        data = self.local_path().read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.close_connection = True

    def fault_slow(self) -> None:
        time.sleep(SLOW_S)
        super().do_GET()

    def fault_html(self) -> None:
        page = b"<!DOCTYPE html><html><body>Service temporarily unavailable</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def fault_norange(self) -> None:
        del self.headers["Range"]
        super().do_GET()


@pytest.fixture
def mirror(sas: Path) -> Iterator[Mirror]:
    """The fake SAS tree served over HTTP by a :class:`FaultyHandler`."""
    state = Mirror(url="")
    handler = type("Handler", (FaultyHandler,), {"mirror": state})
    with serve_directory(sas, handler_class=handler) as url:
        state.url = url
        yield state


def _download(base_url: str, out: Path, **options: object) -> DownloadSummary:
    kwargs = {"jobs": 4, "retries": 4, "timeout": TIMEOUT_S, "backoff": 0.01} | options
    return download(FIELDS, out, base_url=base_url, **kwargs)


def _result(summary: DownloadSummary, rel: str):
    (result,) = [r for r in summary.results if r.path == summary.out_dir / rel]
    return result


def _assert_identical(sas: Path, out: Path, paths: list[str] | None = None) -> None:
    for rel in paths if paths is not None else _sas_paths():
        assert (out / rel).read_bytes() == (sas / rel).read_bytes(), rel
    assert not list(out.rglob("*.part"))


def test_plan_lists_frames_then_catalogues_in_sas_layout(tmp_path: Path) -> None:
    plan = plan_downloads([*FIELDS, "3918-3-213"], "https://example.org/sas/", tmp_path)
    assert [p.dest for p in plan] == [(tmp_path / rel).resolve() for rel in _sas_paths()]
    assert plan[0] == PlannedFile(
        "https://example.org/sas/photoObj/frames/301/3918/3/frame-u-003918-3-0213.fits.bz2",
        (tmp_path / FIELDS[0].frame_path("u")).resolve(),
    )
    assert len(plan_downloads(FIELDS, "https://example.org/sas", tmp_path, include_catalogs=False)) == 15


def test_download_is_byte_identical(sas: Path, mirror: Mirror, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = _download(mirror.url, out)
    assert summary.ok
    assert summary.counts == {"downloaded": 19, "skipped": 0, "failed": 0}
    assert all(r.attempts == 1 and r.bytes == r.path.stat().st_size for r in summary.results)
    _assert_identical(sas, out)
    assert all(headers["User-Agent"].startswith("sgc/") for _, _, headers in mirror.requests)
    assert "downloaded" in summary.format()


def test_second_run_skips_without_asking_the_server(sas: Path, mirror: Mirror, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _download(mirror.url, out)
    mirror.requests.clear()
    summary = _download(mirror.url, out)
    assert summary.ok
    assert summary.counts == {"downloaded": 0, "skipped": 19, "failed": 0}
    assert all(r.attempts == 0 for r in summary.results)
    assert mirror.requests == []


def test_files_verified_before_are_not_decompressed_again(
    sas: Path, mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    _download(mirror.url, out)
    assert len(json.loads((out / VERIFIED).read_text())) == 19
    opened = []
    monkeypatch.setattr(download_module, "open_hdul", lambda path: opened.append(path) or open_hdul(path))
    assert _download(mirror.url, out).counts == {"downloaded": 0, "skipped": 19, "failed": 0}
    assert opened == []  # a run that adds fields costs the new ones, not every file already held
    # A file changed since it was verified (same size, another time) is verified again, and refetched.
    frame = out / FRAME
    frame.write_bytes(b"\0" * frame.stat().st_size)
    summary = _download(mirror.url, out)
    assert summary.counts == {"downloaded": 1, "skipped": 18, "failed": 0}
    assert {Path(p).name for p in opened} == {frame.name, frame.name + ".part"}  # it, then its new copy
    _assert_identical(sas, out)


def test_truncated_file_in_place_is_fetched_again(sas: Path, mirror: Mirror, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _download(mirror.url, out)
    (out / FRAME).write_bytes((sas / FRAME).read_bytes()[:-100])
    mirror.requests.clear()
    summary = _download(mirror.url, out)
    assert summary.counts == {"downloaded": 1, "skipped": 18, "failed": 0}
    assert [r[1] for r in mirror.requests] == [FRAME]
    _assert_identical(sas, out)


def test_server_errors_are_retried(sas: Path, mirror: Mirror, tmp_path: Path) -> None:
    mirror.faults[FRAME] = ["500", "500"]
    summary = _download(mirror.url, tmp_path / "out")
    assert summary.ok
    assert _result(summary, FRAME).attempts == 3
    _assert_identical(sas, tmp_path / "out")


def test_dropped_connection_resumes_with_range(sas: Path, mirror: Mirror, tmp_path: Path) -> None:
    mirror.faults[CATALOG] = ["drop"]
    summary = _download(mirror.url, tmp_path / "out")
    assert summary.ok
    assert _result(summary, CATALOG).attempts == 2
    first, second = mirror.requests_for(CATALOG)
    assert "Range" not in first[2]
    assert second[2]["Range"] == f"bytes={len((sas / CATALOG).read_bytes()) // 2}-"
    _assert_identical(sas, tmp_path / "out")


def test_slow_response_times_out_then_succeeds(sas: Path, mirror: Mirror, tmp_path: Path) -> None:
    mirror.faults[FRAME] = ["slow"]
    summary = _download(mirror.url, tmp_path / "out")
    assert summary.ok
    assert _result(summary, FRAME).attempts == 2
    _assert_identical(sas, tmp_path / "out")


def test_missing_file_fails_at_once_and_the_rest_completes(sas: Path, mirror: Mirror, tmp_path: Path) -> None:
    (sas / FRAME).unlink()
    summary = _download(mirror.url, tmp_path / "out")
    assert not summary.ok
    assert summary.counts == {"downloaded": 18, "skipped": 0, "failed": 1}
    failed = _result(summary, FRAME)
    assert failed.status == "failed" and failed.attempts == 1
    assert "not found on server" in failed.error and "404" in failed.error
    assert len(mirror.requests_for(FRAME)) == 1
    assert not (tmp_path / "out" / FRAME).exists()
    assert f"{FRAME}: not found on server" in summary.format()
    _assert_identical(sas, tmp_path / "out", [p for p in _sas_paths() if p != FRAME])


def test_server_ignoring_range_restarts_from_zero(sas: Path, mirror: Mirror, tmp_path: Path) -> None:
    out = tmp_path / "out"
    data = (sas / FRAME).read_bytes()
    part = out / (FRAME + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[: len(data) // 2])
    mirror.faults[FRAME] = ["norange"] * 5
    summary = _download(mirror.url, out)
    assert summary.ok
    assert mirror.requests_for(FRAME)[0][2]["Range"] == f"bytes={len(data) // 2}-"
    _assert_identical(sas, out)


def test_html_page_fails_verification_after_retries(sas: Path, mirror: Mirror, tmp_path: Path) -> None:
    mirror.faults[FRAME] = ["html"] * 10
    summary = _download(mirror.url, tmp_path / "out", retries=2)
    failed = _result(summary, FRAME)
    assert failed.status == "failed" and failed.attempts == 3
    assert "verification failed" in failed.error and "HTML" in failed.error
    assert len(mirror.requests_for(FRAME)) == 3
    assert summary.counts["downloaded"] == 18
    assert not (tmp_path / "out" / FRAME).exists()
    assert not list((tmp_path / "out").rglob("*.part"))


def test_resume_from_existing_part(sas: Path, mirror: Mirror, tmp_path: Path) -> None:
    out = tmp_path / "out"
    data = (sas / CATALOG).read_bytes()
    part = out / (CATALOG + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[: len(data) // 2])
    summary = _download(mirror.url, out)
    assert summary.ok and _result(summary, CATALOG).attempts == 1
    ((_, _, headers),) = mirror.requests_for(CATALOG)
    assert headers["Range"] == f"bytes={len(data) // 2}-"
    _assert_identical(sas, out)


def test_complete_part_answered_416_is_kept(sas: Path, mirror: Mirror, tmp_path: Path) -> None:
    out = tmp_path / "out"
    part = out / (FRAME + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes((sas / FRAME).read_bytes())
    summary = _download(mirror.url, out)
    assert summary.ok and _result(summary, FRAME).status == "downloaded"
    assert len(mirror.requests_for(FRAME)) == 1
    _assert_identical(sas, out)


def test_file_url(sas: Path, tmp_path: Path) -> None:
    summary = _download(sas.as_uri(), tmp_path / "out", jobs=2)
    assert summary.counts == {"downloaded": 19, "skipped": 0, "failed": 0}
    _assert_identical(sas, tmp_path / "out")


def test_file_url_missing_file_fails(sas: Path, tmp_path: Path) -> None:
    (sas / FRAME).unlink()
    summary = _download(sas.as_uri() + "/", tmp_path / "out")
    assert not summary.ok
    assert "not found" in _result(summary, FRAME).error


def test_uncompressed_file_under_a_bz2_name_fails(sas: Path, tmp_path: Path) -> None:
    (sas / FRAME).write_bytes(bz2.decompress((sas / FRAME).read_bytes()))
    summary = _download(sas.as_uri(), tmp_path / "out", retries=1)
    failed = _result(summary, FRAME)
    assert failed.status == "failed" and failed.attempts == 2
    assert "not bzip2-compressed" in failed.error


@pytest.mark.parametrize("url", ["ftp://example.org/sas/", "example.org/sas", "file://otherhost/sas/"])
def test_rejects_unsupported_urls(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError, match="unsupported URL"):
        download(FIELDS, tmp_path, base_url=url)


@pytest.mark.parametrize("dest", ["../evil.fits.bz2", "/tmp/evil.fits.bz2", "."])
def test_rejects_destinations_outside_out_dir(tmp_path: Path, dest: str) -> None:
    out = tmp_path / "out"
    plan = [PlannedFile("http://127.0.0.1:9/x.fits.bz2", out / dest)]
    with pytest.raises(ValueError, match="not inside the output folder"):
        fetch_files(plan, out)
    assert not (tmp_path / "evil.fits.bz2").exists()


def test_rejects_a_symlink_leading_out_of_out_dir(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "photoObj").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="not inside the output folder"):
        plan_downloads(FIELDS, "https://example.org/sas/", out)
