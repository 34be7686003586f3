"""Writing figures to disk."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from sgc.atomic import atomic_write


def save_png(fig: Figure, out: str | Path) -> Path:
    """Write a figure as PNG atomically: a killed run never leaves a truncated image."""
    out = Path(out)
    with atomic_write(out, sync=False) as f:
        fig.savefig(f, format="png")
    return out
