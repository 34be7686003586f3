"""The one progress facility: tqdm bars, which ``--quiet`` turns off for the whole process.

Bars draw only on a terminal (``disable=None``): a log file or a captured stream gets the stages'
summaries through :mod:`logging` instead of bar redraws.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

_enabled = True


def set_enabled(enabled: bool) -> None:
    """Show progress bars (on a terminal) or never."""
    global _enabled
    _enabled = enabled


def format_size(n_bytes: float) -> str:
    """A byte count for people: ``12.3MB``."""
    return tqdm.format_sizeof(n_bytes, "B")


def bar(
    iterable: Iterable[Any] | None = None,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    shown: bool = True,
    **options: Any,
) -> tqdm:
    """A progress bar, drawn only where bars are enabled, ``shown`` holds and the output is a terminal.

    Args:
        iterable, total, desc, unit: as for tqdm.
        shown: False hides this bar (on every DDP rank but the first, say).
        options: passed to tqdm (``leave=False``, say).
    """
    disable = None if _enabled and shown else True
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, **options)
