"""How a model runs rather than what it computes: memory format, compilation and autocast precision.

Three options, the same for training (``train.*``) and prediction (``predict.*``):

* ``channels_last``: the weights and every batch in NHWC order. Convolutions in oneDNN (CPU) and cuDNN
  (GPU, with tensor cores) run fastest on it; the maths is unchanged, outputs agree to float rounding.
* ``compile``: :func:`torch.compile` (inductor), which fuses the norm and ReLU around each convolution. It
  needs a C++ compiler on CPU and costs seconds to minutes of compilation in each process; the maths is
  unchanged.
* ``precision``: the dtype of autocast. ``fp32`` is none; ``bf16`` keeps fp32's range with 8 bits of
  mantissa, so probabilities move by about 1e-2 and a few pixels near a class boundary change class;
  ``fp16`` needs a gradient scaler in training; ``auto`` is bf16 on a GPU that supports it and fp32
  elsewhere, since a CPU without native bf16 instructions (AVX512-BF16, AMX) emulates it, many times slower.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from sgc.errors import SgcError

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")


def autocast_dtype(device: torch.device | str, precision: str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device``, or None for full precision.

    Args:
        device: the device the model runs on.
        precision: "fp32" (None), "bf16", "fp16", or "auto" (bf16 on a CUDA device that supports it, else
            None). The legacy "off" of ``train.amp`` means fp32.

    Raises:
        SgcError: an unknown precision, or "bf16" on a CUDA device without bfloat16.
    """
    device = torch.device(device)
    precision = "fp32" if precision == "off" else precision
    if precision not in PRECISIONS:
        raise SgcError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        if device.type == "cuda" and not cuda_bf16:
            raise SgcError(f"precision 'bf16' asked for, but {device} does not support bfloat16")
        return torch.bfloat16
    return torch.bfloat16 if cuda_bf16 else None


def use_channels_last(setting: bool | str, device: torch.device | str) -> bool:
    """Whether ``setting`` (True, False or "auto": on CUDA only) means channels-last on ``device``.

    "auto" leaves it off on CPU: measured on AVX2 cores, oneDNN's NHWC kernels speed the forward pass
    (inference 1.5-1.65x) but slow the default model's training step (0.7x), its backward convolutions.
    """
    if setting == "auto":
        return torch.device(device).type == "cuda"
    return bool(setting)


def autocast(device: torch.device | str, dtype: torch.dtype | None) -> AbstractContextManager:
    """Autocast to ``dtype`` on ``device``'s type, or nothing for None."""
    return torch.autocast(torch.device(device).type, dtype=dtype) if dtype is not None else nullcontext()


def prepare(model: nn.Module, channels_last: bool = False, compile: bool = False) -> nn.Module:
    """``model`` in the memory format asked for, and compiled if asked: the module to call.

    The model's own parameters are converted in place (so its ``state_dict`` and optimiser see the same
    tensors); the compiled wrapper shares them and forwards attribute reads (``depth``, ``classes``) to it.
    A model with a ``channels_last`` attribute (:class:`~sgc.model.unet.UNet`) also converts its input, so
    callers need not.
    """
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if hasattr(model, "channels_last"):
        model.channels_last = channels_last
    return torch.compile(model) if compile else model


def as_input(batch: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A 4-D batch in the memory format the model was prepared for (a no-op when it already is)."""
    return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch
