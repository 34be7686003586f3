"""Seconds to predict one full SDSS field (2048 x 1489 pixels, five bands), per core.

Compares, on the same model (the default U-Net, depth 4 and width 32, or the demo's: ``--model demo``):

1. ``tiled``: sgc's stitched inference (:func:`sgc.evaluate.tiles.predict_array`): tiles of ``--tile``
   (768) pixels, each dropping the model's receptive radius at its cut edges, in batches; the output equals
   whole-field inference (tested). With 1 thread (per core) and with every core.
2. ``per-patch loop``: the 2023 way, each 64 x 64 patch of the field through the model alone (batch 1), no
   overlap (its seams are not this bench's concern). Timed on ``--patches`` (64) patches and scaled to the
   field's 24 x 32 patches.
3. ``sgc predict``: the pipeline itself (:func:`sgc.evaluate.predict.predict_fields`) on a store holding the
   field, on a local Dask cluster of 1 and 2 single-threaded workers: tasks over blocks of chunks, each with
   its halo, writing the prediction store and then the object catalogue.

4. ``variants``: the tiled prediction on one thread under each speed option of ``predict``
   (:mod:`sgc.model.runtime`): fp32 eager (the anchor), channels-last, bf16 autocast, both, and with
   ``--compile`` torch.compile; each beside its ceiling, the bare model forward on the same tiles (no
   stitching), in full fields per second per core. bf16 on a CPU without native bf16 is emulated and slow,
   so variants are timed on a crop of ``--crop`` rows (scaled to a field by area). Also what bf16 does to the
   probabilities: largest difference and share of pixels whose class agrees with fp32 (``--checkpoint`` for a
   trained model; otherwise the random one, batch statistics perturbed).

On a GPU (when CUDA is present) also ``tiled`` on the GPU with large batches, fp32 and bf16 with
channels-last, in fields per second per GPU.

    python bench/predict.py [--model default|demo] [--tile 768] [--repeat 2] [--quick] [--compile]

``--quick``: the demo model, variants only on a 64-row crop and without plain bf16 (emulated on a CPU
without native bf16: minutes), one repeat (under a minute here).

Prints a table and saves ``bench/results/predict.json`` (``predict-demo.json`` with ``--model demo`` or
``--quick``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import best_of, figure, machine  # noqa: E402

from sgc.classes import CLASS_NAMES  # noqa: E402
from sgc.compute import Compute  # noqa: E402
from sgc.config import ComputeConfig, IngestConfig, ModelConfig, PredictConfig, load_config  # noqa: E402
from sgc.cube.store import CubeStore  # noqa: E402
from sgc.evaluate.predict import predict_fields  # noqa: E402
from sgc.evaluate.tiles import _tiles, predict_array  # noqa: E402
from sgc.model.runtime import prepare  # noqa: E402
from sgc.model.unet import UNet  # noqa: E402
from sgc.train.checkpoint import (  # noqa: E402
    InferenceSpec,
    load_model,  # noqa: E402
    save_checkpoint,
)
from sgc.windows import round_up  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHAPE = (1489, 2048)
PATCH = 64
FIELD = "009001-3-0011"


def model_config(name: str) -> ModelConfig:
    return ModelConfig() if name == "default" else load_config(REPO / "configs" / "demo.yaml").train.model


def field_image() -> np.ndarray:
    """A normalised five-band field: sky noise of sigma 1 with a few thousand point sources."""
    rng = np.random.default_rng(0)
    image = rng.normal(size=(5, *SHAPE)).astype(np.float32)
    y, x = rng.integers(0, SHAPE[0], 2000), rng.integers(0, SHAPE[1], 2000)
    image[:, y, x] += rng.exponential(50, size=2000).astype(np.float32)
    return image


def per_patch_seconds(model: UNet, image: np.ndarray, patches: int) -> float:
    """Seconds for one field's 64 x 64 patches one at a time, from ``patches`` of them."""
    ny, nx = image.shape[1:]
    total = math.ceil(ny / PATCH) * math.ceil(nx / PATCH)
    padded = np.zeros((5, math.ceil(ny / PATCH) * PATCH, math.ceil(nx / PATCH) * PATCH), dtype=np.float32)
    padded[:, :ny, :nx] = image
    origins = [(y, x) for y in range(0, padded.shape[1], PATCH) for x in range(0, padded.shape[2], PATCH)]
    start = time.perf_counter()
    with torch.no_grad():
        for y, x in origins[:patches]:
            torch.softmax(model(torch.from_numpy(padded[None, :, y : y + PATCH, x : x + PATCH])), dim=1)
    return (time.perf_counter() - start) / patches * total


def pipeline_seconds(cfg: ModelConfig, image: np.ndarray, tile: int, workers: int, folder: Path) -> float:
    """Wall seconds of ``predict_fields`` on a store holding the field, with ``workers`` local workers."""
    store = folder / "bench.zarr"
    if not store.exists():
        cube = CubeStore.create(store, SHAPE, IngestConfig())
        cube.allocate([FIELD])
        cube.write_field(0, image, np.ones(SHAPE, bool), _tan_header(SHAPE), {})
    checkpoint = folder / "bench.pt"
    if not checkpoint.exists():
        torch.manual_seed(0)
        model = UNet(cfg)
        spec = InferenceSpec(
            cfg, ("u", "g", "r", "i", "z"), CLASS_NAMES, _unit_normalisation(), PATCH, "bench"
        )
        save_checkpoint(checkpoint, {"model": model.state_dict(), "inference": spec.to_json()})
    out = folder / f"out-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    with Compute(ComputeConfig(workers=workers)) as compute:
        compute.client()  # started before the clock, as in a run where earlier stages started it
        start = time.perf_counter()
        predict_fields(checkpoint, store, out, PredictConfig(tile=tile), compute, [FIELD])
        return time.perf_counter() - start


def _tan_header(shape: tuple[int, int]) -> str:
    """The header text of a TAN grid like an SDSS frame's (0.396" per pixel)."""
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    wcs.wcs.cd = [[-0.396 / 3600, 0.0], [0.0, 0.396 / 3600]]
    return wcs.to_header().tostring()


def _unit_normalisation() -> dict[str, dict[str, float]]:
    return {band: {"median": 0.0, "robust_sigma": 1.0} for band in "ugriz"}


def bare_forward(model: torch.nn.Module, image: np.ndarray, tile: int, halo: int, amp: torch.dtype | None):
    """The model's forward on the tiles ``predict_array`` cuts (batch 2), without stitching: the ceiling."""
    step = 2**model.depth
    shape = (round_up(image.shape[1], step), round_up(image.shape[2], step))
    padded = np.zeros((image.shape[0], *shape), dtype=np.float32)
    padded[:, : image.shape[1], : image.shape[2]] = image
    size = (min(round_up(tile, step), shape[0]), min(round_up(tile, step), shape[1]))
    origins = list(_tiles(shape, size, halo, step))
    stacks = [
        torch.from_numpy(
            np.stack([padded[:, y : y + size[0], x : x + size[1]] for y, x in origins[k : k + 2]])
        )
        for k in range(0, len(origins), 2)
    ]

    def run() -> None:
        with torch.no_grad(), torch.autocast("cpu", dtype=amp) if amp else nullcontext():
            for stack in stacks:
                model(stack)

    return run


def variants(
    model_of: callable,
    image: np.ndarray,
    tile: int,
    halo: int,
    repeat: int,
    use_compile: bool,
    plain_bf16: bool = True,
) -> tuple[list[dict], dict]:
    """Fields/s/core of the tiled prediction and of the bare forward under each speed option, one thread."""
    torch.set_num_threads(1)
    scale = SHAPE[0] * SHAPE[1] / (image.shape[1] * image.shape[2])  # crop -> field
    options = [("fp32 eager", False, None, False), ("channels-last", True, None, False)]
    options += [("bf16", False, torch.bfloat16, False)] if plain_bf16 else []
    options += [("bf16 channels-last", True, torch.bfloat16, False)]
    if use_compile:
        options += [("compile", False, None, True), ("compile channels-last", True, None, True)]
    rows, probs = [], {}
    for name, cl, amp, comp in options:
        model = prepare(model_of(), cl, comp)
        start = time.perf_counter()
        probs[name] = predict_array(model, image, tile, halo, batch=2, amp=amp)  # warm-up (compiles)
        first = time.perf_counter() - start
        tiled = best_of(lambda m=model, a=amp: predict_array(m, image, tile, halo, batch=2, amp=a), repeat)
        bare = best_of(bare_forward(model, image, tile, halo, amp), repeat)
        row = {
            "variant": name,
            "channels_last": cl,
            "precision": "bf16" if amp else "fp32",
            "compile": comp,
            "first_call_s": first,
            "s_per_field_per_core": tiled * scale,
            "fields_per_s_per_core": 1 / (tiled * scale),
            "bare_forward_fields_per_s_per_core": 1 / (bare * scale),
        }
        rows.append(row)
        print(
            f"  {name:<24} {row['fields_per_s_per_core']:.4f} fields/s/core "
            f"(bare forward {row['bare_forward_fields_per_s_per_core']:.4f}; first call {first:.1f} s)",
            flush=True,
        )
    ref = probs["fp32 eager"]
    accuracy = {}
    for name in ("bf16" if plain_bf16 else "bf16 channels-last", "channels-last"):
        accuracy[name] = {
            "max_abs_prob_diff": float(np.abs(probs[name] - ref).max()),
            "mean_abs_prob_diff": float(np.abs(probs[name] - ref).mean()),
            "class_agreement": float(np.mean(probs[name].argmax(0) == ref.argmax(0))),
        }
        print(f"  {name} vs fp32: {accuracy[name]}")
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    return rows, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("default", "demo"), default="default")
    parser.add_argument("--tile", type=int, default=768)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--patches", type=int, default=64)
    parser.add_argument("--no-pipeline", action="store_true", help="skip the sgc predict rows")
    parser.add_argument("--quick", action="store_true", help="demo model, variants on a crop only, 1 repeat")
    parser.add_argument("--crop", type=int, default=None, help="rows of the field the variants are timed on")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes on CPU)")
    parser.add_argument("--checkpoint", type=Path, help="a trained model for the bf16 accuracy figures")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.model, args.repeat, args.no_pipeline = "demo", 1, True

    cfg = model_config(args.model)
    torch.manual_seed(0)
    model = UNet(cfg).eval()
    for module in model.modules():  # batch statistics other than 0 and 1, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    if args.checkpoint:
        model, spec = load_model(args.checkpoint)
        cfg = spec.model
    image = field_image()
    halo = cfg.halo
    cores = len(os.sched_getaffinity(0))
    rows = []

    def add(method: str, seconds: float, threads: int, device: str = "cpu") -> None:
        per_core = seconds * threads if device == "cpu" else seconds
        rows.append(
            {
                "method": method,
                "device": device,
                "threads": threads,
                "s_per_field": seconds,
                "s_per_field_per_core": per_core,
            }
        )
        print(
            f"{method:<44} {device:<5} {threads:>2} thr  {seconds:8.2f} s  {per_core:8.2f} s/core", flush=True
        )

    crop = args.crop or (64 if args.quick else 512)
    print(f"variants on a {crop}-row crop, 1 thread, scaled to a field by area:")
    state = model.state_dict()

    def model_of() -> UNet:
        fresh = UNet(cfg).eval()
        fresh.load_state_dict(state)
        return fresh

    variant_rows, accuracy = variants(
        model_of,
        image[:, :crop],
        args.tile,
        cfg.halo,
        args.repeat,
        args.compile and not args.quick,
        plain_bf16=not args.quick,
    )
    for threads in [] if args.quick else sorted({1, cores}):
        torch.set_num_threads(threads)
        with torch.no_grad():
            seconds = best_of(lambda: predict_array(model, image, args.tile, halo, batch=2), args.repeat)
        add(f"tiled {args.tile}px, halo {halo}px, batch 2", seconds, threads)
        add(
            f"per-patch loop (64 px, batch 1; {args.patches} timed)",
            per_patch_seconds(model, image, args.patches),
            threads,
        )
    if not args.no_pipeline:
        folder = Path(tempfile.mkdtemp(prefix="sgc-bench-predict-"))
        try:
            for workers in (1, 2):
                add(
                    f"sgc predict, {workers} Dask worker(s)",
                    pipeline_seconds(cfg, image, args.tile, workers, folder),
                    workers,
                )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    if torch.cuda.is_available():
        gpu = prepare(UNet(cfg).eval().cuda(), channels_last=True)
        for amp in (None, torch.bfloat16):

            def run(amp: torch.dtype | None = amp) -> None:
                with torch.autocast("cuda", dtype=amp) if amp else nullcontext():
                    predict_array(gpu, image, 1536, halo, batch=8, device="cuda")
                torch.cuda.synchronize()

            run()  # warm up: cuDNN picks its algorithms
            add(
                f"tiled 1536px on the GPU, batch 8, channels-last{' bf16' if amp else ''}",
                best_of(run, args.repeat),
                1,
                "cuda",
            )

    anchor = variant_rows[0]
    summary = [
        figure(
            f"tiled predict, {r['variant']}, {args.model} model, 1 thread",
            r["fields_per_s_per_core"],
            "fields/s/core",
            anchor=("fp32 eager", anchor["fields_per_s_per_core"]),
            ceiling=(f"bare forward, {r['variant']}", r["bare_forward_fields_per_s_per_core"]),
        )
        for r in variant_rows
    ]
    summary += [
        figure(
            r["method"],
            1 / r["s_per_field"],
            "fields/s/GPU",
            anchor=("tiled, CPU fp32 eager, per core", anchor["fields_per_s_per_core"]),
        )
        for r in rows
        if r["device"] == "cuda"
    ]
    result = {
        "command": " ".join([sys.executable, *sys.argv]),
        "quick": args.quick,
        "model": cfg.model_dump(),
        "trained": bool(args.checkpoint),
        "tile": args.tile,
        "halo": halo,
        "field": list(SHAPE),
        "variant_crop_rows": crop,
        "variants": variant_rows,
        "bf16_vs_fp32": accuracy,
        "rows": rows,
        "summary": summary,
        "load_average": os.getloadavg(),
    }
    result["machine"] = machine(("torch", "numpy", "dask", "distributed"))
    # The default model's full run is what docs/scaling.md's cost model reads.
    full = args.model == "default" and not args.quick
    out = args.out or HERE / "results" / ("predict.json" if full else f"predict-{args.model}.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
