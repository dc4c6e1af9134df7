"""Inversion transfer: how well detectors read generated images as their target layouts.

Images inverted with one detector are fed to others and scored against the target layouts
with COCO box AP (torchmetrics, pycocotools backend). Rows of the matrix: inverted with;
columns: tested with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from inverse_detr.analysis.metrics import APScores, ap_metric
from inverse_detr.detectors.interface import Detector, Prediction, module_device
from inverse_detr.layout.targets import Layout


def detect(detector: Detector, images: torch.Tensor, batch_size: int = 16) -> list[Prediction]:
    """The detector's predictions on (N, 3, H, W) [0, 1] images, `batch_size` at a time on its
    device; one `Prediction` per image, on the CPU."""
    device = module_device(detector)
    found = []
    for chunk in images.split(batch_size):
        found += [_on_cpu(p) for p in detector.predict(chunk.to(device))]
    return found


def _on_cpu(p: Prediction) -> Prediction:
    masks = p.masks.cpu() if p.masks is not None else None
    return Prediction(p.boxes.float().cpu(), p.scores.float().cpu(), p.labels.cpu(), masks)


def layout_ap(
    predictions: list[Prediction],
    layouts: list[Layout],
    size: tuple[int, int],
    per_category: bool = False,
) -> APScores:
    """COCO box AP of one prediction per layout against the layouts, on an (H, W) canvas."""
    metric = ap_metric(per_category)
    targets = [layout.targets(size) for layout in layouts]
    metric.update([_boxes_only(p) for p in predictions], targets)
    return APScores.from_metric(metric.compute())


def _boxes_only(p: Prediction) -> dict[str, torch.Tensor]:
    """Box AP: the layouts have no masks, so the metric sees none."""
    return {"boxes": p.boxes, "scores": p.scores, "labels": p.labels}


@dataclass
class TransferMatrix:
    """AP of images inverted with `rows` (detector names) as read by `columns`; detections:
    (inverted with, tested with) → the tested detector's predictions, one per image."""

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

    inverted: inverting detector's name → (N, 3, H, W) [0, 1] images, image i for layout i;
    detectors: name → detector, the columns in their order.
    """
    matrix = TransferMatrix(list(inverted), list(detectors))
    for row, images in inverted.items():
        for column, detector in detectors.items():
            matrix.detections[row, column] = detect(detector, images, batch_size)
        scores = [layout_ap(matrix.detections[row, c], layouts, size) for c in detectors]
        matrix.scores.append(scores)
    return matrix
