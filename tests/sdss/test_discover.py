"""Finding frames and catalogues below a folder of any layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from sgc.sdss.discover import DiscoveryError, find_catalogs, find_frames, find_raw
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


def test_frames_and_headers_are_indexed_with_one_order_of_preference(tmp_path: Path) -> None:
    fid = FieldId(8162, 6, 80)
    first, second = tmp_path / "first", tmp_path / "second"
    _touch(second / "deep" / f"frame-r-{fid}.fits.bz2")
    _touch(second / f"frame-r-{fid}.fits")  # uncompressed wins within a source
    _touch(second / f"frame-g-{fid}.hdr")
    _touch(first / f"frame-g-{fid}.fits.gz")  # the first source wins across sources
    _touch(first / f"frame-i-{fid}.txt")
    frames = find_frames([first, second])
    assert frames.bands(fid) == {"g": first / f"frame-g-{fid}.fits.gz", "r": second / f"frame-r-{fid}.fits"}
    with_headers = find_frames([first, second], headers=True)
    assert set(with_headers.bands("8162-6-80")) == {"g", "r", "i"}
    assert with_headers.fields == [fid]
    with pytest.raises(DiscoveryError, match="nowhere: no such file or folder"):
        find_frames([tmp_path / "nowhere"])
    assert find_frames([tmp_path / "nowhere"], missing_ok=True).paths == {}


def test_catalogues_are_files_given_or_names_found_below_folders(tmp_path: Path) -> None:
    for name in (
        "calibObj-000001-1-star.fits.gz",
        "catalog-000001-1-0001.fits",
        "frame-r-000001-1-0001.fits",
    ):
        _touch(tmp_path / "a" / name)
    _touch(tmp_path / "a" / "catalog-000001-1-0002.fits.part")
    found = find_catalogs([tmp_path / "a"])
    assert [p.name for p in found] == ["calibObj-000001-1-star.fits.gz", "catalog-000001-1-0001.fits"]
    odd = tmp_path / "my-objects.fits"
    _touch(odd)
    assert find_catalogs([odd, tmp_path / "a"]) == [odd, *found]  # a file given counts whatever its name
    assert find_catalogs([found[0], tmp_path / "a"]) == found
    (tmp_path / "b").mkdir()
    with pytest.raises(DiscoveryError, match="no catalogue below it"):
        find_catalogs([tmp_path / "b"])
    with pytest.raises(DiscoveryError, match="no such file or folder"):
        find_catalogs([tmp_path / "nope"])


def test_a_frame_stored_twice_in_one_folder_is_said_and_the_uncompressed_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a = FieldId(3918, 3, 213)
    packed = tmp_path / a.frame_path("r")
    plain = packed.with_name(packed.name.removesuffix(".bz2"))
    for path in (packed, plain):
        _touch(path)
    _touch(tmp_path / "headers" / a.frame_name("r").replace(".fits.bz2", ".hdr"))
    with caplog.at_level("WARNING", logger="sgc.sdss.discover"):
        index = find_frames([tmp_path], headers=True)
    assert index.paths[a, "r"] == plain
    # The frame passed over is named; a text header beside its frame is not a duplicate.
    assert [r.getMessage() for r in caplog.records] == [
        f"{packed}: the same frame as {plain}, which is used instead"
    ]


def test_a_catalogue_folder_without_catalogues_is_refused(tmp_path: Path) -> None:
    _touch(tmp_path / "notes.txt")
    with pytest.raises(DiscoveryError, match="no catalogue below it"):
        find_catalogs([tmp_path])
    assert find_catalogs([tmp_path], missing_ok=True) == []
