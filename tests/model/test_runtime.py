"""How the model runs: the autocast dtype of each precision, channels-last and compiled wrappers that compute
what the plain model computes."""

from __future__ import annotations

import pytest
import torch

from sgc.config import ModelConfig, PredictConfig, TrainConfig
from sgc.errors import SgcError
from sgc.model.runtime import as_input, autocast, autocast_dtype, prepare, use_channels_last
from sgc.model.unet import UNet


def _pair(norm: str = "batch") -> tuple[UNet, UNet]:
    """Two U-Nets with the same weights, the second prepared for channels-last."""
    torch.manual_seed(0)
    plain = UNet(ModelConfig(depth=2, width=8, norm=norm))
    nhwc = UNet(ModelConfig(depth=2, width=8, norm=norm))
    nhwc.load_state_dict(plain.state_dict())
    prepare(nhwc, channels_last=True)
    return plain, nhwc


def test_autocast_dtype_of_each_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert autocast_dtype(cpu, "fp32") is None
    assert autocast_dtype(cpu, "off") is None  # train.amp's old name for it
    assert autocast_dtype(cpu, "auto") is None  # no native bf16 on most CPUs: emulated, many times slower
    assert autocast_dtype(cpu, "bf16") is torch.bfloat16
    assert autocast_dtype(cpu, "fp16") is torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype(gpu, "auto") is torch.bfloat16
    assert autocast_dtype(gpu, "bf16") is torch.bfloat16
    assert autocast_dtype(gpu, "fp32") is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast_dtype(gpu, "auto") is None
    assert autocast_dtype(gpu, "fp16") is torch.float16
    with pytest.raises(SgcError, match="does not support bfloat16"):
        autocast_dtype(gpu, "bf16")
    with pytest.raises(SgcError, match="unknown precision"):
        autocast_dtype(cpu, "fp8")


def test_config_keys_and_the_old_amp_name() -> None:
    assert TrainConfig(amp="off").precision == "fp32"
    assert TrainConfig.model_validate({"amp": "bf16"}).precision == "bf16"
    assert "amp" not in TrainConfig().model_dump()
    train, predict = TrainConfig(), PredictConfig()
    assert (train.precision, train.channels_last, train.compile) == ("auto", "auto", False)
    assert (predict.precision, predict.channels_last, predict.compile) == ("auto", True, False)
    assert use_channels_last("auto", "cuda") and not use_channels_last("auto", "cpu")
    assert use_channels_last(True, "cpu") and not use_channels_last(False, "cuda")


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_channels_last_computes_what_the_contiguous_model_computes(norm: str) -> None:
    plain, nhwc = _pair(norm)
    assert nhwc.down[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 5, 32, 48) * 3
    out = nhwc(x)  # a contiguous input is converted by the model itself
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, plain(x), atol=1e-5, rtol=1e-5)
    # And the gradients of every weight.
    target = torch.randint(0, 3, (2, 32, 48))
    for model in (plain, nhwc):
        torch.nn.functional.cross_entropy(model(as_input(x, model is nhwc)), target).backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), nhwc.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad.contiguous(), atol=1e-4, rtol=1e-4, msg=name)


def test_bf16_autocast_agrees_with_fp32_on_most_pixels() -> None:
    plain, _ = _pair()
    plain.eval()
    torch.manual_seed(1)
    x = torch.randn(2, 5, 64, 64) * 5
    with torch.no_grad():
        full = torch.softmax(plain(x), dim=1)
        with autocast("cpu", torch.bfloat16):
            logits = plain(x)
        half = torch.softmax(logits.float(), dim=1)
    assert logits.dtype == torch.bfloat16
    assert (half - full).abs().max() < 0.05  # 8 bits of mantissa
    assert (half.argmax(1) == full.argmax(1)).float().mean() > 0.97


def test_a_compiled_model_reads_as_the_model() -> None:
    # Compilation itself is lazy (and takes minutes on these CPUs): only the wrapper is checked here;
    # bench/train.py and bench/predict.py run it.
    plain, _ = _pair()
    compiled = prepare(plain, compile=True)
    assert compiled is not plain
    assert (compiled.depth, compiled.classes, compiled.channels_last) == (2, 3, False)
    assert compiled.state_dict().keys() == {f"_orig_mod.{k}" for k in plain.state_dict()}
