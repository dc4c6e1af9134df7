"""Figures of layout inversion: generated images with their target boxes and detections."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torchvision.utils import save_image

from inverse_detr.detectors.interface import Prediction
from inverse_detr.layout.targets import Layout


def layout_grid(
    images: torch.Tensor,
    layouts: list[Layout],
    names: dict[int, str],
    predictions: list[Prediction] | None = None,
    threshold: float = 0.5,
    columns: int = 8,
    cell: float = 1.8,
) -> Figure:
    """Each generated image with its target boxes (solid white, named) and, given
    `predictions` (one per image, e.g. `transfer.detect`), the detector's boxes with score >
    `threshold` (dashed yellow, named).

    images: (N, 3, H, W) in [0, 1]; image i was generated for layouts[i].
    """
    n = len(images)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(cell * cols, cell * rows + 0.3), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    size = tuple(images.shape[-2:])
    predictions = predictions if predictions is not None else [None] * n
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(images[i].permute(1, 2, 0).clamp(0, 1).numpy())  # (3, H, W) -> (H, W, 3)
        layout = layouts[i]
        for label, box in zip(
            layout.labels.tolist(), layout.pixel_boxes(size).tolist(), strict=True
        ):
            _draw_box(ax, box, names.get(label, str(label)), "white", "-")
        found = predictions[i]
        if found is not None:
            keep = found.scores > threshold
            for label, score, box in zip(
                found.labels[keep].tolist(),
                found.scores[keep].tolist(),
                found.boxes[keep].tolist(),
                strict=True,
            ):
                _draw_box(ax, box, f"{names.get(label, label)} {score:.2f}", "yellow", "--")
    fig.suptitle("targets (white) and detections (yellow, dashed)", fontsize=9)
    return fig


def _draw_box(ax, box: list[float], text: str, colour: str, style: str) -> None:
    x0, y0, x1, y1 = box
    ax.add_patch(
        Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linestyle=style, lw=1.2)
    )
    ax.text(x0 + 1, y0 + 1, text, color=colour, fontsize=5, va="top", clip_on=True)


def loss_curves(curves: dict[str, torch.Tensor], ylabel: str = "inversion loss toward Z") -> Figure:
    """The mean objective per iteration, one line per run.

    curves: name → (T, N) objective of N images over T iterations (`InversionResult.loss`).
    """
    fig = Figure(figsize=(5, 3.2), layout="constrained")
    ax = fig.subplots()
    for name, loss in curves.items():
        ax.plot(loss.float().mean(1).numpy(), label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def save_images(images: torch.Tensor, folder: Path) -> None:
    """(N, 3, H, W) [0, 1] images as NNNN.png in `folder` (made when missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        save_image(image, folder / f"{index:04d}.png")
