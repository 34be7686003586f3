"""Finding frames and catalogues below a folder of any layout."""

from __future__ import annotations

from pathlib import Path

from sgc.sdss.discover import find_raw
from sgc.sdss.names import BANDS, FieldId


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_groups_sas_and_flat_layouts_by_field(tmp_path: Path) -> None:
    a, b = FieldId(3918, 3, 213), FieldId(8162, 6, 80)
    for band in BANDS:
        _touch(tmp_path / a.frame_path(band))
    for band in "gri":
        _touch(tmp_path / "flat" / b.frame_name(band).removesuffix(".bz2"))
    _touch(tmp_path / a.calibobj_path("star"))
    _touch(tmp_path / (a.calibobj_path("gal") + ".part"))
    _touch(tmp_path / b.frame_path("u").replace(".fits.bz2", ".fits.bz2.part"))
    _touch(tmp_path / a.irg_path())
    _touch(tmp_path / "frame-y-003918-3-0213.fits")

    inv = find_raw(tmp_path)
    assert inv.complete == [a]
    assert inv.incomplete == {b: ["u", "z"]}
    assert set(inv.frames[b]) == {"g", "r", "i"}
    assert [p.name for p in inv.catalogs] == ["calibObj-003918-3-star.fits.gz"]
    assert [p.name for p, _ in inv.unrecognised] == ["frame-y-003918-3-0213.fits"]
    text = inv.format()
    assert "1 field(s) with all five bands" in text
    assert "008162-6-0080: missing band(s) u, z" in text
    assert "unknown band 'y'" in text


def test_real_sample_is_one_complete_field(sdss_dir: Path) -> None:
    inv = find_raw(sdss_dir / "003918-3-0213")
    assert inv.complete == [FieldId(3918, 3, 213)]
    assert [p.name for p in inv.catalogs] == ["catalog-003918-3-0213.fits"]
