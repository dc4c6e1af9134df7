"""Figures of one detection's maps (matplotlib without pyplot, as `analysis.plots`)."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from inverse_detr.analysis.plots import grouped_bars
from inverse_detr.attribution.maps import AttributionMaps

COLUMNS = ("image", "class map", "box map")


def detection_figure(
    image: torch.Tensor,
    maps: list[AttributionMaps],
    box: torch.Tensor,
    title: str,
    mask: torch.Tensor | None = None,
    cell: float = 2.0,
) -> Figure:
    """One row per method: image | class map | box map, the maps over the faded image, the
    detection's box (white) on each and the object's mask outline (magenta) when given.

    image: (3, H, W) in [0, 1]; box: (4,) xyxy pixels; mask: (H, W) bool.
    """
    rows = max(len(maps), 1)
    fig = Figure(figsize=(3 * cell, rows * cell + 0.4), layout="constrained")
    axes = fig.subplots(rows, 3, squeeze=False)
    picture = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    for row, found in enumerate(maps):
        for col, values in enumerate((None, found.cls, found.box)):
            ax = axes[row][col]
            ax.imshow(picture if values is None else picture.mean(-1), cmap="gray", vmin=0)
            if values is not None:
                ax.imshow(values.cpu().numpy(), cmap="jet", alpha=0.55, vmin=0, vmax=1)
            _outline(ax, box, mask)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(COLUMNS[col], fontsize=8)
        axes[row][0].set_ylabel(found.method, fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig


def _outline(ax, box: torch.Tensor, mask: torch.Tensor | None) -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="white", lw=0.8))
    if mask is not None and mask.any():
        ax.contour(mask.float().cpu().numpy(), levels=[0.5], colors="magenta", linewidths=0.6)


def share_bars(summary: dict[str, dict], title: str) -> Figure:
    """Boundary and interior shares of the class and box maps per method (all detections):
    summary as `metrics.summarise` gives it."""
    groups = {
        f"{method} {part}": {
            "class map": numbers["all"][f"cls_{part}"],
            "box map": numbers["all"][f"box_{part}"],
        }
        for method, numbers in summary.items()
        for part in ("boundary", "interior")
    }
    return grouped_bars(groups, "share of attribution mass", title)
