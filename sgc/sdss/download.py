"""Fetch SDSS frames and calibObj catalogues from the SAS or a mirror: parallel, resumable, verified.

Every file goes to ``<dest>.part`` first. An interrupted transfer leaves that ``.part`` behind and the
next attempt (or the next run) continues it with an HTTP ``Range`` request. Only a file whose
compressed stream is complete and whose FITS structure opens is renamed into place, so a file at its
final path is always whole, and a later run skips it without asking the server. What was verified is noted
in ``.sgc-verified.json`` at the root (path, size and modification time): a later run skips those files
without decompressing them again, so a run that adds fields costs the new fields, not every field held;
a file changed since (another size or time) is verified again.

Transient failures (timeouts, dropped connections, short bodies, 5xx answers, a body that fails
verification) are retried with exponential back-off; a 4xx answer is final at once. Failures never
stop the other files: they end up in the :class:`DownloadSummary`. Two things stop the whole download:
the host failing to answer a connection :data:`UNREACHABLE_IN_A_ROW` times in a row (no network: every
file would fail the same way, slowly), and Ctrl-C, which returns at once, leaving each transfer in flight
as a ``.part`` that the next run resumes.
"""

from __future__ import annotations

import http.client
import logging
import os
import queue
import random
import re
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

from sgc import __version__, progress
from sgc.atomic import read_json, write_json
from sgc.errors import InputFileError
from sgc.progress import format_size
from sgc.sdss.fitsfile import open_hdul
from sgc.sdss.names import BANDS, CATALOG_KINDS, DEFAULT_BASE_URL, FieldId, calibobj_path, join_url

logger = logging.getLogger(__name__)

Status = Literal["downloaded", "skipped", "failed"]
STATUSES: tuple[Status, ...] = ("downloaded", "skipped", "failed")
SCHEMES: tuple[str, ...] = ("http", "https", "file")
USER_AGENT = f"sgc/{__version__}"

_CHUNK = 1 << 16
_MAX_DELAY_S = 60.0
# What the SAS publishes under each suffix; a server that decompresses on the fly is caught here.
_MAGIC = {".bz2": (b"BZh", "bzip2"), ".gz": (b"\x1f\x8b", "gzip")}
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-")
VERIFIED = ".sgc-verified.json"  # at the download root: {relative path: [size, mtime_ns]}
# Connections refused, hosts not found or not answering, in a row over all files, that stop the download.
UNREACHABLE_IN_A_ROW = 3


class PlannedFile(NamedTuple):
    """One file to fetch: where it comes from and where it goes."""

    url: str
    dest: Path


@dataclass(frozen=True)
class FileResult:
    """What happened to one file.

    Attributes:
        path: the destination file.
        status: ``downloaded``, ``skipped`` (already complete) or ``failed``.
        bytes: size of the complete file; 0 for a failed one.
        attempts: transfers tried (0 for a skipped file).
        error: why the file failed, in words; None otherwise.
    """

    path: Path
    status: Status
    bytes: int
    attempts: int
    error: str | None = None


@dataclass(frozen=True)
class DownloadSummary:
    """The outcome of a download, one :class:`FileResult` per planned file, in plan order."""

    out_dir: Path
    results: list[FileResult]
    stopped: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        """Number of files per status (every status present, possibly 0)."""
        return {status: sum(r.status == status for r in self.results) for status in STATUSES}

    @property
    def ok(self) -> bool:
        """True if no file failed."""
        return all(r.status != "failed" for r in self.results)

    @property
    def failed(self) -> list[FileResult]:
        """The files that failed."""
        return [r for r in self.results if r.status == "failed"]

    def format(self) -> str:
        """A human summary: files and bytes per status, then each failed file with its reason."""
        lines = [f"stopped: {self.stopped}"] if self.stopped else []
        lines.append(f"{'status':<12}{'files':>7}{'bytes':>12}")
        for status in STATUSES:
            files = [r for r in self.results if r.status == status]
            size = format_size(sum(r.bytes for r in files))
            lines.append(f"{status:<12}{len(files):>7}{size:>12}")
        tried = [r for r in self.failed if r.attempts]
        if tried:
            lines.append(f"failed files (below {self.out_dir}):")
            lines += [f"  {r.path.relative_to(self.out_dir)}: {r.error}" for r in tried]
        if len(tried) < len(self.failed):
            lines.append(f"{len(self.failed) - len(tried)} file(s) not tried")
        return "\n".join(lines)


class _Reachability:
    """Connections that failed in a row, over every file; reaching the limit stops the download."""

    def __init__(self, limit: int, stop: threading.Event) -> None:
        self.limit = limit
        self.stop = stop
        self.why: str | None = None
        self._failures = 0
        self._lock = threading.Lock()

    def answered(self) -> None:
        with self._lock:
            self._failures = 0

    def failed(self, url: str, error: str) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self.limit and self.why is None:
                host = urlsplit(url).netloc
                self.why = f"{host} cannot be reached ({error}, {self._failures} times in a row)"
                self.stop.set()


@dataclass(frozen=True)
class _Options:
    retries: int
    timeout: float
    backoff: float
    verified: dict[str, list[int]]  # files verified before, as in VERIFIED
    root: Path
    stop: threading.Event  # set on Ctrl-C, or when the host cannot be reached
    reach: _Reachability


class _RetryableError(Exception):
    """A transient failure: the same request may well succeed later."""


class _PermanentError(Exception):
    """A failure that asking again will not fix (a 4xx answer, a missing local file)."""


class _UnreachableError(_RetryableError):
    """No connection at all: the host is not found, refuses, or does not answer."""


def plan_downloads(
    fields: Iterable[FieldId | str],
    base_url: str = DEFAULT_BASE_URL,
    out_dir: str | Path = ".",
    include_catalogs: bool = True,
) -> list[PlannedFile]:
    """List the files to fetch for ``fields``: five frames each, and two calibObj files per run and camcol.

    Destinations keep the SAS layout below ``out_dir``; repeated fields are planned once.

    Args:
        fields: field ids (:class:`FieldId` or text such as ``8162-6-80``).
        base_url: SAS root (or a mirror of it): ``http://``, ``https://`` or ``file://``.
        out_dir: local root of the mirror being filled.
        include_catalogs: also plan the calibObj star and galaxy sweeps of each (run, camcol).

    Returns:
        ``(url, dest)`` pairs, frames first in field order, then catalogues.

    Raises:
        ValueError: for an unsupported URL scheme, a bad field id, or a destination outside ``out_dir``.
    """
    _check_url(base_url)
    root = Path(out_dir).resolve()
    unique = list(dict.fromkeys(FieldId.parse(f) for f in fields))
    paths = [f.frame_path(band) for f in unique for band in BANDS]
    if include_catalogs:
        runs = dict.fromkeys((f.run, f.camcol) for f in unique)
        paths += [calibobj_path(run, camcol, kind) for run, camcol in runs for kind in CATALOG_KINDS]
    return [PlannedFile(join_url(base_url, p), _checked_destination(root, root / p)) for p in paths]


def download(
    fields: Iterable[FieldId | str],
    out_dir: str | Path,
    base_url: str = DEFAULT_BASE_URL,
    jobs: int = 4,
    retries: int = 4,
    timeout: float = 30.0,
    backoff: float = 0.5,
    include_catalogs: bool = True,
) -> DownloadSummary:
    """Download the frames (and calibObj catalogues) of ``fields`` into ``out_dir``, in the SAS layout.

    Args:
        fields: field ids (:class:`FieldId` or text such as ``8162-6-80``).
        out_dir: local root; files land at the same relative paths as on the server.
        base_url: SAS root or a mirror: ``http://``, ``https://`` or ``file://``.
        jobs: files transferred at once.
        retries: further attempts after a transient failure (so at most ``retries + 1`` per file).
        timeout: seconds to wait for a connection or for data before an attempt fails.
        backoff: first retry delay in seconds; it doubles with each retry (plus a little jitter).
        include_catalogs: also fetch the calibObj star and galaxy sweeps of each (run, camcol).

    Returns:
        The summary; ``summary.ok`` is False if any file failed.

    Raises:
        ValueError: for an unsupported URL scheme, a bad field id or bad option values.
    """
    plan = plan_downloads(fields, base_url, out_dir, include_catalogs)
    return fetch_files(plan, out_dir, jobs=jobs, retries=retries, timeout=timeout, backoff=backoff)


def fetch_files(
    plan: Sequence[PlannedFile],
    out_dir: str | Path,
    *,
    jobs: int = 4,
    retries: int = 4,
    timeout: float = 30.0,
    backoff: float = 0.5,
) -> DownloadSummary:
    """Fetch planned files in parallel, resuming, verifying and skipping complete ones.

    Args:
        plan: ``(url, dest)`` pairs, as from :func:`plan_downloads`; each dest must lie below ``out_dir``.
        out_dir: the only folder written to.
        jobs, retries, timeout, backoff: as for :func:`download`.

    Returns:
        The summary, results in plan order.

    Raises:
        ValueError: for an unsupported URL, a destination outside ``out_dir`` or listed twice,
            or bad option values.
    """
    if jobs < 1 or retries < 0 or timeout <= 0 or backoff < 0:
        raise ValueError(
            f"need jobs >= 1, retries >= 0, timeout > 0 and backoff >= 0; "
            f"got jobs={jobs}, retries={retries}, timeout={timeout}, backoff={backoff}"
        )
    root = Path(out_dir).resolve()
    checked = [PlannedFile(_check_url(url), _checked_destination(root, dest)) for url, dest in plan]
    dests = [item.dest for item in checked]
    if len(set(dests)) != len(dests):
        raise ValueError("the download plan lists a destination twice")
    stop = threading.Event()
    reach = _Reachability(UNREACHABLE_IN_A_ROW, stop)
    opts = _Options(retries, timeout, backoff, _read_verified(root), root, stop, reach)
    try:
        results = _run_parallel(checked, opts, jobs)
    finally:
        stop.set()  # after Ctrl-C: workers still in flight start nothing more
        # A copy (one C-level step under the GIL): after Ctrl-C, transfers still in flight may add to it.
        _write_verified(root, dict(opts.verified))  # also after Ctrl-C: what was verified stays known
    return DownloadSummary(root, results, reach.why)


def _read_verified(root: Path) -> dict[str, list[int]]:
    """The files verified by earlier runs; nothing where the note is missing or unreadable."""
    try:
        value = read_json(root / VERIFIED)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _write_verified(root: Path, verified: dict[str, list[int]]) -> None:
    """Save the note of verified files."""
    try:
        write_json(root / VERIFIED, verified, indent=0)
    except OSError as exc:  # a read-only mirror still downloads; the next run verifies again
        logger.info("%s: could not note the verified files (%s)", root, exc)


def _run_parallel(plan: list[PlannedFile], opts: _Options, jobs: int) -> list[FileResult]:
    """Fetch the files on ``jobs`` threads; files not started when the download stops are failed, untried.

    The threads are daemons, not a ThreadPoolExecutor's, which the interpreter joins at exit: after Ctrl-C
    this returns at once, whatever a transfer in flight is waiting for, and the process can exit; what a
    transfer had written stays in its ``.part``.
    """
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(len(plan)):
        todo.put(i)
    done: queue.SimpleQueue[tuple[int, FileResult | BaseException]] = queue.SimpleQueue()

    def work() -> None:
        while not opts.stop.is_set():
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((i, _fetch_one(plan[i], opts)))
            except BaseException as exc:  # a bug, not a failed file: raised again in the caller's thread
                done.put((i, exc))

    workers = [
        threading.Thread(target=work, name=f"sgc-download-{k}", daemon=True)
        for k in range(min(jobs, len(plan)))
    ]
    for worker in workers:
        worker.start()
    results: dict[int, FileResult] = {}
    total_bytes = failed = 0
    with progress.bar(total=len(plan), unit="file", desc="download") as bar:
        while len(results) < len(plan) and (any(w.is_alive() for w in workers) or not done.empty()):
            try:
                i, result = done.get(timeout=0.2)  # a short wait, so that Ctrl-C is seen at once
            except queue.Empty:
                continue
            if isinstance(result, BaseException):
                opts.stop.set()
                raise result
            results[i] = result
            total_bytes += result.bytes
            failed += result.status == "failed"
            bar.update()
            bar.set_postfix(size=format_size(total_bytes), failed=failed)
    why = opts.reach.why or "the download was stopped"
    return [
        results.get(i) or FileResult(item.dest, "failed", 0, 0, f"not tried: {why}")
        for i, item in enumerate(plan)
    ]


def _fetch_one(item: PlannedFile, opts: _Options) -> FileResult:
    dest = item.dest
    key = dest.relative_to(opts.root).as_posix()
    if _is_complete(dest, opts.verified.get(key)):
        opts.verified[key] = _stamp(dest)  # one key per thread: no lock needed under the GIL
        return FileResult(dest, "skipped", dest.stat().st_size, 0)
    part = dest.with_name(dest.name + ".part")
    error = ""
    for attempt in range(1, opts.retries + 2):
        if opts.stop.is_set():
            # Why the download stopped is said once, in the summary.
            what = f"{error}; not retried" if error else "not tried"
            return FileResult(dest, "failed", 0, attempt - 1, f"{what}: the download stopped")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            _transfer(item.url, part, opts.timeout)
            opts.reach.answered()
            _verify(part, dest.name)
            os.replace(part, dest)  # atomic: the final path only ever holds a verified file
            opts.verified[key] = _stamp(dest)
        except _PermanentError as exc:
            opts.reach.answered()
            return FileResult(dest, "failed", 0, attempt, str(exc))
        except InputFileError as exc:
            part.unlink(missing_ok=True)  # a wrong body cannot be resumed: start the next attempt afresh
            error = f"verification failed: {exc.reason}"
        except _UnreachableError as exc:
            error = str(exc)
            opts.reach.failed(item.url, error)
        except _RetryableError as exc:
            opts.reach.answered()
            error = str(exc)
        except OSError as exc:  # network errors became _RetryableError in _transfer: this one is local
            return FileResult(dest, "failed", 0, attempt, f"local file error ({exc})")
        else:
            return FileResult(dest, "downloaded", dest.stat().st_size, attempt)
        if attempt <= opts.retries:
            logger.info("%s: attempt %d failed (%s); retrying", dest.name, attempt, error)
            opts.stop.wait(_retry_delay(opts.backoff, attempt))
    return FileResult(
        dest, "failed", 0, opts.retries + 1, f"{error} (gave up after {opts.retries + 1} attempts)"
    )


def _retry_delay(backoff: float, attempt: int) -> float:
    # The jitter keeps parallel workers that failed together from retrying in lock-step.
    return min(backoff * 2 ** (attempt - 1), _MAX_DELAY_S) * random.uniform(1.0, 1.25)


def _is_complete(dest: Path, stamp: list[int] | None = None) -> bool:
    """True if ``dest`` exists, is non-empty and verifies (so it need not be fetched again); a file whose
    size and modification time equal ``stamp``, noted when it was last verified, is not read again."""
    if not dest.is_file() or dest.stat().st_size == 0:
        return False
    if stamp is not None and _stamp(dest) == list(stamp):
        return True
    try:
        _verify(dest, dest.name)
    except InputFileError as exc:
        logger.info("%s is there but incomplete (%s): fetching it again", dest, exc.reason)
        return False
    return True


def _verify(path: Path, name: str) -> None:
    """Raise :class:`InputFileError` unless ``path`` holds a complete, parseable FITS file.

    ``name`` is the published file name, whose suffix says which compression the bytes must carry.
    """
    with open_hdul(path):  # decompresses the whole stream, so truncation is caught
        pass
    for suffix, (magic, kind) in _MAGIC.items():
        if name.endswith(suffix):
            with path.open("rb") as f:
                if f.read(len(magic)) != magic:
                    raise InputFileError(path, f"is not {kind}-compressed, though its name {name} says so")


def _transfer(url: str, part: Path, timeout: float) -> None:
    """One attempt to complete ``part`` from ``url``; network failures become :class:`_RetryableError`."""
    if urlsplit(url).scheme == "file":
        _copy_local(url, part)
        return
    try:
        _http_get(url, part, timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        what = f"HTTP {exc.code} {exc.reason}"
        if exc.code >= 500:
            raise _RetryableError(f"server error ({what})") from exc
        if exc.code in (404, 410):
            raise _PermanentError(f"not found on server ({what})") from exc
        raise _PermanentError(f"refused by server ({what})") from exc
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        text = "timed out" if isinstance(reason, TimeoutError) else f"network error ({reason})"
        # urlopen wraps what fails before any answer (name lookup, connect) in URLError; failures while
        # reading an answer come bare.
        if isinstance(exc, urllib.error.URLError) and isinstance(reason, OSError):
            raise _UnreachableError(f"no connection: {text}") from exc
        raise _RetryableError(text) from exc


def _http_get(url: str, part: Path, timeout: float) -> None:
    """GET ``url`` into ``part``, continuing an existing ``part`` with a Range request."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # Nothing after `offset`: the .part is probably whole already; verification decides.
            exc.close()
            return
        raise
    with response:
        if response.status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != offset:
                part.unlink()
                raise _RetryableError(
                    f"server resumed at the wrong place ({response.headers.get('Content-Range')})"
                )
            mode = "ab"
        elif response.status == 200:
            mode = "wb"  # the server ignored the Range: the body is the whole file, start from zero
        else:
            raise _RetryableError(f"unexpected HTTP status {response.status}")
        expected = response.length  # Content-Length as http.client parsed it; None if absent
        received = _save_body(response, part, mode)
    if expected is not None and received < expected:
        # Keep what arrived: the next attempt resumes from there.
        raise _RetryableError(f"connection dropped after {received} of {expected} bytes")


def _save_body(response: http.client.HTTPResponse, part: Path, mode: str) -> int:
    received = 0
    with part.open(mode) as out:
        # read1: what has arrived, up to a chunk; read would wait for a whole chunk, and what a stalled
        # transfer had received would not reach the .part that the next run resumes from.
        while chunk := response.read1(_CHUNK):
            out.write(chunk)
            received += len(chunk)
    return received


def _copy_local(url: str, part: Path) -> None:
    source = Path(urllib.request.url2pathname(urlsplit(url).path))
    if not source.is_file():
        raise _PermanentError(f"not found ({source} is not a file)")
    shutil.copyfile(source, part)


def _check_url(url: str) -> str:
    """Return ``url`` if its scheme is one the downloader speaks, else raise ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"unsupported URL {url!r}: the base URL must start with http://, https:// or file://"
        )
    if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
        raise ValueError(f"unsupported URL {url!r}: file:// URLs must name a local path (file:///...)")
    return url


def _checked_destination(root: Path, dest: str | Path) -> Path:
    """Resolve ``dest`` and refuse it unless it lies strictly below ``root`` (already resolved)."""
    resolved = Path(dest).resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise ValueError(f"refusing to write {dest}: it is not inside the output folder {root}")
    return resolved
