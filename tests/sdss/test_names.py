"""FieldId parsing and SAS names, paths and URLs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sgc.sdss.names import (
    BANDS,
    DEFAULT_BASE_URL,
    FieldId,
    FieldIdError,
    calibobj_path,
    join_url,
    parse_calibobj_name,
    parse_frame_name,
)

fields = st.builds(
    FieldId,
    run=st.integers(1, 999_999),
    camcol=st.integers(1, 6),
    field=st.integers(0, 9999),
)


@pytest.mark.parametrize(
    "text",
    [
        "8162-6-80",
        "008162-6-0080",
        " 8162-6-0080 ",
        "frame-r-008162-6-0080.fits.bz2",
        "x/y/frame-irg-008162-6-0080.jpg",
    ],
)
def test_parse_accepts_the_usual_spellings(text: str) -> None:
    assert FieldId.parse(text) == FieldId(8162, 6, 80)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "8162-6",
        "8162-7-80",
        "8162-0-80",
        "0-1-1",
        "8162-6-80-1",
        "run8162",
        "1234567-1-1",
        "8162_6_80",
        "frame-r-8162-6-80.fits",
        "calibObj-008162-6-star.fits.gz",
    ],
)
def test_parse_rejects_anything_else_with_a_clear_message(text: str) -> None:
    with pytest.raises(FieldIdError, match="field id|out of range"):
        FieldId.parse(text)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(FieldIdError, match="expected a field id"):
        FieldId.parse(8162)  # type: ignore[arg-type]


@given(fields)
def test_text_round_trip(fid: FieldId) -> None:
    assert FieldId.parse(str(fid)) == fid
    assert FieldId.parse(f"{fid.run}-{fid.camcol}-{fid.field}") == fid


@given(fields, st.sampled_from(BANDS))
def test_frame_name_round_trip(fid: FieldId, band: str) -> None:
    assert parse_frame_name(fid.frame_path(band)) == (band, fid)
    assert FieldId.parse(fid.frame_name(band)) == fid


def test_sas_paths_and_urls_match_the_published_layout() -> None:
    fid = FieldId.parse("8162-6-80")
    assert str(fid) == "008162-6-0080"
    assert fid.frame_url("r") == (
        "https://data.sdss.org/sas/dr17/eboss/photoObj/frames/301/8162/6/frame-r-008162-6-0080.fits.bz2"
    )
    assert fid.irg_path() == "photoObj/frames/301/8162/6/frame-irg-008162-6-0080.jpg"
    assert fid.calibobj_path("gal") == "sweeps/dr13_final/301/calibObj-008162-6-gal.fits.gz"
    assert join_url("http://localhost:8000", fid.frame_path("u")).startswith(
        "http://localhost:8000/photoObj/"
    )
    assert join_url(DEFAULT_BASE_URL, "/a") == DEFAULT_BASE_URL + "a"


def test_calibobj_names_round_trip_and_reject_unknown_kinds() -> None:
    assert parse_calibobj_name(calibobj_path(3918, 3, "star")) == (3918, 3, "star")
    with pytest.raises(ValueError, match="unknown calibObj kind"):
        calibobj_path(3918, 3, "qso")  # type: ignore[arg-type]
    with pytest.raises(FieldIdError, match="camcol"):
        calibobj_path(3918, 9, "star")


def test_unknown_band_is_named() -> None:
    with pytest.raises(ValueError, match="unknown band 'q'"):
        parse_frame_name("frame-q-003918-3-0213.fits.bz2")
    with pytest.raises(ValueError, match="unknown band 'y'"):
        FieldId(1, 1, 1).frame_name("y")


def test_fields_sort_by_run_camcol_field() -> None:
    ids = [FieldId.parse(t) for t in ("2-1-5", "1-6-9", "1-6-3", "1-1-100")]
    assert [str(f) for f in sorted(ids)] == [
        "000001-1-0100",
        "000001-6-0003",
        "000001-6-0009",
        "000002-1-0005",
    ]
