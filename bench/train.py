"""Training throughput: patches per second through the trainer's step, fed from memory and by the sgc loader.

One training step is :func:`sgc.train.loop.train_step`, exactly as ``sgc train`` runs it: forward through the
U-Net, the configured loss (``ce+dice``, sqrt-inverse class weights from :func:`~sgc.train.loop.label_counts`
of the plan's train split), backward, gradient clipping and an AdamW step (a constant learning-rate schedule:
the trainer's one-cycle costs the same per step). A patch is a float32 ``(5, 64, 64)`` image and a uint8
``(64, 64)`` label (widened on the device); batches hold ``--batch`` (32) of them. On the same model, for
each store:

1. ``in-memory``: a fixed list of batches already in memory (drawn once from the loader, full batches only,
   pinned on CUDA), cycled;
2. ``loader``: batches from ``patch_loader(PatchStream(store, plan, "train", LoaderConfig(batch_size=B,
   augment=True)), num_workers=W)``, one loader whose workers live across epochs (``set_epoch(e)``
   before each), epochs repeated until the step count is reached, as the trainer runs it; the workers start
   once, before timing;
3. ``loader alone``: the same loader loop with no training step, for the loader's own cost per batch.

The slowdown is ``1 - loader / in-memory`` of the patches per second (the issue's target: at most 5%). Models:
the trainer's default (depth 4, width 32, batch norm) and the demo's (depth 3, width 16). On the CPU, torch
keeps its default thread count, so DataLoader workers compete with the training threads for the cores. Where
CUDA is available, the same is run on the GPU with ``pin_memory`` and bf16 autocast.

4. speed options (:mod:`sgc.model.runtime`): in-memory training of each model under fp32 eager (the anchor),
   channels-last, bf16 autocast, both, and with ``--compile`` torch.compile, on the first store. On a CPU
   without native bf16 (no AVX-512 BF16 or AMX) bf16 is emulated and slower: the figures say whether it
   helps here.

Before timing, each model takes a few steps and each loader an epoch's worth of batches (numba kernels
compiled in the main process before workers fork, chunk files in the page cache). Timings interleave the
ways in rounds (``--rounds``, each way once per round, ``--steps`` steps each); the figure is the best round.
Each training run is preceded by one untimed in-memory step, which pays outside the timing the copy-on-write
faults that forking workers leaves on the trainer's memory. Per configuration the table also gives the
milliseconds per step beyond in-memory training; a probe times the first step after a worker has forked (its
first batch already delivered) against an in-memory step, with this process's minor page faults: the cost
that made ``patch_loader`` keep its workers across epochs. The default 18 steps are three whole epochs of
the real sample's train split (186 patches, 6 batches an epoch).

    python bench/train.py [--store S.zarr --plan P/plan.zarr ...] [--steps 18] [--quick] [--compile]

By default a simulated store of the loader bench (``stores/bench-loader/simN.zarr``, else built here with
``sgc run`` when missing) and the real sample (``stores/sample.zarr``) when present. Prints a table and
saves ``bench/results/train.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from timing import best_of, figure, machine
from torch.utils.data import DataLoader

from sgc.config import LoaderConfig, ModelConfig, TrainConfig, load_config
from sgc.model.losses import SegmentationLoss, build_loss
from sgc.model.runtime import prepare
from sgc.model.unet import UNet, count_parameters
from sgc.patches.planfile import read_plan
from sgc.patches.stream import PatchStream, patch_loader
from sgc.train.loop import label_counts, train_step

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PACKAGES = ("numpy", "torch", "zarr", "numba")
MODELS = {
    "default": TrainConfig().model,
    "demo": load_config(REPO / "configs" / "demo.yaml").train.model,
}
SIM_BUILD = (
    "workdir=stores/bench-train",
    "name=sim",
    "simulate.fields=4",
    "train.epochs=1",
    "train.max_steps=1",
)

Batch = tuple[torch.Tensor, ...]


@dataclass
class Case:
    """A labelled store and its plan."""

    name: str
    store: Path
    plan: Path
    train_patches: int
    command: list[str] | None = None  # the sgc run that built it here, if this bench built it


@dataclass
class Trainer:
    """The objects one training step needs, as the trainer builds them."""

    model: torch.nn.Module
    loss_fn: SegmentationLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    clip: float
    amp: torch.dtype | None

    def step(self, batch: Batch) -> float:
        return train_step(
            self.model, batch, self.loss_fn, self.optimizer, self.scheduler, self.device, self.clip, self.amp
        )


# --- stores -------------------------------------------------------------------------------------------


def case(name: str, store: Path, plan: Path, command: list[str] | None = None) -> Case:
    return Case(name, store, plan, len(read_plan(plan).rows("train")), command)


def default_cases() -> list[Case]:
    """The loader bench's simulated store (built here if missing) and the real sample where present."""
    cases = []
    sim = sorted(
        (s, s.with_suffix("") / "plan.zarr")
        for s in (REPO / "stores" / "bench-loader").glob("*.zarr")
        if (s.with_suffix("") / "plan.zarr").is_dir() and s.stem != "sample"
    )
    if sim:
        cases.append(case("sim", *sim[0]))
    else:
        store, plan = REPO / "stores/bench-train/sim.zarr", REPO / "stores/bench-train/sim/plan.zarr"
        command = [sys.executable, "-m", "sgc", "run", "configs/demo.yaml", "-q"]
        for text in SIM_BUILD:
            command += ["--set", text]
        if not plan.is_dir():
            print(f"building the simulated store: {' '.join(command)}")
            subprocess.run(command, cwd=REPO, check=True)
        cases.append(case("sim", store, plan, command))
    for store, plan in (
        (REPO / "stores/sample.zarr", REPO / "stores/sample/plan.zarr"),
        (REPO / "stores/bench-loader/sample.zarr", REPO / "stores/bench-loader/sample/plan.zarr"),
    ):
        if store.is_dir() and plan.is_dir():
            cases.append(case("sample", store, plan))
            break
    else:
        print("skipping the real sample: no stores/sample.zarr with stores/sample/plan.zarr")
    return cases


def warm_cache(store: Path) -> None:
    """Read every chunk file of the store once, so that timings see a warm page cache."""
    for name in ("image", "label"):
        for file in (store / name).rglob("*"):
            if file.is_file():
                file.read_bytes()


# --- the ways of feeding ------------------------------------------------------------------------------


def default_amp(device: torch.device) -> torch.dtype | None:
    """bf16 autocast where the GPU has it, full precision elsewhere."""
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None


def make_trainer(
    model_cfg: ModelConfig,
    counts: np.ndarray,
    device: torch.device,
    amp: torch.dtype | None = None,
    channels_last: bool = False,
    compile: bool = False,
) -> Trainer:
    cfg = TrainConfig(model=model_cfg)
    torch.manual_seed(cfg.seed)
    model = UNet(cfg.model).to(device)
    net = prepare(model, channels_last, compile)
    loss_fn = build_loss(cfg.loss, counts).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return Trainer(net, loss_fn, optimizer, scheduler, device, cfg.clip, amp)


def new_stream(c: Case, batch: int) -> PatchStream:
    return PatchStream(c.store, c.plan, "train", LoaderConfig(batch_size=batch, augment=True), seed=0)


def loader_batches(loader: DataLoader, stream: PatchStream, steps: int) -> Iterator[Batch]:
    """``steps`` batches from one loader, epoch after epoch, as the trainer runs it."""
    n, epoch = 0, 0
    while n < steps:
        stream.set_epoch(epoch)
        empty = True
        for batch in loader:
            empty = False
            yield batch
            n += 1
            if n == steps:
                break
        if empty:
            raise RuntimeError(f"{stream.store}: the train split yields no batches")
        epoch += 1


def memory_batches(stream: PatchStream, batch: int, count: int, pin: bool) -> list[Batch]:
    """``count`` full batches drawn from the loader (no workers), copied, pinned on CUDA."""
    full = []
    for b in loader_batches(patch_loader(stream), stream, 100 * count):
        if len(b[1]) == batch:
            full.append(tuple(t.clone().pin_memory() if pin else t.clone() for t in b[:2]))
        if len(full) == count:
            return full
    raise RuntimeError(f"{stream.store}: fewer than {count} full batches of {batch} in 100 x {count} batches")


def run_memory(trainer: Trainer, batches: list[Batch], steps: int) -> Callable[[], int]:
    def run() -> int:
        for k in range(steps):
            trainer.step(batches[k % len(batches)])
        sync(trainer.device)
        return steps * len(batches[0][1])

    return run


def run_loader(
    trainer: Trainer | None, stream: PatchStream, workers: int, pin: bool, steps: int
) -> Callable[[], int]:
    """Train on (or, with no trainer, only draw) ``steps`` batches of one loader whose workers live across
    epochs and calls, as in the trainer; returns the patches seen. Workers start before the first call."""
    loader = patch_loader(stream, workers, pin)
    # One endless stream of batches across calls: epoch boundaries (and the first reads of each epoch)
    # fall in the timings in proportion, as in a long training run.
    batches = loader_batches(loader, stream, 10**9)
    next(batches)

    def run() -> int:
        seen = 0
        for batch in itertools.islice(batches, steps):
            if trainer is not None:
                trainer.step(batch)
            seen += len(batch[1])
        if trainer is not None:
            sync(trainer.device)
        return seen

    return run


def fork_probe(trainer: Trainer, stream: PatchStream, batch: Batch, workers: int, pin: bool) -> dict:
    """An in-memory step, then the first step after a loader with ``workers`` workers has started.

    The loader's first batch is awaited before the step is timed, so the worker's start-up is not in it;
    minor page faults of this process are counted over each step.
    """

    def step(b: Batch) -> tuple[float, int]:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        trainer.step(b)
        sync(trainer.device)
        seconds = time.perf_counter() - start
        return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults

    step(batch)
    memory_s, memory_faults = step(batch)
    stream.set_epoch(0)
    iterator = iter(patch_loader(stream, workers, pin))
    first = next(iterator)
    first_s, first_faults = step(first)
    del iterator
    return {
        "workers": workers,
        "in_memory_step_s": memory_s,
        "in_memory_step_minor_faults": memory_faults,
        "first_step_after_start_s": first_s,
        "first_step_after_start_minor_faults": first_faults,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timed:
    """Best-of timing of a run that returns the patches it went through (the same every time)."""

    def __init__(self, fn: Callable[[], int], settle: Callable[[], object] | None = None) -> None:
        self.fn, self.settle, self.patches, self.seconds = fn, settle, 0, float("inf")

    def once(self) -> None:
        if self.settle is not None:
            self.settle()
        out: list[int] = []
        seconds = best_of(lambda: out.append(self.fn()), 1)
        self.patches, self.seconds = out[0], min(self.seconds, seconds)

    @property
    def rate(self) -> float:
        return self.patches / self.seconds


# --- measuring ----------------------------------------------------------------------------------------


def measure(
    c: Case,
    model_name: str,
    device: torch.device,
    workers: list[int],
    batch: int,
    steps: int,
    rounds: int,
) -> list[dict]:
    """In-memory, loader and loader-alone rates of one model on one store, for each worker count."""
    pin = device.type == "cuda"
    counts = label_counts(read_plan(c.plan), "train", 1)
    trainer = make_trainer(MODELS[model_name], counts, device, default_amp(device))
    stream = new_stream(c, batch)
    start = time.perf_counter()
    batches = memory_batches(stream, batch, min(8, steps), pin)  # compiles the numba kernels here
    for b in batches[:3]:
        trainer.step(b)
    for w in workers:
        run_loader(trainer, stream, w, pin, 2)()
        run_loader(None, stream, w, pin, stream.batches_per_epoch(w))()
    sync(device)
    print(f"  {c.name} / {model_name} on {device.type}: warmed up in {time.perf_counter() - start:.1f} s")

    # An untimed step before each training run: it pays, outside the timing, the copy-on-write faults
    # that the DataLoader workers forked by the run before leave on the trainer's memory.
    def settle() -> None:
        trainer.step(batches[0])
        sync(device)

    memory = Timed(run_memory(trainer, batches, steps), settle)
    loader = {w: Timed(run_loader(trainer, stream, w, pin, steps), settle) for w in workers}
    alone = {w: Timed(run_loader(None, stream, w, pin, steps)) for w in workers}
    for r in range(rounds):
        memory.once()
        for w in workers:
            loader[w].once()
            alone[w].once()
        text = ", ".join(f"w{w} {loader[w].rate:.1f}" for w in workers)
        print(f"    round {r + 1}/{rounds}: in-memory {memory.rate:.1f}, loader {text} patches/s (best yet)")
    forked = [w for w in workers if w > 0]
    probe = fork_probe(trainer, stream, batches[0], forked[0], pin) if forked else None
    if probe:
        print(
            f"    first step after a {probe['workers']}-worker loader starts: "
            f"{probe['first_step_after_start_s']:.3f} s, "
            f"{probe['first_step_after_start_minor_faults']} minor faults; "
            f"in-memory step {probe['in_memory_step_s']:.3f} s, "
            f"{probe['in_memory_step_minor_faults']} faults"
        )
    rows = []
    for w in workers:
        extra = loader[w].seconds - loader[w].patches / memory.rate  # seconds beyond in-memory training
        rows.append(
            {
                "store": c.name,
                "model": model_name,
                "model_config": MODELS[model_name].model_dump(),
                "parameters": count_parameters(trainer.model),
                "device": device.type,
                "amp": str(trainer.amp).replace("torch.", "") if trainer.amp else "off",
                "pin_memory": pin,
                "batch_size": batch,
                "workers": w,
                "steps": steps,
                "in_memory_patches_per_s": memory.rate,
                "in_memory_s_per_step": memory.seconds / steps,
                "loader_patches_per_s": loader[w].rate,
                "loader_s_per_step": loader[w].seconds / steps,
                "loader_mean_batch": loader[w].patches / steps,
                "extra_s_per_step": extra / steps,
                "slowdown_pct": 100 * (1 - loader[w].rate / memory.rate),
                "loader_alone_batches_per_s": steps / alone[w].seconds,
                "loader_alone_ms_per_batch": 1000 * alone[w].seconds / steps,
                "loader_alone_patches_per_s": alone[w].rate,
                "fork_probe": probe,
            }
        )
    return rows


# Speed options of ``train`` (sgc.model.runtime): name, channels-last, autocast dtype, torch.compile.
SPEED_OPTIONS = (
    ("fp32 eager", False, None, False),
    ("channels-last", True, None, False),
    ("bf16", False, torch.bfloat16, False),
    ("bf16 channels-last", True, torch.bfloat16, False),
    ("compile", False, None, True),
    ("compile channels-last", True, None, True),
)


def measure_speed_options(
    c: Case,
    model_name: str,
    device: torch.device,
    batch: int,
    steps: int,
    rounds: int,
    use_compile: bool,
    plain_bf16: bool = True,
) -> list[dict]:
    """In-memory training rate of one model under each speed option (compile only if asked: minutes on a
    CPU), the same batches for all; the first steps (tracing, compiling, cuDNN's choices) are timed apart."""
    pin = device.type == "cuda"
    counts = label_counts(read_plan(c.plan), "train", 1)
    batches = memory_batches(new_stream(c, batch), batch, min(8, steps), pin)
    rows = []
    for name, channels_last, amp, compiled in SPEED_OPTIONS:
        if (compiled and not use_compile) or (name == "bf16" and not plain_bf16):
            continue
        trainer = make_trainer(MODELS[model_name], counts, device, amp, channels_last, compiled)
        start = time.perf_counter()
        for b in batches[:2]:
            trainer.step(b)
        sync(device)
        first = time.perf_counter() - start
        timed = Timed(run_memory(trainer, batches, steps))
        for _ in range(rounds):
            timed.once()
        rows.append(
            {
                "store": c.name,
                "model": model_name,
                "device": device.type,
                "option": name,
                "channels_last": channels_last,
                "precision": str(amp).replace("torch.", "") if amp else "fp32",
                "compile": compiled,
                "first_two_steps_s": first,
                "patches_per_s": timed.rate,
            }
        )
        print(f"    {name:<22} {timed.rate:8.1f} patches/s (first two steps {first:.1f} s)", flush=True)
    return rows


def summary(rows: list[dict], options: list[dict]) -> list[dict]:
    """RESULTS.md's rows: the loader against training from memory, and each speed option against fp32."""
    out = [
        figure(
            f"train step fed by the loader, {r['store']}, {r['model']} model, {r['device']}, "
            f"{r['workers']} workers",
            r["loader_patches_per_s"],
            "patches/s",
            ceiling=("the same steps from batches in memory", r["in_memory_patches_per_s"]),
            target=">= 0.95x ceiling",
        )
        for r in rows
    ]
    for r in options:
        anchor = next(
            o
            for o in options
            if o["option"] == "fp32 eager"
            and (o["store"], o["model"], o["device"]) == (r["store"], r["model"], r["device"])
        )
        out.append(
            figure(
                f"train step from memory, {r['option']}, {r['store']}, {r['model']} model, {r['device']}",
                r["patches_per_s"],
                "patches/s",
                anchor=("fp32 eager", anchor["patches_per_s"]),
            )
        )
    return out


# --- report -------------------------------------------------------------------------------------------


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'store':<7} {'model':<8} {'device':<11} {'W':>2} {'in-memory/s':>12} {'loader/s':>9} "
        f"{'slowdown':>9} {'s/step':>7} {'extra ms':>9} {'alone batch/s':>14} {'ms/batch':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        device = r["device"] + ("" if r["amp"] == "off" else f" {r['amp'][:4]}")
        print(
            f"{r['store']:<7} {r['model']:<8} {device:<11} {r['workers']:>2} "
            f"{r['in_memory_patches_per_s']:>12.1f} {r['loader_patches_per_s']:>9.1f} "
            f"{r['slowdown_pct']:>8.1f}% {r['in_memory_s_per_step']:>7.3f} "
            f"{1000 * r['extra_s_per_step']:>9.1f} "
            f"{r['loader_alone_batches_per_s']:>14.1f} {r['loader_alone_ms_per_batch']:>9.1f}"
        )


def machine_info() -> dict:
    info = machine(PACKAGES) | {
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, action="append", help="cube store (repeatable, with --plan)")
    parser.add_argument("--plan", type=Path, action="append", help="patch plan of the --store before it")
    parser.add_argument("--steps", type=int, default=None, help="training steps per timing (default 18)")
    parser.add_argument("--gpu-steps", type=int, default=200, help="training steps per timing on CUDA")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds, best kept (default 3)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", default="0,1,2", help="comma-separated DataLoader worker counts")
    parser.add_argument("--models", default="default,demo", help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument(
        "--quick", action="store_true", help="3 steps, 1 round, demo model, 0 and 1 workers, no plain bf16"
    )
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes on CPU)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "train.json")
    args = parser.parse_args()
    steps = args.steps or (3 if args.quick else 18)
    rounds = args.rounds or (1 if args.quick else 3)
    workers = [0, 1] if args.quick else [int(w) for w in args.workers.split(",")]
    models = ["demo"] if args.quick else [m.strip() for m in args.models.split(",")]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if args.store or args.plan:
        if len(args.store or []) != len(args.plan or []):
            parser.error("give one --plan per --store")
        cases = [case(s.stem, s.resolve(), p.resolve()) for s, p in zip(args.store, args.plan, strict=True)]
    else:
        cases = default_cases()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {os.cpu_count()} cores")
    rows: list[dict] = []
    for c in cases:
        print(f"{c.name}: {c.store} + {c.plan} ({c.train_patches} train patches)")
        warm_cache(c.store)
        for device in devices:
            n = args.gpu_steps if device.type == "cuda" and not args.quick else steps
            for model_name in models:
                rows += measure(c, model_name, device, workers, args.batch, n, rounds)
    # Speed options on one store (the first), each model, each device.
    options: list[dict] = []
    for device in devices:
        n = args.gpu_steps if device.type == "cuda" and not args.quick else steps
        for model_name in models:
            print(f"speed options: {cases[0].name} / {model_name} on {device.type}")
            options += measure_speed_options(
                cases[0],
                model_name,
                device,
                args.batch,
                n,
                rounds,
                args.compile and not args.quick,
                plain_bf16=not args.quick,
            )
    print()
    print_table(rows)

    record = {
        "command": " ".join([sys.executable, *sys.argv]),
        "quick": args.quick,
        "steps": steps,
        "gpu_steps": args.gpu_steps,
        "rounds": rounds,
        "batch_size": args.batch,
        "patch": "float32 (5, 64, 64) image + uint8 (64, 64) label",
        "stores": {
            c.name: {
                "store": str(c.store),
                "plan": str(c.plan),
                "train_patches": c.train_patches,
                "batches_per_epoch": {w: new_stream(c, args.batch).batches_per_epoch(w) for w in workers},
                **({"built_with": " ".join(c.command)} if c.command else {}),
            }
            for c in cases
        },
        "machine": machine_info(),
        "results": rows,
        "speed_options": options,
        "summary": summary(rows, options),
        "notes": [
            "train_step of sgc.train.loop: ce+dice loss with sqrt-inverse weights, clip 1.0, AdamW, "
            "constant schedule; bf16 autocast on CUDA only",
            "in-memory: full batches drawn once from the loader and cycled (pinned on CUDA)",
            "loader: a new patch_loader per epoch after set_epoch, as the trainer runs it; worker start-up "
            "and shut-down inside the timing; last batch of each worker may be short (loader_mean_batch)",
            "slowdown: 1 - loader / in-memory patches per second; the target is at most 5%",
            "loader alone: the same loader loop with no training step (wall time of the main process)",
            f"best of {rounds} interleaved rounds; torch threads left at the default",
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
