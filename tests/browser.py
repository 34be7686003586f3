"""Opening a page in headless Chromium (Debian's, which .ci/run installs) and reporting what went wrong."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# Chromium as this machine's probe started it: no sandbox as root, and none of its background connections,
# which a closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class PageCheck:
    """What a page showed: console errors, images that did not load, tables without a filled row."""

    console_errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    empty_tables: int = 0
    images: int = 0
    tables: int = 0


def chromium() -> str:
    """The Chromium executable; skips the test where there is none."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's: apt-get install -y chromium)")
    return path


def check_page(page_path: Path) -> PageCheck:
    """Open a page from disk in headless Chromium and collect its errors."""
    from playwright.sync_api import sync_playwright

    result = PageCheck()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: result.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: result.console_errors.append(str(e)))
            page.goto(page_path.resolve().as_uri(), wait_until="load", timeout=60_000)
            result.images = page.locator("img").count()
            result.broken_images = page.evaluate(
                "() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
            )
            result.tables = page.locator("table").count()
            # A table is empty unless some body row has text in every cell.
            result.empty_tables = page.evaluate(
                "() => [...document.querySelectorAll('table')]"
                ".filter(t => ![...t.querySelectorAll('tbody tr')]"
                ".some(r => [...r.cells].every(c => c.textContent.trim()))).length"
            )
        finally:
            browser.close()
    return result
