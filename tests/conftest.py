"""Shared fixtures: where the real SDSS sample lives, and small simulated data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sgc.compute import Compute
from sgc.config import ComputeConfig

_DEFAULT_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "sdss"


def sample_dir() -> Path:
    """The real SDSS sample: ``$SGC_SDSS_DIR`` or ``../shared/sdss`` beside the checkout."""
    return Path(os.environ.get("SGC_SDSS_DIR", _DEFAULT_SAMPLE))


@pytest.fixture(scope="session")
def sdss_dir() -> Path:
    """Path to the real SDSS sample; skips the test where it is absent."""
    path = sample_dir()
    if not (path / "003918-3-0213").is_dir():
        pytest.skip(f"real SDSS sample not found at {path} (set SGC_SDSS_DIR to its folder)")
    return path


@pytest.fixture(scope="session")
def compute() -> Compute:
    """One Dask client for the whole session: a local cluster of one worker process, started on first use."""
    with Compute(ComputeConfig(workers=1)) as session:
        yield session


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reads the real sample ``real``, for ``-m real`` and ``-m "not real"``."""
    for item in items:
        if "sdss_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real)
