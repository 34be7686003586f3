"""Training with the speed options (channels-last, autocast precisions): the same model as without them,
within float rounding, and a run may be resumed with other speed options."""

from __future__ import annotations

from pathlib import Path

import torch

from sgc.train.checkpoint import load_checkpoint
from sgc.train.loop import LAST, train
from tests.train.conftest import tiny_config


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_checkpoint(run / LAST)["model"].items() if v.dtype.is_floating_point}


def test_channels_last_trains_the_same_weights(tiny_run, tmp_path: Path) -> None:
    store, plan = tiny_run
    model = {"depth": 2, "width": 4, "norm": "batch"}
    train(store, plan, tmp_path / "nchw", tiny_config(epochs=1, channels_last=False, model=model))
    train(store, plan, tmp_path / "nhwc", tiny_config(epochs=1, channels_last=True, model=model))
    plain, nhwc = _weights(tmp_path / "nchw"), _weights(tmp_path / "nhwc")
    for key, value in plain.items():
        torch.testing.assert_close(nhwc[key].contiguous(), value, atol=1e-4, rtol=1e-3, msg=key)


def test_bf16_and_fp16_train_close_to_fp32(tiny_run, tmp_path: Path) -> None:
    store, plan = tiny_run
    losses = {}
    for precision in ("fp32", "bf16", "fp16"):
        run = tmp_path / precision
        result = train(store, plan, run, tiny_config(epochs=2, max_steps=4, precision=precision))
        losses[precision] = [row["train_loss"] for row in result.history]
        # fp16 alone scales its loss (small gradients underflow it), and checkpoints the scale.
        assert ("scaler" in load_checkpoint(run / LAST)) == (precision == "fp16")
    for precision in ("bf16", "fp16"):
        for low, full in zip(losses[precision], losses["fp32"], strict=True):
            assert abs(low - full) < 0.05 * full, (precision, losses)


def test_a_run_resumes_with_other_speed_options_and_the_old_amp_name(tiny_run, tmp_path: Path) -> None:
    store, plan = tiny_run
    train(store, plan, tmp_path / "run", tiny_config(epochs=1, channels_last=False, amp="off"))
    checkpoint = load_checkpoint(tmp_path / "run" / LAST)
    # As a checkpoint written before `precision` existed names it.
    config = {
        k: v for k, v in checkpoint["config"].items() if k not in ("precision", "channels_last", "compile")
    }
    assert checkpoint["config"]["precision"] == "fp32"
    checkpoint["config"] = {**config, "amp": "off"}
    torch.save(checkpoint, tmp_path / "run" / LAST)
    # Finished: resuming it does nothing, but the old name and the other speed options are accepted.
    result = train(store, plan, tmp_path / "run", tiny_config(epochs=1, precision="fp32"), resume=True)
    assert result.epochs == 1 and result.history == []
