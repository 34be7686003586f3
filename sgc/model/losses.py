"""The training loss: class-weighted cross entropy, optionally plus soft Dice or focal loss.

Every per-pixel term is a plain mean over the non-ignored pixels of the batch,
``sum(w[y] * ce) / n_valid``, rather than torch's weighted mean ``sum(w[y] * ce) / sum(w[y])``. With the
plain mean, the loss of a batch is the average of the losses of two equal-size halves holding equally many
valid pixels (in particular with no ignored pixels), whatever their class mix: DDP averages the gradients of
the ranks' local batches, and that average is then the gradient of the global batch. Torch's weighted mean
divides each half by its own ``sum(w[y])``, so a half rich in rare (heavily weighted) classes would count for
less than its pixels. Where the halves hold different numbers of valid pixels the average still weights each
half equally, as DDP does for any mean-reduced loss.

The Dice term is a batch-level ratio and does not split over halves; it is computed per rank.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own idiom
from torch import nn

from sgc.classes import IGNORE as IGNORE_INDEX  # the label of pixels that no loss or metric sees
from sgc.config import CLASS_WEIGHTS, LossConfig

DICE_SMOOTH = 1.0


def class_weights(counts: Sequence[int] | np.ndarray, kind: str) -> torch.Tensor:
    """Cross-entropy class weights from the train label pixel counts per class (sky, star, galaxy).

    ``inverse`` weighs each class by ``1 / count``, ``sqrt-inverse`` by ``1 / sqrt(count)``, ``none``
    uniformly. The weights are scaled so that their mean over the train pixels,
    ``sum(count * w) / sum(count)``, is 1: the loss keeps the scale of unweighted cross entropy, so the
    learning rate does not depend on the weighting. A class with no pixels gets the largest weight of the
    others (it is at least as rare as the rarest one seen), never inf or nan.

    Args:
        counts: non-negative pixel counts, one per class.
        kind: "inverse", "sqrt-inverse" or "none".

    Returns:
        float32 tensor of one weight per class.

    Raises:
        ValueError: on an unknown ``kind``, or counts that are not a non-empty 1-D list of non-negative
            numbers.
    """
    if kind not in CLASS_WEIGHTS:
        raise ValueError(f"class weights {kind!r} is not one of {', '.join(CLASS_WEIGHTS)}")
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size == 0 or not np.all(np.isfinite(n)) or np.any(n < 0):
        raise ValueError(f"class pixel counts must be a 1-D list of non-negative numbers, got {counts!r}")
    present = n > 0
    if kind == "none" or not present.any():
        return torch.ones(n.size, dtype=torch.float32)
    raw = np.zeros_like(n)
    power = 1.0 if kind == "inverse" else 0.5
    raw[present] = n[present] ** -power
    raw[~present] = raw[present].max()
    weights = raw * n.sum() / np.dot(n, raw)  # absent classes have n = 0: they do not shift the mean
    return torch.from_numpy(weights.astype(np.float32))


class SegmentationLoss(nn.Module):
    """Per-pixel segmentation loss: weighted cross entropy plus ``aux_weight`` times Dice or focal loss.

    Pixels labelled :data:`IGNORE_INDEX` take no part. The cross-entropy and focal terms are plain means over
    the valid pixels (see the module docstring for why); a batch with no valid pixel has loss 0, which still
    has a ``grad_fn`` so that ``backward()`` works (with zero gradients) on every rank. The loss is computed
    in float32 whatever the dtype of the logits (bf16 autocast).

    Args:
        cfg: the kind ("ce", "ce+dice": soft multi-class Dice over the batch, classes averaged, smoothing 1,
            or "ce+focal": ``(1 - p_t)**focal_gamma * -log(p_t)``, unweighted), the weight of the Dice or
            focal term and the focusing exponent; its ``class_weights`` are turned into ``weights`` by
            :func:`build_loss`.
        weights: cross-entropy weight per class (see :func:`class_weights`); ``None`` for uniform.

    Raises:
        ValueError: on weights that are not 1-D.
    """

    def __init__(self, cfg: LossConfig | None = None, weights: torch.Tensor | None = None) -> None:
        super().__init__()
        cfg = cfg or LossConfig()
        if weights is not None:
            weights = torch.as_tensor(weights, dtype=torch.float32)
            if weights.ndim != 1:
                raise ValueError(f"class weights must be 1-D, got shape {tuple(weights.shape)}")
        self.kind = cfg.kind
        self.aux_weight = float(cfg.aux_weight)
        self.focal_gamma = float(cfg.focal_gamma)
        # A buffer follows the module to the GPU; not persistent, as it is rebuilt from the config.
        self.weights: torch.Tensor | None
        self.register_buffer("weights", weights, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss of ``logits`` (N, C, H, W) against int64 labels ``target`` (N, H, W).

        Raises:
            ValueError: if the shapes do not match or the weights do not have C entries.
        """
        self._check(logits, target)
        logits = logits.float()
        valid = target != IGNORE_INDEX
        # Clamped so that an all-ignored batch divides 0 by 1 rather than by 0.
        n_valid = valid.sum().clamp_min(1)
        ce = F.cross_entropy(logits, target, weight=self.weights, ignore_index=IGNORE_INDEX, reduction="none")
        loss = ce.sum() / n_valid
        if self.kind == "ce+dice":
            loss = loss + self.aux_weight * dice_loss(logits, target, valid)
        elif self.kind == "ce+focal":
            loss = loss + self.aux_weight * focal_loss(logits, target, valid, self.focal_gamma)
        return loss

    def _check(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        if logits.ndim != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(
                f"expected logits (N, C, H, W) and target (N, H, W), got {tuple(logits.shape)} and "
                f"{tuple(target.shape)}"
            )
        if self.weights is not None and self.weights.numel() != logits.shape[1]:
            raise ValueError(f"{self.weights.numel()} class weights for {logits.shape[1]} classes")

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, aux_weight={self.aux_weight}, focal_gamma={self.focal_gamma}"


def _safe_target(target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    # Ignored pixels get class 0 so that gather and one_hot stay in range; callers mask them out.
    return torch.where(valid, target, torch.zeros_like(target))


def focal_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, gamma: float) -> torch.Tensor:
    """Mean over valid pixels of ``(1 - p_t)**gamma * -log(p_t)``, ``p_t`` the true class's probability."""
    log_pt = F.log_softmax(logits, dim=1).gather(1, _safe_target(target, valid).unsqueeze(1)).squeeze(1)
    # -expm1 is exact as p_t -> 1; the clamp keeps the gradient of x**gamma finite at 0 for gamma < 1.
    one_minus_pt = (-torch.expm1(log_pt)).clamp_min(1e-12)
    per_pixel = one_minus_pt.pow(gamma) * -log_pt
    # where, not multiply: a non-finite value at an ignored pixel must not leak in as nan.
    per_pixel = torch.where(valid, per_pixel, torch.zeros_like(per_pixel))
    return per_pixel.sum() / valid.sum().clamp_min(1)


def dice_loss(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, smooth: float = DICE_SMOOTH
) -> torch.Tensor:
    """``1 -`` soft Dice over the batch's valid pixels, averaged over classes, with additive ``smooth``.

    A class absent from both the labels and the prediction scores Dice 1 thanks to ``smooth``, so an
    all-ignored batch gives 0.
    """
    classes = logits.shape[1]
    mask = valid.unsqueeze(1).to(logits.dtype)
    probs = torch.softmax(logits, dim=1) * mask
    one_hot = F.one_hot(_safe_target(target, valid), classes).permute(0, 3, 1, 2).to(logits.dtype) * mask
    dims = (0, 2, 3)
    intersection = (probs * one_hot).sum(dims)
    cardinality = probs.sum(dims) + one_hot.sum(dims)
    dice = (2 * intersection + smooth) / (cardinality + smooth)
    return 1 - dice.mean()


def build_loss(cfg: LossConfig, counts: Sequence[int] | np.ndarray | None) -> SegmentationLoss:
    """The loss that ``cfg`` describes, its class weights drawn from the train label pixel ``counts``.

    Args:
        cfg: the loss section of the training config.
        counts: train pixel counts per class (sky, star, galaxy); may be ``None`` only with
            ``class_weights: none``.

    Raises:
        ValueError: if ``counts`` is missing while weights are asked for, or invalid.
    """
    weights = None
    if cfg.class_weights != "none":
        if counts is None:
            raise ValueError(f"class_weights {cfg.class_weights!r} needs the train label pixel counts")
        weights = class_weights(counts, cfg.class_weights)
    return SegmentationLoss(cfg, weights)
