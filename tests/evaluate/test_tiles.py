"""Tiled inference: stitched tiles equal whole-image inference; the receptive radius bounds the reach."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sgc.config import ModelConfig
from sgc.evaluate.tiles import predict_array, predict_whole, symmetric_softmax, tile_origins
from sgc.model.unet import UNet


def _model(depth: int, norm: str = "batch", width: int = 8) -> UNet:
    torch.manual_seed(depth)
    model = UNet(ModelConfig(depth=depth, width=width, norm=norm))
    for module in model.modules():  # batch statistics other than 0 and 1, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize(("depth", "tile"), [(2, 96), (2, 100), (3, 160), (3, 200), (1, 37)])
def test_stitched_tiles_equal_whole_image_inference(depth: int, tile: int) -> None:
    # Tiles of 96-200 pixels, none a multiple of the stores' 256-pixel chunks, on an image whose sides are
    # multiples of nothing: the border is kept and no seam shows.
    model = _model(depth)
    image = np.random.default_rng(depth).normal(size=(5, 301, 437)).astype(np.float32)
    stitched = predict_array(model, image, tile, model.cfg.halo, batch=3)
    whole = predict_whole(model, image)
    assert stitched.shape == (3, 301, 437)
    np.testing.assert_allclose(stitched, whole, atol=1e-4, rtol=0)
    np.testing.assert_allclose(stitched.sum(axis=0), 1.0, atol=1e-5)


def test_test_time_augmentation_averages_the_symmetries_and_commutes_with_them() -> None:
    model = _model(2)
    # Sides on the pooling grid: whole-image inference of a flipped image needs no padding either.
    image = np.random.default_rng(3).normal(size=(5, 200, 236)).astype(np.float32)
    stitched = predict_array(model, image, 96, model.cfg.halo, batch=3, symmetries=8)
    expected = np.zeros_like(stitched)
    for transpose in (False, True):
        for flips in ((), (1,), (2,), (1, 2)):
            x = np.flip(image.transpose(0, 2, 1) if transpose else image, flips)
            prob = np.flip(predict_whole(model, np.ascontiguousarray(x)), flips)
            expected += prob.transpose(0, 2, 1) if transpose else prob
    np.testing.assert_allclose(stitched, expected / 8, atol=1e-4, rtol=0)
    # Averaged over the whole group, the prediction of a rotated image is the rotated prediction.
    turned = predict_array(
        model, np.ascontiguousarray(np.rot90(image, axes=(1, 2))), 96, model.cfg.halo, symmetries=8
    )
    np.testing.assert_allclose(turned, np.rot90(stitched, axes=(1, 2)), atol=1e-4, rtol=0)
    assert np.abs(predict_array(model, image, 96, model.cfg.halo) - stitched).max() > 1e-3
    with pytest.raises(ValueError, match="symmetries 3"):
        symmetric_softmax(model, torch.zeros(1, 5, 16, 16), 3)


def test_tiles_without_a_halo_show_seams() -> None:
    # The check above can fail: tiles whose cut edges count show the zero padding there (measured 3.5e-3).
    model = _model(3)
    image = np.random.default_rng(0).normal(size=(5, 300, 300)).astype(np.float32)
    stitched = predict_array(model, image, 96, halo=0)
    assert np.abs(stitched - predict_whole(model, image)).max() > 1e-3


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_the_receptive_radius_bounds_how_far_an_input_pixel_reaches(depth: int) -> None:
    model = _model(depth, norm="none").double()
    n = 64 + 4 * model.cfg.receptive_radius
    x = torch.randn(1, 5, n, n, dtype=torch.float64)
    reach = 0
    with torch.no_grad():
        base = model(x)
        for py, px in ((n // 2, n // 2), (n // 2 - 1, n // 2 + 3), (n // 2 + 5, n // 2 - 2)):
            bumped = x.clone()
            bumped[0, :, py, px] += 10.0
            changed = ((model(bumped) - base).abs().amax(dim=1)[0] > 0).numpy()
            ys, xs = np.nonzero(changed)
            reach = max(reach, int(np.abs(ys - py).max()), int(np.abs(xs - px).max()))
    assert 0 < reach <= model.cfg.receptive_radius
    assert model.cfg.halo % 2**depth == 0 and model.cfg.halo >= model.cfg.receptive_radius


@settings(max_examples=60, deadline=None)
@given(
    step_log=st.integers(0, 4),
    size_steps=st.integers(1, 120),
    tile_steps=st.integers(1, 40),
    halo=st.integers(0, 60),
)
def test_tiles_start_on_the_pooling_grid_end_at_the_edge_and_leave_every_pixel_an_inside(
    step_log: int, size_steps: int, tile_steps: int, halo: int
) -> None:
    step = 2**step_log
    size, tile = size_steps * step, tile_steps * step
    try:
        origins = tile_origins(size, tile, halo, step)
    except ValueError:
        assert tile - 2 * halo - step < step and size > tile
        return
    assert all(o % step == 0 for o in origins) and origins[0] == 0
    assert origins[-1] + min(tile, size) == size
    # Every pixel is at least `halo` from the cut edges of some tile (the image's own edges are no cut).
    for p in range(size):
        assert any(
            (o == 0 or p - o >= halo) and (o + tile >= size or o + tile - 1 - p >= halo) and o <= p < o + tile
            for o in origins
        ), p


def test_channels_last_and_bf16_tiles_agree_with_fp32() -> None:
    from sgc.model.runtime import prepare

    model = _model(2)
    image = np.random.default_rng(5).normal(size=(5, 150, 170)).astype(np.float32) * 4
    full = predict_array(model, image, 96, model.cfg.halo, batch=2)
    nhwc = _model(2)
    prepare(nhwc, channels_last=True)
    np.testing.assert_allclose(predict_array(nhwc, image, 96, model.cfg.halo, batch=2), full, atol=1e-5)
    half = predict_array(model, image, 96, model.cfg.halo, batch=2, amp=torch.bfloat16)
    assert np.abs(half - full).max() < 0.05  # bf16 keeps 8 bits of mantissa
    assert np.mean(half.argmax(0) == full.argmax(0)) > 0.97
