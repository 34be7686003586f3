"""How figures look: one colour per class and per split, used by every figure sgc draws."""

from __future__ import annotations

from collections.abc import Mapping

DPI = 100
# Label map colours, by label class (sky, star, galaxy, ignore).
CLASS_COLOURS: Mapping[str, str] = {
    "sky": "#101028",
    "star": "tab:cyan",
    "galaxy": "tab:orange",
    "ignore": "0.6",
}
# Catalogue markers of the object classes, and their plural names for legends.
OBJECT_MARKERS: Mapping[str, str] = {"star": "o", "galaxy": "s"}
PLURALS: Mapping[str, str] = {"star": "stars", "galaxy": "galaxies"}
SPLIT_COLOURS: Mapping[str, str] = {"train": "tab:blue", "val": "tab:green", "test": "tab:red"}
