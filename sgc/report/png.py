"""Writing figures to disk."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure


def save_png(fig: Figure, out: str | Path) -> Path:
    """Write a figure as PNG atomically: a killed run never leaves a truncated image."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    fig.savefig(tmp, format="png")
    os.replace(tmp, out)
    return out
