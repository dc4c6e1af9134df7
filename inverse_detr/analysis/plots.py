"""Figures people would rather look at than read (pure functions returning matplotlib figures)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: analyses run headless on servers and in CI

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure


def reconstruction_grid(columns: dict[str, torch.Tensor], cell: float = 1.6) -> Figure:
    """One row per image, one titled column per entry.

    columns: title → (B, 3, H, W) RGB in [0, 1]; every entry has the same B.
    """
    titles = list(columns)
    rows = next(iter(columns.values())).shape[0]
    fig, axes = plt.subplots(
        rows, len(titles), figsize=(cell * len(titles), cell * rows), squeeze=False
    )
    for col, title in enumerate(titles):
        images = columns[title].detach().float().clamp(0, 1).cpu()
        for row in range(rows):
            ax = axes[row][col]
            ax.imshow(images[row].permute(1, 2, 0).numpy())  # (3, H, W) -> (H, W, 3)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def tradeoff_plot(mse: list[float], ap: list[float], labels: list[str]) -> Figure:
    """Reconstruction MSE (x) against detection AP (y), one labelled point per setting."""
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.plot(mse, ap, "o-", color="tab:blue")
    for x, y, text in zip(mse, ap, labels, strict=True):
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("reconstruction MSE (normalised pixels)")
    ax.set_ylabel("box AP (COCO protocol)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
