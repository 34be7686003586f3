"""The per-epoch CSV / TensorBoard log of a training run."""

from __future__ import annotations

import csv
import importlib.util
import logging
from pathlib import Path

import pytest
import torch

from sgc.train import log as run_log
from sgc.train.log import MetricsLog

HAVE_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_csv_rows_and_columns(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "run", enabled=True)
    log.write(0, {"train_loss": 1.5, "val_f1": 0.25})
    log.write(1, {"val_f1": 0.5, "train_loss": torch.tensor(1.25)})
    log.write(2, {"train_loss": 1.0})
    log.close()
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,val_f1"
    assert lines[1:] == ["0,1.5,0.25", "1,1.25,0.5", "2,1.0,"]
    with pytest.raises(ValueError, match="no column"):
        MetricsLog(tmp_path / "run", enabled=True).write(3, {"lr": 0.1})
    with pytest.raises(ValueError, match="epoch"):
        MetricsLog(tmp_path / "run", enabled=True).write(3, {"epoch": 3.0})


def test_resume_keeps_rows_and_truncates_partial_epochs(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path, enabled=True)
    for epoch in range(4):
        log.write(epoch, {"loss": 1.0 / (epoch + 1)})
    log.close()
    with (tmp_path / "metrics.csv").open("a") as f:
        f.write("4,0.1")  # a row a killed run left half written (no newline)

    resumed = MetricsLog(tmp_path, enabled=True)
    resumed.truncate_after(1)
    resumed.write(2, {"loss": 0.3})
    resumed.close()
    rows = _rows(tmp_path / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert rows[2]["loss"] == "0.3"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_truncate_without_csv_is_harmless(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path, enabled=True)
    log.truncate_after(5)
    assert not (tmp_path / "metrics.csv").exists()
    log.close()


def test_disabled_log_writes_nothing(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "run", enabled=False)
    log.write(0, {"loss": 1.0})
    log.truncate_after(0)
    log.close()
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not HAVE_TENSORBOARD, reason="tensorboard not installed")
def test_tensorboard_event_file(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path, enabled=True)
    log.write(0, {"loss": 1.0})
    log.close()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_without_tensorboard_warns_once_and_writes_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name: str, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError("no tensorboard here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    monkeypatch.setattr(run_log, "_warned_no_tensorboard", False)
    with caplog.at_level(logging.WARNING, logger="sgc.train.log"):
        first = MetricsLog(tmp_path / "a", enabled=True)
        MetricsLog(tmp_path / "b", enabled=True)
    assert sum("tensorboard is not installed" in r.getMessage() for r in caplog.records) == 1
    first.write(0, {"loss": 1.0})
    first.close()
    assert (tmp_path / "a" / "metrics.csv").exists()
    assert not (tmp_path / "a" / "tb").exists()
