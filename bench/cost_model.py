"""The survey cost model of ``docs/scaling.md``, computed from sgc's own benchmark results.

Reads ``bench/results/*.json`` (what ``bench/*.py`` save), takes the SDSS figures below (each with its
source, and whether it is quoted from a publication, derived here from quoted figures, or an assumption)
and rewrites the tables of ``docs/scaling.md`` between its markers::

    <!-- cost-model:NAME:start -->
    ...generated...
    <!-- cost-model:NAME:end -->

Everything outside the markers is hand-written and left alone. Rerun after new benchmark runs:

    python bench/cost_model.py [--results bench/results] [--doc docs/scaling.md] [--check]

``--check`` writes nothing and exits 1 if the doc's tables differ from what the results give.

A figure a result file does not hold (a benchmark not run yet, or run without a GPU) appears as "not
measured"; GPU figures are measured ones when ``bench/train.py`` and ``bench/predict.py`` were run on CUDA,
otherwise estimates from the U-Net's floating-point operations (counted here with torch's flop counter)
and an assumed fraction of a GPU's published peak, and labelled so.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DOC = REPO / "docs" / "scaling.md"
RESULTS = HERE / "results"
MB = 1e6
TB = 1e12


@dataclass(frozen=True)
class Const:
    """A number the model uses, with where it comes from.

    Attributes:
        value: the number.
        unit: its unit.
        kind: ``"quoted"`` (published by SDSS, a vendor or a project, as cited), ``"derived"`` (computed
            here from quoted figures or measurements), or ``"assumption"`` (a choice the reader may change).
        source: where it comes from, precisely enough to check it.
    """

    value: float
    unit: str
    kind: str
    source: str


# SDSS's own figures. Quoted from the papers and data-model pages named; nothing here was fetched at run time.
SDSS: dict[str, Const] = {
    "footprint_deg2": Const(
        14555,
        "deg²",
        "quoted",
        "unique area of the imaging: Aihara et al. 2011, ApJS 193, 29 (the DR8 paper); the same 14,555 deg² "
        "on SDSS's DR17 'Imaging data' and 'Data Release scope' pages: no imaging was added after DR8 "
        "(Abdurro'uf et al. 2022, ApJS 259, 35, the DR17 paper)",
    ),
    "frame_cols": Const(
        2048,
        "pixels",
        "quoted",
        "frame data model (data.sdss.org/datamodel/files/BOSS_PHOTOOBJ/frames/RERUN/RUN/CAMCOL/frame.html): "
        "HDU0 is a 2048 x 1489 float32 image in nanomaggies",
    ),
    "frame_rows": Const(1489, "pixels", "quoted", "the same frame data model page"),
    "overlap_rows": Const(
        128,
        "pixels",
        "quoted",
        "a field is 1361 rows of the drift scan; each frame carries the first 128 rows of the next field: "
        "Stoughton et al. 2002, AJ 123, 485 (the EDR paper); sgc's simulator and the sample's headers agree",
    ),
    "pixel_arcsec": Const(0.396, "arcsec", "quoted", "Gunn et al. 1998, AJ 116, 3040 (the SDSS camera)"),
    "camcols": Const(6, "columns", "quoted", "Gunn et al. 1998: six camera columns, five filters each"),
    "bands": Const(5, "bands", "quoted", "u g r i z: Fukugita et al. 1996, AJ 111, 1748"),
    "strips_per_stripe": Const(
        2, "strips", "quoted", "York et al. 2000, AJ 120, 1579: two interleaved strips fill a stripe"
    ),
    "stripe_width_deg": Const(2.5, "deg", "quoted", "York et al. 2000: stripes are 2.5° wide"),
}

# Choices and outside figures the wall-time tables rest on. Change them here, not in the doc.
ASSUMPTIONS: dict[str, Const] = {
    "node_cores": Const(16, "cores", "assumption", "cores per cluster node"),
    "node_link_gb_s": Const(1.25, "GB/s", "assumption", "per node to object storage: a 10 Gbit/s link"),
    "upstream_gb_s": Const(
        0.125, "GB/s", "assumption", "sustained download from the SDSS SAS (1 Gbit/s), one copy of the frames"
    ),
    "s3_put_per_prefix": Const(
        3500,
        "requests/s",
        "quoted",
        "AWS S3 user guide, 'Best practices design patterns: optimizing Amazon S3 performance': 3,500 "
        "PUT/COPY/POST/DELETE and 5,500 GET/HEAD requests per second per prefix",
    ),
    "s3_get_per_prefix": Const(5500, "requests/s", "quoted", "the same AWS page"),
    "scheduler_s_per_task": Const(
        0.001,
        "s/task",
        "quoted",
        "Dask documentation, 'Dask Best Practices' (avoid very large graphs): the scheduler spends on the "
        "order of 1 ms per task; bench/scale.py (issue 12) measures sgc's own",
    ),
    "gpu_peak_flop_s": Const(
        989e12,
        "FLOP/s",
        "quoted",
        "NVIDIA H100 SXM datasheet: 989 TFLOP/s dense BF16 tensor-core peak (the H200 has the same compute)",
    ),
    "gpu_utilisation": Const(
        0.25,
        "of peak",
        "assumption",
        "share of the BF16 peak a depth-4, width-32 U-Net reaches in training and tiled inference; "
        "replace by measuring (bench/train.py and bench/predict.py on a GPU)",
    ),
    "train_fields": Const(
        10000, "fields", "assumption", "fields in a training set (about 2% of the footprint)"
    ),
    "train_epochs": Const(30, "epochs", "quoted", "sgc's default train.epochs (sgc/config.py)"),
}

CLUSTERS: list[tuple[str, int, int]] = [
    ("16 cores, no GPU", 16, 0),
    ("128 cores + 8 GPUs", 128, 8),
    ("1024 cores + 64 GPUs", 1024, 64),
]


# --- reading the results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """A figure taken from a result file, and the path to it."""

    value: float
    unit: str
    source: str


def load_results(folder: Path) -> dict[str, dict]:
    """Every ``*.json`` in ``folder`` by file stem (``ingest``, ``layout``, ...)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def _first(rows: list[dict], **match: Any) -> dict:
    for row in rows:
        if all(row.get(key) == value for key, value in match.items()):
            return row
    raise KeyError(match)


def _ingest(r: dict) -> Measured:
    row = _first(r["ingest"]["sgc"], workers=1)
    return Measured(
        row["s_per_field_per_core"], "s/field", "ingest.json: sgc, 1 worker, s_per_field_per_core"
    )


def _ingest_floor(r: dict) -> Measured:
    return Measured(r["ingest"]["floor_decompress_s_per_field"], "s/field", "ingest.json: floor_decompress")


def _labels(r: dict) -> Measured:
    row = _first(r["labels"]["results"], case="field", layout="256 chunks")
    return Measured(row["seconds"]["numba"], "s/field", "labels.json: field, 256 chunks, numba kernel")


def _exclusion(r: dict) -> Measured:
    case = r["exclusion"]["cases"]["next field of the run"]
    seconds = case["seconds"]["numba, 256 chunks"] + case["projection_ms"] / 1000
    return Measured(seconds, "s/field", "exclusion.json: next field, numba 256 chunks + projection")


def _predict_cpu(r: dict) -> Measured:
    row = next(x for x in r["predict"]["rows"] if x["method"].startswith("sgc predict, 1 "))
    return Measured(row["s_per_field_per_core"], "s/field", "predict.json: sgc predict, 1 Dask worker")


def _train_cpu(r: dict) -> Measured:
    train = r["train"]
    row = _first(train["results"], store="sim", model="default", workers=0, device="cpu")
    threads = train["machine"].get("torch_threads") or train["machine"]["cores_allowed"]
    return Measured(
        row["loader_patches_per_s"] / threads,
        "patches/s/core",
        f"train.json: sim, default model, 0 workers, CPU, / {threads} torch threads",
    )


def _loader(r: dict) -> Measured:
    row = _first(r["loader"]["stores"]["sim"]["results"], design="1 sgc PatchStream, augment off", workers=0)
    return Measured(
        row["patches_per_s_per_core"], "patches/s/core", "loader.json: sim, PatchStream, 0 workers"
    )


def _train_gpu(r: dict) -> Measured:
    row = _first(r["train"]["results"], store="sim", model="default", device="cuda")
    return Measured(row["loader_patches_per_s"], "patches/s/GPU", "train.json: sim, default model, CUDA")


def _predict_gpu(r: dict) -> Measured:
    rows = [x for x in r["predict"]["rows"] if x.get("device") == "cuda"]
    best = min(rows, key=lambda x: x["s_per_field"])
    return Measured(best["s_per_field"], "s/field/GPU", f"predict.json: {best['method']}")


def _published(r: dict) -> Measured:
    frames = r["layout"]["published_frames"]
    return Measured(
        frames["bz2_bytes_field"] / frames["hdu0_rows"],
        "bytes/row",
        f"layout.json: .bz2 bytes of the sample's five frames over their {frames['hdu0_rows']} rows",
    )


EXTRACTORS: dict[str, Callable[[dict], Measured]] = {
    "ingest": _ingest,
    "ingest_floor": _ingest_floor,
    "labels": _labels,
    "exclusion": _exclusion,
    "predict_cpu": _predict_cpu,
    "train_cpu": _train_cpu,
    "loader": _loader,
    "train_gpu": _train_gpu,
    "predict_gpu": _predict_gpu,
    "published_bytes_per_row": _published,
}


def measurements(results: dict[str, dict]) -> dict[str, Measured | None]:
    """Each figure the model needs from the results, or None where the results do not hold it."""
    out: dict[str, Measured | None] = {}
    for name, extract in EXTRACTORS.items():
        try:
            out[name] = extract(results)
        except (KeyError, StopIteration, ValueError, TypeError, ZeroDivisionError):
            out[name] = None
    return out


def unet_forward_flops_per_pixel() -> float:
    """Floating-point operations of the default U-Net's forward pass per input pixel (torch's counter)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from sgc.model.unet import UNet

    model = UNet().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 5, 64, 64))
    return counter.get_total_flops() / (64 * 64)


# --- the model ------------------------------------------------------------------------------------------


def footprint(sdss: dict[str, Const]) -> dict[str, float]:
    """Fields, frames and pixels of one coverage of the footprint, derived from the SDSS figures."""
    v = {k: c.value for k, c in sdss.items()}
    column_deg = v["frame_cols"] * v["pixel_arcsec"] / 3600
    field_deg2 = column_deg * (v["frame_rows"] - v["overlap_rows"]) * v["pixel_arcsec"] / 3600
    columns = v["strips_per_stripe"] * v["camcols"]
    overlap = columns * column_deg / v["stripe_width_deg"]
    fields = v["footprint_deg2"] * overlap / field_deg2
    return {
        "column_deg": column_deg,
        "field_deg2": field_deg2,
        "stripe_overlap": overlap,
        "fields": fields,
        "frames": fields * v["bands"],
        "hdu0_bytes_field": v["bands"] * v["frame_rows"] * v["frame_cols"] * 4,
    }


def store_bytes_per_field(sdss: dict[str, Const], chunk: int = 256) -> dict[str, float]:
    """Uncompressed bytes of one field slot in whole chunks: image (float32, float16), a mask, predictions."""
    v = {k: c.value for k, c in sdss.items()}
    padded = math.ceil(v["frame_rows"] / chunk) * chunk * math.ceil(v["frame_cols"] / chunk) * chunk
    return {
        "chunks": padded / chunk**2,
        "image_float32": v["bands"] * padded * 4,
        "image_float16": v["bands"] * padded * 2,
        "mask_uint8": padded,
        "prob_float16": 3 * padded * 2,
    }


def fmt(x: float | None, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits with thousands separators; "not measured" for None."""
    if x is None:
        return "not measured"
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude >= digits - 1:
        return f"{round(x, digits - 1 - magnitude):,.0f}"
    return f"{x:,.{digits - 1 - magnitude}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def compute(
    results: dict[str, dict],
    flops_per_pixel: float | None,
    sdss: dict[str, Const] = SDSS,
    assumptions: dict[str, Const] = ASSUMPTIONS,
) -> dict[str, Any]:
    """Every number of the doc's tables, from the results and the constants (no formatting)."""
    m = measurements(results)
    a = {k: c.value for k, c in assumptions.items()}
    fp = footprint(sdss)
    sb = store_bytes_per_field(sdss)
    fields = fp["fields"]
    rows, cols = sdss["frame_rows"].value, sdss["frame_cols"].value
    patches_per_field = (rows // 64) * (cols // 64)
    raw_bytes_field = (
        None if m["published_bytes_per_row"] is None else m["published_bytes_per_row"].value * rows
    )

    # CPU core-seconds per field of each stage, and where each figure comes from.
    stages: dict[str, tuple[float | None, str]] = {}
    for name, key in (
        ("ingest (decompress, verify, align, write)", "ingest"),
        ("  of which bz2 decompression (floor)", "ingest_floor"),
        ("label (numba kernel only)", "labels"),
        ("exclude (numba kernel + projection)", "exclusion"),
        ("predict on CPU (sgc predict)", "predict_cpu"),
    ):
        stages[name] = (None if m[key] is None else m[key].value, "" if m[key] is None else m[key].source)
    train_cpu = m["train_cpu"]
    stages["train on CPU, one epoch of the field's patches"] = (
        None if train_cpu is None else patches_per_field / train_cpu.value,
        "" if train_cpu is None else f"{patches_per_field} patches / " + train_cpu.source,
    )

    # GPU: measured when the benches ran on CUDA, else estimated from FLOPs.
    tile, halo = 768, 128
    if "predict" in results:
        tile, halo = (
            results["predict"].get("tile", tile),
            results["predict"].get("halo", halo),
        )
    inner = tile - 2 * halo
    tiles = math.ceil(rows / inner) * math.ceil(cols / inner)
    gpu_rate = a["gpu_peak_flop_s"] * a["gpu_utilisation"]
    gpu: dict[str, dict[str, Any]] = {}
    if m["train_gpu"] is not None:
        gpu["train"] = {"value": m["train_gpu"].value, "kind": "measured", "how": m["train_gpu"].source}
    elif flops_per_pixel is not None:
        flops = 3 * flops_per_pixel * 64 * 64
        gpu["train"] = {
            "value": gpu_rate / flops,
            "kind": "estimate",
            "how": f"peak × utilisation / (3 × forward FLOPs of a 64x64 patch = {fmt(flops / 1e9)} GFLOP)",
        }
    # CPU work of sgc predict besides the model (reading, stitching, writing, the object catalogue):
    # the pipeline's seconds less the bare tiled model's, both on one core.
    predict_cpu_side = None
    try:
        rows_p = results["predict"]["rows"]
        tiled = next(x for x in rows_p if x["method"].startswith("tiled") and x["threads"] == 1)
        if m["predict_cpu"] is not None:
            predict_cpu_side = max(0.0, m["predict_cpu"].value - tiled["s_per_field_per_core"])
    except (KeyError, StopIteration):
        pass
    if m["predict_gpu"] is not None:
        gpu["predict"] = {"value": m["predict_gpu"].value, "kind": "measured", "how": m["predict_gpu"].source}
    elif flops_per_pixel is not None:
        flops = flops_per_pixel * tiles * tile**2
        gpu["predict"] = {
            "value": flops / gpu_rate,
            "kind": "estimate",
            "how": f"{tiles} tiles of {tile}² px × forward FLOPs/px = {fmt(flops / 1e12)} TFLOP"
            " / (peak × utilisation)",
        }
    train_patches_per_s_gpu = gpu.get("train", {}).get("value")
    predict_s_gpu = gpu.get("predict", {}).get("value")

    # Store sizes from the measured compression ratios.
    store = []
    for row in results.get("layout", {}).get("compression", []):
        pixels = row.get("pixels", "aligned")
        if pixels.startswith("aligned"):
            per_field = sb[f"image_{row['dtype']}"] / row["ratio"]
            store.append(
                {
                    "dtype": row["dtype"],
                    "codec": row["codec"],
                    "rounding": pixels.removeprefix("aligned").removeprefix(", ") or "as resampled",
                    "ratio": row["ratio"],
                    "field_bytes": per_field,
                    "total": per_field * fields,
                }
            )

    # Wall time per stage on each cluster: the largest of compute, bandwidth and scheduler time.
    image_bytes = sb["image_float32"]
    loader = None if m["loader"] is None else m["loader"].value
    clusters = []
    for name, cores, gpus in CLUSTERS:
        nodes = max(1, math.ceil(cores / a["node_cores"]))
        bandwidth = nodes * a["node_link_gb_s"] * 1e9
        row: dict[str, Any] = {
            "name": name,
            "cores": cores,
            "gpus": gpus,
            "nodes": nodes,
            "bandwidth": bandwidth,
        }
        parts: dict[str, dict[str, float | None]] = {}
        if raw_bytes_field is not None:
            parts["download"] = {"upstream": fields * raw_bytes_field / (a["upstream_gb_s"] * 1e9)}
        ingest = m["ingest"].value if m["ingest"] else None
        parts["ingest"] = {
            "decompress+align (CPU)": None if ingest is None else fields * ingest / cores,
            "storage I/O": fields * ((raw_bytes_field or 0) + image_bytes) / bandwidth,
            "scheduler": fields * a["scheduler_s_per_task"],
        }
        epoch_patches = a["train_fields"] * patches_per_field
        if gpus and train_patches_per_s_gpu:
            parts["train (1 epoch)"] = {
                "GPU": epoch_patches / (gpus * train_patches_per_s_gpu),
                "loader CPU": None if loader is None else epoch_patches / (cores * loader),
                "storage I/O": a["train_fields"] * image_bytes / bandwidth,
            }
        elif train_cpu is not None:
            parts["train (1 epoch)"] = {"CPU": epoch_patches / (cores * train_cpu.value)}
        if gpus and predict_s_gpu:
            parts["predict"] = {
                "GPU": fields * predict_s_gpu / gpus,
                "CPU besides the model": None
                if predict_cpu_side is None
                else fields * predict_cpu_side / cores,
                "storage I/O": fields * (image_bytes + sb["prob_float16"]) / bandwidth,
                "scheduler": fields * a["scheduler_s_per_task"],
            }
        elif m["predict_cpu"] is not None:
            parts["predict"] = {
                "CPU": fields * m["predict_cpu"].value / cores,
                "storage I/O": fields * (image_bytes + sb["prob_float16"]) / bandwidth,
                "scheduler": fields * a["scheduler_s_per_task"],
            }
        row["stages"] = {}
        for stage, comps in parts.items():
            known = {k: v for k, v in comps.items() if v is not None}
            bound = max(known, key=known.get)
            row["stages"][stage] = {"seconds": known[bound], "bound": bound, "parts": comps}
        clusters.append(row)

    # Layout: objects and folder entries at survey size.
    chunks = sb["chunks"]
    layout_rows = []
    arrays = {
        "image": image_bytes,
        "valid": sb["mask_uint8"],
        "label": sb["mask_uint8"],
        "exclude": sb["mask_uint8"],
    }
    layout_rows.append(("objects, cube store, unsharded (4 arrays × chunks)", len(arrays) * chunks * fields))
    layout_rows.append(("objects, cube store, one shard per field and array", len(arrays) * fields))
    layout_rows.append(("objects, prediction store (prob, class), unsharded", 2 * chunks * fields))
    layout_rows.append(("objects, prediction store, sharded per field", 2 * fields))
    layout_rows.append(("entries in each array's c/ folder (one per field, either layout)", fields))
    layout_rows.append(("image shard, float32 uncompressed, bytes", image_bytes))
    layout_rows.append(("image inner chunk (1, 5, 256, 256) float32, bytes", image_bytes / chunks))

    # Where the bottleneck moves: the cluster size at which each other limit catches up with compute.
    crossings = []
    if m["ingest"] is not None:
        per_core = ((raw_bytes_field or 0) + image_bytes) / m["ingest"].value
        crossings.append(
            (
                "ingest: storage bytes per core-second (frames in + float32 image out)",
                f"{fmt(per_core / MB)} MB/s",
                f"a {fmt(a['node_link_gb_s'])} GB/s node link feeds "
                f"{fmt(a['node_link_gb_s'] * 1e9 / per_core)} cores",
            )
        )
        crossings.append(
            (
                "ingest: cores at which the scheduler (one task per field) takes as long as the work",
                fmt(m["ingest"].value / a["scheduler_s_per_task"]),
                "ingest s/field / scheduler s/task; batch fields per task beyond it",
            )
        )
        biggest = CLUSTERS[-1][1]
        for label, objects in (("unsharded", 2 * chunks), ("sharded", 2)):
            crossings.append(
                (
                    f"ingest on {biggest} cores: object PUTs/s, {label} (image + valid)",
                    fmt(biggest / m["ingest"].value * objects),
                    f"against {fmt(a['s3_put_per_prefix'])} per S3 prefix",
                )
            )
    if m["ingest_floor"] is not None and m["ingest"] is not None:
        crossings.append(
            (
                "ingest: share of a field's core time that is bz2 decompression",
                f"{fmt(100 * m['ingest_floor'].value / m['ingest'].value)}%",
                "floor / ingest",
            )
        )
    if predict_cpu_side is not None:
        crossings.append(
            (
                "predict: CPU seconds per field besides the model",
                fmt(predict_cpu_side),
                "sgc predict (1 worker) − tiled model alone (1 thread); with a GPU this stays on the CPUs",
            )
        )
        if predict_s_gpu:
            crossings.append(
                (
                    "predict: cores needed to keep one GPU busy",
                    fmt(predict_cpu_side / predict_s_gpu),
                    "CPU seconds besides the model / GPU seconds per field",
                )
            )
    if train_patches_per_s_gpu and loader is not None:
        crossings.append(
            (
                "train: loader cores needed per GPU",
                fmt(train_patches_per_s_gpu / loader),
                "GPU patches/s / loader patches/s per core",
            )
        )
        crossings.append(
            (
                "train: image bytes per GPU if not cached",
                f"{fmt(train_patches_per_s_gpu * 5 * 64 * 64 * 4 / 1e9)} GB/s",
                "GPU patches/s × 5 × 64 × 64 × 4 bytes",
            )
        )

    return {
        "crossings": crossings,
        "measured": m,
        "footprint": fp,
        "store_bytes": sb,
        "fields": fields,
        "patches_per_field": patches_per_field,
        "raw_bytes_field": raw_bytes_field,
        "stages": stages,
        "gpu": gpu,
        "flops_per_pixel": flops_per_pixel,
        "store": store,
        "clusters": clusters,
        "layout": layout_rows,
        "layout_measured": results.get("layout", {}).get("stores"),
        "assumptions": assumptions,
        "sdss": sdss,
    }


# --- the tables -----------------------------------------------------------------------------------------


def _exact(value: float) -> str:
    """A constant as written at its source: integers with separators, others in short form."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _hours(seconds: float | None) -> str:
    return "not measured" if seconds is None else fmt(seconds / 3600)


def render(c: dict[str, Any]) -> dict[str, str]:
    """The doc's generated blocks by name."""
    blocks: dict[str, str] = {}
    consts = [*c["sdss"].items(), *c["assumptions"].items()]
    blocks["sources"] = _table(
        ["name", "value", "unit", "kind", "source"],
        [[f"`{k}`", _exact(v.value), v.unit, v.kind, v.source] for k, v in consts],
    )
    fp = c["footprint"]
    raw = c["raw_bytes_field"]
    blocks["fields"] = _table(
        ["figure", "value", "how"],
        [
            ["camera column width", f"{fmt(fp['column_deg'], 4)}°", "derived: frame_cols × pixel_arcsec"],
            [
                "unique area of one field",
                f"{fmt(fp['field_deg2'], 4)} deg²",
                "derived: column width × (frame_rows − overlap_rows) × pixel_arcsec",
            ],
            [
                "coverage factor of a stripe",
                fmt(fp["stripe_overlap"], 4),
                "derived: strips_per_stripe × camcols × column width / stripe_width_deg",
            ],
            [
                "**fields** (one coverage)",
                f"**{fmt(c['fields'])}**",
                "derived: footprint × coverage / field area",
            ],
            ["frames", fmt(fp["frames"]), "derived: fields × bands"],
            [
                "HDU0 pixels, float32, all frames",
                f"{fmt(fp['hdu0_bytes_field'] * c['fields'] / TB)} TB",
                "derived: fields × 5 × 1489 × 2048 × 4 bytes",
            ],
            [
                "published .bz2 frames per field",
                "not measured" if raw is None else f"{fmt(raw / MB)} MB",
                "derived from a measurement: "
                + (
                    "-"
                    if c["measured"]["published_bytes_per_row"] is None
                    else c["measured"]["published_bytes_per_row"].source
                )
                + " × 1489 rows",
            ],
            [
                "**published .bz2 frames, all fields**",
                "not measured" if raw is None else f"**{fmt(raw * c['fields'] / TB)} TB**",
                "derived: fields × the above",
            ],
        ],
    )
    stage_rows = []
    for name, (seconds, source) in c["stages"].items():
        stage_rows.append(
            [
                name,
                fmt(seconds),
                _hours(None if seconds is None else seconds * c["fields"]),
                source or "not in bench/results",
            ]
        )
    blocks["stages"] = _table(
        ["stage", "core-s per field", "core-hours, all fields", "measured in"], stage_rows
    )
    gpu_rows = []
    fields = c["fields"]
    a = {k: v.value for k, v in c["assumptions"].items()}
    epoch_patches = a["train_fields"] * c["patches_per_field"]
    if "train" in c["gpu"]:
        g = c["gpu"]["train"]
        gpu_rows.append(
            [
                "train: patches/s per GPU",
                fmt(g["value"]),
                g["kind"],
                g["how"],
            ]
        )
        hours = epoch_patches * a["train_epochs"] / g["value"] / 3600
        gpu_rows.append(
            [
                f"train: GPU-hours, {fmt(a['train_fields'])} fields × {_exact(a['train_epochs'])} epochs",
                fmt(hours),
                g["kind"],
                f"{c['patches_per_field']} patches/field",
            ]
        )
    if "predict" in c["gpu"]:
        g = c["gpu"]["predict"]
        gpu_rows.append(["predict: s per field per GPU", fmt(g["value"]), g["kind"], g["how"]])
        gpu_rows.append(
            [
                "predict: GPU-hours, all fields",
                fmt(g["value"] * fields / 3600),
                g["kind"],
                "fields × the above",
            ]
        )
        gpu_rows.append(
            [
                "predict: input the GPU needs",
                f"{fmt(c['store_bytes']['image_float32'] / g['value'] / 1e9)} GB/s",
                g["kind"],
                "float32 image bytes of a field / s per field",
            ]
        )
    if c["flops_per_pixel"] is not None:
        gpu_rows.append(
            [
                "forward FLOPs per pixel, default U-Net",
                fmt(c["flops_per_pixel"]),
                "counted",
                "torch FlopCounterMode",
            ]
        )
    blocks["gpu"] = _table(["figure", "value", "kind", "how"], gpu_rows) if gpu_rows else "No GPU figures."
    store_rows = [
        [
            r["dtype"],
            r["rounding"],
            r["codec"],
            fmt(r["ratio"]),
            f"{fmt(r['field_bytes'] / MB)} MB",
            f"{fmt(r['total'] / TB)} TB",
        ]
        for r in c["store"]
    ]
    blocks["store"] = (
        _table(
            ["dtype", "mantissa", "codec", "ratio (measured)", "image per field", "image, all fields"],
            store_rows,
        )
        if store_rows
        else "not measured (run bench/layout.py)"
    )
    cluster_rows = []
    for row in c["clusters"]:
        cells = [
            row["name"],
            f"{row['nodes']} × {_exact(a['node_cores'])} cores, {fmt(row['bandwidth'] / 1e9)} GB/s",
        ]
        for stage in ("download", "ingest", "train (1 epoch)", "predict"):
            s = row["stages"].get(stage)
            cells.append("not measured" if s is None else f"{_hours(s['seconds'])} h ({s['bound']})")
        cluster_rows.append(cells)
    blocks["clusters"] = _table(
        [
            "cluster",
            "nodes, storage bandwidth",
            "download",
            "ingest",
            f"train, 1 epoch of {fmt(a['train_fields'])} fields",
            "predict, all fields",
        ],
        cluster_rows,
    )
    detail = []
    for row in c["clusters"]:
        for stage, s in row["stages"].items():
            parts = ", ".join(f"{k} {_hours(v)} h" for k, v in s["parts"].items())
            detail.append([row["name"], stage, parts])
    blocks["cluster-parts"] = _table(["cluster", "stage", "each limit alone"], detail)
    blocks["bottlenecks"] = _table(["figure", "value", "how"], [list(r) for r in c["crossings"]])
    layout_rows = [[name, fmt(value)] for name, value in c["layout"]]
    blocks["layout"] = _table(["at the footprint's size", "value"], layout_rows)
    measured = c["layout_measured"]
    if measured:
        mrows = []
        for name, s in measured.items():
            r = s["reads"]
            mrows.append(
                [
                    name,
                    fmt(s["files_per_slot"]),
                    fmt(s["write_mb_s"]),
                    fmt(r.get("whole_slot_zarr_mb_s")),
                    fmt(r.get("inner_chunk_chunkreader_mb_s")),
                    "-"
                    if r.get("inner_chunk_shard_direct_mb_s") is None
                    else fmt(r["inner_chunk_shard_direct_mb_s"]),
                    fmt(r.get("raw_file_read_mb_s")),
                ]
            )
        blocks["layout-measured"] = _table(
            [
                "layout",
                "files per field",
                "write MB/s",
                "whole field via zarr MB/s",
                "inner chunks via ChunkReader MB/s",
                "inner chunks via shard index + pread MB/s",
                "raw file read MB/s (ceiling)",
            ],
            mrows,
        )
    else:
        blocks["layout-measured"] = "not measured (run bench/layout.py)"
    return blocks


MARKER = re.compile(
    r"(<!-- cost-model:(?P<name>[a-z-]+):start -->\n)(.*?)(<!-- cost-model:(?P=name):end -->)", re.S
)


def fill(doc: str, blocks: dict[str, str]) -> str:
    """``doc`` with the text between each pair of markers replaced by its block (unknown names left)."""

    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name not in blocks:
            return match.group(0)
        return f"{match.group(1)}{blocks[name]}\n{match.group(4)}"

    return MARKER.sub(replace, doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the doc is out of date; write nothing"
    )
    parser.add_argument("--no-flops", action="store_true", help="skip counting the U-Net's FLOPs (no torch)")
    args = parser.parse_args(argv)
    flops = None if args.no_flops else unet_forward_flops_per_pixel()
    blocks = render(compute(load_results(args.results), flops))
    text = args.doc.read_text()
    new = fill(text, blocks)
    if args.check:
        if new != text:
            print(f"{args.doc} is out of date: run python bench/cost_model.py", file=sys.stderr)
            return 1
        return 0
    args.doc.write_text(new)
    print(f"wrote {len(blocks)} tables into {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
