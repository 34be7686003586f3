"""Finding SDSS frames and catalogues below a folder, whatever its layout."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from sgc.sdss.names import BANDS, FieldId, FieldIdError, parse_frame_name

_FRAME_GLOBS = ("frame-*.fits", "frame-*.fits.bz2", "frame-*.fits.gz")
_CATALOG_GLOBS = ("calibObj-*.fits*", "photoObj-*.fits*", "catalog-*.fits*")


@dataclass
class Inventory:
    """The frames and catalogues found below a folder.

    Attributes:
        frames: for each field, the path of each band found.
        catalogs: catalogue files (calibObj, photoObj, plain catalogue tables).
        unrecognised: files named like frames whose names do not parse, with the reason.
    """

    frames: dict[FieldId, dict[str, Path]] = field(default_factory=dict)
    catalogs: list[Path] = field(default_factory=list)
    unrecognised: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def complete(self) -> list[FieldId]:
        """Fields with all five bands."""
        return sorted(f for f, bands in self.frames.items() if set(bands) == set(BANDS))

    @property
    def incomplete(self) -> dict[FieldId, list[str]]:
        """Fields with bands missing, and which."""
        return {
            f: [b for b in BANDS if b not in bands]
            for f, bands in sorted(self.frames.items())
            if set(bands) != set(BANDS)
        }

    def format(self) -> str:
        """One human-readable paragraph describing what was found."""
        lines = [f"{len(self.complete)} field(s) with all five bands, {len(self.catalogs)} catalogue file(s)"]
        lines += [f"  {f}: missing band(s) {', '.join(b)}" for f, b in self.incomplete.items()]
        lines += [f"  {p}: {why}" for p, why in self.unrecognised]
        return "\n".join(lines)


def find_raw(root: str | Path) -> Inventory:
    """Walk ``root`` and group every frame by field and band.

    Partial downloads (``*.part``) are ignored; when a band is present both compressed and not, the
    first found in sorted order wins, so the result does not depend on the file system's order.
    """
    root = Path(root)
    inv = Inventory()
    frames: dict[FieldId, dict[str, Path]] = defaultdict(dict)
    for pattern in _FRAME_GLOBS:
        for path in sorted(root.rglob(pattern)):
            try:
                band, fid = parse_frame_name(path.name)
            except (FieldIdError, ValueError) as exc:
                if not path.name.startswith("frame-irg-"):
                    inv.unrecognised.append((path, str(exc)))
                continue
            frames[fid].setdefault(band, path)
    inv.frames = dict(frames)
    inv.catalogs = sorted(
        {p for pattern in _CATALOG_GLOBS for p in root.rglob(pattern) if not p.name.endswith(".part")}
    )
    return inv
