"""Fault corpus: checkpoints that are hostile, damaged or of another model, and a disk that fills up while
one is saved."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.faults.conftest import World, disk_full_after, error_line, invoke, process_error_line, sgc_process


class _Payload:
    """What a hostile checkpoint holds: unpickling it would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _predict(world: World, checkpoint: Path) -> object:
    out = world.root / "predicted"
    return invoke("predict", checkpoint, "--out", out, "--store", world.store, "--config", world.config)


def test_a_checkpoint_holding_code_is_not_loaded_and_says_so(world: World, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker)}, evil)
    line = error_line(_predict(world, evil), str(evil), "holds Python code or objects", "it was not loaded")
    assert "weights_only" not in line and "truncated" not in line
    assert not marker.exists()
    assert not (world.root / "predicted").exists()


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:5000]), "truncated or corrupt"),
        (lambda p: torch.save([1, 2, 3], p), "holds a list, expected a dict"),
        (lambda p: p.write_bytes(b""), "truncated or corrupt"),
    ],
    ids=["truncated", "a-list", "empty"],
)
def test_a_damaged_checkpoint_is_named(world: World, damage, problem: str) -> None:  # noqa: ANN001
    checkpoint = world.run_dir / "best.pt"
    damage(checkpoint)
    error_line(_predict(world, checkpoint), str(checkpoint), problem)


def test_a_full_disk_while_saving_a_checkpoint_is_one_line_and_leaves_no_half_file(world: World) -> None:
    run = world.root / "run2"
    # Room for the logs and records, not for a checkpoint (~40 kB for the world's tiny model).
    proc = sgc_process(
        "train", world.store, world.plan, "--out", run, "--config", world.config,
        preexec_fn=disk_full_after(16_000), timeout=300,
    )  # fmt: skip
    process_error_line(proc, f"{run / 'last.pt'}: cannot be written (File too large)")
    assert not list(run.glob("*.pt")) and not list(run.glob(".*.tmp")), sorted(run.iterdir())
