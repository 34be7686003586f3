"""The confusion matrix against hand and NumPy counts, and the CSV / TensorBoard metrics log."""

from __future__ import annotations

import csv
import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from sgc.train import metrics
from sgc.train.metrics import ConfusionMatrix, MetricsLog

HAVE_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def _hand_example() -> tuple[torch.Tensor, torch.Tensor]:
    # true:  sky sky sky star star galaxy | ignore ignore
    # pred:  sky sky star star galaxy galaxy | star galaxy
    target = torch.tensor([[[0, 0, 0, 1], [1, 2, 255, 255]]])
    pred = torch.tensor([[[0, 0, 1, 1], [2, 2, 1, 2]]])
    return pred, target


def test_hand_computed_example() -> None:
    cm = ConfusionMatrix()
    cm.update(*_hand_example())
    assert cm.counts.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    s = cm.per_class()
    assert s["sky"] == {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "iou": 2 / 3, "support": 3.0}
    assert s["star"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "iou": 1 / 3, "support": 2.0}
    )
    assert s["galaxy"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "iou": 0.5, "support": 1.0}
    )
    assert cm.macro_f1() == pytest.approx((0.5 + 2 / 3) / 2)
    assert cm.macro_f1(("sky", "star", "galaxy")) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_logits_are_argmaxed() -> None:
    pred, target = _hand_example()
    logits = torch.nn.functional.one_hot(pred, 3).permute(0, 3, 1, 2).float() * 5 + 0.1 * torch.randn(
        1, 3, 2, 4
    )
    a, b = ConfusionMatrix(), ConfusionMatrix()
    a.update(logits, target)
    b.update(pred, target)
    assert torch.equal(a.counts, b.counts)


def _numpy_confusion(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    m = np.zeros((3, 3), dtype=np.int64)
    keep = target != 255
    np.add.at(m, (target[keep], pred[keep]), 1)
    return m


def test_random_batches_match_numpy() -> None:
    gen = torch.Generator().manual_seed(0)
    cm = ConfusionMatrix()
    expected = np.zeros((3, 3), dtype=np.int64)
    for _ in range(4):
        target = torch.randint(0, 3, (2, 16, 16), generator=gen)
        target[torch.rand(target.shape, generator=gen) < 0.2] = 255
        logits = torch.randn(2, 3, 16, 16, generator=gen)
        cm.update(logits, target)
        expected += _numpy_confusion(logits.argmax(1).numpy(), target.numpy())
    assert cm.counts.numpy().tolist() == expected.tolist()
    for c, name in enumerate(metrics.CLASS_NAMES):
        tp = expected[c, c]
        fp, fn = expected[:, c].sum() - tp, expected[c].sum() - tp
        s = cm.per_class()[name]
        assert s["precision"] == pytest.approx(tp / (tp + fp))
        assert s["recall"] == pytest.approx(tp / (tp + fn))
        assert s["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert s["iou"] == pytest.approx(tp / (tp + fp + fn))
        assert s["support"] == expected[c].sum()


def test_ignored_pixels_are_not_counted() -> None:
    cm = ConfusionMatrix()
    cm.update(torch.tensor([[[1, 2]]]), torch.full((1, 1, 2), 255))
    assert cm.counts.sum() == 0


def test_absent_classes_score_zero_not_nan() -> None:
    cm = ConfusionMatrix()
    assert cm.macro_f1() == 0.0
    cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
    s = cm.per_class()
    assert s["sky"]["f1"] == 1.0
    assert s["star"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "iou": 0.0, "support": 0.0}
    assert cm.macro_f1() == 0.0


def test_reset_and_single_process_reduce() -> None:
    cm = ConfusionMatrix()
    cm.update(*_hand_example())
    before = cm.counts.clone()
    assert cm.reduce_() is cm and torch.equal(cm.counts, before)
    cm.reset()
    assert cm.counts.sum() == 0


def test_bad_inputs() -> None:
    cm = ConfusionMatrix()
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="outside"):
        cm.update(torch.tensor([[[3]]]), torch.tensor([[[0]]]))
    with pytest.raises(ValueError, match="outside"):
        cm.update(torch.tensor([[[0]]]), torch.tensor([[[7]]]))
    with pytest.raises(KeyError, match="unknown classes"):
        cm.macro_f1(("star", "quasar"))


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
    monkeypatch.setattr(metrics, "_warned_no_tensorboard", False)
    with caplog.at_level(logging.WARNING, logger="sgc.train.metrics"):
        first = MetricsLog(tmp_path / "a", enabled=True)
        MetricsLog(tmp_path / "b", enabled=True)
    assert sum("tensorboard is not installed" in r.getMessage() for r in caplog.records) == 1
    first.write(0, {"loss": 1.0})
    first.close()
    assert (tmp_path / "a" / "metrics.csv").exists()
    assert not (tmp_path / "a" / "tb").exists()
