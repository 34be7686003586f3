"""Metric definitions, on the pixels and (in later modules) on objects: the one place they are written.

:class:`ConfusionMatrix` counts (true class, predicted class) pixel pairs on the device the tensors live
on, so evaluation needs no copy to the host until the scores are read. Per class it gives precision,
recall, F1 and IoU from total counts (micro over every pixel scored), pixels labelled ignore left out.
Counts from several processes add up: sum :attr:`ConfusionMatrix.counts` over the ranks (in place) before
reading the scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sgc.classes import CLASS_NAMES, IGNORE


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
