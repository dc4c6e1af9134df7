"""Figures people would rather look at than read (pure functions returning matplotlib figures).

Figures are built without pyplot: no GUI backend, no global figure registry to leak from, safe
on headless servers and in threads; notebooks display the returned figure (`%matplotlib inline`).
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure


def reconstruction_grid(columns: dict[str, torch.Tensor], cell: float = 1.6) -> Figure:
    """One row per image, one titled column per entry.

    columns: title → (B, 3, H, W) RGB in [0, 1]; every entry has the same B.
    """
    titles = list(columns)
    rows = next(iter(columns.values())).shape[0]
    fig, axes = _subplots(
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
    fig, ax = _subplots(figsize=(4.5, 3.5))
    ax.plot(mse, ap, "o-", color="tab:blue")
    for x, y, text in zip(mse, ap, labels, strict=True):
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("reconstruction MSE (normalised pixels)")
    ax.set_ylabel("box AP (COCO protocol)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def stage_bars(
    values: dict[str, float], baseline: float, ylabel: str = "MSE, [0, 1] pixels"
) -> Figure:
    """One bar per stage, the mean-image baseline as a dashed line."""
    fig, ax = _subplots(figsize=(1.1 * len(values) + 2, 3.4))
    bars = ax.bar(list(values), list(values.values()), color="tab:blue")
    ax.bar_label(bars, fmt="%.4f", fontsize=8)
    ax.axhline(baseline, color="tab:red", linestyle="--", label=f"mean image {baseline:.4f}")
    ax.set_ylabel(ylabel)
    ax.set_title("reconstruction error by stage")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def layer_curves(curves: dict[str, dict[int, float]], baseline: float | None = None) -> Figure:
    """MSE by layer, one line per stage (x: layer index as the forward pass numbers it)."""
    fig, ax = _subplots(figsize=(5, 3.4))
    for name, by_layer in curves.items():
        layers = sorted(by_layer)
        ax.plot(layers, [by_layer[i] for i in layers], "o-", label=f"{name} layers")
    if baseline is not None:
        ax.axhline(baseline, color="tab:red", linestyle="--", label="mean image")
    ax.set_xlabel("layer fed to the inverse module\n(encoder 0 = backbone embedding)")
    ax.set_ylabel("MSE, [0, 1] pixels")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def heatmaps(
    matrices: dict[str, list[list[float]]],
    labels: list[str],
    title: str,
    row_labels: list[str] | None = None,
) -> Figure:
    """One annotated heatmap per entry (e.g. per stage), on a shared colour scale: columns
    `labels`, rows `row_labels` (default: the same, a square matrix)."""
    values = [v for m in matrices.values() for row in m for v in row]
    top = max(values, default=1.0) or 1.0
    size = (3.6 * len(matrices) + 1, 3.8)
    fig, axes = _subplots(1, len(matrices), figsize=size, squeeze=False, layout="constrained")
    for ax, (name, matrix) in zip(axes[0], matrices.items(), strict=True):
        image = ax.imshow(matrix, vmin=0.0, vmax=top, cmap="viridis")
        ax.set_xticks(range(len(labels)), labels, rotation=60, fontsize=7)
        ax.set_yticks(range(len(matrix)), row_labels or labels, fontsize=7)
        ax.set_title(name, fontsize=9)
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=5, color="w")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    fig.suptitle(title, fontsize=10)
    return fig


def grouped_bars(
    groups: dict[str, dict[str, float | None]],
    ylabel: str,
    title: str,
    line: tuple[float, str] | None = None,
) -> Figure:
    """groups: x label → series name → value (None: not defined, left out); line: a labelled
    horizontal reference (value, label)."""
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    width = 0.8 / max(1, len(series))
    fig, ax = _subplots(figsize=(1.2 * len(groups) + 2.5, 3.4))
    for k, name in enumerate(series):
        xs = [i + k * width for i, g in enumerate(groups.values()) if g.get(name) is not None]
        ys = [g[name] for g in groups.values() if g.get(name) is not None]
        ax.bar(xs, ys, width, label=name)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(groups))], list(groups))
    if line is not None:
        ax.axhline(line[0], color="gray", linestyle=":", label=line[1])
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if series or line is not None:  # nothing to name: no legend
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _subplots(rows: int = 1, cols: int = 1, **kwargs):
    """pyplot.subplots without pyplot: (figure, axes)."""
    figsize = kwargs.pop("figsize", None)
    layout = kwargs.pop("layout", None)
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(rows, cols, **kwargs)
