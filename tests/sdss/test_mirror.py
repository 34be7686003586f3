"""The static SAS mirror server: whole files, byte ranges, HEAD, 404, and paths that try to leave the root."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sgc.sdss.mirror import serve_directory

CONTENT = bytes(range(256)) * 40  # 10240 bytes, every offset distinguishable


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A mirror root holding ``a/data.bin``, with a secret file beside (not inside) the root."""
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "data.bin").write_bytes(CONTENT)
    (tmp_path / "secret.txt").write_text("outside the root")
    with serve_directory(root) as url:
        yield url, root


def _request(url: str, path: str, method: str = "GET", headers: dict[str, str] | None = None):
    # http.client sends the path verbatim (no normalisation of '..'), as a hostile client would.
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    conn.request(method, path, headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response, body


def test_whole_file_and_head(served: tuple[str, Path]) -> None:
    url, _ = served
    assert url.startswith("http://127.0.0.1:") and url.endswith("/")
    response, body = _request(url, "/a/data.bin")
    assert response.status == 200
    assert body == CONTENT
    assert response.headers["Accept-Ranges"] == "bytes"
    response, body = _request(url, "/a/data.bin", method="HEAD")
    assert response.status == 200
    assert int(response.headers["Content-Length"]) == len(CONTENT)
    assert body == b""


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=1000-", 1000, len(CONTENT) - 1),
        ("bytes=10-19", 10, 19),
        ("bytes=5000-99999", 5000, len(CONTENT) - 1),
    ],
)
def test_range_returns_206_with_the_right_bytes(
    served: tuple[str, Path], header: str, start: int, end: int
) -> None:
    url, _ = served
    response, body = _request(url, "/a/data.bin", headers={"Range": header})
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(CONTENT)}"
    assert body == CONTENT[start : end + 1]


def test_range_past_the_end_is_416(served: tuple[str, Path]) -> None:
    url, _ = served
    response, _ = _request(url, "/a/data.bin", headers={"Range": f"bytes={len(CONTENT)}-"})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{len(CONTENT)}"


def test_missing_file_is_404(served: tuple[str, Path]) -> None:
    url, _ = served
    assert _request(url, "/a/nope.bin")[0].status == 404
    assert _request(url, "/a")[0].status == 404  # folders are not listed


@pytest.mark.parametrize(
    "path", ["/../secret.txt", "/a/../../secret.txt", "/%2e%2e/secret.txt", "/a/..%2f..%2fsecret.txt"]
)
def test_path_traversal_is_refused(served: tuple[str, Path], path: str) -> None:
    url, _ = served
    response, body = _request(url, path)
    assert response.status == 403
    assert b"outside the root" not in body


def test_symlink_out_of_the_root_is_refused(served: tuple[str, Path]) -> None:
    url, root = served
    (root / "link.txt").symlink_to(root.parent / "secret.txt")
    assert _request(url, "/link.txt")[0].status == 403


def test_root_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError), serve_directory(tmp_path / "missing"):
        pass
