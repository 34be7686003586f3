"""A small static HTTP server for a local SAS mirror directory.

It serves the files below one folder with the same relative paths as the SDSS Science Archive Server,
so ``sgc download`` can be pointed at it (the offline demo, ``sgc serve``, and the downloader's tests).
It answers GET and HEAD, honours single ``Range: bytes=N-`` / ``bytes=N-M`` requests (206 with
``Content-Range``), answers 404 for missing files and 403 for any path that would leave the root.

:class:`MirrorRequestHandler` is meant to be subclassed: tests override ``do_GET`` to inject faults
and call :meth:`MirrorRequestHandler.local_path` / :meth:`MirrorRequestHandler.send_file` for the
normal behaviour.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from sgc import __version__

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16
# One range only; suffix ranges (bytes=-N) and multiple ranges are ignored, which RFC 9110 allows.
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d+)-(\d*)\s*$")


class _MirrorServer(ThreadingHTTPServer):
    """A threading HTTP server that knows the root it serves and logs handler errors quietly."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[MirrorRequestHandler], root: Path) -> None:
        self.root = root
        super().__init__(address, handler)

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        # A client that hangs up mid-transfer is routine for a download server: no traceback on stderr.
        logger.debug("error while serving %s", client_address, exc_info=True)


class _UnsatisfiableRangeError(Exception):
    """A Range that starts at or after the end of the file (answered with 416)."""


class MirrorRequestHandler(BaseHTTPRequestHandler):
    """Serves files below ``server.root``; GET, HEAD and single byte ranges."""

    server: _MirrorServer
    server_version = f"sgc-mirror/{__version__}"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        """Send the requested file, or the requested byte range of it."""
        self._serve(body=True)

    def do_HEAD(self) -> None:  # noqa: N802 - the name http.server dispatches to
        """Send the headers a GET would send, without the body."""
        self._serve(body=False)

    def local_path(self) -> Path | None:
        """The path below the root that the request names, or None if it would leave the root.

        Percent-escapes are decoded first, so ``%2e%2e`` counts as ``..``; symbolic links that point
        outside the root are refused as well.
        """
        parts = [p for p in unquote(urlsplit(self.path).path).split("/") if p not in ("", ".")]
        if any(p == ".." or "\\" in p or "\x00" in p for p in parts):
            return None
        path = self.server.root.joinpath(*parts).resolve()
        return path if path.is_relative_to(self.server.root) else None

    def send_file(self, path: Path, body: bool = True) -> None:
        """Answer with ``path``: 200 whole, 206 for a satisfiable Range, 416 for one past the end."""
        size = path.stat().st_size
        try:
            byte_range = _parse_range(self.headers.get("Range"), size)
        except _UnsatisfiableRangeError:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = byte_range or (0, size - 1)
        self.send_response(HTTPStatus.PARTIAL_CONTENT if byte_range else HTTPStatus.OK)
        if byte_range:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if body:
            with path.open("rb") as source:
                source.seek(start)
                self._copy(source, end - start + 1)

    def log_message(self, format: str, *args: object) -> None:
        """Log each request at debug level instead of printing it to stderr."""
        logger.debug("%s - %s", self.address_string(), format % args)

    def _serve(self, body: bool) -> None:
        path = self.local_path()
        if path is None:
            self.send_error(HTTPStatus.FORBIDDEN, "path leaves the mirror root")
        elif not path.is_file():
            self.send_error(HTTPStatus.NOT_FOUND)
        else:
            self.send_file(path, body)

    def _copy(self, source: BinaryIO, length: int) -> None:
        try:
            while length > 0 and (chunk := source.read(min(_CHUNK, length))):
                self.wfile.write(chunk)
                length -= len(chunk)
        except ConnectionError:
            # The client went away (a timeout on its side, a cancelled download): nothing to answer.
            self.close_connection = True


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Return the inclusive ``(start, end)`` of a single byte range, or None to send the whole file.

    Raises:
        _UnsatisfiableRangeError: if the range starts at or after the end of the file.
    """
    match = _RANGE.match(header or "")
    if match is None:
        return None
    start = int(match.group(1))
    if match.group(2) and int(match.group(2)) < start:  # invalid: RFC 9110 says to ignore the header
        return None
    if start >= size:
        raise _UnsatisfiableRangeError
    end = int(match.group(2)) if match.group(2) else size - 1
    return start, min(end, size - 1)


@contextmanager
def serve_directory(
    root: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    handler_class: type[MirrorRequestHandler] = MirrorRequestHandler,
) -> Iterator[str]:
    """Serve ``root`` over HTTP in a background thread while the ``with`` block runs.

    Args:
        root: the mirror folder; its layout is the SAS layout below the base URL.
        host: address to listen on (the default keeps the server private to this machine).
        port: TCP port; 0 picks a free one.
        handler_class: the request handler, :class:`MirrorRequestHandler` or a subclass of it.

    Yields:
        The base URL, ending in ``/`` (``http://127.0.0.1:PORT/``).

    Raises:
        NotADirectoryError: if ``root`` is not a folder.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"cannot serve {root}: not a folder")
    server = _MirrorServer((host, port), handler_class, root)
    # A short poll interval makes shutdown() return quickly when the block ends.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
