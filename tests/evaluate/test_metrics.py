"""The pixel confusion matrix against hand and NumPy counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgc.classes import CLASS_NAMES
from sgc.evaluate.metrics import ConfusionMatrix


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
    for c, name in enumerate(CLASS_NAMES):
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


def test_reset() -> None:
    cm = ConfusionMatrix()
    cm.update(*_hand_example())
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
