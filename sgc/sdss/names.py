"""SDSS field identifiers, Science Archive Server (SAS) file names, paths and URLs.

The SAS layout for DR17 imaging (rerun 301)::

    photoObj/frames/301/{run}/{camcol}/frame-{band}-{run:06d}-{camcol}-{field:04d}.fits.bz2
    photoObj/frames/301/{run}/{camcol}/frame-irg-{run:06d}-{camcol}-{field:04d}.jpg
    sweeps/dr13_final/301/calibObj-{run:06d}-{camcol}-{star,gal}.fits.gz
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z")
# The SDSS imaging camera's nominal pixel scale, arcsec: what the photo pipeline's pixel quantities are in.
# Code that maps pixels to the sky reads the scale of the grid at hand from its WCS instead.
PIXEL_SCALE_ARCSEC = 0.396
RERUN = "301"
DEFAULT_BASE_URL = "https://data.sdss.org/sas/dr17/eboss/"
FRAMES_DIR = f"photoObj/frames/{RERUN}"
SWEEPS_DIR = f"sweeps/dr13_final/{RERUN}"

CatalogKind = Literal["star", "gal"]
CATALOG_KINDS: tuple[str, ...] = ("star", "gal")

# "8162-6-80" or "008162-6-0080": run, camcol, field with or without zero padding.
_FIELD_TEXT = re.compile(r"^\s*(\d{1,6})-(\d)-(\d{1,4})\s*$")
# The same three numbers inside any SAS file name (frame, irg, calibObj cut-outs aside).
_FIELD_IN_NAME = re.compile(r"(?<!\d)(\d{6})-(\d)-(\d{4})(?!\d)")
_FRAME_NAME = re.compile(r"^frame-([a-z]+)-(\d{6})-(\d)-(\d{4})\.fits(\.bz2|\.gz)?$")
_CALIBOBJ_NAME = re.compile(r"^calibObj-(\d{6})-(\d)-(star|gal)\.fits(\.gz)?$")


class FieldIdError(ValueError):
    """A text that is not an SDSS field identifier or SAS file name."""


@dataclass(frozen=True, order=True)
class FieldId:
    """One SDSS imaging field: a run, one of six camera columns, a field number.

    Attributes:
        run: imaging run number (1-999999).
        camcol: camera column (1-6).
        field: field number within the run (0-9999).
    """

    run: int
    camcol: int
    field: int

    def __post_init__(self) -> None:
        if not 1 <= self.run <= 999_999:
            raise FieldIdError(f"run {self.run} is out of range 1-999999")
        if not 1 <= self.camcol <= 6:
            raise FieldIdError(f"camcol {self.camcol} is out of range 1-6")
        if not 0 <= self.field <= 9999:
            raise FieldIdError(f"field {self.field} is out of range 0-9999")

    @classmethod
    def parse(cls, text: str | FieldId) -> FieldId:
        """Parse ``8162-6-80``, ``008162-6-0080`` or an SAS file name holding one.

        Args:
            text: the identifier, or a frame / preview file name or path.

        Returns:
            The field.

        Raises:
            FieldIdError: if ``text`` holds no valid field identifier.
        """
        if isinstance(text, FieldId):
            return text
        if not isinstance(text, str):
            raise FieldIdError(f"expected a field id such as '8162-6-80', got {text!r}")
        match = _FIELD_TEXT.match(text)
        if match is None:
            name = PurePosixPath(text.strip()).name
            if name.startswith("frame-"):
                match = _FIELD_IN_NAME.search(name)
        if match is None:
            raise FieldIdError(
                f"{text!r} is not an SDSS field id: expected RUN-CAMCOL-FIELD such as '8162-6-80' or "
                "'008162-6-0080', or a frame file name such as 'frame-r-008162-6-0080.fits.bz2'"
            )
        return cls(int(match.group(1)), int(match.group(2)), int(match.group(3)))

    def __str__(self) -> str:
        return f"{self.run:06d}-{self.camcol}-{self.field:04d}"

    @property
    def frames_dir(self) -> str:
        """SAS directory of this field's frames, relative to the base URL."""
        return f"{FRAMES_DIR}/{self.run}/{self.camcol}"

    def frame_name(self, band: str) -> str:
        """File name of the calibrated frame in ``band`` (``frame-r-008162-6-0080.fits.bz2``)."""
        return f"frame-{check_band(band)}-{self}.fits.bz2"

    def frame_path(self, band: str) -> str:
        """SAS path of the frame in ``band``, relative to the base URL."""
        return f"{self.frames_dir}/{self.frame_name(band)}"

    def irg_name(self) -> str:
        """File name of the colour (i, r, g) JPEG preview."""
        return f"frame-irg-{self}.jpg"

    def irg_path(self) -> str:
        """SAS path of the colour preview, relative to the base URL."""
        return f"{self.frames_dir}/{self.irg_name()}"

    def calibobj_path(self, kind: CatalogKind) -> str:
        """SAS path of the calibObj sweep of this field's run and camcol."""
        return calibobj_path(self.run, self.camcol, kind)

    def frame_url(self, band: str, base_url: str = DEFAULT_BASE_URL) -> str:
        """Full URL of the frame in ``band`` below ``base_url``."""
        return join_url(base_url, self.frame_path(band))


def check_band(band: str) -> str:
    """Return ``band`` if it is one of u, g, r, i, z.

    Raises:
        ValueError: naming the band and the ones allowed.
    """
    if band not in BANDS:
        raise ValueError(f"unknown band {band!r}: SDSS bands are {', '.join(BANDS)}")
    return band


def calibobj_name(run: int, camcol: int, kind: CatalogKind) -> str:
    """File name of a calibObj sweep (``calibObj-008162-6-star.fits.gz``)."""
    if kind not in CATALOG_KINDS:
        raise ValueError(f"unknown calibObj kind {kind!r}: expected 'star' or 'gal'")
    FieldId(run, camcol, 0)  # validates run and camcol
    return f"calibObj-{run:06d}-{camcol}-{kind}.fits.gz"


def calibobj_path(run: int, camcol: int, kind: CatalogKind) -> str:
    """SAS path of a calibObj sweep, relative to the base URL."""
    return f"{SWEEPS_DIR}/{calibobj_name(run, camcol, kind)}"


def parse_frame_name(name: str) -> tuple[str, FieldId]:
    """Split a frame file name into its band and field.

    Args:
        name: ``frame-{band}-RRRRRR-C-FFFF.fits[.bz2|.gz]``, or a path ending in one.

    Returns:
        ``(band, field)``.

    Raises:
        FieldIdError: if the name is not a frame name.
        ValueError: if the band is not one of u, g, r, i, z.
    """
    base = PurePosixPath(str(name)).name
    match = _FRAME_NAME.match(base)
    if match is None:
        raise FieldIdError(f"{name!r} is not an SDSS frame name (frame-BAND-RRRRRR-C-FFFF.fits[.bz2])")
    band = check_band(match.group(1))
    return band, FieldId(int(match.group(2)), int(match.group(3)), int(match.group(4)))


def parse_calibobj_name(name: str) -> tuple[int, int, str]:
    """Split a calibObj file name into run, camcol and kind (``star`` or ``gal``)."""
    base = PurePosixPath(str(name)).name
    match = _CALIBOBJ_NAME.match(base)
    if match is None:
        raise FieldIdError(f"{name!r} is not a calibObj name (calibObj-RRRRRR-C-star|gal.fits[.gz])")
    return int(match.group(1)), int(match.group(2)), match.group(3)


def join_url(base_url: str, path: str) -> str:
    """Join an SAS-relative path onto a base URL, whatever trailing slash it has."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")
