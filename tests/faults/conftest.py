"""A small finished world that the fault corpus damages copies of, and the checks every case makes.

The world is three small simulated fields (300 x 400 pixels) run once per session through ingest, label,
exclude, split and a two-epoch training on a tiny model, in-process (no Dask workers): about a minute.
Each case copies what it damages, runs the command a user would run, and checks three things: the exit
status, one ``error:`` line naming the file or key and the problem (no traceback), and that what was
already done is unchanged (digests compared with the clean world's).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from sgc.cli import app
from sgc.compute import Compute
from sgc.config import RunConfig, load_config
from sgc.sim.simulate import simulate
from sgc.stages import STAGES, StageContext, run_stages

SHAPE = (300, 400)
HELD_OUT = "009001-3-0012"
FIELDS = ("009001-3-0011", HELD_OUT, "009001-3-0013")
WORLD_STAGES = ("ingest", "label", "exclude", "split", "train")
REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@dataclass(frozen=True)
class World:
    """A finished small run: its folder, config file, and the paths of its outputs."""

    root: Path
    config: Path
    raw: Path

    @property
    def cfg(self) -> RunConfig:
        return load_config(self.config)

    @property
    def store(self) -> Path:
        return self.cfg.paths.store

    @property
    def plan(self) -> Path:
        return self.cfg.paths.plan

    @property
    def run_dir(self) -> Path:
        return self.cfg.paths.run


def write_config(root: Path, raw: Path, **changes: object) -> Path:
    """The world's config: local raw frames, no Dask workers, a tiny model; ``changes`` replace keys."""
    data = {
        "name": "faults",
        "workdir": str(root / "work"),
        "runs_dir": str(root / "work" / "runs"),
        "source": "local",
        "raw_dir": str(raw),
        "test_fields": [HELD_OUT],
        "compute": {"workers": 0},
        "ingest": {"chunk": 128},
        "split": {"patch": 32, "stride": 32},
        "train": {
            "epochs": 2,
            "model": {"depth": 2, "width": 4, "norm": "group"},
            "loader": {"batch_size": 8, "workers": 0},
        },
        "baselines": {"reference": None, "classical": False},
    }
    data.update(changes)
    path = root / "faults.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def sim_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small simulated fields with their calibObj catalogues (never modified: cases copy them)."""
    raw = tmp_path_factory.mktemp("raw")
    simulate(raw, n_fields=3, seed=5, shape=SHAPE)
    return raw


@pytest.fixture(scope="session")
def clean_world(tmp_path_factory: pytest.TempPathFactory, sim_raw: Path) -> World:
    """The world, run once (never modified: cases damage copies of it)."""
    root = tmp_path_factory.mktemp("world")
    world = World(root, write_config(root, sim_raw), sim_raw)
    cfg = world.cfg
    with Compute(cfg.compute) as compute:
        run_stages(StageContext(cfg, cfg.paths, compute), [STAGES[name] for name in WORLD_STAGES])
    return world


@pytest.fixture
def world(clean_world: World, tmp_path: Path) -> World:
    """A copy of the clean world for one case to damage."""
    root = tmp_path / "world"
    shutil.copytree(clean_world.root / "work", root / "work", symlinks=True)
    return World(root, write_config(root, clean_world.raw), clean_world.raw)


def copy_raw(raw: Path, dest: Path) -> Path:
    """A copy of a raw folder to damage."""
    shutil.copytree(raw, dest)
    return dest


def invoke(*args: object) -> Result:
    """Run an sgc command in this process, as a user would type it."""
    return runner.invoke(app, [str(a) for a in args])


def error_line(result: Result, *named: str) -> str:
    """Check a refused command: exit status 1, one ``error:`` line naming each of ``named``, no traceback.

    Returns:
        The error line.
    """
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return _one_error_line(result.exit_code, result.output, named)


def sgc_process(
    *args: object, preexec_fn: Callable[[], None] | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``sgc ARGS -q`` in a process of its own, from the checkout, without writing bytecode (which a
    file size limit would refuse)."""
    return subprocess.run(
        [sys.executable, "-m", "sgc", *map(str, args), "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        preexec_fn=preexec_fn,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=timeout,
    )


def process_error_line(proc: subprocess.CompletedProcess[str], *named: str) -> str:
    """:func:`error_line` for a command run by :func:`sgc_process`."""
    return _one_error_line(proc.returncode, proc.stdout + proc.stderr, named)


def _one_error_line(code: int, output: str, named: tuple[str, ...]) -> str:
    assert code == 1, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    for name in named:
        assert str(name) in errors[0], f"{name!r} not in {errors[0]!r}"
    return errors[0]


def disk_full_after(nbytes: int) -> Callable[[], None]:
    """A ``preexec_fn`` after which writes past ``nbytes`` in one file fail with EFBIG (SIGXFSZ ignored, so
    they fail instead of killing the process): a disk that has filled up."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return limit
