"""The per-epoch log of a training run: ``metrics.csv`` and TensorBoard events.

:class:`MetricsLog` appends one row of scalars per epoch to ``metrics.csv`` and mirrors it to TensorBoard
where that package is installed. What the scalars mean is defined in :mod:`sgc.evaluate.metrics`.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from sgc.atomic import atomic_write

log = logging.getLogger(__name__)

_CSV_NAME = "metrics.csv"
_TB_DIR = "tb"
_warned_no_tensorboard = False


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


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.csv`` (``epoch`` and its scalars; a cell left empty is left out), empty
    where the run logged nothing."""
    path = Path(run_dir) / _CSV_NAME
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{key: float(value) for key, value in row.items() if value} for row in csv.DictReader(f)]


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
