"""bench/cost_model.py computes the tables of docs/scaling.md from benchmark results, not by hand."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import cost_model  # noqa: E402

# Small, round figures: a field is 1000 rows x 640 columns (10 x 15 patches of 64 after the 128-row overlap
# is dropped from the area, all rows kept for the patches), 1 arcsec pixels, a 1 deg² "footprint".
SDSS = {
    "footprint_deg2": cost_model.Const(1.0, "deg²", "quoted", "test"),
    "frame_cols": cost_model.Const(640, "px", "quoted", "test"),
    "frame_rows": cost_model.Const(1000, "px", "quoted", "test"),
    "overlap_rows": cost_model.Const(100, "px", "quoted", "test"),
    "pixel_arcsec": cost_model.Const(1.0, "arcsec", "quoted", "test"),
    "camcols": cost_model.Const(6, "", "quoted", "test"),
    "bands": cost_model.Const(5, "", "quoted", "test"),
    "strips_per_stripe": cost_model.Const(2, "", "quoted", "test"),
    # 12 columns of 640" make 2.1333 deg: a coverage factor of exactly 1 with this stripe width.
    "stripe_width_deg": cost_model.Const(12 * 640 / 3600, "deg", "quoted", "test"),
}


def results() -> dict[str, dict]:
    """The least of each result file that the model reads, with round numbers."""
    return {
        "ingest": {"sgc": [{"workers": 1, "s_per_field_per_core": 2.0}], "floor_decompress_s_per_field": 1.5},
        "labels": {"results": [{"case": "field", "layout": "256 chunks", "seconds": {"numba": 0.01}}]},
        "exclusion": {
            "cases": {
                "next field of the run": {"seconds": {"numba, 256 chunks": 0.01}, "projection_ms": 10.0}
            }
        },
        "predict": {
            "tile": 768,
            "halo": 128,
            "rows": [
                {"method": "tiled 768px", "device": "cpu", "threads": 1, "s_per_field_per_core": 50.0},
                {
                    "method": "sgc predict, 1 Dask worker(s)",
                    "device": "cpu",
                    "threads": 1,
                    "s_per_field_per_core": 60.0,
                },
            ],
        },
        "train": {
            "machine": {"torch_threads": 2, "cores_allowed": 2},
            "results": [
                {
                    "store": "sim",
                    "model": "default",
                    "workers": 0,
                    "device": "cpu",
                    "loader_patches_per_s": 40.0,
                }
            ],
        },
        "loader": {
            "stores": {
                "sim": {
                    "results": [
                        {
                            "design": "1 sgc PatchStream, augment off",
                            "workers": 0,
                            "patches_per_s_per_core": 10000.0,
                        }
                    ]
                }
            }
        },
        "layout": {
            "published_frames": {"bz2_bytes_field": 1000, "hdu0_rows": 100},
            "compression": [
                {"pixels": "aligned", "dtype": "float32", "codec": "none", "ratio": 1.0},
                {"pixels": "aligned", "dtype": "float16", "codec": "zstd", "ratio": 2.0},
            ],
        },
    }


def test_fields_from_area() -> None:
    fp = cost_model.footprint(SDSS)
    field_deg2 = (640 / 3600) * (900 / 3600)
    assert fp["stripe_overlap"] == pytest.approx(1.0)
    assert fp["fields"] == pytest.approx(1.0 / field_deg2)
    assert fp["frames"] == pytest.approx(5 / field_deg2)


def test_core_hours_are_fields_times_seconds() -> None:
    c = cost_model.compute(results(), flops_per_pixel=None, sdss=SDSS)
    fields = c["fields"]
    assert c["stages"]["ingest (decompress, verify, align, write)"][0] == 2.0
    assert c["stages"]["exclude (numba kernel + projection)"][0] == pytest.approx(0.02)
    # (1000 // 64) x (640 // 64) = 15 x 10 patches per field at 40 / 2 patches/s per core.
    assert c["patches_per_field"] == 150
    assert c["stages"]["train on CPU, one epoch of the field's patches"][0] == pytest.approx(150 / 20)
    table = cost_model.render(c)["stages"]
    assert f"| {cost_model.fmt(fields * 60.0 / 3600)} |" in table  # predict: fields x 60 s / 3600
    assert f"| {cost_model.fmt(fields * 2.0 / 3600)} |" in table  # ingest


def test_bytes_and_store_sizes() -> None:
    c = cost_model.compute(results(), flops_per_pixel=None, sdss=SDSS)
    assert c["raw_bytes_field"] == pytest.approx(1000 / 100 * 1000)  # bytes per row x 1000 rows
    padded = 1024 * 768  # whole 256-pixel chunks over 1000 x 640
    by_codec = {(r["dtype"], r["codec"]): r["field_bytes"] for r in c["store"]}
    assert by_codec[("float32", "none")] == 5 * padded * 4
    assert by_codec[("float16", "zstd")] == 5 * padded * 2 / 2


def test_gpu_is_an_estimate_without_cuda_rows_and_measured_with_them() -> None:
    c = cost_model.compute(results(), flops_per_pixel=1000.0, sdss=SDSS)
    peak = cost_model.ASSUMPTIONS["gpu_peak_flop_s"].value * cost_model.ASSUMPTIONS["gpu_utilisation"].value
    assert c["gpu"]["train"]["kind"] == "estimate"
    assert c["gpu"]["train"]["value"] == pytest.approx(peak / (3 * 1000.0 * 64 * 64))
    measured = results()
    measured["train"]["results"].append(
        {"store": "sim", "model": "default", "workers": 0, "device": "cuda", "loader_patches_per_s": 5000.0}
    )
    measured["predict"]["rows"].append(
        {"method": "tiled 1536px on the GPU", "device": "cuda", "threads": 1, "s_per_field": 0.5}
    )
    c = cost_model.compute(measured, flops_per_pixel=1000.0, sdss=SDSS)
    assert c["gpu"]["train"] == {"value": 5000.0, "kind": "measured", "how": c["gpu"]["train"]["how"]}
    assert c["gpu"]["predict"]["value"] == 0.5


def test_missing_results_say_not_measured() -> None:
    c = cost_model.compute({}, flops_per_pixel=None, sdss=SDSS)
    blocks = cost_model.render(c)
    assert "not measured" in blocks["stages"]
    assert "not measured" in blocks["store"]


def test_fill_replaces_only_between_markers(tmp_path: Path) -> None:
    doc = "prose\n<!-- cost-model:stages:start -->\nold\n<!-- cost-model:stages:end -->\nmore prose\n"
    out = cost_model.fill(doc, {"stages": "| new |"})
    assert (
        out
        == "prose\n<!-- cost-model:stages:start -->\n| new |\n<!-- cost-model:stages:end -->\nmore prose\n"
    )
    assert cost_model.fill(out, {"stages": "| new |"}) == out


def test_main_writes_and_checks(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    for stem, data in results().items():
        (folder / f"{stem}.json").write_text(json.dumps(data))
    doc = tmp_path / "scaling.md"
    doc.write_text("<!-- cost-model:fields:start -->\n<!-- cost-model:fields:end -->\n")
    args = ["--results", str(folder), "--doc", str(doc), "--no-flops"]
    assert cost_model.main([*args, "--check"]) == 1
    assert cost_model.main(args) == 0
    assert "**fields**" in doc.read_text()
    assert cost_model.main([*args, "--check"]) == 0
