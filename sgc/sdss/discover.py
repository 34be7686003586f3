"""Finding SDSS files below folders, whatever their layout: frames, text headers and catalogues.

This is the one place that walks folders for input files. Frames are ``frame-{band}-RRRRRR-C-FFFF.fits``
(optionally ``.bz2`` or ``.gz``); text headers are the same names ending ``.hdr`` or ``.txt`` instead of
``.fits`` (as in ``shared/sdss/headers``); catalogues are ``calibObj-*``, ``photoObj-*`` and ``catalog-*``
files ending ``.fits``, ``.fits.gz`` or ``.fits.bz2``. Partial downloads (``*.part``) and colour previews
are passed over. Results never depend on the file system's order: a folder's files are taken in sorted
order, and where a band of a field is found twice, the first source given wins, then the first name in
sorted order.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sgc.errors import SgcError
from sgc.sdss.names import BANDS, FieldId, FieldIdError, parse_frame_name

log = logging.getLogger(__name__)

FRAME_SUFFIXES: tuple[str, ...] = (".fits", ".fits.bz2", ".fits.gz")
HEADER_SUFFIXES: tuple[str, ...] = (".hdr", ".txt")
# Ranks from _rank at and above this are text headers, which may stand beside their frame.
_HEADER_RANK = len(FRAME_SUFFIXES)
_CATALOG_NAME = re.compile(r"^(calibObj|photoObj|catalog)-.*\.fits(\.gz|\.bz2)?$", re.IGNORECASE)


class DiscoveryError(SgcError):
    """A file or folder to search that does not exist, or holds nothing of what was asked for."""


@dataclass
class FrameIndex:
    """Frames (and, where asked for, text headers) found below some sources.

    Attributes:
        paths: the file of each ``(field, band)``.
        unrecognised: files named like frames whose names do not parse, with the reason.
    """

    paths: dict[tuple[FieldId, str], Path] = field(default_factory=dict)
    unrecognised: list[tuple[Path, str]] = field(default_factory=list)

    def bands(self, field_id: FieldId | str) -> dict[str, Path]:
        """The files of one field, by band, in band order."""
        fid = FieldId.parse(field_id)
        return {band: self.paths[fid, band] for band in BANDS if (fid, band) in self.paths}

    @property
    def fields(self) -> list[FieldId]:
        """Every field with at least one band found, sorted."""
        return sorted({fid for fid, _ in self.paths})


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


def _files(sources: Iterable[str | Path], missing_ok: bool) -> list[Path]:
    """Every file named by ``sources``: files as they are, folders walked recursively in sorted order."""
    found: list[Path] = []
    for source in map(Path, sources):
        if source.is_file():
            found.append(source)
        elif source.is_dir():
            found += sorted(p for p in source.rglob("*") if p.is_file())
        elif not missing_ok:
            raise DiscoveryError(f"{source}: no such file or folder")
    return found


def _frame_name(path: Path, headers: bool) -> str | None:
    """The frame name a file stands for (a header's own name with ``.fits``), None for other files."""
    name = path.name
    if not name.startswith("frame-") or name.endswith(".part"):
        return None
    if name.endswith(FRAME_SUFFIXES):
        return name
    if headers and name.endswith(HEADER_SUFFIXES):
        return name.rsplit(".", 1)[0] + ".fits"
    return None


def find_frames(sources: Sequence[str | Path], headers: bool = False, missing_ok: bool = False) -> FrameIndex:
    """Index the frames below ``sources`` (files or folders) by field and band.

    Within one source, a frame stored several ways is taken uncompressed first (``.fits``, then
    ``.fits.bz2``, ``.fits.gz``, then text headers), then by sorted path, and a frame file passed over is
    logged as a warning; across sources, the first source holding a band of a field wins.

    Args:
        sources: files and folders, searched in order.
        headers: also take text headers (``.hdr``, ``.txt``), which hold a frame's WCS without its pixels.
        missing_ok: pass over sources that do not exist instead of refusing them.

    Raises:
        DiscoveryError: if a source does not exist (unless ``missing_ok``).
    """
    index = FrameIndex()
    for source in sources:
        candidates = []
        for path in _files([source], missing_ok):
            name = _frame_name(path, headers)
            if name is None:
                continue
            try:
                band, fid = parse_frame_name(name)
            except (FieldIdError, ValueError) as exc:
                if not name.startswith("frame-irg-"):  # the colour previews share the prefix
                    index.unrecognised.append((path, str(exc)))
                continue
            candidates.append((_rank(path), path, (fid, band)))
        chosen: dict[tuple[FieldId, str], Path] = {}
        for rank, path, key in sorted(candidates, key=lambda c: (c[0], c[1])):
            if key not in chosen:
                chosen[key] = path
            elif rank < _HEADER_RANK:
                log.warning("%s: the same frame as %s, which is used instead", path, chosen[key])
        for key, path in chosen.items():
            index.paths.setdefault(key, path)
    return index


def _rank(path: Path) -> int:
    """Preference among the ways one frame is stored: ``.fits``, ``.fits.bz2``, ``.fits.gz``, headers."""
    return next(
        k for k, suffix in enumerate((*FRAME_SUFFIXES, *HEADER_SUFFIXES)) if path.name.endswith(suffix)
    )


def find_catalogs(sources: Sequence[str | Path], missing_ok: bool = False) -> list[Path]:
    """Catalogue files named by ``sources``: files as they are, folders searched for catalogue names.

    Raises:
        DiscoveryError: if a source does not exist, or is a folder holding no catalogue (unless
            ``missing_ok``).
    """
    found: list[Path] = []
    for source in map(Path, sources):
        files = _files([source], missing_ok)
        named = files if source.is_file() else [p for p in files if _CATALOG_NAME.match(p.name)]
        if source.is_dir() and not named and not missing_ok:
            raise DiscoveryError(
                f"{source}: no catalogue below it (calibObj-*, photoObj-* or catalog-* .fits[.gz|.bz2])"
            )
        found += named
    return list(dict.fromkeys(found))


def find_raw(root: str | Path) -> Inventory:
    """The frames and catalogues below ``root``, frames grouped by field and band."""
    index = find_frames([root], missing_ok=True)
    frames: dict[FieldId, dict[str, Path]] = defaultdict(dict)
    for fid, band in sorted(index.paths):
        frames[fid][band] = index.paths[fid, band]
    return Inventory(dict(frames), find_catalogs([root], missing_ok=True), index.unrecognised)
