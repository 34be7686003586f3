"""A small labelled store and plan that training tests share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sgc.config import SplitConfig, TrainConfig
from sgc.patches.plan import make_plan
from sgc.patches.planfile import write_plan
from tests.patches.synthetic import build_store, random_field, tan_header

FIELDS = ("009001-3-0011", "009001-3-0012", "009001-3-0013")
SHAPE = (64, 96)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(store, plan): three noise fields with bright square 'objects' where the label says star or galaxy."""
    rng = np.random.default_rng(0)
    fields = {}
    for k, name in enumerate(FIELDS):
        field = random_field(rng, SHAPE, tan_header(SHAPE, ra=150 + k))
        # Make the labels learnable: stars bright in every band, galaxies bright in the red bands.
        field.image[:, field.label == 1] += 4.0
        field.image[3:, field.label == 2] += 4.0
        fields[name] = field
    folder = tmp_path_factory.mktemp("train")
    store = build_store(folder / "s.zarr", fields, chunk=32)
    plan = make_plan(store, SplitConfig(patch=16, stride=16, train_fields=FIELDS[:2], val_fields=FIELDS[2:]))
    return store, write_plan(plan, folder / "plan.zarr")


def tiny_config(**changes: object) -> TrainConfig:
    """A training configuration that runs in a second or two."""
    data = {
        "epochs": 3,
        "lr": 0.01,
        "model": {"depth": 2, "width": 4, "norm": "group"},
        "loader": {"batch_size": 8, "workers": 0, "augment": True},
        "loss": {"kind": "ce+focal"},
    }
    data.update(changes)
    return TrainConfig.model_validate(data)
