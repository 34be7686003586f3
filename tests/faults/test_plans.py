"""Fault corpus: patch plans used with stores they do not fit, and plans that cannot be made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from sgc.cube.store import CubeStore
from sgc.patches.planfile import read_plan
from tests.digests import plan_digest, store_digest
from tests.faults.conftest import FIELDS, HELD_OUT, World, error_line, invoke


@pytest.fixture
def reordered(world: World) -> Path:
    """The world's fields in another store, in another slot order (the held-out field in slot 0)."""
    store = world.root / "other.zarr"
    cfg = ("--config", world.config)
    for fields in ([HELD_OUT], []):
        chosen = [arg for f in fields for arg in ("--fields", f)]
        assert invoke("ingest", world.raw, store, "--chunk", 128, *chosen, *cfg, "-q").exit_code == 0
    for stage in ("label", "exclude"):
        assert invoke(stage, store, *cfg, "-q").exit_code == 0
    assert CubeStore.open(store).fields == [HELD_OUT, FIELDS[0], FIELDS[2]]
    return store


def test_training_on_a_store_whose_slots_hold_other_fields_is_refused(world: World, reordered: Path) -> None:
    """The loader reads slot numbers: with the fields reordered, the plan's train slot 0 is held-out sky."""
    line = error_line(
        invoke("train", reordered, world.plan, "--out", world.root / "run2", "--config", world.config),
        str(reordered),
        "slot 0 holds field 009001-3-0012",
        "sgc split",
    )
    assert "another order" in line
    assert not (world.root / "run2" / "last.pt").exists()


def test_the_audit_checks_what_the_loader_would_read(world: World, reordered: Path) -> None:
    """Looked up by name every patch is fine; by the slot the loader reads, they are not: refused."""
    error_line(
        invoke("audit", reordered, world.plan, "--config", world.config), "slot 0 holds field 009001-3-0012"
    )


def test_the_audit_passes_the_plan_on_its_own_store(world: World) -> None:
    result = invoke("audit", world.store, world.plan, "--config", world.config)
    assert result.exit_code == 0, result.output
    assert "OK, no patch touches held-out sky" in result.output


def test_a_validation_split_without_valid_pixels_is_refused(world: World) -> None:
    """A field whose pixels are all invalid would be the whole validation split: no patch, refused."""
    plan_before = plan_digest(world.plan)
    val = read_plan(world.plan).split["assignment"]["fields"]["val"]
    group = zarr.open_group(world.store, mode="r+")
    slot = CubeStore.open(world.store).fields.index(val[0])
    group["valid"][slot] = np.zeros(group["valid"].shape[1:], dtype=bool)
    line = error_line(invoke("split", world.store, "--config", world.config), "the val split", val[0])
    assert "kept no patch" in line
    assert plan_digest(world.plan) == plan_before


def test_a_plan_is_never_written_over_a_store(world: World) -> None:
    before = store_digest(world.store)
    error_line(
        invoke("split", world.store, "--out", world.store, "--config", world.config),
        str(world.store),
        "is not a patch plan; refusing to overwrite it",
    )
    assert store_digest(world.store) == before


def test_training_without_a_plan_names_the_path(world: World) -> None:
    missing = world.root / "missing.zarr"
    error_line(invoke("train", world.store, missing, "--config", world.config), str(missing), "no patch plan")
