"""``sgc explain``: Grad-CAM maps of where the model looks when it calls pixels stars or galaxies.

Grad-CAM (Selvaraju et al. 2017), as the 2023 report used it, adapted to segmentation: the score of a class
is the sum of its logits over the pixels the model assigns to it (over the whole patch when it assigns
none); its gradient with respect to the activations of a layer, averaged over the layer's pixels, weights
each channel; the map is the rectified weighted sum of the channels, upsampled to the patch and scaled to
[0, 1]. The layer is the bottleneck by default (the coarsest, most semantic features), or any level of the
decoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own idiom
from torch import nn

from sgc.atomic import write_json
from sgc.classes import CLASS_NAMES, GALAXY, STAR
from sgc.cube.store import LABEL, CubeStore
from sgc.evaluate.predict import normalised_window
from sgc.model.unet import UNet
from sgc.patches.planfile import PatchPlan
from sgc.train.checkpoint import InferenceSpec
from sgc.windows import round_up

INDEX_NAME = "gradcam.json"


def gradcam(model: UNet, image: torch.Tensor, cls: int, layer: nn.Module | None = None) -> np.ndarray:
    """The Grad-CAM map of class ``cls`` for one normalised image ``(bands, H, W)``.

    Args:
        model: the U-Net (in eval mode).
        image: the normalised bands; H and W multiples of ``2**depth``.
        cls: the class value explained.
        layer: the layer whose activations are weighted; the bottleneck by default.

    Returns:
        ``(H, W)`` float32 in [0, 1] (all zero where the class gets no positive evidence).
    """
    layer = layer if layer is not None else model.down[-1]
    kept: dict[str, torch.Tensor] = {}

    def keep(_: nn.Module, __: Any, output: torch.Tensor) -> None:
        kept["activations"] = output

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = model(image[None])
            assigned = logits.argmax(dim=1, keepdim=True) == cls
            mask = assigned if assigned.any() else torch.ones_like(assigned)
            score = (logits[:, cls : cls + 1] * mask).sum()
            activations = kept["activations"]
            # The gradient of the score with respect to the activations alone: no parameter gets a .grad.
            (grad,) = torch.autograd.grad(score, activations)
    finally:
        handle.remove()
    weights = grad.mean(dim=(2, 3), keepdim=True)
    activations = activations.detach()
    cam = F.relu((weights * activations).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0].detach()
    peak = float(cam.max())
    return (cam / peak).numpy().astype(np.float32) if peak > 0 else np.zeros(image.shape[-2:], np.float32)


@dataclass
class Explained:
    """The Grad-CAM maps of one region of a field.

    Attributes:
        field, y0, x0: the field and the region's first pixel on the stored grid.
        shape: the region's ``(rows, columns)``.
        maps: per class name (star, galaxy), the map over the region.
        prediction: the predicted class of each pixel of the region.
    """

    field: str
    y0: int
    x0: int
    shape: tuple[int, int]
    maps: dict[str, np.ndarray]
    prediction: np.ndarray


def explain_region(
    model: UNet,
    spec: InferenceSpec,
    cube: CubeStore,
    field: str,
    rows: tuple[int, int],
    cols: tuple[int, int],
) -> Explained:
    """Grad-CAM maps of the star and galaxy classes over a region of a stored field.

    The region is run through the model grown to a multiple of ``2**depth`` (zeros past the grid), and the
    maps are cut back to it.

    Args:
        model: the U-Net (in eval mode), and ``spec`` how its checkpoint normalises the bands.
        spec: see ``model``.
        cube: the cube store.
        field: the field id.
        rows, cols: ``(first, end)`` of the region on the stored grid.
    """
    step = 2**spec.model.depth
    (y0, y1), (x0, x1) = rows, cols
    h, w = y1 - y0, x1 - x0
    grown = (y0 + round_up(h, step), x0 + round_up(w, step))
    window = normalised_window(cube, cube.slot(field), spec, (y0, grown[0]), (x0, grown[1]))
    image = torch.from_numpy(window)
    with torch.no_grad():
        prediction = model(image[None]).argmax(dim=1)[0].numpy().astype(np.uint8)
    maps = {CLASS_NAMES[c]: gradcam(model, image, c)[:h, :w] for c in (STAR, GALAXY)}
    return Explained(cube.fields[cube.slot(field)], y0, x0, (h, w), maps, prediction[:h, :w])


def busiest_patches(plan: PatchPlan, split: str, count: int) -> list[tuple[str, int, int]]:
    """The ``count`` patches of a split with the most star and galaxy pixels (those holding both first).

    Returns:
        ``(field, y0, x0)`` of each, busiest first.
    """
    rows = plan.rows(split)
    if len(rows) == 0 or count == 0:
        return []
    stars, galaxies = np.asarray(rows["n_star"]), np.asarray(rows["n_galaxy"])
    score = stars + galaxies + np.minimum(stars, galaxies)  # patches holding both classes first
    order = np.argsort(-score, kind="stable")[:count]
    return [(str(rows["field"][k]), int(rows["y0"][k]), int(rows["x0"][k])) for k in order]


def write_explained(explained: list[Explained], cube: CubeStore, out: str | Path) -> list[Path]:
    """A figure per region (bands, label, prediction, the two maps) and an index, into ``out``.

    Args:
        explained: the regions' maps (:func:`explain_region`).
        cube: the cube store they were made from (bands and, where it has them, labels).
        out: the output folder; the index is ``gradcam.json``.

    Returns:
        The figures' paths.
    """
    from sgc.report.figures import gradcam_figure

    out = Path(out)
    figures, index = [], []
    for item in explained:
        (h, w), slot = item.shape, cube.slot(item.field)
        label = cube[LABEL][slot, item.y0 : item.y0 + h, item.x0 : item.x0 + w] if LABEL in cube else None
        path = out / f"gradcam-{item.field}-{item.y0}-{item.x0}.png"
        figures.append(gradcam_figure(cube, item, label, path))
        index.append(
            {"field": item.field, "y0": item.y0, "x0": item.x0, "shape": [h, w], "figure": path.name}
        )
    write_json(out / INDEX_NAME, index)
    return figures
