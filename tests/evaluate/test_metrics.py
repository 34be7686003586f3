"""The metric definitions: the pixel confusion matrix against hand and NumPy counts, the object metrics,
the per-patch average and the purity on small cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgc.classes import CLASS_NAMES, GALAXY, IGNORE, SKY, STAR
from sgc.evaluate.metrics import (
    ConfusionMatrix,
    multiclass_mcc,
    object_classes,
    object_scores,
    per_patch_scores,
    purity,
)


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


def test_object_metrics_of_three_objects_by_hand() -> None:
    # A star seen as a star, a galaxy seen as a star, a galaxy seen as sky (missed).
    prob = np.zeros((3, 20, 30), dtype=np.float32)
    prob[SKY] = 1.0
    objects = {(5.0, 5.0): (0.1, 0.8, 0.1), (15.0, 5.0): (0.2, 0.6, 0.2), (25.0, 12.0): (0.7, 0.1, 0.2)}
    for (x, y), p in objects.items():
        prob[:, int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4] = np.array(p)[:, None, None]
    x, y = np.array([5.0, 15.0, 25.4]), np.array([5.0, 5.0, 12.3])
    predicted, mean = object_classes(prob, x, y)
    assert predicted.tolist() == [STAR, STAR, SKY]
    np.testing.assert_allclose(mean[1], [0.2, 0.6, 0.2], rtol=1e-6)
    truth = np.array([STAR, GALAXY, GALAXY])
    scores = object_scores(truth, predicted)
    assert scores["n"] == 3
    assert scores["detection_recall"] == pytest.approx(2 / 3)
    assert scores["accuracy"] == pytest.approx(1 / 3)
    assert scores["star"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "n": 1})
    assert scores["galaxy"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "n": 2}
    # Gorodkin's R_K on rows star (.., star, ..) and galaxy (sky, star, ..): (3 * 1 - 2) / sqrt(4 * 4).
    assert scores["mcc"] == pytest.approx(0.25)
    assert scores["confusion"] == [[0, 0, 0], [0, 1, 0], [1, 1, 0]]


def test_the_object_disk_is_the_pixels_within_two_pixels_of_the_position() -> None:
    prob = np.zeros((3, 9, 9), dtype=np.float32)
    prob[STAR] = 1.0
    prob[:, 4, 7] = (0.0, 0.0, 1.0)  # 2.55 px from (4.5, 4.5): outside
    prob[:, 4, 6] = (0.0, 0.0, 1.0)  # sqrt(1.5**2 + 0.5**2) = 1.58: inside
    _, mean = object_classes(prob, np.array([4.5]), np.array([4.5]))
    # Pixel centres within 2 px of (4.5, 4.5): 12 of them, one galaxy.
    np.testing.assert_allclose(mean[0], [0.0, 11 / 12, 1 / 12], rtol=1e-6)
    classes, mean = object_classes(prob, np.array([-40.0]), np.array([4.0]))  # off the grid: missed
    assert classes.tolist() == [SKY] and np.isnan(mean).all()


def test_multiclass_mcc_is_one_for_perfect_and_zero_for_constant_predictions() -> None:
    assert multiclass_mcc(np.diag([3, 4, 5])) == pytest.approx(1.0)
    assert multiclass_mcc(np.array([[0, 0, 0], [0, 5, 0], [0, 7, 0]])) == 0.0
    two_class = np.array([[0, 0, 0], [0, 6, 2], [0, 1, 3]])  # reduces to the binary MCC
    tp, fn, fp, tn = 6, 2, 1, 3
    binary = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert multiclass_mcc(two_class) == pytest.approx(binary)


def test_purity_is_the_share_of_predicted_objects_near_a_catalogue_object() -> None:
    arcsec = 1 / 3600
    catalog = (np.array([10.0, 10.01]), np.array([1.0, 1.0]))
    predicted = (np.array([10.0 + 1.0 * arcsec, 10.01, 10.02]), np.array([1.0, 1.0 + 1.6 * arcsec, 1.0]))
    assert purity(*predicted, *catalog) == pytest.approx(1 / 3)
    assert purity(np.array([]), np.array([]), *catalog) == 0.0


def test_per_patch_scores_average_the_classes_present_in_each_patch() -> None:
    truth = np.zeros((2, 2, 2), dtype=np.uint8)
    pred = np.zeros((2, 2, 2), dtype=np.uint8)
    truth[0, 0, 0], pred[0, 0, 0] = STAR, STAR  # patch 0: a star found
    truth[1, 0, 0], pred[1, 0, 1] = STAR, STAR  # patch 1: a star missed, one predicted beside it
    truth[1, 1, 1] = IGNORE
    scores = per_patch_scores(truth, pred)
    assert scores["star"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "patches": 2})
    assert scores["galaxy"]["patches"] == 0
    assert scores["sky"]["patches"] == 2
