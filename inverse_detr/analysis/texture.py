"""Masked texture removal: what a detector loses when each object's texture is flattened.

Each object's pixels inside its instance mask are replaced by their mean colour (a style
network, as the layout-inversion paper uses, is not available offline: this is the plainest
texture removal there is). The detector reads each image before and after; per object we
record its score (the best same-category detection overlapping it with IoU ≥ 0.5, 0 when none)
and its IoU (the best same-category detection's), then average per size bucket, for the
categories that carry a texture and for the flat ones (whose flattening removes only noise and
shading: the control).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.ops import box_iou

from inverse_detr.data.annotated import read_annotated
from inverse_detr.data.coco import read_coco
from inverse_detr.detectors.interface import Detector, Prediction, detect

MATCH_IOU = 0.5


@dataclass
class ObjectChange:
    """One object's response before and after its image's textures are flattened."""

    category: int
    textured: bool
    bucket: str
    score_before: float
    score_after: float
    iou_before: float
    iou_after: float


def flatten_objects(image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(3, H, W) image with each of the (N, H, W) bool masks' pixels set to their mean colour."""
    out = image.clone()
    for mask in masks:
        if mask.any():
            out[:, mask] = image[:, mask].mean(dim=1, keepdim=True)
    return out


def object_response(found: Prediction, box: torch.Tensor, category: int) -> tuple[float, float]:
    """(score, IoU) of one ground-truth object (box (4,) xyxy) in one image's detections."""
    same = found.labels == category
    if not same.any():
        return 0.0, 0.0
    ious = box_iou(box[None].to(found.boxes), found.boxes[same])[0]
    scores = found.scores[same]
    matched = scores[ious >= MATCH_IOU]
    return float(matched.max()) if len(matched) else 0.0, float(ious.max())


def texture_removal(
    detector: Detector,
    images: Path,
    annotations: Path,
    n: int,
    buckets: dict[str, tuple[float, float]],
    batch_size: int = 16,
) -> list[ObjectChange]:
    """Every object of the first `n` images (by id) of a COCO split whose categories record a
    `texture` (the shapes world's do) and whose annotations have masks, before and after."""
    coco = read_coco(annotations)
    textured = {c["id"] for c in coco.dataset["categories"] if c.get("texture")}
    ids = sorted(coco.imgs)[:n]
    changes = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        loaded = [read_annotated(coco, images, i) for i in chunk]
        original = torch.stack([a.image for a in loaded])
        flat = torch.stack([flatten_objects(a.image, a.masks) for a in loaded])
        before = detect(detector, original, batch_size)
        after = detect(detector, flat, batch_size)
        for annotated, seen, unseen in zip(loaded, before, after, strict=True):
            objects = zip(annotated.boxes, annotated.labels, annotated.areas.tolist(), strict=True)
            for box, label, area in objects:
                score_b, iou_b = object_response(seen, box, int(label))
                score_a, iou_a = object_response(unseen, box, int(label))
                bucket = next((k for k, (lo, hi) in buckets.items() if lo <= area < hi), "other")
                cid = int(label)
                changes.append(
                    ObjectChange(cid, cid in textured, bucket, score_b, score_a, iou_b, iou_a)
                )
    return changes


def summarise(changes: list[ObjectChange]) -> dict[str, dict[str, dict[str, float]]]:
    """bucket → "textured" | "flat" → objects, mean score and IoU before / after, and the
    changes (after − before)."""
    groups: dict[tuple[str, str], list[ObjectChange]] = defaultdict(list)
    for c in changes:
        groups[c.bucket, "textured" if c.textured else "flat"].append(c)
    table: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for (bucket, kind), rows in sorted(groups.items()):
        mean = {
            key: sum(getattr(r, key) for r in rows) / len(rows)
            for key in ("score_before", "score_after", "iou_before", "iou_after")
        }
        mean["score_change"] = mean["score_after"] - mean["score_before"]
        mean["iou_change"] = mean["iou_after"] - mean["iou_before"]
        table[bucket][kind] = {"objects": len(rows), **mean}
    return dict(table)
