"""The U-Net: parameter count as configured, every layer trained, checkpoints, shapes and the stretch."""

from __future__ import annotations

import io
import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sgc.config import NORMS, ModelConfig
from sgc.model.unet import AsinhStretch, UNet, count_parameters, expected_parameters


def _tiny(norm: str = "batch", depth: int = 2, width: int = 4, seed: int = 0, **kwargs: object) -> UNet:
    torch.manual_seed(seed)
    return UNet(ModelConfig(depth=depth, width=width, norm=norm, **kwargs))


@pytest.mark.parametrize(("depth", "width", "norm"), list(itertools.product([1, 2, 3, 4], [4, 12], NORMS)))
def test_parameter_count_matches_architecture(depth: int, width: int, norm: str) -> None:
    cfg = ModelConfig(depth=depth, width=width, norm=norm)
    model = UNet(cfg)
    assert count_parameters(model) == expected_parameters(cfg)
    # Every level is registered: the encoder holds depth + 1 blocks, the decoder depth of each kind.
    assert (len(model.down), len(model.up), len(model.dec)) == (depth + 1, depth, depth)


def test_parameter_count_other_bands_and_classes() -> None:
    cfg = ModelConfig(depth=2, width=8, norm="group")
    model = UNet(cfg, in_channels=3, classes=4)
    assert count_parameters(model) == expected_parameters(cfg, in_channels=3, classes=4)


def test_default_model_parameter_count() -> None:
    # By hand, depth 4, width 32, batch norm (convs without bias, 2c norm parameters per conv):
    # encoder levels 10,784 + 55,552 + 221,696 + 885,760 + 3,540,992 = 4,714,784;
    # decoder (4 c_{l+1} c_l + c_l up, 27 c_l^2 + 4 c_l convs) 36,000 + 143,680 + 574,080 + 2,295,040
    # = 3,048,800; head 32 * 3 + 3 = 99.
    assert expected_parameters(ModelConfig()) == 7_763_683
    assert count_parameters(UNet()) == 7_763_683


def test_model_follows_config() -> None:
    cfg = ModelConfig(depth=3, width=8, norm="instance", softening=5.0)
    model = UNet(cfg)
    assert count_parameters(model) == expected_parameters(cfg)
    assert model.stretch.softening == 5.0
    assert isinstance(model.down[0][1], torch.nn.InstanceNorm2d)
    assert model.down[0][1].affine


def test_group_norm_uses_at_most_eight_groups() -> None:
    model = UNet(ModelConfig(depth=1, width=12, norm="group"))
    groups = [m.num_groups for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert set(groups) == {4, 8}  # 12 channels: 4 groups; 24 channels: 8


@pytest.mark.parametrize("norm", NORMS)
def test_every_parameter_gets_a_gradient(norm: str) -> None:
    model = _tiny(norm, depth=3).train()
    x = torch.randn(2, 5, 32, 32) * 10
    out = model(x)
    (out * torch.randn_like(out)).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("norm", NORMS)
def test_state_dict_round_trip_gives_identical_outputs(norm: str) -> None:
    model = _tiny(norm, seed=1).train()
    with torch.no_grad():
        for _ in range(2):  # move the batch-norm running statistics off their initial values
            model(torch.randn(2, 5, 16, 16) * 3 + 1)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = _tiny(norm, seed=2)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(3, 5, 16, 16) * 5
    model.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))


@pytest.mark.parametrize(("depth", "height", "width"), [(1, 16, 32), (2, 16, 48), (3, 32, 16)])
def test_output_shape(depth: int, height: int, width: int) -> None:
    model = _tiny(depth=depth).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 5, height, width))
    assert out.shape == (2, 3, height, width)
    assert out.dtype == torch.float32


@pytest.mark.parametrize(("height", "width"), [(30, 32), (32, 20), (8, 8)])
def test_size_not_divisible_raises(height: int, width: int) -> None:
    model = _tiny(depth=4)
    with pytest.raises(ValueError, match="divisible by 2\\*\\*depth = 16"):
        model(torch.randn(1, 5, height, width))


def test_wrong_band_count_raises() -> None:
    with pytest.raises(ValueError, match="expected input"):
        _tiny()(torch.randn(1, 4, 16, 16))


def test_bad_constructor_arguments_raise() -> None:
    with pytest.raises(ValueError, match="norm"):
        UNet(ModelConfig(norm="layer"))
    with pytest.raises(ValueError, match="depth"):
        UNet(ModelConfig(depth=0))
    with pytest.raises(ValueError, match="softening"):
        UNet(ModelConfig(softening=0.0))
    with pytest.raises(ValueError, match="classes"):
        UNet(classes=0)


def test_stretch_has_no_parameters_or_buffers() -> None:
    stretch = AsinhStretch(3.0)
    assert list(stretch.parameters()) == []
    assert list(stretch.buffers()) == []
    assert all(not name.startswith("stretch") for name in _tiny().state_dict())


def test_stretch_is_identity_near_zero_and_logarithmic_far() -> None:
    softening = 3.0
    stretch = AsinhStretch(softening)
    small = torch.tensor([-0.01, -1e-4, 0.0, 1e-4, 0.01], dtype=torch.float64)
    torch.testing.assert_close(stretch(small), small, rtol=1e-5, atol=0)
    large = torch.tensor([1e3, 1e4, 1e5], dtype=torch.float64)
    far = softening * torch.log(2 * large / softening)
    torch.testing.assert_close(stretch(large), far, rtol=1e-6, atol=0)
    # Logarithmic: every factor of ten adds the same step.
    steps = stretch(large).diff()
    torch.testing.assert_close(steps, torch.full_like(steps, softening * math.log(10)), rtol=1e-6, atol=0)
    # A 1e4-sigma star ends up at about 29 sigma-equivalents.
    assert 25 < stretch(torch.tensor(1e4)).item() < 30


@settings(max_examples=50, deadline=None)
@given(
    x=st.floats(-1e6, 1e6, allow_nan=False),
    y=st.floats(-1e6, 1e6, allow_nan=False),
    softening=st.floats(0.1, 100),
)
def test_stretch_is_odd_monotone_and_shrinks(x: float, y: float, softening: float) -> None:
    stretch = AsinhStretch(softening)
    sx, sy = (stretch(torch.tensor(v, dtype=torch.float64)).item() for v in (x, y))
    assert stretch(torch.tensor(-x, dtype=torch.float64)).item() == pytest.approx(-sx)
    assert abs(sx) <= abs(x) + 1e-12
    if x < y:
        assert sx <= sy


def test_forward_feeds_the_stretched_input_to_the_first_layer() -> None:
    model = _tiny().eval()
    seen: list[torch.Tensor] = []
    model.down[0].register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].clone()))
    x = torch.randn(1, 5, 16, 16) * 1e4
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(seen[0], 3.0 * torch.asinh(x / 3.0))
    assert torch.isfinite(out).all()
