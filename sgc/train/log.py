"""Per-pixel scores of the segmentation, and the per-epoch log of scalars.

:class:`ConfusionMatrix` counts (true class, predicted class) pixel pairs on the device the tensors live
on, so evaluation needs no copy to the host until the scores are read. :class:`MetricsLog` appends one row
per epoch to ``metrics.csv`` and mirrors it to TensorBoard where that package is installed.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sgc.atomic import atomic_write
from sgc.model.losses import IGNORE_INDEX
from sgc.train.distributed import all_reduce_sum

log = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = ("sky", "star", "galaxy")
_CSV_NAME = "metrics.csv"
_TB_DIR = "tb"
_warned_no_tensorboard = False


def _ratio(num: int, den: int) -> float:
    # An empty denominator means the class never occurred on that side: score 0 rather than NaN, so a
    # missing class pulls a mean down instead of poisoning it.
    return num / den if den else 0.0


class ConfusionMatrix:
    """Counts of (true, predicted) class pairs over pixels, ignoring target pixels labelled 255.

    Rows are true classes and columns predicted classes, in the order sky, star, galaxy.

    Args:
        device: where the counts start; they follow the tensors given to :meth:`update`.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self._n = len(CLASS_NAMES)
        self._counts = torch.zeros((self._n, self._n), dtype=torch.int64, device=device)

    @property
    def counts(self) -> torch.Tensor:
        """The (3, 3) int64 matrix of counts, rows true and columns predicted."""
        return self._counts

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch.

        Args:
            pred: class indices (N, H, W), or logits (N, C, H, W) whose argmax over C is taken.
            target: class indices (N, H, W); 255 marks pixels that are not scored.

        Raises:
            ValueError: shapes that do not match, or class indices outside 0..2 (other than target 255).
        """
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(dim=1)
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(pred.shape)} does not match target {tuple(target.shape)}"
            )
        keep = target != IGNORE_INDEX
        t = target[keep].long()
        p = pred[keep].long()
        # Out-of-range labels would land silently in the wrong cell of the flattened index.
        if bool(((t < 0) | (t >= self._n) | (p < 0) | (p >= self._n)).any()):
            raise ValueError(f"class indices outside 0..{self._n - 1} (target {IGNORE_INDEX} aside)")
        cells = torch.bincount(t * self._n + p, minlength=self._n * self._n)
        if self._counts.device != cells.device:
            self._counts = self._counts.to(cells.device)
        self._counts += cells.view(self._n, self._n)

    def reduce_(self) -> ConfusionMatrix:
        """Sum the counts over all ranks, in place (once per evaluation: a second call counts twice).

        Returns:
            ``self``.
        """
        all_reduce_sum(self._counts)
        return self

    def per_class(self) -> dict[str, dict[str, float]]:
        """Precision, recall, F1, IoU and support (true pixels) of each class, keyed by class name."""
        m = self._counts.cpu().tolist()
        scores: dict[str, dict[str, float]] = {}
        for c, name in enumerate(CLASS_NAMES):
            tp = m[c][c]
            fp = sum(m[r][c] for r in range(self._n)) - tp
            fn = sum(m[c]) - tp
            scores[name] = {
                "precision": _ratio(tp, tp + fp),
                "recall": _ratio(tp, tp + fn),
                "f1": _ratio(2 * tp, 2 * tp + fp + fn),
                "iou": _ratio(tp, tp + fp + fn),
                "support": float(tp + fn),
            }
        return scores

    def macro_f1(self, classes: Sequence[str] = ("star", "galaxy")) -> float:
        """Mean F1 over ``classes``; by default the two object classes, which sky would otherwise swamp.

        Raises:
            KeyError: a name that is not a class.
        """
        scores = self.per_class()
        unknown = [name for name in classes if name not in scores]
        if unknown or not classes:
            raise KeyError(f"unknown classes {unknown}; expected some of {', '.join(CLASS_NAMES)}")
        return sum(scores[name]["f1"] for name in classes) / len(classes)

    def reset(self) -> None:
        """Zero the counts, keeping their device."""
        self._counts.zero_()


def _tensorboard_writer_class() -> Any | None:
    """SummaryWriter, or None (warned once per process) where the tensorboard package is missing."""
    global _warned_no_tensorboard
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if not _warned_no_tensorboard:
            log.warning("tensorboard is not installed: metrics go to metrics.csv only")
            _warned_no_tensorboard = True
        return None
    return SummaryWriter


class MetricsLog:
    """One row of scalars per epoch, in ``run_dir/metrics.csv`` and in TensorBoard under ``run_dir/tb``.

    An existing CSV is kept, so a resumed run goes on appending to it; call :meth:`truncate_after` with the
    last epoch the resumed checkpoint completed, so rows a killed run wrote after it disappear. A fresh run
    should get a fresh ``run_dir``. The CSV's columns are ``epoch`` and the keys of the first row ever
    written (or the existing header).

    Args:
        run_dir: the run's folder, created on the first write.
        enabled: False on every rank but the main one, making each method a no-op.
    """

    def __init__(self, run_dir: str | Path, enabled: bool) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._columns: list[str] | None = None
        self._writer: Any | None = None
        self._writer_class = _tensorboard_writer_class() if enabled else None
        self._purge_step: int | None = None

    @property
    def csv_path(self) -> Path:
        """Where the CSV lives."""
        return self.run_dir / _CSV_NAME

    def write(self, epoch: int, row: dict[str, float]) -> None:
        """Append ``row`` for ``epoch`` to the CSV and to TensorBoard.

        Raises:
            ValueError: ``row`` has keys the CSV has no column for, or a key named ``epoch``.
        """
        if not self.enabled:
            return
        if "epoch" in row:
            raise ValueError("row must not hold 'epoch': it is the separate epoch argument")
        values = {key: float(value) for key, value in row.items()}
        self._append_csv(epoch, values)
        writer = self._tensorboard()
        if writer is not None:
            for key, value in values.items():
                writer.add_scalar(key, value, global_step=epoch)
            writer.flush()

    def _append_csv(self, epoch: int, values: dict[str, float]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self._columns is None:
            self._columns = self._existing_columns() or ["epoch", *values]
        extra = [key for key in values if key not in self._columns]
        if extra:
            raise ValueError(f"{self.csv_path}: no column for {extra}; columns are {self._columns}")
        new_file = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        # Reopened per row so each epoch's row is on disk once written, whatever happens to the run later.
        with self.csv_path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._columns)
            if new_file:
                writer.writeheader()
            writer.writerow({"epoch": epoch, **values})

    def _existing_columns(self) -> list[str] | None:
        if not self.csv_path.exists():
            return None
        with self.csv_path.open(newline="") as f:
            header = next(csv.reader(f), None)
        return header or None

    def _tensorboard(self) -> Any | None:
        if self._writer is None and self._writer_class is not None:
            # purge_step hides events a killed run logged past the resumed epoch, as truncate_after does for
            # the CSV; the writer is created lazily so that truncate_after can still set it.
            self._writer = self._writer_class(
                log_dir=str(self.run_dir / _TB_DIR), purge_step=self._purge_step
            )
        return self._writer

    def truncate_after(self, epoch: int) -> None:
        """Drop CSV rows (and later TensorBoard events) of epochs after ``epoch``, for a resumed run.

        A row left unreadable by a run killed mid-write is dropped too. The header stays.
        """
        if not self.enabled:
            return
        self._purge_step = epoch + 1
        if not self.csv_path.exists():
            return
        with self.csv_path.open(newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        header = rows[0]
        kept = [row for row in rows[1:] if (e := _epoch_of(row, len(header))) is not None and e <= epoch]
        _rewrite_csv(self.csv_path, [header, *kept])

    def close(self) -> None:
        """Flush and close TensorBoard's writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _epoch_of(row: list[str], width: int) -> int | None:
    """The epoch of a complete CSV row, None for a short (partly written) or malformed one."""
    if len(row) != width:
        return None
    try:
        return int(row[0])
    except ValueError:
        return None


def _rewrite_csv(path: Path, rows: list[list[str]]) -> None:
    """Replace ``path`` with ``rows`` atomically, so a crash mid-rewrite keeps the old file."""
    with atomic_write(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
