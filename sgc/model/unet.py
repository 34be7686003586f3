"""A U-Net that labels every pixel of a five-band SDSS patch as sky, star or galaxy.

The input holds each band normalised as ``(x - median) / robust_sigma``: 1.0 is the sky noise, and bright
stars reach 1e4. The data loader keeps the data linear (cheap); the model's first, fixed step is an asinh
stretch, linear within ``softening`` sky sigmas and logarithmic beyond, so the convolutions see a tamed
dynamic range.

Architecture, for ``depth`` d and ``width`` w (level ``l`` has ``w * 2**l`` channels):

* encoder levels 0..d-1: two 3x3 conv + norm + ReLU, then 2x2 max-pool;
* bottleneck (level d): two 3x3 conv + norm + ReLU;
* decoder levels d-1..0: 2x2 stride-2 transposed conv from level l+1 to l channels, concatenation with the
  encoder's level-l output (skip), two 3x3 conv + norm + ReLU;
* head: 1x1 conv to ``classes`` logits.

Every submodule sits in an ``nn.ModuleList`` or an attribute so that ``parameters()``, ``state_dict()`` and
``.to()`` see it (a 2023 predecessor kept levels in a plain list and silently trained a fraction of them).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sgc.config import NORMS, ModelConfig

MAX_GROUPS = 8


def level_channels(width: int, level: int) -> int:
    """Channels of a U-Net level: ``width`` doubled at each down-sampling step."""
    return width * 2**level


def group_count(channels: int) -> int:
    """Groups of a GroupNorm over ``channels``: 8, or the largest power of two below 8 that divides them."""
    return math.gcd(MAX_GROUPS, channels)


def make_norm(norm: str, channels: int) -> nn.Module:
    """The normalisation layer named ``norm`` for ``channels`` channels (``nn.Identity`` for "none")."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(group_count(channels), channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm {norm!r} is not one of {', '.join(NORMS)}")


class AsinhStretch(nn.Module):
    """Fixed ``softening * asinh(x / softening)``: identity near 0, ``softening * log(2x / softening)`` far.

    It has no parameters and no buffers: the softening is part of the architecture (``ModelConfig``), not a
    learned or checkpointed quantity.
    """

    def __init__(self, softening: float) -> None:
        super().__init__()
        if not softening > 0:
            raise ValueError(f"softening must be positive, got {softening}")
        self.softening = float(softening)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stretch ``x`` element-wise."""
        return self.softening * torch.asinh(x / self.softening)

    def extra_repr(self) -> str:
        return f"softening={self.softening}"


class DoubleConv(nn.Sequential):
    """Two 3x3 conv + norm + ReLU; the convs drop their bias where a norm follows (its shift replaces it)."""

    def __init__(self, in_channels: int, out_channels: int, norm: str) -> None:
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            make_norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
            make_norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net from ``in_channels`` bands to ``classes`` per-pixel logits (see the module docstring).

    Args:
        cfg: depth (down-sampling steps; H and W must be divisible by ``2**depth``), width (channels of
            the first level, doubled at each step), norm ("batch", "group" with up to 8 groups, "instance"
            affine, or "none") and softening (the input stretch is linear within this many sky sigmas).
        in_channels: input bands (5: u, g, r, i, z).
        classes: output classes (3: sky, star, galaxy).

    Raises:
        ValueError: on fewer than one input channel or class.
    """

    def __init__(self, cfg: ModelConfig | None = None, in_channels: int = 5, classes: int = 3) -> None:
        super().__init__()
        cfg = cfg or ModelConfig()
        _check_sizes(in_channels, classes)
        depth, width, norm = cfg.depth, cfg.width, cfg.norm
        self.cfg = cfg
        self.in_channels = in_channels
        self.classes = classes
        self.depth = depth
        self.stretch = AsinhStretch(cfg.softening)
        self.down = nn.ModuleList()
        chans_in = in_channels
        for level in range(depth + 1):  # the last one is the bottleneck
            self.down.append(DoubleConv(chans_in, level_channels(width, level), norm))
            chans_in = level_channels(width, level)
        self.pool = nn.MaxPool2d(2)
        # up[i] and dec[i] rebuild level depth-1-i, coarsest first.
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for level in reversed(range(depth)):
            chans = level_channels(width, level)
            self.up.append(nn.ConvTranspose2d(level_channels(width, level + 1), chans, 2, stride=2))
            self.dec.append(DoubleConv(2 * chans, chans, norm))
        self.head = nn.Conv2d(width, classes, 1)
        # Set by sgc.model.runtime.prepare with the weights' memory format: the input is then converted
        # too, so that every caller (trainer, tiles, explain) feeds the NHWC kernels without copies inside.
        self.channels_last = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes, H, W) of a batch (N, in_channels, H, W) of sky-noise-normalised bands.

        Raises:
            ValueError: if ``x`` is not 4-D with ``in_channels`` channels, or H or W is not divisible by
                ``2**depth``.
        """
        self._check_input(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.stretch(x)
        skips: list[torch.Tensor] = []
        for level, block in enumerate(self.down):
            if level > 0:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck output is x itself, not a skip
        for up, dec in zip(self.up, self.dec, strict=True):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        step = 2**self.depth
        height, width = x.shape[-2:]
        if height % step or width % step:
            raise ValueError(
                f"input H x W = {height} x {width} must be divisible by 2**depth = {step} "
                f"(depth {self.depth}); crop or pad the patch"
            )


def _check_sizes(in_channels: int, classes: int) -> None:
    for name, value in {"in_channels": in_channels, "classes": classes}.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameter values of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _double_conv_parameters(in_channels: int, out_channels: int, norm: str) -> int:
    bias = out_channels if norm == "none" else 0
    norm_params = 0 if norm == "none" else 2 * out_channels  # affine scale and shift
    first = 9 * in_channels * out_channels + bias + norm_params
    second = 9 * out_channels * out_channels + bias + norm_params
    return first + second


def expected_parameters(cfg: ModelConfig, in_channels: int = 5, classes: int = 3) -> int:
    """Trainable parameters of ``UNet(cfg, in_channels, classes)``, by arithmetic alone.

    Computed by arithmetic rather than by building the model, so that a test comparing it with
    :func:`count_parameters` catches layers that were built but not registered (or registered twice).
    """
    _check_sizes(in_channels, classes)
    depth, width, norm = cfg.depth, cfg.width, cfg.norm
    total = 0
    chans_in = in_channels
    for level in range(depth + 1):
        total += _double_conv_parameters(chans_in, level_channels(width, level), norm)
        chans_in = level_channels(width, level)
    for level in range(depth):
        chans, coarse = level_channels(width, level), level_channels(width, level + 1)
        total += 4 * coarse * chans + chans  # 2x2 transposed conv with bias
        total += _double_conv_parameters(2 * chans, chans, norm)
    total += width * classes + classes  # 1x1 head with bias
    return total
