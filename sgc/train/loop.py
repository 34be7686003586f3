"""The training loop: one process, or one of many under ``torchrun`` (DDP).

Each rank streams its own shard of the train patches (:class:`~sgc.patches.stream.PatchStream`) into a
U-Net wrapped in DistributedDataParallel (gloo on CPU, NCCL on GPU), optimised by AdamW under a one-cycle
or cosine schedule, with the gradient norm clipped. How the model runs is set apart from what it computes
(:mod:`sgc.model.runtime`): ``train.precision`` (bf16 autocast by default where the GPU supports it; fp16
with a gradient scaler), ``train.channels_last`` and ``train.compile``. Every
rank runs the same number of steps per epoch, that of the rank with the fewest batches, so collectives
never wait on a rank that has run dry; the at most one short batch per worker left over differs from
epoch to epoch, since the order does.

After each epoch the validation patches are scored (each rank its shard, counts summed over ranks), a row
of train and validation loss and per-class F1 goes to ``metrics.csv`` and TensorBoard, and rank 0 writes
``last.pt`` atomically: model, optimiser, scheduler, RNG states, the epoch, the early-stopping state and
the configuration. ``best.pt`` is the checkpoint of the best validation F1 (mean of star and galaxy
pixel F1). A run started with ``resume`` loads ``last.pt`` and goes on exactly where it stopped: the data
order and augmentation of an epoch depend only on the seed and the epoch.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sgc import __version__, progress
from sgc.atomic import atomic_write
from sgc.classes import CLASS_NAMES
from sgc.config import TrainConfig, config_digest
from sgc.cube.store import CubeStore
from sgc.errors import SgcError
from sgc.evaluate.metrics import ConfusionMatrix
from sgc.model.losses import SegmentationLoss, build_loss
from sgc.model.runtime import autocast, autocast_dtype, prepare, use_channels_last
from sgc.model.unet import UNet
from sgc.patches.planfile import COUNT_COLUMNS, PatchPlan, holds_objects, read_plan
from sgc.patches.stream import PatchStream, patch_loader
from sgc.train.checkpoint import (
    INFERENCE_KEY,
    InferenceSpec,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from sgc.train.distributed import DistInfo, all_reduce_sum, cleanup, setup
from sgc.train.log import MetricsLog

log = logging.getLogger(__name__)

LAST = "last.pt"
# Settings that change how fast training runs but not what it computes: a run may resume with others.
SPEED_KEYS = frozenset({"patience", "channels_last", "compile"})
BEST = "best.pt"
CHECKPOINT_FORMAT = 2


class TrainError(SgcError):
    """A training run that cannot start or go on as asked."""


class NonFiniteLossError(ArithmeticError):
    """A batch whose loss is NaN or infinite: stepping on it would turn every weight into NaN."""


@dataclass
class TrainResult:
    """What a training run did.

    Attributes:
        run_dir: the run's folder.
        epochs: epochs completed, counting those before a resume.
        best_epoch: the epoch of ``best.pt`` (-1 if none was scored).
        best_score: its validation F1 (mean of star and galaxy); without a validation split, its train
            loss negated (what chose it).
        stopped_early: whether early stopping ended the run.
        history: one dict of logged scalars per epoch run by this call.
        validated: whether the plan has a validation split.
    """

    run_dir: Path
    epochs: int
    best_epoch: int
    best_score: float
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)
    validated: bool = True

    def format(self) -> str:
        """A line for the terminal."""
        if self.best_epoch < 0:
            return f"{self.run_dir}: {self.epochs} epochs, nothing scored"
        how = "stopped early" if self.stopped_early else "done"
        best = (
            f"best validation F1 (star, galaxy) {self.best_score:.3f}"
            if self.validated
            else f"no validation split: lowest train loss {-self.best_score:.4f}"
        )
        best += f" at epoch {self.best_epoch} -> {self.run_dir / BEST}"
        return f"{self.run_dir}: {self.epochs} epochs ({how}); {best}"


@dataclass
class _State:
    """What a checkpoint carries besides the weights and optimiser."""

    epoch: int = -1  # last completed epoch
    best_score: float = -math.inf
    best_epoch: int = -1
    stale: int = 0  # epochs since the best
    finished: bool = False


def train(
    store: str | Path,
    plan: str | Path,
    run_dir: str | Path,
    cfg: TrainConfig,
    resume: bool = False,
) -> TrainResult:
    """Train a U-Net on a plan's train patches, validating on its validation patches.

    Under ``torchrun`` every process calls this; outside it, it trains in this process.

    Args:
        store: the cube store.
        plan: the patch plan (its train split is trained on, its val split scored).
        run_dir: where checkpoints, ``metrics.csv`` and TensorBoard events go.
        cfg: the training settings.
        resume: go on from ``run_dir/last.pt``; without it, a folder that already holds a run is refused.

    Raises:
        TrainError: a run already in ``run_dir`` (without ``resume``), a checkpoint of other settings,
            or a plan with no train patches.
    """
    info = setup(cfg.device)
    try:
        return _Trainer(store, plan, Path(run_dir), cfg, info).run(resume)
    finally:
        cleanup()


def on_device(batch: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's image and its labels widened to int64 on ``device``.

    The stream delivers labels as uint8 (an eighth of the bytes to copy and send); the losses and
    metrics index with int64, so they are widened where the copy is cheapest, after the transfer.
    """
    image, label = batch[0], batch[1]
    return image.to(device, non_blocking=True), label.to(device, non_blocking=True).long()


def train_step(
    model: nn.Module,
    batch: tuple[torch.Tensor, ...],
    loss_fn: SegmentationLoss,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    clip: float = 0.0,
    amp: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> float:
    """One optimiser step on one batch; returns the batch's loss.

    Args:
        model: the model to call (bare, DDP-wrapped or compiled).
        batch: image and label, and anything after them (ignored).
        loss_fn: the loss, computed in float32 whatever the autocast dtype.
        optimizer: its optimiser.
        scheduler: its learning-rate schedule, stepped once.
        device: where the model is.
        clip: largest gradient norm; 0 leaves the gradients alone.
        amp: the autocast dtype, None for full precision.
        scaler: a gradient scaler (fp16, whose small gradients would underflow unscaled), or None.

    Raises:
        NonFiniteLossError: if the batch's loss is NaN or infinite; the weights are left untouched.
    """
    image, label = on_device(batch, device)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, amp):
        logits = model(image)
    loss = loss_fn(logits.float(), label)
    # Before the backward pass, so that no rank enters DDP's gradient reduction with a ruined batch.
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"the loss is {float(loss.detach())}")
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    else:
        loss.backward()
    if clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    if scaler is not None:
        scaler.step(optimizer)  # skipped where the scaled gradients overflowed
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    return float(loss.detach())


def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, ...]],
    loss_fn: SegmentationLoss,
    device: torch.device,
    amp: torch.dtype | None = None,
) -> tuple[float, ConfusionMatrix]:
    """Mean loss and confusion matrix over batches, summed over ranks (every rank must call it)."""
    model.eval()
    matrix = ConfusionMatrix(device)
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss x batch size, patches
    with torch.no_grad():
        for batch in batches:
            image, label = on_device(batch, device)
            with autocast(device, amp):
                logits = model(image)
            sums[0] += float(loss_fn(logits.float(), label)) * len(label)
            sums[1] += len(label)
            matrix.update(logits.argmax(1), label)
    all_reduce_sum(sums)
    all_reduce_sum(matrix.counts)
    return float(sums[0] / sums[1]) if sums[1] else math.nan, matrix


def plan_digest(plan: PatchPlan) -> str:
    """A short hash of a plan's settings, split, counts and normalisation: what a run was trained on."""
    return config_digest(plan.attrs())


def label_counts(plan: PatchPlan, split: str = "train", oversample: int = 1) -> np.ndarray:
    """Sky, star and galaxy pixels of a split's patches, as the loader serves them (oversampling counted)."""
    rows = plan.rows(split)
    repeats = np.where(holds_objects(rows), oversample, 1)
    return np.array([int(np.sum(np.asarray(rows[c]) * repeats)) for c in COUNT_COLUMNS[:3]], dtype=np.int64)


class _Trainer:
    """The objects of one run and the epoch loop over them."""

    def __init__(
        self,
        store: str | Path,
        plan: str | Path,
        run_dir: Path,
        cfg: TrainConfig,
        info: DistInfo,
    ) -> None:
        self.cfg, self.info, self.run_dir = cfg, info, run_dir
        self.plan = read_plan(plan)
        if len(self.plan.rows("train")) == 0:
            raise TrainError(f"{plan}: the plan has no train patches")
        self.store, self.plan_path = str(store), str(plan)
        loader = cfg.loader
        rank, world = info.rank, info.world_size
        self.train_stream = PatchStream(
            store, self.plan, "train", loader, seed=cfg.seed, shuffle=True, rank=rank, world_size=world
        )
        self.val_stream = PatchStream(
            store, self.plan, "val", loader.plain(), seed=cfg.seed, shuffle=False, rank=rank, world_size=world
        )
        pin = info.device.type == "cuda"
        self.train_loader = patch_loader(self.train_stream, loader.workers, pin)
        self.val_loader = patch_loader(self.val_stream, loader.workers, pin)
        self.steps = min(self.train_stream.batches_per_epoch(loader.workers, r) for r in range(world))
        if cfg.max_steps:
            self.steps = min(self.steps, cfg.max_steps)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP checks)
        self.model = UNet(cfg.model).to(info.device)
        if cfg.init is not None:
            self._initialise(cfg.init)
        # In place: the optimiser and the checkpoints see these very tensors.
        prepare(self.model, use_channels_last(cfg.channels_last, info.device))
        self.net: nn.Module = self.model
        if info.distributed:
            device_ids = [info.device.index] if info.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=device_ids)
        if cfg.compile:
            # Compiled around DDP, so that its gradient hooks stay outside the compiled graphs.
            self.net = torch.compile(self.net)
        counts = label_counts(self.plan, "train", loader.oversample)
        self.loss_fn = build_loss(cfg.loss, counts).to(info.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = _scheduler(self.optimizer, cfg, self.steps * cfg.epochs)
        self.amp = autocast_dtype(info.device, cfg.precision)
        fp16 = self.amp == torch.float16
        self.scaler = torch.amp.GradScaler(info.device.type) if fp16 else None
        self.log = MetricsLog(run_dir, enabled=info.is_main)
        self.state = _State()
        self.spec = InferenceSpec(
            model=cfg.model,
            bands=tuple(CubeStore.open(store).bands),
            classes=CLASS_NAMES,
            normalisation={
                band: {key: float(stats[key]) for key in ("median", "robust_sigma")}
                for band, stats in self.plan.normalisation.items()
            },
            patch=self.plan.patch,
            sgc_version=__version__,
        )

    def run(self, resume: bool) -> TrainResult:
        last = self.run_dir / LAST
        if resume and last.exists():
            self._restore(last)
        elif not resume and last.exists():
            raise TrainError(f"{self.run_dir}: holds a run already; resume it, or train into another folder")
        history: list[dict[str, float]] = []
        try:
            for epoch in range(self.state.epoch + 1, self.cfg.epochs):
                if self.state.finished:
                    break
                history.append(self._epoch(epoch))
            if not self.state.finished:
                self.state.finished = True
                self._save(self.run_dir / LAST)
        finally:
            self.log.close()
        return TrainResult(
            self.run_dir,
            self.state.epoch + 1,
            self.state.best_epoch,
            self.state.best_score,
            stopped_early=self.state.epoch + 1 < self.cfg.epochs,
            history=history,
            validated=len(self.plan.rows("val")) > 0,
        )

    def _epoch(self, epoch: int) -> dict[str, float]:
        start = time.perf_counter()
        self.train_stream.set_epoch(epoch)
        losses = torch.zeros(2, dtype=torch.float64)
        bar = progress.bar(total=self.steps, desc=f"epoch {epoch}", leave=False, shown=self.info.is_main)
        for step, batch in enumerate(itertools.islice(self.train_loader, self.steps)):
            try:
                loss = train_step(
                    self.net,
                    batch,
                    self.loss_fn,
                    self.optimizer,
                    self.scheduler,
                    self.info.device,
                    self.cfg.clip,
                    self.amp,
                    self.scaler,
                )
            except NonFiniteLossError as exc:
                raise self._ruined(f"epoch {epoch}, step {step}: {exc}") from None
            losses += torch.tensor([loss * len(batch[1]), len(batch[1])], dtype=torch.float64)
            bar.update()
            bar.set_postfix(loss=f"{loss:.4f}")
        bar.close()
        seconds = time.perf_counter() - start
        all_reduce_sum(losses)
        row = {"train_loss": float(losses[0] / losses[1]), "lr": self.scheduler.get_last_lr()[0]}
        row["train_patches_per_s"] = float(losses[1]) / seconds
        row.update(self._validate())
        self._after_epoch(epoch, row)
        return row

    def _validate(self) -> dict[str, float]:
        if len(self.plan.rows("val")) == 0:
            return {}
        # The bare model: DDP's forward may broadcast buffers, a collective that ranks with fewer
        # validation batches would never join.
        loss, matrix = evaluate(self.model, self.val_loader, self.loss_fn, self.info.device, self.amp)
        if not math.isfinite(loss):
            raise self._ruined(f"validation loss {loss}")
        scores = matrix.per_class()
        row = {"val_loss": loss, "val_f1": matrix.macro_f1()}
        row.update({f"val_f1_{name}": scores[name]["f1"] for name in CLASS_NAMES})
        return row

    def _after_epoch(self, epoch: int, row: dict[str, float]) -> None:
        """Early-stopping bookkeeping, the metrics row and the checkpoints."""
        state = self.state
        state.epoch = epoch
        # Without a validation split the train loss decides, so that best.pt still means something.
        score = row["val_f1"] if "val_f1" in row else -row["train_loss"]
        improved = score > state.best_score
        if improved:
            state.best_score, state.best_epoch, state.stale = score, epoch, 0
        else:
            state.stale += 1
        if self.cfg.patience and state.stale >= self.cfg.patience:
            state.finished = True
        self.log.write(epoch, row)
        if self.info.is_main:
            log.info(_summary(epoch, row))
        self._save(self.run_dir / LAST)
        if improved and self.info.is_main:
            _copy_atomic(self.run_dir / LAST, self.run_dir / BEST)

    def _ruined(self, what: str) -> TrainError:
        """The error that stops a run at a non-finite loss, before anything is saved from it."""
        last = self.run_dir / LAST
        kept = f"{last} (epoch {self.state.epoch}) is kept" if last.exists() else "no checkpoint was written"
        return TrainError(
            f"{self.run_dir}: {what}; stopped before saving it: {kept}. Pixels that are not finite reached "
            f"the model (a damaged chunk in {self.store}?), or the learning rate ({self.cfg.lr}) is too high"
        )

    def _save(self, path: Path) -> None:
        if not self.info.is_main:
            return
        save_checkpoint(
            path,
            {
                "format": CHECKPOINT_FORMAT,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(),
                "state": vars(self.state).copy(),
                "config": self.cfg.model_dump(mode="json"),
                INFERENCE_KEY: self.spec.to_json(),
                "store": self.store,
                "plan": self.plan_path,
                "plan_digest": plan_digest(self.plan),
                "world_size": self.info.world_size,
                **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
            },
        )

    def _initialise(self, path: Path) -> None:
        """Start from the weights of another run (pretrained), which must be of the same model."""
        checkpoint = load_checkpoint(path, map_location=self.info.device)
        saved = checkpoint.get("config", {}).get("model")
        if saved != self.cfg.model.model_dump(mode="json"):
            raise TrainError(
                f"{path}: train.init is a checkpoint of another model ({saved}); it cannot start this one"
            )
        self.model.load_state_dict(checkpoint["model"])

    def _restore(self, path: Path) -> None:
        checkpoint = load_checkpoint(path, map_location=self.info.device)
        saved = checkpoint.get("config", {})
        with contextlib.suppress(ValueError):  # the saved settings as this sgc reads them (legacy names)
            saved = TrainConfig.model_validate(saved).model_dump(mode="json")
        current = self.cfg.model_dump(mode="json")
        differing = sorted(key for key in current if key not in SPEED_KEYS and saved.get(key) != current[key])
        if differing:
            raise TrainError(
                f"{path}: saved with other settings ({', '.join(differing)}); train into another folder"
            )
        if checkpoint.get("plan_digest") != plan_digest(self.plan):
            raise TrainError(
                f"{path}: trained on another patch plan than {self.plan_path} (or by an older sgc); "
                "train into another folder"
            )
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        set_rng_state(checkpoint["rng"])
        if self.scaler is not None and "scaler" in checkpoint:
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.state = _State(**checkpoint["state"])
        self.log.truncate_after(self.state.epoch)


def _summary(epoch: int, row: dict[str, float]) -> str:
    """One line per epoch for the terminal or a log."""
    text = f"epoch {epoch}: train loss {row['train_loss']:.4f} ({row['train_patches_per_s']:.0f} patches/s)"
    if "val_f1" in row:
        text += (
            f", val loss {row['val_loss']:.4f}, F1 star {row['val_f1_star']:.3f} "
            f"galaxy {row['val_f1_galaxy']:.3f} sky {row['val_f1_sky']:.3f}"
        )
    return text


def _scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total: int
) -> torch.optim.lr_scheduler.LRScheduler:
    total = max(total, 1)
    if cfg.schedule == "onecycle" and total >= 4:
        # OneCycleLR divides by the length of each phase: give each at least two steps.
        pct = min(0.5, max(cfg.warmup, 2 / total))
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total, pct_start=pct)
    warm = int(cfg.warmup * total)
    if cfg.schedule == "cosine":

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    else:

        def factor(step: int) -> float:
            return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _copy_atomic(source: Path, target: Path) -> None:
    with source.open("rb") as src, atomic_write(target) as dst:
        shutil.copyfileobj(src, dst)
