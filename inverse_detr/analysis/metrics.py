"""Detection metrics: DETR outputs and targets in the form torchmetrics' COCO AP expects."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import box_convert


def _to_pixels(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """(N, 4) normalised cxcywh → (N, 4) xyxy pixels on an (H, W) canvas."""
    h, w = image_size
    scale = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
    return box_convert(boxes, "cxcywh", "xyxy") * scale


def detr_predictions(
    logits: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int]
) -> list[dict[str, torch.Tensor]]:
    """DETR's own post-processing: per query, the best real class and its probability.

    logits: (B, Q, C + 1) with "no object" last;  boxes: (B, Q, 4) normalised cxcywh.
    Every query is kept (AP ranks by score), as in DETR's COCO evaluation.
    """
    probs = logits.float().softmax(-1)[..., :-1]  # (B, Q, C): drop "no object"
    scores, labels = probs.max(-1)
    return [
        {"boxes": _to_pixels(b.float(), image_size), "scores": s, "labels": lab}
        for b, s, lab in zip(boxes, scores, labels, strict=True)
    ]


def detection_targets(
    labels: list[torch.Tensor], boxes: list[torch.Tensor], image_size: tuple[int, int]
) -> list[dict[str, torch.Tensor]]:
    """Ground truth in the same frame: labels (N,) and normalised cxcywh boxes (N, 4) per image."""
    return [
        {"boxes": _to_pixels(b.float(), image_size), "labels": lab}
        for lab, b in zip(labels, boxes, strict=True)
    ]


def ap_metric(per_category: bool = False) -> MeanAveragePrecision:
    """COCO-protocol box AP (pycocotools backend), optionally per category."""
    return MeanAveragePrecision(
        box_format="xyxy", iou_type="bbox", class_metrics=per_category, backend="pycocotools"
    )


@dataclass
class APScores:
    """COCO box AP: ap (IoU .50:.95), ap50, ap75; per_category: category id → AP."""

    ap: float
    ap50: float
    ap75: float
    per_category: dict[int, float] = field(default_factory=dict)

    @classmethod
    def from_metric(cls, result: dict[str, torch.Tensor]) -> APScores:
        per_category = {}
        classes = result.get("classes")
        per_class = result.get("map_per_class")
        if classes is not None and per_class is not None and per_class.numel() == classes.numel():
            per_category = {
                int(c): float(v)
                for c, v in zip(classes.flatten(), per_class.flatten(), strict=True)
            }
        return cls(
            float(result["map"]), float(result["map_50"]), float(result["map_75"]), per_category
        )


@torch.no_grad()
def evaluate_detector(detr, batches, per_category: bool = True, progress: bool = True) -> APScores:
    """COCO box AP of `detr` over an iterable of `Batch`es (e.g. a validation DataLoader).

    detr: any `DetrForObjectDetection` (put in eval mode here); runs on its own device.
    """
    from tqdm.auto import tqdm

    detr.eval()
    device = next(detr.parameters()).device
    metric = ap_metric(per_category)
    for batch in tqdm(batches, desc="evaluating", disable=not progress, leave=False):
        if len(batch) == 0:
            continue
        batch = batch.to(device)
        out = detr(pixel_values=batch.pixel_values, pixel_mask=batch.pixel_mask)
        size = tuple(batch.pixel_values.shape[-2:])
        metric.update(
            detr_predictions(out.logits, out.pred_boxes, size),
            detection_targets(
                [t.labels for t in batch.targets], [t.boxes for t in batch.targets], size
            ),
        )
    return APScores.from_metric(metric.compute())
