"""The classical baseline: the concentration threshold tuned on train sources, and detection on an image."""

from __future__ import annotations

import numpy as np
import pytest

from sgc.config import IngestConfig
from sgc.cube.store import CubeStore
from sgc.evaluate.classical import detect, tune_threshold
from tests.patches.synthetic import tan_header


def test_the_threshold_classifies_the_train_sources_best() -> None:
    c = np.array([-0.9, -0.8, -0.7, -0.3, -0.25, -0.2])
    star = np.array([False, False, False, True, True, True])
    assert tune_threshold(c, star) == pytest.approx(-0.5)
    star[2] = True  # one overlap: still the best cut between the two groups
    assert -0.8 < tune_threshold(c, star) < -0.3
    assert tune_threshold(c, np.ones(6, bool)) < c.min()  # all stars: everything above the cut
    assert tune_threshold(c, np.zeros(6, bool)) > c.max()


def test_a_point_source_is_more_concentrated_than_an_extended_one(tmp_path) -> None:
    shape = (120, 160)
    y, x = np.mgrid[: shape[0], : shape[1]]
    rng = np.random.default_rng(0)
    image = rng.normal(0, 0.02, (5, *shape)).astype(np.float32)
    star = 20 * np.exp(-((y - 60) ** 2 + (x - 40) ** 2) / (2 * 1.4**2))
    galaxy = 3 * np.exp(-np.hypot(y - 60, x - 110) / 4.0)
    image += (star + galaxy).astype(np.float32)
    cube = CubeStore.create(tmp_path / "s.zarr", shape, IngestConfig(chunk=64))
    cube.allocate(["000001-1-0001"])
    cube.write_field(0, image, np.ones(shape, bool), tan_header(shape).tostring(), {})
    found = detect(cube, "000001-1-0001")
    assert len(found.x) == 2
    order = np.argsort(found.x)
    np.testing.assert_allclose(found.x[order], [40, 110], atol=0.5)
    assert found.concentration[order[0]] > found.concentration[order[1]] + 0.5
    assert set(np.unique(found.segmentation)) == {0, 1, 2}
