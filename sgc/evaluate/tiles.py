"""Inference on whole images from overlapping tiles, stitched so that no seam and no border is lost.

A U-Net's output at a pixel depends on the input within its receptive field, and on where the pooling
grid falls. So a tile gives exactly the whole-image output at every pixel that is at least the receptive
radius away from the tile's cut edges, provided the tile's origin is a multiple of ``2**depth`` (the pooling
grid then falls on the same pixels). The image is padded (with zeros: the sky median, after normalisation)
to a multiple of ``2**depth`` as whole-image inference must pad it too, and cut into tiles on that padded
grid: origins on multiples of ``2**depth``, the last tile ending at the padded edge.

Each tile's output is weighted by a profile that is zero within ``halo`` pixels of a cut edge (never of the
image's own edge), rises linearly over the rest of the overlap and is one inside; the stitched output is
the weighted sum over tiles divided by the sum of weights. With ``halo`` at least the receptive radius every
weighted pixel is the whole-image value, so the stitched probabilities equal whole-image inference up to
float rounding (tested), and the blend hides nothing: it only averages equal values. Models normalised over
the image (group or instance norm) see other statistics in a tile and are approximated, not reproduced.

Tiles go through the model in batches of ``batch``. With ``symmetries`` above one (test-time augmentation),
each batch also goes through flipped (2, 4) and transposed (8) copies, their probabilities turned back and
averaged: the image's eight symmetries are those the training augmentation draws from, and the sky has
no preferred orientation. A flipped or transposed tile on the pooling grid is still on it, so the stitching
stays exact for each symmetry.

With ``amp`` (an autocast dtype, :mod:`sgc.model.runtime`) the forward passes run in it and the softmax in
float32; bf16 moves probabilities by about 1e-2 and so no longer reproduces whole-image inference exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from sgc.model.runtime import autocast
from sgc.windows import round_up


def tile_origins(size: int, tile: int, halo: int, step: int) -> list[int]:
    """Origins of the tiles along one axis of a padded image of ``size`` (a multiple of ``step``).

    Neighbouring tiles overlap by at least ``2 * halo + step`` pixels, so every pixel is at least ``halo``
    from the cut edges of some tile; origins are multiples of ``step`` and the last tile ends at ``size``.

    Args:
        size: the padded image's length along the axis.
        tile: the tile's edge (a multiple of ``step``).
        halo: the pixels a tile's prediction drops at each cut edge.
        step: the pooling grid, ``2**depth``.

    Raises:
        ValueError: if ``tile`` is too small for the halo.
    """
    if size <= tile:
        return [0]
    stride = tile - 2 * halo - step
    if stride < step:
        raise ValueError(f"tile {tile} leaves no room inside a halo of {halo} pixels on each side")
    stride -= stride % step
    origins = list(range(0, size - tile, stride))
    return [*origins, size - tile]


def _profile(length: int, start_cut: bool, end_cut: bool, halo: int) -> np.ndarray:
    """Per-pixel weight along one axis of a tile: zero within ``halo`` of a cut end, a ramp, then one."""
    weight = np.ones(length, dtype=np.float64)
    ramp = max(1, min(halo, length // 4))
    rise = (np.arange(ramp) + 1) / (ramp + 1)
    for cut, side in ((start_cut, slice(None)), (end_cut, slice(None, None, -1))):
        if cut:
            view = weight[side]
            view[:halo] = 0.0
            view[halo : halo + ramp] = np.minimum(view[halo : halo + ramp], rise)
    return weight


def _tiles(shape: tuple[int, int], tile: tuple[int, int], halo: int, step: int) -> Iterator[tuple[int, int]]:
    for y0 in tile_origins(shape[0], tile[0], halo, step):
        for x0 in tile_origins(shape[1], tile[1], halo, step):
            yield y0, x0


@torch.no_grad()
def predict_array(
    model: nn.Module,
    image: np.ndarray,
    tile: int,
    halo: int,
    batch: int = 4,
    device: torch.device | str = "cpu",
    symmetries: int = 1,
    amp: torch.dtype | None = None,
) -> np.ndarray:
    """Class probabilities of a normalised ``(bands, rows, columns)`` image, from stitched tiles.

    Args:
        model: the U-Net, in eval mode; its ``depth`` sets the padding and the tile grid.
        image: the normalised bands, NaN-free (``(x - median) / robust_sigma``, NaN as 0).
        tile: tile edge in pixels (rounded up to a multiple of ``2**depth``); at least ``2 * halo`` plus
            ``2**depth`` more to leave an inside, unless the image fits in one tile.
        halo: pixels of each tile's cut edges left out (given no weight): at least the receptive radius
            (:attr:`sgc.config.ModelConfig.halo`) for the result to equal whole-image inference.
        batch: tiles per forward pass.
        device: where the model runs.
        symmetries: 1, or the probabilities averaged over 2, 4 or 8 symmetries (:func:`symmetric_softmax`).
        amp: autocast dtype of the forward passes (bf16, fp16), None for full precision.

    Returns:
        float32 ``(classes, rows, columns)`` softmax probabilities.
    """
    step = 2**model.depth
    bands, ny, nx = image.shape
    padded_shape = (round_up(ny, step), round_up(nx, step))
    padded = np.zeros((bands, *padded_shape), dtype=np.float32)
    padded[:, :ny, :nx] = image
    size = (min(round_up(tile, step), padded_shape[0]), min(round_up(tile, step), padded_shape[1]))
    total = np.zeros((model.classes, *padded_shape), dtype=np.float64)
    weights = np.zeros(padded_shape, dtype=np.float64)
    origins = list(_tiles(padded_shape, size, halo, step))
    for start in range(0, len(origins), batch):
        group = origins[start : start + batch]
        stack = np.stack([padded[:, y0 : y0 + size[0], x0 : x0 + size[1]] for y0, x0 in group])
        with autocast(device, amp):
            probs = symmetric_softmax(model, torch.from_numpy(stack).to(device), symmetries).cpu().numpy()
        for (y0, x0), prob in zip(group, probs, strict=True):
            wy = _profile(size[0], y0 > 0, y0 + size[0] < padded_shape[0], halo)
            wx = _profile(size[1], x0 > 0, x0 + size[1] < padded_shape[1], halo)
            w = wy[:, None] * wx[None, :]
            total[:, y0 : y0 + size[0], x0 : x0 + size[1]] += prob * w
            weights[y0 : y0 + size[0], x0 : x0 + size[1]] += w
    return (total / weights)[:, :ny, :nx].astype(np.float32)


SYMMETRIES = (1, 2, 4, 8)


def symmetric_softmax(model: nn.Module, batch: torch.Tensor, symmetries: int = 1) -> torch.Tensor:
    """Softmax probabilities of a ``(N, bands, H, W)`` batch, averaged over its first ``symmetries``
    symmetries: as it is, flipped left-right (2), also upside down and both (4), the four transposed (8).

    Raises:
        ValueError: ``symmetries`` not one of :data:`SYMMETRIES`.
    """
    if symmetries not in SYMMETRIES:
        raise ValueError(f"symmetries {symmetries} is not one of {', '.join(map(str, SYMMETRIES))}")
    total = torch.zeros((), device=batch.device)
    for k in range(symmetries):
        dims = [dim for dim, flipped in ((-1, k & 1), (-2, k & 2)) if flipped]
        x = batch.transpose(-1, -2) if k >= 4 else batch
        x = x.flip(dims) if dims else x
        prob = torch.softmax(model(x.contiguous()).float(), dim=1)
        prob = prob.flip(dims) if dims else prob
        total = total + (prob.transpose(-1, -2) if k >= 4 else prob)
    return total / symmetries


@torch.no_grad()
def predict_whole(
    model: nn.Module, image: np.ndarray, device: torch.device | str = "cpu", amp: torch.dtype | None = None
) -> np.ndarray:
    """Class probabilities of a normalised image in one forward pass (padded to a multiple of ``2**depth``).

    The reference that :func:`predict_array` reproduces; it needs the memory of the whole image at every
    level of the network.
    """
    step = 2**model.depth
    bands, ny, nx = image.shape
    padded = np.zeros((bands, round_up(ny, step), round_up(nx, step)), dtype=np.float32)
    padded[:, :ny, :nx] = image
    with autocast(device, amp):
        logits = model(torch.from_numpy(padded[None]).to(device))
    return torch.softmax(logits.float(), dim=1)[0, :, :ny, :nx].cpu().numpy()
