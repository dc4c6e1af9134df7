"""Inversion transfer: how well detectors read generated images as their target layouts.

Images inverted with one detector are fed to others and scored against the target layouts
with COCO box AP (torchmetrics, pycocotools backend). Rows of the matrix: inverted with;
columns: tested with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from inverse_detr.analysis.metrics import APScores, ap_metric
from inverse_detr.detectors.interface import Detector, Prediction, detect
from inverse_detr.layout.targets import Layout


def layout_ap(
    predictions: list[Prediction],
    layouts: list[Layout],
    size: tuple[int, int],
    per_category: bool = False,
    masks: bool = False,
) -> APScores:
    """COCO AP of one prediction per layout against the layouts, on an (H, W) canvas: of the
    boxes, or with `masks` of the instance masks (predictions and layouts must have them)."""
    metric = ap_metric(per_category, "segm" if masks else "bbox")
    keys = ("masks", "scores", "labels") if masks else ("boxes", "scores", "labels")
    targets = [layout.targets(size) for layout in layouts]
    metric.update(
        [{k: v for k, v in p.as_dict().items() if k in keys} for p in predictions],
        [{k: v.bool() if k == "masks" else v for k, v in t.items() if k in keys} for t in targets],
    )
    return APScores.from_metric(metric.compute())


def has_masks(predictions: list[Prediction], layouts: list[Layout]) -> bool:
    """Whether mask AP can be measured: the detector gave masks and every layout has them."""
    return all(p.masks is not None for p in predictions) and all(
        layout.masks is not None for layout in layouts
    )


MASK_COLUMN = "{}.mask"  # the mask-AP column of a detector with masks


@dataclass
class TransferMatrix:
    """AP of images inverted with `rows` as read by `columns` (detector names; box AP, and
    for a detector that gives masks also `MASK_COLUMN` mask AP, when the layouts have masks);
    detections: (inverted with, tested with detector) → its predictions, one per image."""

    rows: list[str]
    columns: list[str]
    scores: list[list[APScores]] = field(default_factory=list)
    detections: dict[tuple[str, str], list[Prediction]] = field(default_factory=dict)

    def values(self, metric: str = "ap50") -> list[list[float]]:
        return [[getattr(s, metric) for s in row] for row in self.scores]

    def table(self, metric: str = "ap50") -> str:
        """A Markdown table: rows inverted with, columns tested with."""
        head = f"| {metric}: inverted with ↓ / tested with → | " + " | ".join(self.columns) + " |"
        rule = "| --- " * (len(self.columns) + 1) + "|"
        body = [
            f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |"
            for name, row in zip(self.rows, self.values(metric), strict=True)
        ]
        return "\n".join([head, rule, *body])

    def as_dict(self) -> dict:
        metrics = ("ap", "ap50", "ap75")
        return {"rows": self.rows, "columns": self.columns} | {m: self.values(m) for m in metrics}


def transfer_matrix(
    inverted: dict[str, torch.Tensor],
    detectors: dict[str, Detector],
    layouts: list[Layout],
    size: tuple[int, int],
    batch_size: int = 16,
) -> TransferMatrix:
    """AP of every detector on every set of inverted images.

    inverted: row name (the inverting detector's, or a variant) → (N, 3, H, W) [0, 1] images,
    image i for layout i; detectors: name → detector, the columns in their order (a mask-AP
    column after each detector with masks).
    """
    matrix = TransferMatrix(list(inverted), [])
    for row, images in inverted.items():
        scores = {}
        for column, detector in detectors.items():
            found = matrix.detections[row, column] = detect(detector, images, batch_size)
            scores[column] = layout_ap(found, layouts, size)
            if has_masks(found, layouts):
                scores[MASK_COLUMN.format(column)] = layout_ap(found, layouts, size, masks=True)
        matrix.columns = list(scores)
        matrix.scores.append(list(scores.values()))
    return matrix
