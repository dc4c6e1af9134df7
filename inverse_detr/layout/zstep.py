"""The Z-step and DETR's set loss against its pseudo-targets.

DETR's post-processing (per-query argmax, score threshold) is not differentiable, so layout
inversion alternates. The Z-step builds pseudo-targets Z, the smallest change of the raw
outputs that yields the target layout: a Hungarian matching (HF's `HungarianMatcher`, DETR's
costs 1·class + 5·L1 + 2·GIoU, solved by scipy) assigns each target object to one query,
which gets the object's class and box; every other query gets "no object". The I-step then
descends DETR's own set loss toward Z (`set_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import box_convert, generalized_box_iou_loss
from transformers.loss.loss_for_object_detection import HungarianMatcher

from inverse_detr.layout.targets import Layout

LOSS_TERMS = ("both", "class", "box")  # the disentangling study's subsets of the set loss


@dataclass(frozen=True)
class LossWeights:
    """DETR's set-loss weights (also the matching costs) and the no-object class weight."""

    ce: float = 1.0
    l1: float = 5.0
    giou: float = 2.0
    no_object: float = 0.1


@dataclass
class PseudoTargets:
    """Z for a batch of B images with Q queries and C real classes.

    classes: (B, Q) long target class per query, C ("no object") where unmatched
    boxes:   (B, Q, 4) normalised cxcywh target box per query (only where `matched`)
    matched: (B, Q) bool, True on the queries a target object was assigned to
    """

    classes: torch.Tensor
    boxes: torch.Tensor
    matched: torch.Tensor


@torch.no_grad()
def pseudo_targets(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    layouts: list[Layout],
    weights: LossWeights = LossWeights(),
) -> PseudoTargets:
    """The Z-step: each layout's own Hungarian matching of its objects to the queries.

    logits: (B, Q, C + 1) with "no object" last;  boxes: (B, Q, 4) normalised cxcywh.
    A layout may hold at most Q objects.
    """
    batch, queries, width = logits.shape
    for layout in layouts:
        if len(layout) > queries:
            raise ValueError(
                f"layout {layout.image_id} has {len(layout)} objects > {queries} queries"
            )
    matcher = HungarianMatcher(class_cost=weights.ce, bbox_cost=weights.l1, giou_cost=weights.giou)
    outputs = {"logits": logits.float(), "pred_boxes": boxes.float()}
    layouts = [layout.to(logits.device) for layout in layouts]
    pairs = matcher(outputs, [layout.as_hf_labels() for layout in layouts])
    classes = logits.new_full((batch, queries), width - 1, dtype=torch.long)
    target_boxes = torch.zeros_like(boxes)
    matched = torch.zeros((batch, queries), dtype=torch.bool, device=logits.device)
    for b, ((query_idx, object_idx), layout) in enumerate(zip(pairs, layouts, strict=True)):
        query_idx, object_idx = query_idx.to(logits.device), object_idx.to(logits.device)
        classes[b, query_idx] = layout.labels[object_idx]
        target_boxes[b, query_idx] = layout.boxes[object_idx].to(boxes.dtype)
        matched[b, query_idx] = True
    return PseudoTargets(classes, target_boxes, matched)


def set_loss(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    z: PseudoTargets,
    terms: str = "both",
    weights: LossWeights = LossWeights(),
) -> torch.Tensor:
    """(B,) DETR's set loss of each image toward its Z: CE (no-object weight) + L1 + GIoU.

    Each image's loss is its own (box terms averaged over its own objects), so an image's
    gradient does not depend on the rest of the batch. `terms`: both | class | box.
    """
    if terms not in LOSS_TERMS:
        raise ValueError(f"loss terms must be one of {LOSS_TERMS}, got {terms!r}")
    loss = logits.new_zeros(logits.shape[0])
    if terms in ("both", "class"):
        loss = loss + weights.ce * _classification(logits, z, weights.no_object)
    if terms in ("both", "box"):
        l1, giou = _box_terms(boxes, z)
        loss = loss + weights.l1 * l1 + weights.giou * giou
    return loss


def _classification(logits: torch.Tensor, z: PseudoTargets, no_object: float) -> torch.Tensor:
    """(B,) per-image class-weighted mean cross-entropy, as DETR's `loss_labels`."""
    class_weight = logits.new_ones(logits.shape[-1])
    class_weight[-1] = no_object
    ce = F.cross_entropy(logits.transpose(1, 2).float(), z.classes, reduction="none")  # (B, Q)
    w = class_weight[z.classes]  # (B, Q)
    return (ce * w).sum(1) / w.sum(1)


def _box_terms(boxes: torch.Tensor, z: PseudoTargets) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,), (B,): L1 and 1 − GIoU summed over each image's matched queries / its objects."""
    matched = z.matched.float()  # (B, Q)
    count = matched.sum(1).clamp(min=1.0)
    l1 = (boxes.float() - z.boxes.float()).abs().sum(-1)  # (B, Q)
    pred = box_convert(boxes.float().flatten(0, 1), "cxcywh", "xyxy")  # (B·Q, 4)
    goal = box_convert(z.boxes.float().flatten(0, 1), "cxcywh", "xyxy")
    # unmatched queries have no box: give them their own, so their (zero-weighted) terms stay finite
    goal = torch.where(z.matched.flatten()[:, None], goal, pred.detach())
    giou = generalized_box_iou_loss(pred, goal, reduction="none").view_as(matched)  # (B, Q)
    return (l1 * matched).sum(1) / count, (giou * matched).sum(1) / count
