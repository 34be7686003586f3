"""The loss: ignore pixels, DDP-friendly plain means, hand-computed weights, all-ignore batches, Dice."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own idiom
from hypothesis import given, settings
from hypothesis import strategies as st

from sgc.classes import IGNORE
from sgc.config import LOSS_KINDS, LossConfig
from sgc.model.losses import IGNORE_INDEX, SegmentationLoss, build_loss, class_weights, dice_loss

WEIGHTS = torch.tensor([0.4, 3.0, 9.0])


def make_loss(
    kind: str = "ce+dice", weights: torch.Tensor | None = None, **settings: float
) -> SegmentationLoss:
    return SegmentationLoss(LossConfig(kind=kind, **settings), weights)


def _batch(seed: int, n: int = 2, size: int = 8, ignore: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 3, size, size, generator=gen) * 3
    target = torch.randint(0, 3, (n, size, size), generator=gen)
    target[torch.rand(n, size, size, generator=gen) < ignore] = IGNORE_INDEX
    return logits, target


def test_ignore_index_matches_the_labels() -> None:
    assert IGNORE_INDEX == IGNORE == 255


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_ignored_pixels_do_not_change_the_loss(kind: str) -> None:
    loss = make_loss(kind, WEIGHTS)
    logits, target = _batch(0, ignore=0.3)
    ignored = (target == IGNORE_INDEX).unsqueeze(1).expand_as(logits)
    scrambled = torch.where(ignored, torch.randn_like(logits) * 100, logits)
    torch.testing.assert_close(loss(scrambled, target), loss(logits, target))
    # And the loss is that of the valid pixels alone, laid out as one row.
    valid = target != IGNORE_INDEX
    only_valid = logits.permute(1, 0, 2, 3)[:, valid].unsqueeze(0).unsqueeze(2)
    torch.testing.assert_close(loss(only_valid, target[valid].view(1, 1, -1)), loss(logits, target))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    half=st.integers(1, 3),
    size=st.integers(1, 8),
    kind=st.sampled_from(["ce", "ce+focal"]),
    gamma=st.floats(0.0, 4.0),
    ignore=st.sampled_from([0.0, 0.3]),
)
def test_mean_of_halves_equals_whole_batch(
    seed: int, half: int, size: int, kind: str, gamma: float, ignore: float
) -> None:
    loss = make_loss(kind, WEIGHTS, aux_weight=0.7, focal_gamma=gamma)
    logits, target = _batch(seed, n=2 * half, size=size)
    # Each half ignores the same pixels, so both hold equally many valid ones (as with no ignores at all).
    mask = torch.rand(half, size, size, generator=torch.Generator().manual_seed(seed + 1)) < ignore
    target[torch.cat([mask, mask])] = IGNORE_INDEX
    halves = (loss(logits[:half], target[:half]) + loss(logits[half:], target[half:])) / 2
    torch.testing.assert_close(halves, loss(logits, target), rtol=1e-5, atol=1e-6)


def test_torch_weighted_mean_would_break_the_halves_property() -> None:
    # The control: halves with different class mixes, which torch's sum(w*ce)/sum(w) weighs unequally.
    logits = torch.tensor([2.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(2, 3, 1, 2)
    target = torch.tensor([[[0, 0]], [[2, 2]]])
    whole = F.cross_entropy(logits, target, weight=WEIGHTS)
    halves = (
        F.cross_entropy(logits[:1], target[:1], weight=WEIGHTS)
        + F.cross_entropy(logits[1:], target[1:], weight=WEIGHTS)
    ) / 2
    assert not torch.allclose(whole, halves)


def test_weighted_cross_entropy_by_hand() -> None:
    # Pixel a: uniform logits, true class 1: ce = ln 3.  Pixel b: probabilities (1/4, 1/2, 1/4), true
    # class 0: ce = ln 4.  Pixel c is ignored.  Weights (0.5, 2, 1): loss = (2 ln 3 + 0.5 ln 4) / 2.
    logits = torch.tensor([[0.0, 0.0, 0.0], [0.0, math.log(2), 0.0], [9.0, -9.0, 0.0]]).T.reshape(1, 3, 1, 3)
    target = torch.tensor([[[1, 0, IGNORE_INDEX]]])
    loss = make_loss("ce", torch.tensor([0.5, 2.0, 1.0]))(logits, target)
    assert loss.item() == pytest.approx((2 * math.log(3) + 0.5 * math.log(4)) / 2, rel=1e-6)
    # Not torch's weighted mean, which would divide by the weight sum 2.5.
    assert loss.item() != pytest.approx((2 * math.log(3) + 0.5 * math.log(4)) / 2.5, rel=1e-3)


def test_focal_by_hand() -> None:
    # Pixel a: p_t = 1/3, so (2/3)^2 ln 3; pixel b: p_t = 1/2, so (1/2)^2 ln 2; CE unweighted.
    logits = torch.tensor([[0.0, 0.0, 0.0], [0.0, math.log(2), 0.0]]).T.reshape(1, 3, 1, 2)
    target = torch.tensor([[[1, 1]]])
    loss = make_loss("ce+focal", aux_weight=1.0, focal_gamma=2.0)(logits, target)
    ce = (math.log(3) + math.log(2)) / 2
    focal = ((2 / 3) ** 2 * math.log(3) + 0.25 * math.log(2)) / 2
    assert loss.item() == pytest.approx(ce + focal, rel=1e-6)


def test_focal_with_gamma_zero_is_cross_entropy() -> None:
    logits, target = _batch(3, ignore=0.2)
    ce = make_loss("ce")(logits, target)
    torch.testing.assert_close(make_loss("ce+focal", focal_gamma=0.0)(logits, target), 2 * ce)


def test_class_weights_by_hand() -> None:
    counts = [900, 90, 10]
    # inverse: w ~ (1, 10, 90); mean over pixels 0.9*1 + 0.09*10 + 0.01*90 = 2.7, so w = (1, 10, 90) / 2.7.
    expected = torch.tensor([10 / 27, 100 / 27, 900 / 27])
    torch.testing.assert_close(class_weights(counts, "inverse"), expected)
    # sqrt-inverse: w_c = N / (sqrt(n_c) * sum_k sqrt(n_k)), sum_k sqrt(n_k) = 30 + 9.48683 + 3.16228.
    expected = torch.tensor([0.7815716, 2.4715464, 7.4146392])
    torch.testing.assert_close(class_weights(counts, "sqrt-inverse"), expected)
    torch.testing.assert_close(class_weights(counts, "none"), torch.ones(3))


@pytest.mark.parametrize("kind", ["inverse", "sqrt-inverse", "none"])
@pytest.mark.parametrize("counts", [[900, 90, 10], [10**9, 3, 0], [0, 5, 7], [1, 1, 1]])
def test_class_weights_have_pixel_mean_one_and_stay_finite(kind: str, counts: list[int]) -> None:
    weights = class_weights(counts, kind)
    assert weights.dtype == torch.float32 and torch.isfinite(weights).all()
    weights = weights.double()
    n = torch.tensor(counts, dtype=torch.float64)
    assert (n * weights).sum().item() / n.sum().item() == pytest.approx(1.0, rel=1e-6)
    for absent in torch.nonzero(n == 0).flatten():
        assert weights[absent] == weights[n > 0].max()


def test_class_weights_of_no_pixels_are_uniform() -> None:
    torch.testing.assert_close(class_weights([0, 0, 0], "inverse"), torch.ones(3))


@pytest.mark.parametrize(("counts", "kind"), [([1, -1, 2], "inverse"), ([], "inverse"), ([1, 2], "log")])
def test_class_weights_reject_bad_input(counts: list[int], kind: str) -> None:
    with pytest.raises(ValueError):
        class_weights(counts, kind)


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_all_ignored_batch_gives_zero_and_backward_works(kind: str) -> None:
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), IGNORE_INDEX)
    loss = make_loss(kind, WEIGHTS)(logits, target)
    assert loss.item() == 0.0
    assert loss.grad_fn is not None
    loss.backward()
    assert logits.grad is not None
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_dice_of_a_perfect_prediction_is_zero() -> None:
    _, target = _batch(4, ignore=0.2)
    logits = F.one_hot(torch.where(target == IGNORE_INDEX, 0, target), 3).permute(0, 3, 1, 2).float() * 50
    assert dice_loss(logits, target, target != IGNORE_INDEX).item() < 1e-6
    assert make_loss("ce+dice")(logits, target).item() < 1e-6
    # And a confidently wrong one is near 1.
    assert dice_loss(logits.roll(1, dims=1), target, target != IGNORE_INDEX).item() > 0.95


def test_loss_is_float32_for_bf16_logits() -> None:
    logits, target = _batch(5)
    loss = make_loss("ce+dice", WEIGHTS)(logits.bfloat16(), target)
    assert loss.dtype == torch.float32


def test_mismatched_shapes_raise() -> None:
    logits, target = _batch(6)
    with pytest.raises(ValueError, match="expected logits"):
        make_loss()(logits, target[:, :4])
    with pytest.raises(ValueError, match="class weights"):
        make_loss("ce", torch.ones(4))(logits, target)
    with pytest.raises(ValueError, match="kind"):
        make_loss("dice")


def test_build_loss_from_config() -> None:
    cfg = LossConfig(kind="ce+focal", class_weights="inverse", aux_weight=0.5, focal_gamma=1.5)
    loss = build_loss(cfg, [900, 90, 10])
    assert (loss.kind, loss.aux_weight, loss.focal_gamma) == ("ce+focal", 0.5, 1.5)
    torch.testing.assert_close(loss.weights, class_weights([900, 90, 10], "inverse"))
    assert build_loss(LossConfig(class_weights="none"), None).weights is None
    with pytest.raises(ValueError, match="counts"):
        build_loss(LossConfig(), None)
