"""Inversion transfer: how well detectors read generated images as their target layouts.

Images inverted with one detector are fed to others and scored against the target layouts
with COCO box AP (torchmetrics, pycocotools backend). Rows of the matrix: inverted with;
columns: tested with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DetrForObjectDetection

from inverse_detr.analysis.metrics import APScores, ap_metric
from inverse_detr.detectors.detr import detr_predictions
from inverse_detr.layout.regularizers import PixelRange
from inverse_detr.layout.targets import Layout


@dataclass
class Detector:
    """A frozen DETR under a short name, with its input normalisation."""

    name: str
    detr: DetrForObjectDetection
    pixels: PixelRange


@dataclass
class Detections:
    """A detector's raw outputs on N images: logits (N, Q, C + 1), boxes (N, Q, 4) cxcywh."""

    logits: torch.Tensor
    boxes: torch.Tensor

    def predictions(self, size: tuple[int, int]) -> list[dict[str, torch.Tensor]]:
        """Per image, every query's best real class and score, boxes in xyxy pixels."""
        return detr_predictions(self.logits, self.boxes, [size] * len(self.logits))


@torch.no_grad()
def detect(detector: Detector, images: torch.Tensor, batch_size: int = 16) -> Detections:
    """Run `detector` on (N, 3, H, W) [0, 1] images; outputs on the CPU."""
    device = next(detector.detr.parameters()).device
    pixels = detector.pixels.to(device)
    logits, boxes = [], []
    for chunk in images.split(batch_size):
        out = detector.detr(pixel_values=pixels.normalize(chunk.to(device)))
        logits.append(out.logits.float().cpu())
        boxes.append(out.pred_boxes.float().cpu())
    return Detections(torch.cat(logits), torch.cat(boxes))


def layout_ap(
    detections: Detections, layouts: list[Layout], size: tuple[int, int], per_category: bool = False
) -> APScores:
    """COCO box AP of the detections against the layouts, on an (H, W) canvas."""
    metric = ap_metric(per_category)
    targets = [{"boxes": layout.pixel_boxes(size), "labels": layout.labels} for layout in layouts]
    metric.update(detections.predictions(size), targets)
    return APScores.from_metric(metric.compute())


@dataclass
class TransferMatrix:
    """AP of images inverted with `rows` (detector names) as read by `columns`; detections:
    (inverted with, tested with) → the tested detector's outputs on those images."""

    rows: list[str]
    columns: list[str]
    scores: list[list[APScores]] = field(default_factory=list)
    detections: dict[tuple[str, str], Detections] = field(default_factory=dict)

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
    detectors: list[Detector],
    layouts: list[Layout],
    size: tuple[int, int],
    batch_size: int = 16,
) -> TransferMatrix:
    """AP of every detector on every set of inverted images.

    inverted: inverting detector's name → (N, 3, H, W) [0, 1] images, image i for layout i.
    """
    matrix = TransferMatrix(list(inverted), [d.name for d in detectors])
    for row, images in inverted.items():
        for d in detectors:
            matrix.detections[row, d.name] = detect(d, images, batch_size)
        scores = [layout_ap(matrix.detections[row, d.name], layouts, size) for d in detectors]
        matrix.scores.append(scores)
    return matrix
