"""Cheap objectives for the tests of ``sgc tune``: module-level, so that Dask pickles them by reference and
its worker processes import them from here."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from sgc.config import RunConfig
from sgc.tune.objective import FoldReport

FOLDS = 3
# Long enough per fold that two trials on two workers are certainly running at the same time.
FOLD_SECONDS = 0.4
BEST_LR = 3e-3


def lr_peak(cfg: RunConfig, report: FoldReport) -> Sequence[float]:
    """1 at ``train.lr`` 3e-3, less by the decades away from it; fold k adds 0.01 k; each fold takes 0.4 s."""
    values = []
    for fold in range(FOLDS):
        time.sleep(FOLD_SECONDS)
        value = 1 - abs(math.log10(cfg.train.lr / BEST_LR)) + 0.01 * fold
        report(fold, value)
        values.append(value)
    return values


def fails_on_focal(cfg: RunConfig, report: FoldReport) -> Sequence[float]:
    """Like :func:`lr_peak` in one fold, but raises for the focal loss: a trial that fails on its own."""
    if cfg.train.loss.kind == "ce+focal":
        raise RuntimeError("focal loss refused by the test objective")
    value = 1 - abs(math.log10(cfg.train.lr / BEST_LR))
    report(0, value)
    return [value]
