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
