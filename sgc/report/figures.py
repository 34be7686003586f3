"""Figures of a run's results: training curves, confusion matrices, completeness by magnitude, predictions
against the catalogue, wrongly classified objects, and Grad-CAM maps. They read finished outputs (the
training log, ``metrics.json``, the prediction store, the scored objects) and compute nothing new."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.table import Table
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from sgc.classes import CLASS_NAMES, GALAXY, IGNORE, OBJECT_CLASSES, STAR
from sgc.cube.store import CLASS, IMAGE, CubeStore, PredictionStore
from sgc.report.cube_figures import irg_window
from sgc.report.png import save_png
from sgc.report.style import CLASS_COLOURS, DPI, OBJECT_MARKERS, PLURALS

if TYPE_CHECKING:
    from sgc.evaluate.explain import Explained

WRONG_COLOUR = "red"
CUTOUT_PX = 24
CROP_PX = 320


def _class_map_rgb(cls: np.ndarray) -> tuple[np.ndarray, ListedColormap]:
    """A class map as colour indices (sky, star, galaxy, ignore) and the colour map that draws them."""
    index = np.select([cls == STAR, cls == GALAXY, cls == IGNORE], [1, 2, 3], 0)
    return index, ListedColormap([CLASS_COLOURS[c] for c in (*CLASS_NAMES, "ignore")])


def training_curves(rows: Sequence[Mapping[str, float]], out: str | Path) -> Path:
    """Train and validation loss, and validation pixel F1 per class, by epoch.

    Args:
        rows: the training log (:func:`sgc.train.log.read_metrics`); a value missing from a row is skipped.
        out: the PNG to write.
    """
    fig = Figure(figsize=(11, 4), dpi=DPI, layout="constrained")
    loss, f1 = fig.subplots(1, 2)
    for key, style in (("train_loss", "-"), ("val_loss", "--")):
        epochs, values = _series(rows, key)
        if values:
            loss.plot(epochs, values, style, color="k", label=key.replace("_", " "))
    loss.set(xlabel="epoch", ylabel="loss", title="loss")
    loss.legend()
    for name in CLASS_NAMES:
        epochs, values = _series(rows, f"val_f1_{name}")
        if values:
            f1.plot(epochs, values, "o-", color=CLASS_COLOURS[name], label=name)
    f1.set(xlabel="epoch", ylabel="pixel F1", title="validation pixel F1", ylim=(0, 1.02))
    if f1.get_legend_handles_labels()[0]:
        f1.legend()
    return save_png(fig, out)


def _series(rows: Sequence[Mapping[str, float]], key: str) -> tuple[list[float], list[float]]:
    """The epochs that logged ``key``, and its values there."""
    pairs = [(row["epoch"], row[key]) for row in rows if key in row]
    return [e for e, _ in pairs], [v for _, v in pairs]


def confusion_figure(metrics: Mapping[str, Mapping[str, Any]], out: str | Path) -> Path:
    """Per method, the pixel confusion matrix (rows normalised) and the object confusion matrix (counts)."""
    fig = Figure(figsize=(4.2 * len(metrics), 7.5), dpi=DPI, layout="constrained")
    axes = fig.subplots(2, len(metrics), squeeze=False)
    for k, (method, m) in enumerate(metrics.items()):
        pixel = np.asarray(m["pixel"]["confusion"], dtype=np.float64)
        shares = pixel / np.maximum(pixel.sum(axis=1, keepdims=True), 1)
        objects = np.asarray(m["object"]["confusion"])[1:]  # catalogue objects are stars or galaxies
        for ax, values, rows, fmt, title in (
            (axes[0, k], shares, CLASS_NAMES, "{:.3f}", "pixels (share of each true class)"),
            (axes[1, k], objects, OBJECT_CLASSES, "{:d}", "catalogue objects (counts)"),
        ):
            ax.imshow(
                values if values.dtype.kind == "f" else values / max(values.max(), 1), cmap="Blues", vmin=0
            )
            for (i, j), v in np.ndenumerate(values):
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=9)
            ax.set(xticks=range(3), xticklabels=CLASS_NAMES, yticks=range(len(rows)), yticklabels=rows)
            ax.set(xlabel="predicted", ylabel="true", title=f"{method}\n{title}")
    return save_png(fig, out)


def completeness_figure(metrics: Mapping[str, Mapping[str, Any]], out: str | Path) -> Path:
    """Per method, detection recall and accuracy of catalogue objects by r magnitude."""
    fig = Figure(figsize=(11, 4), dpi=DPI, layout="constrained")
    recall_ax, accuracy_ax = fig.subplots(1, 2, sharey=True)
    for method, m in metrics.items():
        bins = m["object"]["by_magnitude"]
        centres = [_bin_centre(b) for b in bins]
        for ax, key in ((recall_ax, "detection_recall"), (accuracy_ax, "accuracy")):
            ax.plot(centres, [b[key] for b in bins], "o-", label=method)
    recall_ax.set(
        xlabel="r magnitude", ylabel="share of catalogue objects", title="detection recall", ylim=(0, 1.02)
    )
    accuracy_ax.set(xlabel="r magnitude", title="accuracy (missed counts as wrong)")
    recall_ax.legend()
    return save_png(fig, out)


def _bin_centre(b: Mapping[str, Any]) -> float:
    low, high = b["r_min"], b["r_max"]
    if low is None:
        return high - 0.5
    if high is None:
        return low + 0.5
    return (low + high) / 2


def _crop(shape: tuple[int, int], x: np.ndarray, y: np.ndarray, size: int) -> tuple[int, int]:
    """Corner of the ``size`` square crop holding the most of the given positions."""
    ny, nx = shape
    h, w = min(size, ny), min(size, nx)
    step = max(1, size // 8)
    best, corner = -1, (0, 0)
    for y0 in range(0, ny - h + 1, step):
        for x0 in range(0, nx - w + 1, step):
            n = int(((x >= x0) & (x < x0 + w) & (y >= y0) & (y < y0 + h)).sum())
            if n > best:
                best, corner = n, (y0, x0)
    return corner


def prediction_figure(
    cube: CubeStore, predictions: PredictionStore, scored: Table, field: str, out: str | Path
) -> Path:
    """A crop of a scored field: the bands with the catalogue's objects, beside the predicted classes.

    Objects the model got wrong are circled in red on both panels.

    Args:
        cube: the cube store (the bands).
        predictions: the prediction store (the classes).
        scored: the scored catalogue objects (:func:`sgc.evaluate.score.score`).
        field: the field shown.
        out: the PNG to write.
    """
    mine = scored[scored["field"] == field]
    x, y = np.asarray(mine["x"]), np.asarray(mine["y"])
    y0, x0 = _crop(cube.shape, x, y, CROP_PX)
    h, w = min(CROP_PX, cube.shape[0]), min(CROP_PX, cube.shape[1])
    slot = cube.slot(field)
    cls = predictions[CLASS][predictions.slot(field), y0 : y0 + h, x0 : x0 + w]
    index, cmap = _class_map_rgb(cls)
    extent = (x0 - 0.5, x0 + w - 0.5, y0 - 0.5, y0 + h - 0.5)
    fig = Figure(figsize=(12, 6.4), dpi=DPI, layout="constrained")
    left, right = fig.subplots(1, 2)
    irg = irg_window(cube, slot, slice(y0, y0 + h), slice(x0, x0 + w))
    left.imshow(irg, origin="lower", extent=extent, interpolation="nearest")
    right.imshow(
        index, origin="lower", extent=extent, cmap=cmap, vmin=-0.5, vmax=3.5, interpolation="nearest"
    )
    inside = (x >= x0) & (x < x0 + w) & (y >= y0) & (y < y0 + h)
    wrong = np.asarray(mine["truth"]) != np.asarray(mine["predicted"])
    for ax in (left, right):
        for c in OBJECT_CLASSES:
            sel = inside & (np.asarray(mine["truth"]) == c)
            ax.scatter(
                x[sel],
                y[sel],
                s=50,
                marker=OBJECT_MARKERS[c],
                facecolors="none",
                edgecolors="white" if ax is left else "k",
                linewidths=0.8,
                label=f"catalogue {PLURALS[c]}",
            )
        ax.scatter(
            x[inside & wrong],
            y[inside & wrong],
            s=160,
            marker="o",
            facecolors="none",
            edgecolors=WRONG_COLOUR,
            linewidths=1.4,
            label="classified wrongly",
        )
        ax.set(xlim=extent[:2], ylim=extent[2:], xlabel="x (pixel)")
    left.set(title=f"{field}: bands (IRG) and the catalogue", ylabel="y (pixel)")
    right.set(title="predicted classes")
    handles = [Patch(color=CLASS_COLOURS[c], label=c) for c in CLASS_NAMES]
    right.legend(handles=handles, loc="upper right", framealpha=0.8)
    left.legend(loc="upper right", framealpha=0.8, fontsize=8)
    return save_png(fig, out)


def wrong_objects_figure(
    cube: CubeStore, predictions: PredictionStore, scored: Table, out: str | Path, count: int = 8
) -> Path | None:
    """Cut-outs of the brightest catalogue objects the model got wrong: the bands and the predicted classes.

    Args:
        cube: the cube store (the bands).
        predictions: the prediction store (the classes).
        scored: the scored catalogue objects (:func:`sgc.evaluate.score.score`).
        out: the PNG to write.
        count: most objects shown.

    Returns:
        ``out``, or None when no object was wrong.
    """
    wrong = scored[np.asarray(scored["truth"]) != np.asarray(scored["predicted"])]
    if len(wrong) == 0:
        return None
    mag = np.nan_to_num(np.asarray(wrong["mag_r"], dtype=np.float64), nan=99.0)
    wrong = wrong[np.argsort(mag, kind="stable")[:count]]
    fig = Figure(figsize=(1.6 * len(wrong), 3.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(2, len(wrong), squeeze=False)
    half = CUTOUT_PX // 2
    ny, nx = cube.shape
    for k, obj in enumerate(wrong):
        field = str(obj["field"])
        cx, cy = int(round(float(obj["x"]))), int(round(float(obj["y"])))
        y0, x0 = min(max(cy - half, 0), ny - CUTOUT_PX), min(max(cx - half, 0), nx - CUTOUT_PX)
        slot = cube.slot(field)
        cls = predictions[CLASS][predictions.slot(field), y0 : y0 + CUTOUT_PX, x0 : x0 + CUTOUT_PX]
        index, cmap = _class_map_rgb(cls)
        irg = irg_window(cube, slot, slice(y0, y0 + CUTOUT_PX), slice(x0, x0 + CUTOUT_PX))
        axes[0, k].imshow(irg, origin="lower", interpolation="nearest")
        axes[1, k].imshow(index, origin="lower", cmap=cmap, vmin=-0.5, vmax=3.5, interpolation="nearest")
        mag_text = "" if not np.isfinite(obj["mag_r"]) else f"r={float(obj['mag_r']):.1f}\n"
        axes[0, k].set_title(f"{mag_text}true {obj['truth']}\npredicted {obj['predicted']}", fontsize=8)
        for ax in axes[:, k]:
            ax.plot(obj["x"] - x0, obj["y"] - y0, "+", color=WRONG_COLOUR, markersize=8)
            ax.set(xticks=[], yticks=[])
    fig.suptitle("catalogue objects classified wrongly (brightest first): bands above, prediction below")
    return save_png(fig, out)


def gradcam_figure(cube: CubeStore, explained: Explained, label: np.ndarray | None, out: str | Path) -> Path:
    """One patch: its bands, label and prediction, and the star and galaxy Grad-CAM maps over its r band.

    Args:
        cube: the cube store the maps were made from.
        explained: the region's maps (:func:`sgc.evaluate.explain.explain_region`).
        label: the region's labels, None where the store has none.
        out: the PNG to write.
    """
    slot, (h, w) = cube.slot(explained.field), explained.shape
    window = (slice(explained.y0, explained.y0 + h), slice(explained.x0, explained.x0 + w))
    panels = [("bands (IRG)", irg_window(cube, slot, *window), None)]
    r = cube[IMAGE][slot, cube.bands.index("r"), window[0], window[1]]
    if label is not None:
        panels.append(("label", *_class_map_rgb(label)))
    panels.append(("prediction", *_class_map_rgb(explained.prediction)))
    fig = Figure(figsize=(2.8 * (len(panels) + 2), 3.2), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(panels) + 2)
    for ax, (title, image, cmap) in zip(axes, panels, strict=False):
        if cmap is None:
            ax.imshow(image, origin="lower", interpolation="nearest")
        else:
            ax.imshow(image, origin="lower", cmap=cmap, vmin=-0.5, vmax=3.5, interpolation="nearest")
        ax.set(title=title, xticks=[], yticks=[])
    grey = np.arcsinh(np.nan_to_num(r) / max(float(np.nanstd(r)), 1e-6))
    for ax, name in zip(axes[len(panels) :], ("star", "galaxy"), strict=True):
        ax.imshow(grey, origin="lower", cmap="gray", interpolation="nearest")
        ax.imshow(explained.maps[name], origin="lower", cmap="inferno", alpha=0.55, vmin=0, vmax=1)
        ax.set(title=f"Grad-CAM: {name}", xticks=[], yticks=[])
    fig.suptitle(f"{explained.field} at y0={explained.y0}, x0={explained.x0} ({h}x{w} px)")
    return save_png(fig, out)
