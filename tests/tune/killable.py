"""A search for tests/tune/test_resume.py to kill and run again, in a process of its own:
``python -m tests.tune.killable FOLDER TRIALS`` runs :func:`tests.tune.objectives.lr_peak` trials on a local
cluster of two workers, as ``sgc tune --workers 2`` would."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from sgc.config import load_config
from sgc.tune.search import TuneOptions, tune
from sgc.tune.space import parse_space
from tests.tune.objectives import FOLDS, lr_peak

NAME = "resumed"
SPACE = {"train.lr": {"low": 1e-4, "high": 1e-1, "log": True}}


def main(argv: list[str]) -> None:
    """Run the search into ``FOLDER/stores/resumed/tune`` until ``TRIALS`` trials have finished."""
    folder, trials = Path(argv[0]), int(argv[1])
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("sgc").setLevel(logging.INFO)
    cfg = load_config(
        None,
        [f"name={NAME}", f"workdir={folder / 'stores'}", f"runs_dir={folder / 'runs'}", "compute.workers=2"],
    )
    result = tune(
        cfg, lr_peak, parse_space(SPACE, "space", cfg), TuneOptions(trials, pruner="none", steps=FOLDS)
    )
    print(result.format(), end="")


if __name__ == "__main__":
    main(sys.argv[1:])
