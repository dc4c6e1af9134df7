"""Detection errors: do the objects DETR misses vanish at the decoder?

DETR's detections (DETR's own post-processing, `detr_predictions`; score ≥ `score_threshold`,
0.5 by default) are matched to the ground-truth objects greedily by score, each to the
still-unmatched object of its class with the highest IoU ≥ `iou_threshold` (0.5)
(`match_detections`). Unmatched objects are missed (false negatives), the others detected;
unmatched detections are false positives: a detection of the wrong class over an object is a
false positive and leaves the object missed, a second detection of a matched object is a false
positive. Crowd regions are not objects (a detection on one counts as a false positive).

For every object and every stage the chain reconstructs from, the reconstruction error inside
the object's instance mask (`objects.in_mask_mse`: MSE of [0, 1] RGB pixels of the mask only),
averaged per group (missed, detected). `decoder_over_encoder[group]` is the group's mean
in-mask error from the decoder over that from the encoder, and `vanishing` the missed group's
ratio over the detected group's: well above 1, the missed objects are lost at the decoder
(the encoder still held them). False positives: their count, mean score and crops of the
input and of the decoder-stage reconstruction at the false box.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torchvision.ops import box_iou

from inverse_detr.analysis.objects import batch_objects, box_crops, in_mask_mse
from inverse_detr.analysis.stages import VARIANTS, available_stages
from inverse_detr.analysis.subset import AnalysisError, ImageSet, embed
from inverse_detr.detectors.detr import detr_predictions, to_pixels

if TYPE_CHECKING:
    from inverse_detr.export import Inverter

GROUPS = ("detected", "missed")


@dataclass
class Matching:
    """object_match: (G,) long, the detection matched to each object, −1 where missed;
    false_positives: (F,) long, the detections (score ≥ threshold) that match no object."""

    object_match: torch.Tensor
    false_positives: torch.Tensor

    @property
    def missed(self) -> torch.Tensor:
        """(G,) bool: the objects no detection matched."""
        return self.object_match < 0


def match_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    object_boxes: torch.Tensor,
    object_labels: torch.Tensor,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
) -> Matching:
    """Greedy matching of one image's detections to its objects, highest score first.

    boxes: (P, 4) xyxy, scores: (P,), labels: (P,) the detections; object_boxes: (G, 4) xyxy
    in the same frame, object_labels: (G,). A detection below `score_threshold` is dropped;
    the others take, in order of score, the unmatched same-class object of highest IoU, if
    that IoU is ≥ `iou_threshold`.
    """
    boxes, scores, labels = boxes.float().cpu(), scores.cpu(), labels.cpu()
    iou = box_iou(boxes, object_boxes.float().cpu())  # (P, G)
    iou[labels[:, None] != object_labels.cpu()[None, :]] = -1.0  # another class: no match
    match = torch.full((len(object_labels),), -1, dtype=torch.long)
    false = []
    kept = torch.nonzero(scores >= score_threshold).flatten()
    for p in kept[scores[kept].argsort(descending=True, stable=True)].tolist():
        free = torch.where(match < 0, iou[p], torch.full_like(iou[p], -1.0))  # (G,)
        best = int(free.argmax()) if len(free) else -1
        if best >= 0 and free[best] >= iou_threshold:
            match[best] = p
        else:
            false.append(p)
    return Matching(match, torch.tensor(false, dtype=torch.long))


@dataclass
class ErrorsResult:
    """in_mask_mse[stage][group]: mean in-mask error of the detected / missed objects (None:
    no such object); decoder_over_encoder[group], vanishing: see the module docstring (None
    where undefined); counts; false_positive_score: their mean score. examples: column title →
    (k, 3, S, S) crops of false positives (input | decoder-stage reconstruction);
    missed_examples: the same for missed objects at their true box (input | each stage)."""

    stages: list[str]
    score_threshold: float
    iou_threshold: float
    in_mask_mse: dict[str, dict[str, float | None]]
    decoder_over_encoder: dict[str, float | None]
    vanishing: float | None
    detected: int
    missed: int
    false_positives: int
    false_positive_score: float | None
    images: int
    examples: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)
    missed_examples: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict:
        skip = ("examples", "missed_examples")
        return {k: v for k, v in vars(self).items() if k not in skip}


class _Sums:
    """Per stage and group, the objects' in-mask errors; false positives' scores; crops."""

    def __init__(self, stages: list[str], examples: int) -> None:
        self.errors = {(s, g): [] for s in stages for g in GROUPS}
        self.fp_scores: list[float] = []
        self.limit = examples
        self.fp_crops: dict[str, list[torch.Tensor]] = {}
        self.missed_crops: dict[str, list[torch.Tensor]] = {}

    def crop(self, into: dict, columns: dict, owners: torch.Tensor, boxes: torch.Tensor) -> None:
        """Keep crops of `columns` (title → (B, 3, H, W)) at boxes (K, 4) of images owners (K,),
        up to the example limit."""
        room = self.limit - sum(len(c) for c in into.get("input", []))
        if room > 0 and len(boxes):
            for title, images in columns.items():
                crops = box_crops(images, owners[:room].cpu(), boxes[:room].cpu())
                into.setdefault(title, []).append(crops.cpu())


@torch.no_grad()
def error_analysis(
    inverter: Inverter,
    subset: ImageSet,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    stages: list[str] | None = None,
    batch_size: int = 16,
    examples: int = 6,
    progress: bool = True,
) -> ErrorsResult:
    """Match DETR's detections on `subset` to its objects; score each object's in-mask
    reconstruction error per stage (default: each one the chain holds) and per group. The
    subset must carry instance masks."""
    stages = stages or available_stages(inverter.chain)
    if not stages:
        raise AnalysisError("error analysis needs a chain that reconstructs from some stage")
    crop_stage = "decoder" if "decoder" in stages else stages[-1]
    subset, sums = subset.to(inverter.device), _Sums(stages, examples)
    for batch in subset.chunks(batch_size, "errors" if progress else ""):
        emb = embed(inverter, batch.images, batch.pixel_mask)
        predictions = detr_predictions(emb.logits, emb.boxes, [t.size for t in batch.targets])
        matchings = [
            match_detections(p["boxes"], p["scores"], p["labels"], _object_boxes(t),
                             t.labels, score_threshold, iou_threshold)
            for p, t in zip(predictions, batch.targets, strict=True)
        ]  # fmt: skip
        owners, masks, _ = batch_objects(batch.targets)
        missed = torch.cat([m.missed for m in matchings]).to(owners.device)
        columns = {"input": batch.images}
        for stage in stages:
            chain_stage, soft = VARIANTS[stage]
            columns[stage] = inverter.chain.reconstruct(emb, chain_stage, soft=soft)
            errors = in_mask_mse(columns[stage], batch.images, masks, owners).cpu()
            sums.errors[stage, "missed"] += errors[missed.cpu()].tolist()
            sums.errors[stage, "detected"] += errors[~missed.cpu()].tolist()
        _false_positives(sums, predictions, matchings, columns, crop_stage)
        boxes = torch.cat([_object_boxes(t) for t in batch.targets])
        sums.crop(sums.missed_crops, columns, owners[missed], boxes[missed])
    return _result(sums, stages, score_threshold, iou_threshold, len(subset))


def _object_boxes(target) -> torch.Tensor:
    """A target's objects as (N, 4) xyxy canvas pixels, the frame of `detr_predictions`."""
    return to_pixels(target.boxes.float(), target.size)


def _false_positives(
    sums: _Sums, predictions: list, matchings: list[Matching], columns: dict, crop_stage: str
) -> None:
    """Record the batch's false positives: their scores, and crops at their boxes."""
    owners = torch.cat([torch.full_like(m.false_positives, i) for i, m in enumerate(matchings)])
    pairs = [(p, m.false_positives) for p, m in zip(predictions, matchings, strict=True)]
    sums.fp_scores += torch.cat([p["scores"].cpu()[f] for p, f in pairs]).tolist()
    boxes = torch.cat([p["boxes"].cpu()[f] for p, f in pairs])
    shown = {"input": columns["input"], f"{crop_stage} reconstruction": columns[crop_stage]}
    sums.crop(sums.fp_crops, shown, owners, boxes)


def _mean(values: list[float]) -> float | None:
    kept = [v for v in values if v == v]  # NaN (an empty mask) left out
    return sum(kept) / len(kept) if kept else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _result(sums: _Sums, stages: list[str], score: float, iou: float, images: int) -> ErrorsResult:
    means = {s: {g: _mean(sums.errors[s, g]) for g in GROUPS} for s in stages}
    ratios = {
        g: _ratio(means.get("decoder", {}).get(g), means.get("encoder", {}).get(g)) for g in GROUPS
    }
    return ErrorsResult(
        stages=stages,
        score_threshold=score,
        iou_threshold=iou,
        in_mask_mse=means,
        decoder_over_encoder=ratios,
        vanishing=_ratio(ratios["missed"], ratios["detected"]),
        detected=len(sums.errors[stages[0], "detected"]),
        missed=len(sums.errors[stages[0], "missed"]),
        false_positives=len(sums.fp_scores),
        false_positive_score=_mean(sums.fp_scores),
        images=images,
        examples={t: torch.cat(c) for t, c in sums.fp_crops.items()},
        missed_examples={t: torch.cat(c) for t, c in sums.missed_crops.items()},
    )
