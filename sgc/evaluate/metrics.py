"""Metric definitions: the one place they are written (``../shared/DESIGN.md``, "Metrics, defined once").

- **Pixel**: :class:`ConfusionMatrix` counts (true class, predicted class) pixel pairs, pixels labelled
  ignore left out, on the device the tensors live on. Per class it gives precision, recall, F1 and IoU from
  the total counts (micro over every pixel scored). Counts from several processes add up: sum
  :attr:`ConfusionMatrix.counts` over the ranks (in place) before reading the scores.
- **Per patch** (only to compare with the 2023 report, which scored this way): :func:`per_patch_scores`,
  per patch precision, recall and F1 of each class present in the patch's truth, averaged over patches.
- **Object**: every catalogue object is scored by the class of the mean predicted probability over the
  pixels within :data:`OBJECT_RADIUS_PX` of its catalogue position, sky meaning missed
  (:func:`object_classes`); :func:`object_scores` gives the detection recall (share not sky), the accuracy
  (a missed object counts as wrong), the three-class MCC (truth star/galaxy against predicted
  sky/star/galaxy, :func:`multiclass_mcc`) and per object class precision, recall, F1 and count; the
  purity (:func:`purity`) is the share of predicted objects with a catalogue object within
  :data:`MATCH_ARCSEC`. All of it again per r-magnitude bin (:data:`MAG_BINS`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sgc.classes import CLASS_NAMES, IGNORE, OBJECT_CLASSES, SKY
from sgc.sky import match_positions
from sgc.windows import nearest_pixel

OBJECT_RADIUS_PX = 2.0
MATCH_ARCSEC = 1.5
# Edges of the r-magnitude bins objects are also scored in; objects brighter than the first edge and
# fainter than the last get bins of their own.
MAG_BINS: tuple[float, ...] = (16.0, 17.0, 18.0, 19.0, 20.0, 21.0, 22.0, 23.0)


def _ratio(num: int, den: int) -> float:
    # An empty denominator means the class never occurred on that side: score 0 rather than NaN, so a
    # missing class pulls a mean down instead of poisoning it.
    return num / den if den else 0.0


class ConfusionMatrix:
    """Counts of (true, predicted) class pairs over pixels, ignoring target pixels labelled ignore.

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
            target: class indices (N, H, W); the ignore label marks pixels that are not scored.

        Raises:
            ValueError: shapes that do not match, or class indices outside 0..2 (the target's ignore aside).
        """
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(dim=1)
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(pred.shape)} does not match target {tuple(target.shape)}"
            )
        keep = target != IGNORE
        t = target[keep].long()
        p = pred[keep].long()
        # Out-of-range labels would land silently in the wrong cell of the flattened index.
        if bool(((t < 0) | (t >= self._n) | (p < 0) | (p >= self._n)).any()):
            raise ValueError(f"class indices outside 0..{self._n - 1} (target {IGNORE} aside)")
        cells = torch.bincount(t * self._n + p, minlength=self._n * self._n)
        if self._counts.device != cells.device:
            self._counts = self._counts.to(cells.device)
        self._counts += cells.view(self._n, self._n)

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


def per_patch_scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, dict[str, float]]:
    """The 2023 report's per-patch average: per patch, each class present in its truth scored alone.

    Args:
        truth: ``(patches, P, P)`` label values (ignore pixels left out).
        pred: ``(patches, P, P)`` predicted classes.

    Returns:
        For each class name: ``precision``, ``recall`` and ``f1`` averaged over the patches whose truth
        holds the class, and ``patches``, their number (scores 0 where there is none).
    """
    scored = truth != IGNORE
    result = {}
    for value, name in enumerate(CLASS_NAMES):
        true = (truth == value) & scored
        hit = (pred == value) & scored
        tp = (true & hit).sum(axis=(1, 2))
        n_true, n_pred = true.sum(axis=(1, 2)), hit.sum(axis=(1, 2))
        present = n_true > 0
        precision = np.divide(tp, n_pred, out=np.zeros(len(tp)), where=n_pred > 0)[present]
        recall = (tp / np.maximum(n_true, 1))[present]
        f1 = np.divide(2 * tp, n_true + n_pred, out=np.zeros(len(tp)), where=(n_true + n_pred) > 0)[present]
        count = int(present.sum())
        result[name] = {
            "precision": float(precision.mean()) if count else 0.0,
            "recall": float(recall.mean()) if count else 0.0,
            "f1": float(f1.mean()) if count else 0.0,
            "patches": count,
        }
    return result


def object_classes(prob: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The predicted class of each catalogue object: the argmax of the mean probability near its position.

    The mean runs over the pixels whose centres lie within :data:`OBJECT_RADIUS_PX` of the object's
    position (0-based, astropy's convention), on the grid and with a probability (NaN where no band
    covers a pixel is left out).

    Args:
        prob: ``(classes, rows, columns)`` probabilities.
        x, y: object positions in pixels.

    Returns:
        ``(classes, mean)``: the class value of each object (sky meaning missed), and the ``(n, classes)``
        mean probabilities (NaN where no pixel near the object has one; such an object counts as missed).
    """
    _, ny, nx = prob.shape
    # The disk around the object's position, not around its nearest pixel: pixel centres within the radius.
    cy, cx = nearest_pixel(y), nearest_pixel(x)
    r = int(np.ceil(OBJECT_RADIUS_PX)) + 1
    oy, ox = np.mgrid[-r : r + 1, -r : r + 1]
    py = cy[:, None] + oy.ravel()[None, :]
    px = cx[:, None] + ox.ravel()[None, :]
    near = (py - np.asarray(y)[:, None]) ** 2 + (px - np.asarray(x)[:, None]) ** 2 <= OBJECT_RADIUS_PX**2
    near &= (py >= 0) & (py < ny) & (px >= 0) & (px < nx)
    values = np.where(near[None], prob[:, np.clip(py, 0, ny - 1), np.clip(px, 0, nx - 1)], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an object with no pixel near it: mean of nothing
        mean = np.nanmean(values.astype(np.float64), axis=2).T
    classes = np.where(np.isfinite(mean).all(axis=1), np.nan_to_num(mean, nan=-1.0).argmax(axis=1), SKY)
    return classes.astype(np.int64), mean


def multiclass_mcc(confusion: np.ndarray) -> float:
    """The Matthews correlation coefficient of a K x K confusion matrix (Gorodkin's R_K); 0 if undefined.

    Rows are true classes and columns predicted ones; a class may be absent from the truth (sky, for
    catalogue objects) and still be predicted.
    """
    c = np.asarray(confusion, dtype=np.float64)
    total, correct = c.sum(), np.trace(c)
    predicted, true = c.sum(axis=0), c.sum(axis=1)
    denominator = np.sqrt((total**2 - predicted @ predicted) * (total**2 - true @ true))
    return float((correct * total - predicted @ true) / denominator) if denominator > 0 else 0.0


def object_scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Object metrics of catalogue objects from their true class and predicted class values.

    Args:
        truth: class value of each object (star or galaxy).
        predicted: predicted class value of each (sky, star or galaxy).

    Returns:
        ``n``, ``detection_recall``, ``accuracy``, ``mcc``, ``confusion`` (rows sky, star, galaxy truth;
        columns predicted) and per object class ``precision``, ``recall``, ``f1`` and ``n``.
    """
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    n = len(truth)
    confusion = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    scores: dict[str, Any] = {
        "n": n,
        "detection_recall": _ratio(int((predicted != SKY).sum()), n),
        "accuracy": _ratio(int((predicted == truth).sum()), n),
        "mcc": multiclass_mcc(confusion),
        "confusion": confusion.tolist(),
    }
    for name in OBJECT_CLASSES:
        value = CLASS_NAMES.index(name)
        tp = int(((truth == value) & (predicted == value)).sum())
        n_true, n_pred = int((truth == value).sum()), int((predicted == value).sum())
        scores[name] = {
            "precision": _ratio(tp, n_pred),
            "recall": _ratio(tp, n_true),
            "f1": _ratio(2 * tp, n_true + n_pred),
            "n": n_true,
        }
    return scores


def purity(
    predicted_ra: np.ndarray, predicted_dec: np.ndarray, catalog_ra: np.ndarray, catalog_dec: np.ndarray
) -> float:
    """Share of predicted objects with a catalogue object within :data:`MATCH_ARCSEC` (0 if none)."""
    matched, _ = match_positions(predicted_ra, predicted_dec, catalog_ra, catalog_dec, MATCH_ARCSEC)
    return float(matched.mean()) if matched.size else 0.0


def magnitude_bins(mag: np.ndarray) -> list[tuple[float | None, float | None, np.ndarray]]:
    """The r-magnitude bins of :data:`MAG_BINS` with the objects in each: ``(low, high, mask)``, open ends
    as None; objects without a magnitude are in none."""
    mag = np.asarray(mag, dtype=np.float64)
    edges = [None, *MAG_BINS, None]
    bins = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        mask = np.isfinite(mag)
        if low is not None:
            mask &= mag >= low
        if high is not None:
            mask &= mag < high
        bins.append((low, high, mask))
    return bins


def object_metrics(
    truth: np.ndarray,
    predicted: np.ndarray,
    mag: np.ndarray,
    predicted_objects: tuple[np.ndarray, np.ndarray],
    catalog_positions: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """The ``object`` section of the metrics: scores, purity, and the scores per r-magnitude bin.

    Args:
        truth, predicted: class values of the catalogue objects (see :func:`object_scores`).
        mag: r magnitude of each catalogue object (NaN where unknown).
        predicted_objects: RA and Dec of the predicted objects in the region.
        catalog_positions: RA and Dec of every catalogue object near the region (the purity's matches).
    """
    scores = object_scores(truth, predicted)
    scores["purity"] = purity(*predicted_objects, *catalog_positions)
    scores["predicted_objects"] = len(predicted_objects[0])
    scores["by_magnitude"] = scores_by_magnitude(truth, predicted, mag)
    return scores


def scores_by_magnitude(truth: np.ndarray, predicted: np.ndarray, mag: np.ndarray) -> list[dict[str, Any]]:
    """:func:`object_scores` in each r-magnitude bin that holds objects, with its ``r_min`` and ``r_max``."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    return [
        {"r_min": low, "r_max": high, **object_scores(truth[mask], predicted[mask])}
        for low, high, mask in magnitude_bins(mag)
        if mask.any()
    ]
