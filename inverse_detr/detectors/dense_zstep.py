"""The Z-step and inversion loss of the single-stage detectors (RetinaNet, FCOS).

Layout inversion needs pseudo-targets Z for the raw outputs: the smallest change that makes
post-processing yield the target layout. For a single-stage detector (the layout-inversion
paper, §3.2):

- each candidate (anchor or point) is assigned to a layout object by the detector's *own*
  training assignment — RetinaNet's IoU matcher, FCOS's centre sampling and scale ranges —
  and gets that object's class and box;
- a (candidate, class) pair that matches nothing but would survive post-processing (score above
  the detector's `score_thresh` and among its level's `topk_candidates`) gets background;
- every other pair keeps its current output: no loss.

Losses per image (so an image never depends on its batch): `cls`, the detector's focal loss on
the assigned and surviving pairs (FCOS adds its centre-ness BCE on the assigned candidates, the
other factor of its score), and `reg`, 1 − GIoU of the decoded boxes of the assigned
candidates; both divided by the number of assigned candidates, as the detectors train.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FCOS
from torchvision.ops import box_iou, generalized_box_iou_loss, sigmoid_focal_loss


@dataclass
class DenseTargets:
    """Z for one image's A candidates and K classes.

    assigned: (A,) long index of the layout object each candidate is assigned to; −1 none,
        −2 ignored (RetinaNet's between-thresholds candidates, as in its training)
    background: (A, K) bool, the unassigned (candidate, class) pairs that would survive
    """

    assigned: torch.Tensor
    background: torch.Tensor

    @property
    def positive(self) -> torch.Tensor:
        """(A,) bool: the assigned candidates."""
        return self.assigned >= 0


def candidate_scores(raw: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, A, K) the scores post-processing ranks: σ(class) (RetinaNet), and for FCOS
    sqrt(σ(class)·σ(centre-ness)). raw: `ClassicDetector.raw_outputs` of a dense detector."""
    scores = raw["cls_logits"].sigmoid()
    if "bbox_ctrness" in raw:
        scores = (scores * raw["bbox_ctrness"].sigmoid()).sqrt()
    return scores


def surviving(model: nn.Module, scores: torch.Tensor, per_level: list[int]) -> torch.Tensor:
    """(A, K) bool: pairs above `score_thresh` among the `topk_candidates` of their level.
    scores: (A, K) one image's `candidate_scores`; per_level: candidates per level."""
    keep = scores > model.score_thresh
    out = torch.zeros_like(keep)
    start = 0
    for count in per_level:
        level = scores[start : start + count].flatten()
        above = torch.where(keep[start : start + count].flatten())[0]
        top = above[level[above].topk(min(model.topk_candidates, len(above))).indices]
        out[start : start + count].view(-1)[top] = True
        start += count
    return out


def assign(
    model: nn.Module, anchors: torch.Tensor, boxes: torch.Tensor, per_level: list[int]
) -> torch.Tensor:
    """(A,) long: the detector's own assignment of candidates to layout boxes, −1 none.

    anchors: (A, 4) xyxy pixels; boxes: (N, 4) xyxy pixels. RetinaNet: its IoU matcher (IoU
    ≥ 0.5, plus each box's best anchors; −2 between its thresholds, ignored as in training).
    FCOS: its own centre sampling and per-level size ranges
    (torchvision's `FCOS.compute_loss`, asked for its assignment only).
    """
    if not len(boxes):
        return torch.full((len(anchors),), -1, dtype=torch.long, device=anchors.device)
    if isinstance(model, FCOS):
        captured = []
        head = SimpleNamespace(compute_loss=lambda *args: captured.extend(args[3]) or {})
        proxy = SimpleNamespace(center_sampling_radius=model.center_sampling_radius, head=head)
        FCOS.compute_loss(proxy, [{"boxes": boxes}], {}, [anchors], per_level)
        return captured[0]
    return model.proposal_matcher(box_iou(boxes, anchors))


def dense_targets(
    model: nn.Module,
    anchors: torch.Tensor,
    scores: torch.Tensor,
    boxes: torch.Tensor,
    per_level: list[int],
) -> DenseTargets:
    """The Z-step for one image: anchors (A, 4), scores (A, K), layout boxes (N, 4) xyxy px."""
    assigned = assign(model, anchors, boxes, per_level)
    background = surviving(model, scores, per_level) & (assigned == -1)[:, None]
    return DenseTargets(assigned, background)


def dense_inversion_losses(
    model: nn.Module, raw: dict[str, torch.Tensor], per_level: list[int], targets: list[dict]
) -> dict[str, torch.Tensor]:
    """{"cls": (B,), "reg": (B,)} toward each image's layout (module docstring).

    raw: the detector's `raw_outputs` for B images; targets: per image {"boxes": (N, 4) xyxy
    pixels, "labels": (N,) category ids}.
    """
    scores = candidate_scores(raw).detach()
    rows = [
        _one_image(model, {k: v[i] for k, v in raw.items()}, scores[i], target, per_level)
        for i, target in enumerate(targets)
    ]
    return {name: torch.stack([row[name] for row in rows]) for name in ("cls", "reg")}


def _one_image(model, raw, scores, target, per_level) -> dict[str, torch.Tensor]:
    z = dense_targets(model, raw["anchors"], scores, target["boxes"], per_level)
    positive = z.positive
    count = positive.sum().clamp(min=1)
    logits = raw["cls_logits"]  # (A, K)
    goal = torch.zeros_like(logits)
    goal[positive, target["labels"][z.assigned[positive]]] = 1.0
    weight = (positive[:, None] | z.background).to(logits.dtype)
    cls = (sigmoid_focal_loss(logits, goal, reduction="none") * weight).sum() / count
    boxes = decode(model, raw["bbox_regression"][positive], raw["anchors"][positive])
    wanted = target["boxes"][z.assigned[positive]]
    reg = generalized_box_iou_loss(boxes, wanted, reduction="sum") / count
    if "bbox_ctrness" in raw:  # FCOS: its centre-ness target on the assigned candidates
        cls = cls + _centreness(raw, positive, wanted) / count
    return {"cls": cls, "reg": reg}


def decode(model: nn.Module, codes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(M, 4) xyxy pixel boxes from (M, 4) box regressions at (M, 4) anchors, by the detector's
    own box coder (RetinaNet's `BoxCoder`, FCOS's `BoxLinearCoder`)."""
    coder = model.box_coder
    if hasattr(coder, "decode_single"):
        return coder.decode_single(codes, anchors)
    return coder.decode(codes, anchors)


def _centreness(raw, positive: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    """FCOS's centre-ness BCE, summed over the assigned candidates."""
    anchors = raw["anchors"][positive]
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    left_top = centres - wanted[:, :2]
    right_bottom = wanted[:, 2:] - centres
    ratio = torch.minimum(left_top, right_bottom) / torch.maximum(left_top, right_bottom)
    goal = ratio.clamp(min=0).prod(-1).sqrt()
    logits = raw["bbox_ctrness"][positive].squeeze(-1)
    return F.binary_cross_entropy_with_logits(logits, goal, reduction="sum")
