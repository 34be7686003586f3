"""Simulated fields under the names of real ones: a mirror that serves simulated files where SDSS serves real
ones, for running a real field list (configs/dr17.yaml) offline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sgc.sdss.names import FieldId
from sgc.sim.geometry import DEFAULT_STRIPE
from sgc.sim.simulate import SimRun, simulate_field, write_calibobj


def simulate_named(
    out_dir: str | Path, fields: Sequence[str], seed: int, shape: tuple[int, int]
) -> list[FieldId]:
    """Simulate the given fields under their own names, each on a stripe of its own (so no two share sky),
    with the calibObj files of its run and camcol; the fields must be of different runs or camcols."""
    written = []
    for k, name in enumerate(fields):
        fid = FieldId.parse(name)
        sim_run = SimRun(fid.run, fid.camcol, seed, DEFAULT_STRIPE + k, shape)
        written.append(simulate_field(out_dir, sim_run, fid.field))
        write_calibobj(out_dir, sim_run, [fid.field])
    return written
